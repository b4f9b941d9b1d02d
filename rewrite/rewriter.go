package rewrite

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"
)

// MaxTokenLength is the longest access token Azure SignalR Service accepts;
// longer ones are refused by the service with 413, so we refuse to produce
// them. The Azure SignalR SDK enforces the same limit
// (Azure/azure-signalr, src/Microsoft.Azure.SignalR.Common/Auth/AuthUtility.cs).
const MaxTokenLength = 4096

// DefaultMaxTokenLength bounds the tokens of a format whose service documents
// no limit (Web PubSub), when Options.MaxTokenLength does not say otherwise.
// It is four times SignalR's, room for many groups and roles, and still
// short enough for the URL query a browser puts the token in.
const DefaultMaxTokenLength = 16384

// Format describes one kind of negotiate response and the token inside it.
type Format struct {
	// Name identifies the format in logs and errors.
	Name string
	// UserClaim is the claim the service reads as the user id.
	UserClaim string
	// LegacyUserClaims are claims that older SDKs used for the user id. One
	// the app's token carries is overwritten with the verified id as well
	// (never added), so that no id the caller could have chosen survives in
	// a claim some service version may still read.
	LegacyUserClaims []string
	// TokenFields are the accepted names of the body members holding the
	// token. Every one a body has is a copy of the token: all copies must
	// be the same token, and all are rewritten.
	TokenFields []string
	// URLField, if set, names a body member whose URL may carry the token
	// in its access_token query parameter. Such a URL is one more copy of
	// the token, and the only one in a body such as {"url": ...}.
	URLField string
	// ClientURLFields name the body members holding the URL the client
	// connects to, most telling first. The first one a body has narrows
	// the endpoints its token may be for to those that send clients there.
	ClientURLFields []string
	// MaxTokenLength is the longest token the service accepts, when it
	// documents a limit; 0 when it does not, and DefaultMaxTokenLength
	// applies. New refuses an Options.MaxTokenLength above it.
	MaxTokenLength int
	// ReservedClaims are claims the service reads as instructions (who the
	// user is, what it may do, how long the token lives), so that
	// Options.ForwardClaims may not name them: New refuses. The UserClaim is
	// always reserved.
	ReservedClaims []string
	// ReservedPrefixes are prefixes of the service's own claim names, which
	// Options.ForwardClaims may not name either.
	ReservedPrefixes []string
	// PrefixedClaims are claim names the service keeps for itself but lets a
	// customer claim carry under CustomClaimPrefix+name, handing it back
	// under its own name. Options.ForwardClaims writes them so.
	PrefixedClaims []string
	// CustomClaimPrefix is the prefix for PrefixedClaims; required when
	// there are any.
	CustomClaimPrefix string
	// CloseOnExpiryClaim and ExpiresOnClaim name the claims that ask the
	// service to close a connection when its user's authentication expires,
	// and say when that is. Empty when the service has no such feature; New
	// then refuses Options.CloseOnCallerExpiry.
	CloseOnExpiryClaim, ExpiresOnClaim string
	// EntraIssuesTokens: when the app reaches the service with Microsoft
	// Entra ID, the service issues client tokens itself (Web PubSub), and
	// an Endpoint needs an Issuer; otherwise the app signs them with a
	// temporary key (SignalR), and an Endpoint needs a Source.
	EntraIssuesTokens bool

	// sdk holds how the service's SDKs read a connection string and build
	// a client's aud and url; see ConnectionString.Key.
	sdk *sdkRules
}

// SignalR returns the Azure SignalR Service format: {"url", "accessToken"}, the
// user id in asrs.s.uid. The PascalCase spelling comes from the .NET isolated
// worker, whose SignalRConnectionInfo names no JSON properties
// (Azure/azure-functions-dotnet-worker,
// extensions/Worker.Extensions.SignalRService/src/Models/SignalRConnectionInfo.cs).
//
// Every asrs.* claim is the service's. nameid (and the long .NET name it maps
// to) is reserved too: older SDKs put the user id there, and a forwarded one
// must not be able to pose as it. The SDKs carry customer claims named like
// registered JWT claims as asrs.u.<name>; the .NET SDK does it only for aud,
// exp, iat and nbf, but the token also carries iss, and the SDK strips the
// prefix from any asrs.u. claim it gets back, so every registered name is
// prefixed here.
func SignalR() Format {
	return Format{
		Name:             "signalr",
		UserClaim:        "asrs.s.uid",
		LegacyUserClaims: []string{"nameid", "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/nameidentifier"},
		TokenFields:      []string{"accessToken", "AccessToken"},
		ClientURLFields:  []string{"url", "Url"},
		MaxTokenLength:   MaxTokenLength,
		ReservedClaims: []string{
			"nameid",
			"http://schemas.xmlsoap.org/ws/2005/05/identity/claims/nameidentifier",
		},
		ReservedPrefixes:   []string{"asrs."},
		PrefixedClaims:     []string{"iss", "sub", "aud", "exp", "nbf", "iat", "jti"},
		CustomClaimPrefix:  "asrs.u.",
		CloseOnExpiryClaim: "asrs.s.coae",
		ExpiresOnClaim:     "asrs.s.aeo",
		sdk:                &signalRRules,
	}
}

