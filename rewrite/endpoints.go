package rewrite

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"sort"
	"strings"
)

// NamedConnectionString is a connection string and where it came from; the
// source names it in logs and reports, since the value itself never appears.
type NamedConnectionString struct {
	Source string
	Value  string
	// Identity, instead of Value, holds the Azure Functions host's
	// identity-based settings of one connection (serviceUri, credential,
	// clientId, ...), keyed in lowercase.
	Identity map[string]string
	// twice names the identity settings FromEnv found in two spellings
	// with different values, which Endpoints refuses.
	twice []string
}

// Sources are the places connection strings are read from, in order.
type Sources struct {
	// Env is the environment, where the app's own settings are read as the
	// app reads them (see Format.FromEnv).
	Env map[string]string
	// Inline are connection strings given directly, named by position.
	Inline []string
	// Files each hold one connection string, such as a mounted Secret.
	Files []string
}

// Collect gathers every connection string of the sources: the app's
// settings in the environment, the inline ones, then the contents of each
// file. A file that cannot be read or is empty is an error; the others are
// still returned. Values are trimmed.
func (f Format) Collect(src Sources) ([]NamedConnectionString, error) {
	all := f.FromEnv(src.Env)
	for i, cs := range src.Inline {
		all = append(all, NamedConnectionString{Source: fmt.Sprintf("connection string %d of the configuration", i+1), Value: strings.TrimSpace(cs)})
	}
	const fileHint = "; check --connection-string-file (connection_string_files in the file): it names a file holding one connection string, such as a mounted Secret's key"
	var problems []error
	for _, path := range src.Files {
		data, err := os.ReadFile(path)
		if err != nil {
			problems = append(problems, fmt.Errorf("connection string file: %w%s", err, fileHint))
			continue
		}
		// Secrets mounted from Kubernetes often end with a newline.
		v := strings.TrimSpace(string(data))
		if v == "" {
			problems = append(problems, fmt.Errorf("connection string file %s is empty", path))
			continue
		}
		all = append(all, NamedConnectionString{Source: path, Value: v})
	}
	return all, errors.Join(problems...)
}

// AppSetting is the setting an Azure Functions app reads its connection
// string from by default: AzureSignalRConnectionString or
// WebPubSubConnectionString.
func (f Format) AppSetting() string {
	if f.sdk == nil || len(f.sdk.appSettings) == 0 {
		return ""
	}
	return f.sdk.appSettings[0]
}

