package rewrite

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// ConnectionString is a parsed Azure SignalR Service or Web PubSub connection string.
//
// Every fmt verb prints the redacted form returned by String, and
// MarshalText returns it too, so encoding/json, log/slog and other encoders
// that honour encoding.TextMarshaler cannot write the access key to a log.
// fmt cannot call methods on a value held in an unexported struct field, so
// a ConnectionString kept in one is printed field by field, key included,
// when its parent is printed: keep it in an exported field or print it on
// its own.
type ConnectionString struct {
	Endpoint                       *url.URL // scheme and host (with Port applied if given), path kept minus trailing '/'
	AccessKey                      string   // empty when AuthType is set and no key was given
	Version                        string
	Port                           int      // 0 when absent
	ClientEndpoint                 *url.URL // nil when absent
	ServerEndpoint                 *url.URL // nil when absent
	AuthType                       string   // lowercased; empty for access-key auth
	ClientID, TenantID             string
	HasClientSecret, HasClientCert bool
	// ClientSecret is a service principal's secret, and ClientCert the path
	// of its certificate, for AuthType aad and azure.app. Printed forms
	// redact both, as they do the AccessKey.
	ClientSecret, ClientCert string

	writtenEndpoint *url.URL // the Endpoint before Port replaced its port; nil without Port
}

// redactedValue stands in for every secret value in printed output.
const redactedValue = "<redacted>"

// maxQuotedLen is the longest value an error message quotes back. Valid
// values are short; a long one is more likely to be several parts run
// together, which may include a key.
const maxQuotedLen = 256

// csPart is one Key=Value part of a connection string.
type csPart struct {
	pos   int    // 1-based position among the ';'-separated parts, empty ones included, as a reader counts them
	key   string // as written, trimmed
	canon string // canonical spelling of a known key, "" for an unknown one
	value string // trimmed
}

// canonicalKey returns the documented spelling of a known key, matched
// case-insensitively, or "" when the key is unknown.
func canonicalKey(key string) string {
	switch strings.ToLower(key) {
	case "endpoint":
		return "Endpoint"
	case "accesskey":
		return "AccessKey"
	case "version":
		return "Version"
	case "port":
		return "Port"
	case "clientendpoint":
		return "ClientEndpoint"
	case "serverendpoint":
		return "ServerEndpoint"
	case "authtype":
		return "AuthType"
	case "clientid":
		return "ClientId"
	case "tenantid":
		return "TenantId"
	case "clientsecret":
		return "ClientSecret"
	case "clientcert":
		return "ClientCert"
	}
	return ""
}

// isSecretKey reports whether values of the canonical key must never be
// shown. ClientCert is included because it may hold the certificate itself
// rather than a path to it.
func isSecretKey(canon string) bool {
	return canon == "AccessKey" || canon == "ClientSecret" || canon == "ClientCert"
}

// ParseConnectionString parses an Azure SignalR Service or Web PubSub
// connection string such as
// "Endpoint=https://x.service.signalr.net;AccessKey=...;Version=1.0;".
//
// It follows the Azure SDK's grammar: ';'-separated Key=Value parts, keys
// matched case-insensitively, empty parts skipped and unknown keys ignored.
// It is stricter than the SDK where a lax reading could hide a mistake: an
// empty key is an error, and an endpoint must not have a query, fragment,
// user info or a host that is not a DNS name or IP address.
//
// Errors name the offending key and part but never contain a secret value
// or the input itself, so they are safe to log.
func ParseConnectionString(s string) (ConnectionString, error) {
	parts, err := splitParts(s)
	if err != nil {
		return ConnectionString{}, err
	}

	secrets := secretValues(parts)
	values, err := knownValues(parts, secrets)
	if err != nil {
		return ConnectionString{}, err
	}

	var cs ConnectionString

	endpoint, ok := values["Endpoint"]
	if !ok || endpoint == "" {
		return ConnectionString{}, connStringError("missing Endpoint (expected Endpoint=https://<name>.service.signalr.net;AccessKey=...)")
	}
	if cs.Endpoint, err = parseEndpoint("Endpoint", endpoint, "https://<name>.service.signalr.net", secrets); err != nil {
		return ConnectionString{}, err
	}

	if v, ok := values["Port"]; ok {
		// ParseUint rejects the signs and spaces that Atoi would let through.
		n, err := strconv.ParseUint(v, 10, 16)
		if err != nil || n == 0 {
			return ConnectionString{}, connStringError("%s is not a number from 1 to 65535", nameAndValue("Port", v, secrets))
		}
		cs.Port = int(n)
		written := *cs.Endpoint
		cs.writtenEndpoint = &written
		cs.Endpoint.Host = formatHost(cs.Endpoint.Hostname(), strconv.Itoa(cs.Port))
	}

	if v, ok := values["AuthType"]; ok {
		switch t := strings.ToLower(v); t {
		case "aad", "azure", "azure.app", "azure.msi":
			cs.AuthType = t
		default:
			return ConnectionString{}, connStringError("%s is not an AuthType the Azure SDK knows: give aad, azure, azure.app or azure.msi to sign in with Microsoft Entra ID, or remove AuthType and give AccessKey", nameAndValue("AuthType", v, secrets))
		}
	}

	cs.AccessKey = values["AccessKey"]
	if cs.AccessKey == "" && cs.AuthType == "" {
		return ConnectionString{}, connStringError("missing AccessKey (expected AccessKey=<key>, the key the app signs client tokens with)")
	}
	if err := cs.parseOptional(values, secrets); err != nil {
		return ConnectionString{}, err
	}
	cs.ClientID = values["ClientId"]
	cs.TenantID = values["TenantId"]
	cs.ClientSecret = values["ClientSecret"]
	cs.ClientCert = values["ClientCert"]
	cs.HasClientSecret = cs.ClientSecret != ""
	cs.HasClientCert = cs.ClientCert != ""
	return cs, nil
}