// WebPubSub returns the Azure Web PubSub format, the user id in sub. Its bodies
// come in several shapes, all accepted:
//
//   - {"baseUrl", "url", "accessToken"}: the webPubSubConnection binding
//     and the .NET in-process WebPubSubConnection;
//   - {"token", "baseUrl", "url"}: what the JavaScript SDK's
//     getClientAccessToken returns, handed back as it is;
//   - {"url"}: the token only in the URL, as in the quickstarts;
//   - {"baseUrl", "url", "AccessToken"}: the .NET isolated worker's
//     WebPubSubConnection, which names only baseUrl and url
//     (Azure/azure-functions-dotnet-worker,
//     extensions/Worker.Extensions.WebPubSub/src/Models/Input/WebPubSubConnection.cs).
//
// The service documents no token length limit, and neither SDK enforces
// one, so DefaultMaxTokenLength applies.
//
// Web PubSub has no prefix to carry customer claims named like its own, so
// forwarding refuses every registered JWT name and the permission and group
// claims (group is the spelling older documentation gives webpubsub.group),
// and, as it costs nothing, any webpubsub.* or asrs.* name.
func WebPubSub() Format {
	return Format{
		Name:              "webpubsub",
		UserClaim:         "sub",
		TokenFields:       []string{"accessToken", "AccessToken", "token"},
		URLField:          "url",
		ClientURLFields:   []string{"url", "baseUrl"},
		ReservedClaims:    []string{"role", "group", "iss", "sub", "aud", "exp", "nbf", "iat", "jti"},
		ReservedPrefixes:  []string{"asrs.", "webpubsub."},
		EntraIssuesTokens: true,
		sdk:               &webPubSubRules,
	}
}

// FormatByName returns the format of the service named "signalr" or
// "webpubsub", as Format.Name names it.
func FormatByName(name string) (Format, error) {
	for _, f := range formats() {
		if f.Name == name {
			return f, nil
		}
	}
	return Format{}, fmt.Errorf("choose %s", strings.Join(FormatNames(), " or "))
}

// FormatNames returns the names FormatByName knows.
func FormatNames() []string {
	var names []string
	for _, f := range formats() {
		names = append(names, f.Name)
	}
	return names
}

func formats() []Format { return []Format{SignalR(), WebPubSub()} }

// Key is an access key and the endpoint whose tokens it signs.
type Key struct {
	// Hosts are the hosts, as CanonicalHost gives them, of the endpoint
	// that a token's aud may name. A token is a candidate for the key when
	// its aud has the host name of one of them and, if the aud carries a
	// port, that one's port: the SignalR SDK never writes a port in aud,
	// the Web PubSub SDKs write the endpoint's.
	Hosts []string
	// ClientHosts are the hosts, as CanonicalHost gives them, of the URLs
	// the SDK sends clients to for this endpoint. When the body's client
	// URL names one of the candidates' ClientHosts, the candidates are
	// narrowed to those it names. Empty: Hosts stands in.
	ClientHosts []string
	// Endpoint names the endpoint in what Resolve returns. Optional.
	Endpoint string
	// Secret is the HMAC key: the UTF-8 bytes of the AccessKey string, not
	// its base64 decoding, as the Azure SDKs use it.
	Secret []byte
	// Source, instead of Secret, lends the sidecar's own key for an
	// endpoint the app reaches with Microsoft Entra ID: the app signs with
	// a temporary key of its own, which the sidecar cannot see. See
	// Rewrite.
	Source KeySource
	// Issuer, instead of Secret or Source, asks the service for a client
	// token, for a Web PubSub endpoint the app reaches with Microsoft Entra
	// ID: the service signs those tokens with a key nobody else sees. See
	// RewriteContext.
	Issuer TokenIssuer
}

// Reason classifies a failed rewrite for logs and metrics.
type Reason string