// FromEnv returns the connections the app itself would find in the
// environment: its default settings, and for SignalR each
// Azure__SignalR__Endpoints__<name> (with an optional ":primary" or
// ":secondary", or "__primary" or "__secondary", suffix). Kubernetes passes
// app settings as environment variables, where ':' is spelt "__". A
// setting's identity-based form, such as
// AzureSignalRConnectionString__serviceUri with its __credential and
// __clientId siblings, is one connection with Identity set. Sorted by
// variable name after the default settings, so that logs and reports are
// stable.
func (f Format) FromEnv(env map[string]string) []NamedConnectionString {
	if f.sdk == nil {
		return nil
	}
	var out []NamedConnectionString
	identities := map[string]map[string]string{} // by connection name, as first spelt
	names := map[string]string{}                 // lowercased connection name to as first spelt
	spelt := map[string]string{}                 // connection and key to the variable that set it
	twice := map[string][]string{}               // by connection name: settings given twice, differently
	addIdentity := func(conn, key, name, v string) {
		folded := strings.ToLower(conn)
		if _, ok := names[folded]; !ok {
			names[folded] = conn
			identities[conn] = map[string]string{}
		}
		conn = names[folded]
		if old, ok := identities[conn][key]; ok && old != v {
			// The host's configuration matches names without regard to
			// case, with ':' for "__", and which of two spellings wins is
			// not defined: the sidecar must not guess a different one.
			twice[conn] = append(twice[conn], spelt[folded+"\x00"+key]+" and "+name)
			return
		}
		identities[conn][key], spelt[folded+"\x00"+key] = v, name
	}
	for _, n := range f.sdk.appSettings {
		if v := strings.TrimSpace(env[n]); v != "" {
			out = append(out, NamedConnectionString{Source: "$" + n, Value: v})
		}
	}
	var multi []NamedConnectionString
	vars := make([]string, 0, len(env))
	for k := range env {
		vars = append(vars, k)
	}
	sort.Strings(vars) // so that a connection is named alike on every start
	for _, k := range vars {
		v := strings.TrimSpace(env[k])
		if v == "" {
			continue
		}
		if conn, key, ok := splitIdentitySetting(k); ok && f.isConnectionName(conn) {
			addIdentity(conn, key, k, v)
			continue
		}
		for _, p := range f.sdk.endpointPrefixes {
			if len(k) > len(p) && strings.EqualFold(k[:len(p)], p) {
				multi = append(multi, NamedConnectionString{Source: "$" + k, Value: v})
			}
		}
	}
	for conn, settings := range identities {
		if settings["serviceuri"] == "" {
			continue // the host reads a connection's identity settings only with a serviceUri
		}
		multi = append(multi, NamedConnectionString{Source: "$" + conn + "__serviceUri", Identity: settings, twice: twice[conn]})
	}
	sort.Slice(multi, func(i, j int) bool { return multi[i].Source < multi[j].Source })
	return append(out, multi...)
}

// isConnectionName reports whether conn names one of the app's connections:
// a default setting or one of the named endpoints.
func (f Format) isConnectionName(conn string) bool {
	for _, n := range f.sdk.appSettings {
		if strings.EqualFold(conn, n) {
			return true
		}
	}
	for _, p := range f.sdk.endpointPrefixes {
		if len(conn) > len(p) && strings.EqualFold(conn[:len(p)], p) {
			return true
		}
	}
	return false
}

// Endpoint is a service endpoint and the keys that may sign its tokens.
// During a key rotation an endpoint has two keys (primary and secondary):
// whichever verifies the app's token signs the rewritten one.
type Endpoint struct {
	Hosts       []string // of its tokens' aud, as CanonicalHost gives them
	ClientHosts []string // of the URLs clients are sent to
	URL         string   // the Endpoint, for logs
	Keys        []EndpointKey
	// Entra is set, and Keys empty, when the app reaches the endpoint with
	// Microsoft Entra ID. The caller then sets, for SignalR, Source, which
	// lends the key the sidecar signs with; for Web PubSub, Issuer, which
	// asks the service for each client token.
	Entra  *Entra
	Source KeySource
	Issuer TokenIssuer
}

// EndpointKey is one key of an endpoint and where it came from.
type EndpointKey struct {
	Source           string
	Secret           []byte
	ConnectionString ConnectionString
}

// Endpoints parses the connection strings as the format's SDK reads them
// and groups their keys by endpoint; a key found twice is kept once. Every
// bad connection string is reported, each error naming its source, never
// its value.
func (f Format) Endpoints(list []NamedConnectionString) ([]Endpoint, error) {
	var endpoints []Endpoint
	var problems []error
	for _, ncs := range list {
		e, k, cs, err := f.parse(ncs)
		if err != nil {
			problems = append(problems, fmt.Errorf("%s: %w", ncs.Source, err))
			continue
		}
		i := slices.IndexFunc(endpoints, func(e Endpoint) bool {
			return slices.Equal(e.Hosts, k.Hosts) && slices.Equal(e.ClientHosts, k.ClientHosts)
		})
		if i >= 0 && (endpoints[i].Entra != nil) != (e != nil) {
			problems = append(problems, fmt.Errorf("%s: the endpoint %s is also given with %s; give the app and the sidecar one way to reach it", ncs.Source, k.Endpoint, other(endpoints[i])))
			continue
		}
		if i < 0 {
			endpoints = append(endpoints, Endpoint{Hosts: k.Hosts, ClientHosts: k.ClientHosts, URL: k.Endpoint, Entra: e})
			i = len(endpoints) - 1
		} else if e != nil {
			continue // the same endpoint's identity from two sources: the first one counts
		}
		ep := &endpoints[i]
		if e != nil || slices.ContainsFunc(ep.Keys, func(ek EndpointKey) bool { return string(ek.Secret) == string(k.Secret) }) {
			continue // the same key from two sources
		}
		ep.Keys = append(ep.Keys, EndpointKey{Source: ncs.Source, Secret: k.Secret, ConnectionString: cs})
	}
	return endpoints, errors.Join(problems...)
}