// secretValues returns the values no error may quote. They are gathered
// before anything is validated so that no error, whichever part it is
// about, can quote a value that contains one. A base64 key is also looked
// for without its '=' padding, as that is still the whole key.
func secretValues(parts []csPart) []string {
	var secrets []string
	for _, p := range parts {
		if !isSecretKey(p.canon) {
			continue
		}
		for _, v := range []string{p.value, strings.TrimRight(p.value, "=")} {
			if v != "" {
				secrets = append(secrets, v)
			}
		}
	}
	return secrets
}

// knownValues returns the values of the known keys by canonical key, and
// refuses a key given twice, in any letter case.
func knownValues(parts []csPart, secrets []string) (map[string]string, error) {
	seen := make(map[string]bool, len(parts))
	values := make(map[string]string, len(parts))
	for _, p := range parts {
		folded := strings.ToLower(p.key)
		if seen[folded] {
			if p.canon != "" {
				return nil, connStringError("duplicate key %q", p.canon)
			}
			if safeToQuote(p.key, secrets) {
				return nil, connStringError("duplicate key %q", p.key)
			}
			return nil, connStringError("duplicate key in part %d", p.pos)
		}
		seen[folded] = true
		if p.canon != "" {
			values[p.canon] = p.value
		}
	}
	return values, nil
}

// parseOptional reads Version, ClientEndpoint and ServerEndpoint.
func (cs *ConnectionString) parseOptional(values map[string]string, secrets []string) error {
	var err error
	if v, ok := values["Version"]; ok {
		if !isSupportedVersion(v) {
			return connStringError("%s is not supported (expected 1.<minor>, such as Version=1.0)", nameAndValue("Version", v, secrets))
		}
		cs.Version = v
	}
	if v, ok := values["ClientEndpoint"]; ok {
		if cs.ClientEndpoint, err = parseEndpoint("ClientEndpoint", v, "https://<host>", secrets); err != nil {
			return err
		}
	}
	if v, ok := values["ServerEndpoint"]; ok {
		if cs.ServerEndpoint, err = parseEndpoint("ServerEndpoint", v, "https://<host>", secrets); err != nil {
			return err
		}
	}
	return nil
}

// splitParts splits s into its Key=Value parts. A part without '=' or with
// an empty key is reported by position only: it may be a key pasted on its
// own.
func splitParts(s string) ([]csPart, error) {
	var parts []csPart
	for i, raw := range strings.Split(s, ";") {
		raw = strings.TrimSpace(raw)
		if raw == "" {
			// A trailing ';' is common, and the SDK drops empty parts.
			continue
		}
		key, value, ok := strings.Cut(raw, "=")
		if !ok {
			return nil, connStringError("part %d has no \"=\" (expected Key=Value)", i+1)
		}
		key = strings.TrimSpace(key)
		if key == "" {
			return nil, connStringError("part %d has an empty key (expected Key=Value)", i+1)
		}
		parts = append(parts, csPart{
			pos:   i + 1,
			key:   key,
			canon: canonicalKey(key),
			value: strings.TrimSpace(value),
		})
	}
	return parts, nil
}