// The reasons a rewrite can fail.
const (
	ReasonNotJSON         Reason = "not_json"         // the body is not a JSON object
	ReasonNoToken         Reason = "no_token"         // no copy of the token in the body
	ReasonMalformedToken  Reason = "malformed_token"  // the token is not a well-formed JWT
	ReasonUnknownEndpoint Reason = "unknown_endpoint" // aud names no configured endpoint
	ReasonSignature       Reason = "signature"        // no configured key verifies the token
	ReasonTooLong         Reason = "too_long"         // the result exceeds the token length limit
	ReasonURLMismatch     Reason = "url_mismatch"     // the URL's token differs from the token field, or the URL is unreadable
	ReasonTokenMismatch   Reason = "token_mismatch"   // two token fields of the body hold different tokens
	ReasonCallerExpired   Reason = "caller_expired"   // the caller's token expires before the service token starts
	ReasonCallerClaim     Reason = "caller_claim"     // a forwarded caller claim cannot be written as JSON
	ReasonNoKey           Reason = "no_key"           // the sidecar holds no key of its own for a Microsoft Entra ID endpoint
	ReasonUnverified      Reason = "unverified"       // a token the sidecar cannot verify fails a check it can make
	ReasonIssue           Reason = "issue"            // the service did not issue a token for the caller (Web PubSub with Microsoft Entra ID)
)

// Reasons returns every Reason a failed rewrite can have.
func Reasons() []Reason {
	return []Reason{ReasonNotJSON, ReasonNoToken, ReasonMalformedToken, ReasonUnknownEndpoint, ReasonSignature,
		ReasonTooLong, ReasonURLMismatch, ReasonTokenMismatch, ReasonCallerExpired, ReasonCallerClaim, ReasonNoKey, ReasonUnverified, ReasonIssue}
}

// Error is a failed rewrite. It never contains a token or a key.
type Error struct {
	Reason Reason
	Err    error
}

func (e *Error) Error() string {
	return fmt.Sprintf("rewriting negotiate body (%s): %v", e.Reason, e.Err)
}
func (e *Error) Unwrap() error { return e.Err }

func fail(r Reason, format string, args ...any) error {
	return &Error{Reason: r, Err: fmt.Errorf(format, args...)}
}

// Caller is the verified caller a token is rewritten for.
type Caller struct {
	// UserID goes into the format's user claim.
	UserID string
	// Claims are the caller's verified token claims, numbers as json.Number.
	// Options.ForwardClaims picks from them.
	Claims map[string]any
	// Expiry is when the caller's token expires; zero if unknown. Used by
	// Options.BindToCallerExpiry.
	Expiry time.Time
}

// Options change what goes into a rewritten token beyond the user id. The
// zero value adds only the user id.
type Options struct {
	// ForwardClaims names caller claims copied into the token, so that they
	// reach the app in the service's upstream events. A name in the format's
	// PrefixedClaims is written as CustomClaimPrefix+name: for SignalR the
	// registered JWT claims (iss, sub, aud, exp, nbf, iat, jti) become
	// "asrs.u.<name>", as the Azure SDK writes them, and the service hands
	// them back under their own name. New refuses empty names, names the
	// format reserves (its user claim, its system claims, for SignalR
	// anything starting with "asrs."), and names listed twice.
	//
	// Values are written as JSON, arrays and objects included. A claim the
	// caller lacks, or whose value is null, is skipped. A claim the token
	// already has is overwritten in place; new ones go right after the user
	// id, in the order listed, ahead of the token's own claims, where the SDK
	// puts customer claims.
	ForwardClaims []string
	// MaxTokenLifetime, if positive, caps the token's exp at its iat (or,
	// without a numeric iat, the current time) plus this duration, in whole
	// seconds. A token the cap would leave dead, expiring at or before the
	// later of its nbf and the current time, is refused
	// (ReasonMalformedToken): the upstream's clock is off, or it issued the
	// token long ago. New refuses negative durations and durations under a
	// second.
	MaxTokenLifetime time.Duration
	// BindToCallerExpiry caps the token's exp at the caller's token expiry
	// (Caller.Expiry, if not zero), so that a connection's credentials never
	// outlive the caller's. A caller whose token expires at or before the
	// later of the token's nbf and the current time gets an *Error with
	// ReasonCallerExpired: a token that is dead on arrival helps nobody.
	//
	// With MaxTokenLifetime or BindToCallerExpiry set, the earlier cap wins,
	// a token without exp gets one, and a token whose exp is not a number
	// is refused (ReasonMalformedToken). An exp already below the cap keeps
	// its exact text.
	BindToCallerExpiry bool
	// CloseOnCallerExpiry also sets the format's CloseOnExpiryClaim and
	// ExpiresOnClaim: for SignalR asrs.s.coae ("true") and asrs.s.aeo (the
	// caller's expiry in unix seconds, as a string), exactly as the Azure
	// SDK writes them, which ask the service to close the connection when
	// the caller's token expires. Callers with a zero Expiry get neither.
	// New requires BindToCallerExpiry too, so that the token never promises
	// a connection life its exp would not allow, and refuses formats
	// without such claims (Web PubSub).
	CloseOnCallerExpiry bool
	// MaxTokenLength, if positive, is the longest token Rewrite produces;
	// a longer one is refused (ReasonTooLong). Zero means the format's
	// MaxTokenLength, or DefaultMaxTokenLength for a format whose service
	// documents none. New refuses a negative length, and one above the
	// format's MaxTokenLength: the service would refuse such tokens.
	MaxTokenLength int
	// Now returns the current time; default time.Now.
	Now func() time.Time
}