// other names how an endpoint is reached, for a conflict's message.
func other(e Endpoint) string {
	if e.Entra != nil {
		return "Microsoft Entra ID in " + e.Entra.Source
	}
	return "an access key in " + e.Keys[0].Source
}

// parse reads one connection: an access key's Key, or the Entra settings
// and the Key (without Secret) that names the endpoint's hosts.
func (f Format) parse(ncs NamedConnectionString) (*Entra, Key, ConnectionString, error) {
	if ncs.Identity != nil {
		if len(ncs.twice) > 0 {
			return nil, Key{}, ConnectionString{}, fmt.Errorf("%s set the same setting with different values; the Functions host reads them as one, either may win: keep one spelling", strings.Join(ncs.twice, "; "))
		}
		if f.sdk == nil || !f.sdk.identitySettings {
			return nil, Key{}, ConnectionString{}, fmt.Errorf("identity-based settings: the sidecar signs %s tokens with an access key only; give the app and the sidecar a connection string with AccessKey", f.Name)
		}
		if !f.sdk.clientEndpoint {
			for _, k := range []string{"serverEndpoint", "clientEndpoint"} {
				if ncs.Identity[strings.ToLower(k)] != "" {
					return nil, Key{}, ConnectionString{}, fmt.Errorf("the %s Functions extension does not read %s; remove it, so that the app and the sidecar both reach serviceUri", f.Name, k)
				}
			}
		}
		e, err := parseIdentitySettings(ncs.Source, ncs.Identity, f.sdk.endpointHint)
		if err != nil {
			return nil, Key{}, ConnectionString{}, err
		}
		client := e.Endpoint
		if v := ncs.Identity["clientendpoint"]; v != "" {
			if client, err = parseSetting("clientEndpoint", v, "https://<host>"); err != nil {
				return nil, Key{}, ConnectionString{}, err
			}
		}
		k := Key{Endpoint: e.Endpoint.String(), Hosts: []string{CanonicalHost(e.Endpoint)}, ClientHosts: []string{CanonicalHost(client)}}
		return e, k, ConnectionString{}, nil
	}
	cs, err := ParseConnectionString(ncs.Value)
	if err != nil {
		return nil, Key{}, cs, err
	}
	if cs.AuthType != "" && f.sdk != nil && f.sdk.entraAuthType {
		e, err := entraFromConnectionString(ncs.Source, cs)
		if err != nil {
			return nil, Key{}, cs, err
		}
		return e, f.hosts(cs), cs, nil
	}
	k, err := f.Key(cs)
	return nil, k, cs, err
}

// Keys turns endpoints into the Rewriter's keys.
func Keys(endpoints []Endpoint) []Key {
	var keys []Key
	for _, e := range endpoints {
		for _, k := range e.Keys {
			keys = append(keys, Key{Hosts: e.Hosts, ClientHosts: e.ClientHosts, Endpoint: e.URL, Secret: k.Secret})
		}
		if e.Entra != nil {
			keys = append(keys, Key{Hosts: e.Hosts, ClientHosts: e.ClientHosts, Endpoint: e.URL, Source: e.Source, Issuer: e.Issuer})
		}
	}
	return keys
}