// parseEndpoint parses the value of an endpoint key as an absolute http or
// https URL and drops any trailing '/', which the service does not expect
// before the paths it appends. hint is the example shown when the value is
// not a URL.
func parseEndpoint(name, v, hint string, secrets []string) (*url.URL, error) {
	if strings.ContainsAny(v, "?#") {
		return nil, connStringError("%s must not have a query or fragment (remove everything from the \"?\" or \"#\")", nameAndValue(name, v, secrets))
	}
	// Trimming the text rather than the parsed path keeps an escaped
	// trailing "%2F", which is data, and leaves Path and RawPath consistent.
	u, err := url.Parse(strings.TrimRight(v, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Hostname() == "" {
		return nil, connStringError("%s is not an absolute http or https URL (expected %s=%s)", nameAndValue(name, v, secrets), name, hint)
	}
	if u.User != nil {
		// The value is not quoted: the user info may hold a password.
		return nil, connStringError("%s must not contain a user name or password", name)
	}
	// url.Parse accepts ',', '=' and the like in a host, so a key run into
	// the endpoint ("https://x,AccessKey=...") would otherwise become part
	// of the host and be printed wherever the endpoint is.
	if !validHost(u.Hostname()) {
		return nil, connStringError("%s has a host that is not a DNS name or IP address", nameAndValue(name, v, secrets))
	}
	port := u.Port()
	if port != "" {
		n, err := strconv.ParseUint(port, 10, 16)
		if err != nil || n == 0 {
			return nil, connStringError("%s has a port that is not a number from 1 to 65535", nameAndValue(name, v, secrets))
		}
		// Leading zeros are dropped so that the port compares equal to
		// the one in a token's aud.
		port = strconv.FormatUint(n, 10)
	}
	// Rebuilding the host also drops a bare trailing ':' that url.Parse
	// accepts.
	u.Host = formatHost(u.Hostname(), port)
	// When url.Parse cannot keep the path as written (it had a space, say),
	// it re-escapes the decoded path and an input "%3B" comes back as ';',
	// which would split the endpoint in two wherever it is written back
	// into a connection string. Escaping it again keeps the meaning.
	if ep := u.EscapedPath(); strings.Contains(ep, ";") {
		u.RawPath = strings.ReplaceAll(ep, ";", "%3B")
	}
	return u, nil
}

// validHost reports whether h, a URL host without brackets or port, is an
// IPv6 address (with an optional zone) or consists only of ASCII letters,
// digits, '-', '.' and '_', which covers DNS names and IPv4 addresses.
func validHost(h string) bool {
	if strings.Contains(h, ":") {
		addr, zone, _ := strings.Cut(h, "%")
		ip, err := netip.ParseAddr(addr)
		return err == nil && ip.Is6() && hostChars(zone)
	}
	return h != "" && hostChars(h)
}

// hostChars reports whether s consists only of ASCII letters, digits, '-',
// '.' and '_'.
func hostChars(s string) bool {
	for _, r := range s {
		switch {
		case 'a' <= r && r <= 'z', 'A' <= r && r <= 'Z', '0' <= r && r <= '9', r == '-', r == '.', r == '_':
		default:
			return false
		}
	}
	return true
}

// supportedVersion is the SDK's pattern for Version, ^1\.\d+(?:[\w-.]+)?$
// (Azure/azure-signalr,
// src/Microsoft.Azure.SignalR.Common/Utilities/ConnectionStringParser.cs),
// so that 1.0-preview passes too. .NET reads \d and \w as Unicode classes,
// which Go's do not: they are spelt out.
var supportedVersion = regexp.MustCompile(`^1\.\p{Nd}+(?:[\p{L}\p{Mn}\p{Nd}\p{Pc}\-.]+)?$`)

// isSupportedVersion reports whether the SDK accepts v: major version 1 of
// the service protocol, the only one it speaks.
func isSupportedVersion(v string) bool {
	return supportedVersion.MatchString(v)
}

// formatHost formats host and an optional port as a URL host, bracketing an
// IPv6 address.
func formatHost(host, port string) string {
	if port != "" {
		return net.JoinHostPort(host, port)
	}
	if strings.Contains(host, ":") {
		return "[" + host + "]"
	}
	return host
}

// safeToQuote reports whether v may be quoted in an error message. A value
// containing a secret is never quoted, and neither is one containing '=' or
// '@': '=' means another Key=Value part was probably run into it (for
// example "Endpoint=https://x,AccessKey=..."), and '@' may introduce a
// password.
func safeToQuote(v string, secrets []string) bool {
	if len(v) > maxQuotedLen || strings.ContainsAny(v, "=@") {
		return false
	}
	for _, s := range secrets {
		if strings.Contains(v, s) {
			return false
		}
	}
	return true
}

// nameAndValue returns name followed by the quoted value when the value is
// safe to show, and name alone otherwise.
func nameAndValue(name, v string, secrets []string) string {
	if safeToQuote(v, secrets) {
		return name + " " + strconv.Quote(v)
	}
	return name
}

// connStringError returns an error with the prefix that every parse error
// carries, so that a caller's log line says which input was rejected.
func connStringError(format string, args ...any) error {
	return errors.New("connection string: " + fmt.Sprintf(format, args...))
}

// Hosts returns the hosts, as CanonicalHost gives them, that the aud of a
// SignalR client token may name for this endpoint: the Endpoint's host with
// Port applied, and the Endpoint's host as written when Port changed it. No
// duplicates.
//
// Current SDKs write no port in aud at all, so only the host name of these
// counts for their tokens; SDKs before 2021 wrote the Endpoint with Port.
// ClientEndpoint and ServerEndpoint are left out: the SDKs send clients and
// app servers there, but build every aud from the Endpoint
// (Azure/azure-signalr, src/Microsoft.Azure.SignalR.Common/Endpoints/ServiceEndpoint.cs).
func (c ConnectionString) Hosts() []string {
	var hosts []string
	for _, u := range []*url.URL{c.Endpoint, c.writtenEndpoint} {
		if u == nil {
			continue
		}
		if h := CanonicalHost(u); !slices.Contains(hosts, h) {
			hosts = append(hosts, h)
		}
	}
	return hosts
}

// String returns the connection string with the access key, client secret
// and client certificate replaced by "<redacted>", for example
// "Endpoint=https://x.service.signalr.net;AccessKey=<redacted>;Version=1.0".
// It is meant for logs and cannot be parsed back into a usable connection
// string.
func (c ConnectionString) String() string {
	var b strings.Builder
	add := func(key, value string) {
		if value == "" {
			return
		}
		if b.Len() > 0 {
			b.WriteByte(';')
		}
		b.WriteString(key)
		b.WriteByte('=')
		b.WriteString(value)
	}
	if c.Endpoint != nil {
		// Redacted hides a password in a hand-built URL; parsed ones have none.
		add("Endpoint", c.Endpoint.Redacted())
	}
	if c.AccessKey != "" {
		add("AccessKey", redactedValue)
	}
	add("Version", c.Version)
	if c.Port != 0 {
		add("Port", strconv.Itoa(c.Port))
	}
	if c.ClientEndpoint != nil {
		add("ClientEndpoint", c.ClientEndpoint.Redacted())
	}
	if c.ServerEndpoint != nil {
		add("ServerEndpoint", c.ServerEndpoint.Redacted())
	}
	add("AuthType", c.AuthType)
	add("ClientId", c.ClientID)
	add("TenantId", c.TenantID)
	if c.HasClientSecret {
		add("ClientSecret", redactedValue)
	}
	if c.HasClientCert {
		add("ClientCert", redactedValue)
	}
	return b.String()
}

// GoString returns the redacted form from String, quoted and labelled with
// the type, so that %#v shows what was printed without showing the key.
func (c ConnectionString) GoString() string {
	return "rewrite.ConnectionString(" + strconv.Quote(c.String()) + ")"
}

// Format prints the redacted form for every verb and flag. String alone
// would cover %v and %s, but fmt prints a struct's fields one by one for
// verbs such as %d or %t, which would show the access key.
func (c ConnectionString) Format(f fmt.State, verb rune) {
	if verb == 'v' && f.Flag('#') {
		io.WriteString(f, c.GoString())
		return
	}
	fmt.Fprintf(f, fmt.FormatString(f, verb), c.String())
}

// MarshalText returns the redacted form from String so that encoders which
// would otherwise walk the fields, such as encoding/json and the JSON and
// text handlers of log/slog, do not write the access key.
func (c ConnectionString) MarshalText() ([]byte, error) {
	return []byte(c.String()), nil
}