// Rewriter puts a user id into the token of negotiate response bodies.
type Rewriter struct {
	format   Format
	keys     []Key
	opts     Options
	forward  []forwardClaim
	lifetime int64 // MaxTokenLifetime in whole seconds; 0 for none
	maxLen   int   // the token length limit in force
	macs     macPools
}

// ReadsCallerClaims reports whether the Rewriter reads Caller.Claims, which
// it does only to forward some (Options.ForwardClaims). A caller whose
// claims cost something to produce may leave them out when it does not.
func (r *Rewriter) ReadsCallerClaims() bool { return len(r.forward) > 0 }

// New returns a Rewriter for the format, trusting the given keys.
func New(format Format, keys []Key, opts Options) (*Rewriter, error) {
	if format.UserClaim == "" || len(format.TokenFields) == 0 {
		return nil, errors.New("rewrite: the format needs a user claim and a token field")
	}
	if len(keys) == 0 {
		return nil, errors.New("rewrite: at least one access key is required")
	}
	issuers := false
	for i, k := range keys {
		n := 0
		for _, set := range []bool{len(k.Secret) > 0, k.Source != nil, k.Issuer != nil} {
			if set {
				n++
			}
		}
		if n != 1 || len(k.Hosts) == 0 {
			return nil, fmt.Errorf("rewrite: key %d needs one of a secret, a source or an issuer, and at least one host", i)
		}
		issuers = issuers || k.Issuer != nil
	}
	if issuers && len(opts.ForwardClaims) > 0 {
		// The service's token API takes a user, roles, groups and a
		// lifetime, nothing else: a forwarded claim would be dropped.
		return nil, fmt.Errorf("rewrite: forward claims cannot go into the tokens the %s service issues for an endpoint reached with Microsoft Entra ID; remove them, or connect the app and the sidecar with an access key", format.Name)
	}
	if len(format.PrefixedClaims) > 0 && format.CustomClaimPrefix == "" {
		return nil, errors.New("rewrite: the format has prefixed claims but no custom claim prefix")
	}
	forward, err := checkOptions(format, opts)
	if err != nil {
		return nil, err
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Rewriter{
		format:   format,
		keys:     keys,
		opts:     opts,
		forward:  forward,
		lifetime: int64(opts.MaxTokenLifetime / time.Second),
		maxLen:   format.maxTokenLength(opts.MaxTokenLength),
		macs:     newMACPools(keys),
	}, nil
}

// maxTokenLength is the limit in force for a validated Options.MaxTokenLength.
func (f Format) maxTokenLength(asked int) int {
	switch {
	case asked > 0:
		return asked
	case f.MaxTokenLength > 0:
		return f.MaxTokenLength
	}
	return DefaultMaxTokenLength
}

// Rewrite is RewriteContext without a deadline.
func (r *Rewriter) Rewrite(body []byte, c Caller) ([]byte, error) {
	return r.RewriteContext(context.Background(), body, c)
}

// RewriteContext returns body with the user id set in every copy of its
// token. It verifies the token's signature before anything else, so that it
// never signs what it was not given by the holder of the key. For an
// endpoint with an Issuer, it checks the token as checkIssued says and puts
// in its place one the service issues for the caller, asked for within ctx.
// Every failure is an *Error.
func (r *Rewriter) RewriteContext(ctx context.Context, body []byte, c Caller) ([]byte, error) {
	obj, copies, tok, err := r.read(body)
	if err != nil {
		return nil, err
	}
	sg, err := r.resolve(obj, tok)
	if err != nil {
		return nil, err
	}
	var newToken string
	if sg.issue != nil {
		newToken, err = r.issue(ctx, tok, sg, c)
	} else {
		newToken, err = r.resign(tok, sg, c)
	}
	if err != nil {
		return nil, err
	}
	for _, cp := range copies {
		i := obj.index(cp.member)
		if !cp.inURL {
			obj[i].value = appendQuoted(make([]byte, 0, len(newToken)+2), newToken)
			continue
		}
		u := cp.url
		// Only the token's own characters change, so the rest of the URL,
		// its parameter order and escaping included, is kept as sent.
		u.RawQuery = strings.Replace(u.RawQuery, "access_token="+tok.raw, "access_token="+newToken, 1)
		obj[i].value = appendQuoted(nil, u.String())
	}
	return obj.appendJSON(make([]byte, 0, len(body)+len(c.UserID)+64)), nil
}

// Resolve returns the configured key that signed the token in a negotiate
// body, chosen exactly as Rewrite chooses it, and changes nothing. Failures
// are those of Rewrite, each an *Error.
func (r *Rewriter) Resolve(body []byte) (Key, error) {
	obj, _, tok, err := r.read(body)
	if err != nil {
		return Key{}, err
	}
	sg, err := r.resolve(obj, tok)
	return sg.key, err
}

// tokenCopy is one place in a body that holds the token.
type tokenCopy struct {
	member string
	inURL  bool     // the token is the access_token parameter of the member's URL
	url    *url.URL // the parsed URL, when inURL
}

// read parses a body and the token it carries, and says where the copies
// of the token are.
func (r *Rewriter) read(body []byte) (object, []tokenCopy, *token, error) {
	obj, err := parseObject(body)
	if err != nil {
		return nil, nil, nil, &Error{Reason: ReasonNotJSON, Err: err}
	}
	copies, raw, err := r.findToken(obj)
	if err != nil {
		return nil, nil, nil, err
	}
	tok, err := parseToken(raw)
	if err != nil {
		return nil, nil, nil, err
	}
	return obj, copies, tok, nil
}

// findToken finds every copy of the token in the body and checks that they
// are one token. Copies that differ are refused rather than guessed at: the
// client may use either, and an unrewritten one would connect as whoever
// the app said.
func (r *Rewriter) findToken(obj object) ([]tokenCopy, string, error) {
	var copies []tokenCopy
	var token, first string
	for _, name := range r.format.TokenFields {
		s, ok, err := obj.stringValue(name)
		if !ok {
			continue
		}
		if err != nil {
			return nil, "", &Error{Reason: ReasonNoToken, Err: err}
		}
		if first != "" && s != token {
			return nil, "", fail(ReasonTokenMismatch, "members %q and %q hold different tokens", first, name)
		}
		if first == "" {
			first, token = name, s
		}
		copies = append(copies, tokenCopy{member: name})
	}
	if name := r.format.URLField; name != "" {
		u, t, ok, err := urlToken(obj, name)
		if err != nil {
			return nil, "", err
		}
		if ok {
			if first != "" && t != token {
				return nil, "", fail(ReasonURLMismatch, "member %q does not carry the same token as member %q", name, first)
			}
			token = t
			copies = append(copies, tokenCopy{member: name, inURL: true, url: u})
		}
	}
	if len(copies) == 0 {
		names := slices.Clone(r.format.TokenFields)
		if r.format.URLField != "" {
			names = append(names, r.format.URLField+" with access_token")
		}
		return nil, "", fail(ReasonNoToken, "the body has no %s member", strings.Join(names, " or "))
	}
	return copies, token, nil
}

// urlToken reads the access_token parameter of the URL in member name. ok
// is false when the member is absent or its URL has no access_token, as a
// baseUrl has none. A member that cannot be read as a URL is an error: it may
// carry a token we could not rewrite.
func urlToken(obj object, name string) (*url.URL, string, bool, error) {
	raw, present, err := obj.stringValue(name)
	if !present {
		return nil, "", false, nil
	}
	if err != nil {
		return nil, "", false, &Error{Reason: ReasonURLMismatch, Err: err}
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, "", false, fail(ReasonURLMismatch, "member %q is not a URL", name)
	}
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil || len(q["access_token"]) > 1 {
		return nil, "", false, fail(ReasonURLMismatch, "member %q has an unreadable query", name)
	}
	t, ok := q["access_token"]
	if !ok {
		return nil, "", false, nil
	}
	// The rewrite replaces the parameter's text: it must be there once,
	// unescaped, as the SDKs write it.
	if strings.Count(u.RawQuery, "access_token="+t[0]) != 1 {
		return nil, "", false, fail(ReasonURLMismatch, "member %q carries the token in an unexpected form", name)
	}
	return u, t[0], true, nil
}

// token is a parsed JWS compact serialization of an HMAC algorithm.
type token struct {
	raw    string
	header string // the header segment, kept byte for byte
	signed []byte // header "." payload, the signing input
	alg    hmacAlg
	sig    []byte
	mac    []byte // room for a MAC computed to check sig
	claims object
	// headerJSON is the decoded header, read again only for tokens the
	// sidecar cannot verify (see headerObject).
	headerJSON []byte
}

// headerObject returns the header's members. parseToken read them once
// already, so this cannot fail; they are not kept, as only tokens of
// endpoints reached with Microsoft Entra ID need them again.
func (t *token) headerObject() object {
	o, _ := parseObject(t.headerJSON)
	return o
}

func parseToken(raw string) (*token, error) {
	headerSeg, rest, _ := strings.Cut(raw, ".")
	payloadSeg, sigSeg, _ := strings.Cut(rest, ".")
	if n := strings.Count(raw, ".") + 1; n != 3 {
		return nil, fail(ReasonMalformedToken, "the token has %d segments, not 3", n)
	}
	// One buffer holds the token's bytes and its three decoded segments,
	// which all live as long as the token: one allocation, not five. Its
	// capacity is exact, so that decoding appends never move it.
	enc := base64.RawURLEncoding
	signedLen := len(headerSeg) + 1 + len(payloadSeg)
	buf := make([]byte, 0, len(raw)+enc.DecodedLen(len(headerSeg))+enc.DecodedLen(len(payloadSeg))+enc.DecodedLen(len(sigSeg))+sha512.Size)
	buf = append(buf, raw...)
	seg := func(start, n int) []byte { return buf[start : start+n : start+n] }
	decode := func(src []byte) ([]byte, error) {
		start := len(buf)
		var err error
		buf, err = enc.AppendDecode(buf, src)
		return buf[start:len(buf):len(buf)], err
	}
	signed := seg(0, signedLen)
	headerJSON, err := decode(seg(0, len(headerSeg)))
	if err != nil {
		return nil, fail(ReasonMalformedToken, "header segment: %v", err)
	}
	var members [8]member
	header, err := appendObject(members[:0], headerJSON)
	if err != nil {
		return nil, fail(ReasonMalformedToken, "header: %v", err)
	}
	alg, _, err := header.stringValue("alg")
	if err != nil {
		return nil, fail(ReasonMalformedToken, "header: %v", err)
	}
	hmacAlg, ok := hmacAlgOf(alg)
	if !ok {
		return nil, fail(ReasonMalformedToken, "alg %q is not an HMAC algorithm", alg)
	}
	sig, err := decode(seg(signedLen+1, len(sigSeg)))
	if err != nil {
		return nil, fail(ReasonMalformedToken, "signature segment: %v", err)
	}
	payloadJSON, err := decode(seg(len(headerSeg)+1, len(payloadSeg)))
	if err != nil {
		return nil, fail(ReasonMalformedToken, "payload segment: %v", err)
	}
	claims, err := parseObject(payloadJSON)
	if err != nil {
		return nil, fail(ReasonMalformedToken, "payload: %v", err)
	}
	return &token{
		raw:        raw,
		header:     headerSeg,
		signed:     signed,
		alg:        hmacAlg,
		sig:        sig,
		mac:        buf[len(buf):len(buf):cap(buf)],
		claims:     claims,
		headerJSON: headerJSON,
	}, nil
}

// signer is the key a rewritten token is signed with.
type signer struct {
	key    Key
	secret []byte
	// kid, if set, replaces the header's kid: the token was signed by a key
	// the sidecar cannot see, and is signed again with its own.
	kid string
	// issue, if set, is what to ask key.Issuer for instead of signing.
	issue *TokenRequest
}

// resolve finds the key that signed the token. The candidates are the keys
// whose endpoint the aud names by host, and by port when the aud has one.
// The body's client URL narrows them when it names where some of them send
// clients: endpoints on one host (emulators on several ports) have the same
// SignalR aud, and only the url tells them apart. The access key that
// verifies the signature decides among what is left; failing that, an
// endpoint the app reaches with Microsoft Entra ID (see resolveEntra).
func (r *Rewriter) resolve(obj object, t *token) (signer, error) {
	aud, err := audience(t.claims)
	if err != nil {
		return signer{}, err
	}
	audName, audPort := splitHost(CanonicalHost(aud))
	candidates := make([]Key, 0, 4)
	for _, k := range r.keys {
		if slices.ContainsFunc(k.Hosts, func(h string) bool {
			name, port := splitHost(h)
			return name == audName && (audPort == "" || port == audPort)
		}) {
			candidates = append(candidates, k)
		}
	}
	if len(candidates) == 0 {
		return signer{}, fail(ReasonUnknownEndpoint, "the token's audience host %q is not a configured endpoint", CanonicalHost(aud))
	}
	// Narrowing one candidate would leave it or nothing, and nothing
	// means no narrowing: the client URL matters only among several.
	var client string
	if len(candidates) > 1 {
		client = r.clientHost(obj)
	}
	if client != "" {
		named := slices.DeleteFunc(slices.Clone(candidates), func(k Key) bool { return !k.sendsClientsTo(client) })
		if len(named) > 0 {
			candidates = named
		}
	}
	for _, k := range candidates {
		if len(k.Secret) == 0 {
			continue
		}
		if hmac.Equal(t.sig, r.macs.sign(t.mac[:0], t.alg, k.Secret, t.signed)) {
			return signer{key: k, secret: k.Secret}, nil
		}
	}
	entra := slices.DeleteFunc(candidates, func(k Key) bool { return len(k.Secret) > 0 })
	if len(entra) == 0 {
		return signer{}, fail(ReasonSignature, "the token for %q is not signed by a configured access key", CanonicalHost(aud))
	}
	if client == "" {
		client = r.clientHost(obj) // not read above for a single candidate
	}
	return r.resolveEntra(obj, t, aud, client, entra)
}

// sendsClientsTo reports whether the key's endpoint sends clients to host.
func (k Key) sendsClientsTo(host string) bool {
	hosts := k.ClientHosts
	if len(hosts) == 0 {
		hosts = k.Hosts
	}
	return slices.Contains(hosts, host)
}

// resolveEntra picks the endpoint, among those the app reaches with
// Microsoft Entra ID, whose token this is. When the sidecar's own key has
// the token's kid it verifies the token as it does an access key's.
// Otherwise the app signed it with a temporary key of its own, which the
// sidecar cannot see: the token must then pass every check the sidecar can
// make (checkUnverified), and is signed again with the sidecar's key under
// its kid. A Web PubSub endpoint with an Issuer has no key of the sidecar's:
// the token must pass checkIssued, and the service issues the caller's.
func (r *Rewriter) resolveEntra(obj object, t *token, aud *url.URL, client string, keys []Key) (signer, error) {
	if client == "" {
		return signer{}, fail(ReasonUnverified, "the body has no client URL, and a token signed by a key the sidecar cannot see is rewritten only for a body whose url names its endpoint")
	}
	keys = slices.DeleteFunc(keys, func(k Key) bool { return !k.sendsClientsTo(client) })
	switch len(keys) {
	case 0:
		return signer{}, fail(ReasonUnverified, "the body's url names %q, which is not where the endpoint of the token's audience %q sends clients", client, CanonicalHost(aud))
	case 1:
	default:
		return signer{}, fail(ReasonUnknownEndpoint, "%d endpoints match the token's audience %q and the url's host %q", len(keys), CanonicalHost(aud), client)
	}
	k := keys[0]
	if k.Issuer != nil {
		req, err := r.checkIssued(obj, t, aud, k)
		if err != nil {
			return signer{}, err
		}
		return signer{key: k, issue: &req}, nil
	}
	own, err := k.Source.SigningKey()
	if err != nil {
		return signer{}, fail(ReasonNoKey, "no key of the sidecar's own for %s: %v", k.Endpoint, err)
	}
	kid, err := t.kid()
	if err != nil {
		return signer{}, err
	}
	if kid == own.ID {
		if !hmac.Equal(t.sig, r.macs.sign(t.mac[:0], t.alg, own.Secret, t.signed)) {
			return signer{}, fail(ReasonSignature, "the token for %q has the kid of the sidecar's own key but not its signature", CanonicalHost(aud))
		}
		return signer{key: k, secret: own.Secret}, nil
	}
	if err := r.checkUnverified(obj, t, aud, client); err != nil {
		return signer{}, err
	}
	return signer{key: k, secret: own.Secret, kid: own.ID}, nil
}

// clientHost returns the host of the body's client URL, as CanonicalHost
// gives it, or "" when the body has none that reads as an absolute URL.
func (r *Rewriter) clientHost(obj object) string {
	for _, name := range r.format.ClientURLFields {
		raw, ok, err := obj.stringValue(name)
		if !ok {
			continue
		}
		if u, perr := url.Parse(raw); err == nil && perr == nil && u.Host != "" {
			return CanonicalHost(u)
		}
		return ""
	}
	return ""
}

// resign sets the user claim and what the Options ask for, and signs again
// with the key that verified. The header segment is kept byte for byte;
// every other claim keeps its exact text.
func (r *Rewriter) resign(t *token, sg signer, c Caller) (string, error) {
	// Room for every claim the user id and the Options may add, so that
	// none of them moves the slice again.
	claims := append(make(object, 0, len(t.claims)+len(r.forward)+3), t.claims...)
	uid := appendQuoted(make([]byte, 0, len(c.UserID)+2), c.UserID)
	claims = claims.set(r.format.UserClaim, uid)
	for _, name := range r.format.LegacyUserClaims {
		if i := claims.index(name); i >= 0 {
			claims[i].value = uid
		}
	}
	claims, err := r.applyOptions(claims, c)
	if err != nil {
		return "", err
	}
	var scratch [1024]byte
	payload := claims.appendJSON(scratch[:0])
	header := t.header
	if sg.kid != "" {
		// A token the sidecar could not verify is signed under its own
		// key's kid; every other header member is kept.
		h := t.headerObject().set("kid", appendQuoted(nil, sg.kid))
		header = base64.RawURLEncoding.EncodeToString(h.appendJSON(nil))
	}
	// The token is built in one buffer of its exact size: header, payload,
	// then the signature of the two.
	enc := base64.RawURLEncoding
	size := len(header) + 1 + enc.EncodedLen(len(payload)) + 1 + enc.EncodedLen(t.alg.size())
	if size > r.maxLen {
		return "", fail(ReasonTooLong, "the rewritten token has %d characters; the limit for %s is %d", size, r.format.Name, r.maxLen)
	}
	out := make([]byte, 0, size)
	out = append(out, header...)
	out = append(out, '.')
	out = enc.AppendEncode(out, payload)
	// The MAC lands in the buffer's spare room, then moves to the stack
	// while its encoding takes that room: no allocation of its own.
	var mac [sha512.Size]byte
	n := copy(mac[:], r.macs.sign(out[len(out):], t.alg, sg.secret, out))
	out = append(out, '.')
	out = enc.AppendEncode(out, mac[:n])
	return string(out), nil
}

// audience returns the token's aud as a URL. The aud is read, never rebuilt
// from the body's url: the SDKs build the two differently.
func audience(claims object) (*url.URL, error) {
	i := claims.index("aud")
	if i < 0 {
		return nil, fail(ReasonMalformedToken, "the token has no aud claim")
	}
	aud, err := audienceText(claims[i].value)
	if err != nil {
		return nil, err
	}
	u, err := url.Parse(aud)
	if err != nil || u.Host == "" {
		return nil, fail(ReasonMalformedToken, "the aud claim %q is not an absolute URL", aud)
	}
	return u, nil
}

// audienceText decodes an aud value: a string, or a list of one.
func audienceText(v json.RawMessage) (string, error) {
	if len(v) > 0 && v[0] == '"' {
		// A string, as the SDKs write it: decoded as json.Unmarshal
		// would, without its reflection.
		if s, err := decodeName(v); err == nil {
			return s, nil
		}
	}
	var aud string
	if err := json.Unmarshal(v, &aud); err != nil {
		var list []string
		if err := json.Unmarshal(v, &list); err != nil || len(list) != 1 {
			return "", fail(ReasonMalformedToken, "the aud claim is not a single string")
		}
		aud = list[0]
	}
	return aud, nil
}

// splitHost splits a host as CanonicalHost gives it into its lowercase
// name, without brackets, and its port, "" when it has none.
func splitHost(h string) (name, port string) {
	u := url.URL{Host: h}
	return strings.ToLower(u.Hostname()), u.Port()
}

// CanonicalHost returns u's host in lowercase, with the port only when it is
// not the scheme's default, so that "https://x:443" and "https://x" name the
// same host wherever they come from: a token's aud or a connection string.
func CanonicalHost(u *url.URL) string {
	port := u.Port()
	switch scheme := strings.ToLower(u.Scheme); {
	case port == "443" && (scheme == "https" || scheme == "wss"),
		port == "80" && (scheme == "http" || scheme == "ws"):
		port = ""
	}
	return formatHost(strings.ToLower(u.Hostname()), port)
}

// hmacAlg is a JWS HMAC algorithm: HS256, HS384 or HS512.
type hmacAlg int

func hmacAlgOf(alg string) (hmacAlg, bool) {
	switch alg {
	case "HS256":
		return 0, true
	case "HS384":
		return 1, true
	case "HS512":
		return 2, true
	}
	return 0, false
}

// size is the length of the algorithm's MAC in bytes.
func (a hmacAlg) size() int { return [...]int{sha256.Size, sha512.Size384, sha512.Size}[a] }

func (a hmacAlg) hash() func() hash.Hash {
	return [...]func() hash.Hash{sha256.New, sha512.New384, sha512.New}[a]
}

// macPools lend HMAC states by access key and algorithm. Every negotiate
// checks one signature and makes one, and a new HMAC state costs a dozen
// allocations; a reset one costs none.
type macPools map[string]*[3]sync.Pool

func newMACPools(keys []Key) macPools {
	p := macPools{}
	for _, k := range keys {
		if len(k.Secret) > 0 {
			p[string(k.Secret)] = new([3]sync.Pool)
		}
	}
	return p
}

// sign appends the HMAC of signingInput under key to dst.
func (p macPools) sign(dst []byte, alg hmacAlg, key []byte, signingInput []byte) []byte {
	pools := p[string(key)]
	var mac hash.Hash
	if pools != nil {
		mac, _ = pools[alg].Get().(hash.Hash)
	}
	if mac == nil {
		mac = hmac.New(alg.hash(), key)
	} else {
		mac.Reset()
	}
	_, _ = mac.Write(signingInput)
	dst = mac.Sum(dst)
	if pools != nil {
		pools[alg].Put(mac)
	}
	return dst
}
