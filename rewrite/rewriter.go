package rewrite

import (
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
	"time"
)

// MaxTokenLength is the longest access token Azure SignalR Service accepts;
// longer ones are refused by the service with 413, so we refuse to produce them.
const MaxTokenLength = 4096

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
	// TokenFields are the accepted names of the body member holding the
	// token, most usual first. A body with more than one of them is refused
	// rather than guessed at.
	TokenFields []string
	// URLField, if set, names a body member whose URL carries the same token
	// in its access_token query parameter; it is rewritten to match.
	URLField string
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
}

// SignalR is the Azure SignalR Service format: {"url", "accessToken"}, the
// user id in asrs.s.uid. The PascalCase spelling comes from the .NET isolated
// worker.
//
// Every asrs.* claim is the service's. nameid (and the long .NET name it maps
// to) is reserved too: older SDKs put the user id there, and a forwarded one
// must not be able to pose as it. The SDKs carry customer claims named like
// registered JWT claims as asrs.u.<name>; the .NET SDK does it only for aud,
// exp, iat and nbf, but the token also carries iss, and the SDK strips the
// prefix from any asrs.u. claim it gets back, so every registered name is
// prefixed here.
var SignalR = Format{
	Name:             "signalr",
	UserClaim:        "asrs.s.uid",
	LegacyUserClaims: []string{"nameid", "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/nameidentifier"},
	TokenFields:      []string{"accessToken", "AccessToken"},
	ReservedClaims: []string{
		"nameid",
		"http://schemas.xmlsoap.org/ws/2005/05/identity/claims/nameidentifier",
	},
	ReservedPrefixes:   []string{"asrs."},
	PrefixedClaims:     []string{"iss", "sub", "aud", "exp", "nbf", "iat", "jti"},
	CustomClaimPrefix:  "asrs.u.",
	CloseOnExpiryClaim: "asrs.s.coae",
	ExpiresOnClaim:     "asrs.s.aeo",
}

// WebPubSub is the Azure Web PubSub format: {"baseUrl", "url", "accessToken"},
// the user id in sub, and the token repeated in url.
//
// Web PubSub has no prefix to carry customer claims named like its own, so
// forwarding refuses every registered JWT name and the permission and group
// claims (group is the spelling older documentation gives webpubsub.group),
// and, as it costs nothing, any webpubsub.* or asrs.* name.
var WebPubSub = Format{
	Name:             "webpubsub",
	UserClaim:        "sub",
	TokenFields:      []string{"accessToken"},
	URLField:         "url",
	ReservedClaims:   []string{"role", "group", "iss", "sub", "aud", "exp", "nbf", "iat", "jti"},
	ReservedPrefixes: []string{"asrs.", "webpubsub."},
}

// Key is an access key and the endpoint hosts whose tokens it signs.
type Key struct {
	// Hosts are the host[:port] values, lowercase, that a token's aud may
	// name for this key's endpoint.
	Hosts []string
	// Secret is the HMAC key: the UTF-8 bytes of the AccessKey string, not
	// its base64 decoding, as the Azure SDKs use it.
	Secret []byte
}

// Reason classifies a failed rewrite for logs and metrics.
type Reason string

// The reasons a rewrite can fail.
const (
	ReasonNotJSON         Reason = "not_json"         // the body is not a JSON object
	ReasonNoToken         Reason = "no_token"         // no token field, or more than one
	ReasonMalformedToken  Reason = "malformed_token"  // the token is not a well-formed JWT
	ReasonUnknownEndpoint Reason = "unknown_endpoint" // aud names no configured endpoint
	ReasonSignature       Reason = "signature"        // no configured key verifies the token
	ReasonTooLong         Reason = "too_long"         // the result exceeds MaxTokenLength
	ReasonURLMismatch     Reason = "url_mismatch"     // the URL's token differs from the token field
	ReasonCallerExpired   Reason = "caller_expired"   // the caller's token expires before the service token starts
	ReasonCallerClaim     Reason = "caller_claim"     // a forwarded caller claim cannot be written as JSON
)

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
}

// New returns a Rewriter for the format, trusting the given keys.
func New(format Format, keys []Key, opts Options) (*Rewriter, error) {
	if format.UserClaim == "" || len(format.TokenFields) == 0 {
		return nil, errors.New("rewrite: the format needs a user claim and a token field")
	}
	if len(keys) == 0 {
		return nil, errors.New("rewrite: at least one access key is required")
	}
	for i, k := range keys {
		if len(k.Secret) == 0 || len(k.Hosts) == 0 {
			return nil, fmt.Errorf("rewrite: key %d needs a secret and at least one host", i)
		}
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
	}, nil
}

// Rewrite returns body with the user id set in its token. It verifies the
// token's signature before anything else, so that it never signs what it was
// not given by the holder of the key. Every failure is an *Error.
func (r *Rewriter) Rewrite(body []byte, c Caller) ([]byte, error) {
	obj, err := parseObject(body)
	if err != nil {
		return nil, &Error{Reason: ReasonNotJSON, Err: err}
	}
	field, token, err := r.findToken(obj)
	if err != nil {
		return nil, err
	}
	newToken, err := r.rewriteToken(token, c)
	if err != nil {
		return nil, err
	}
	if r.format.URLField != "" {
		if err := r.rewriteURL(obj, token, newToken); err != nil {
			return nil, err
		}
	}
	obj = obj.set(field, appendQuoted(nil, newToken))
	return obj.appendJSON(make([]byte, 0, len(body)+len(c.UserID)+64)), nil
}

func (r *Rewriter) findToken(obj object) (field, token string, err error) {
	for _, name := range r.format.TokenFields {
		s, ok, err := obj.stringValue(name)
		if !ok {
			continue
		}
		if err != nil {
			return "", "", &Error{Reason: ReasonNoToken, Err: err}
		}
		if field != "" {
			return "", "", fail(ReasonNoToken, "the body has both %q and %q", field, name)
		}
		field, token = name, s
	}
	if field == "" {
		return "", "", fail(ReasonNoToken, "the body has no %s member", strings.Join(r.format.TokenFields, " or "))
	}
	return field, token, nil
}

// rewriteToken checks the signature, sets the user claim and what the Options
// ask for, and signs again with the key that verified. The header segment is
// kept byte for byte; every other claim keeps its exact text.
func (r *Rewriter) rewriteToken(token string, c Caller) (string, error) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return "", fail(ReasonMalformedToken, "the token has %d segments, not 3", len(parts))
	}
	headerJSON, err := base64.RawURLEncoding.DecodeString(parts[0])
	if err != nil {
		return "", fail(ReasonMalformedToken, "header segment: %v", err)
	}
	header, err := parseObject(headerJSON)
	if err != nil {
		return "", fail(ReasonMalformedToken, "header: %v", err)
	}
	alg, _, err := header.stringValue("alg")
	if err != nil {
		return "", fail(ReasonMalformedToken, "header: %v", err)
	}
	newHash := hashFor(alg)
	if newHash == nil {
		return "", fail(ReasonMalformedToken, "alg %q is not an HMAC algorithm", alg)
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		return "", fail(ReasonMalformedToken, "signature segment: %v", err)
	}
	payloadJSON, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return "", fail(ReasonMalformedToken, "payload segment: %v", err)
	}
	claims, err := parseObject(payloadJSON)
	if err != nil {
		return "", fail(ReasonMalformedToken, "payload: %v", err)
	}
	host, err := audienceHost(claims)
	if err != nil {
		return "", err
	}

	signed := token[:len(parts[0])+1+len(parts[1])]
	var key []byte
	matched := false
	for _, k := range r.keys {
		if !slices.Contains(k.Hosts, host) {
			continue
		}
		matched = true
		if hmac.Equal(sig, sign(newHash, k.Secret, signed)) {
			key = k.Secret
			break
		}
	}
	if !matched {
		return "", fail(ReasonUnknownEndpoint, "the token's audience host %q is not a configured endpoint", host)
	}
	if key == nil {
		return "", fail(ReasonSignature, "the token for %q is not signed by a configured access key", host)
	}

	uid := appendQuoted(nil, c.UserID)
	claims = claims.set(r.format.UserClaim, uid)
	for _, name := range r.format.LegacyUserClaims {
		if i := claims.index(name); i >= 0 {
			claims[i].value = uid
		}
	}
	if claims, err = r.applyOptions(claims, c); err != nil {
		return "", err
	}
	payload := base64.RawURLEncoding.EncodeToString(claims.appendJSON(nil))
	unsigned := parts[0] + "." + payload
	out := unsigned + "." + base64.RawURLEncoding.EncodeToString(sign(newHash, key, unsigned))
	if len(out) > MaxTokenLength {
		return "", fail(ReasonTooLong, "the rewritten token has %d characters; the service accepts at most %d", len(out), MaxTokenLength)
	}
	return out, nil
}

// rewriteURL replaces the token in the URL member's access_token parameter.
// Only the token's own characters change, so the rest of the URL, its
// parameter order and escaping included, is kept as sent.
func (r *Rewriter) rewriteURL(obj object, oldToken, newToken string) error {
	raw, ok, err := obj.stringValue(r.format.URLField)
	if !ok {
		return nil // Web PubSub clients can also join baseUrl and accessToken themselves
	}
	if err != nil {
		return &Error{Reason: ReasonURLMismatch, Err: err}
	}
	u, err := url.Parse(raw)
	if err != nil {
		return fail(ReasonURLMismatch, "member %q is not a URL", r.format.URLField)
	}
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil || len(q["access_token"]) > 1 {
		return fail(ReasonURLMismatch, "member %q has an unreadable query", r.format.URLField)
	}
	if got := q.Get("access_token"); got != oldToken {
		return fail(ReasonURLMismatch, "member %q does not carry the same token as the token member", r.format.URLField)
	}
	oldParam, newParam := "access_token="+oldToken, "access_token="+newToken
	if strings.Count(u.RawQuery, oldParam) != 1 {
		return fail(ReasonURLMismatch, "member %q carries the token in an unexpected form", r.format.URLField)
	}
	u.RawQuery = strings.Replace(u.RawQuery, oldParam, newParam, 1)
	i := obj.index(r.format.URLField)
	obj[i].value = appendQuoted(nil, u.String())
	return nil
}

// audienceHost returns the lowercase host[:port] of the token's aud URL. The
// aud is read, never rebuilt from the body's url: with Port or ClientEndpoint
// in the connection string the two differ.
func audienceHost(claims object) (string, error) {
	i := claims.index("aud")
	if i < 0 {
		return "", fail(ReasonMalformedToken, "the token has no aud claim")
	}
	var aud string
	if err := json.Unmarshal(claims[i].value, &aud); err != nil {
		var list []string
		if err := json.Unmarshal(claims[i].value, &list); err != nil || len(list) != 1 {
			return "", fail(ReasonMalformedToken, "the aud claim is not a single string")
		}
		aud = list[0]
	}
	u, err := url.Parse(aud)
	if err != nil || u.Host == "" {
		return "", fail(ReasonMalformedToken, "the aud claim %q is not an absolute URL", aud)
	}
	return CanonicalHost(u), nil
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

func hashFor(alg string) func() hash.Hash {
	switch alg {
	case "HS256":
		return sha256.New
	case "HS384":
		return sha512.New384
	case "HS512":
		return sha512.New
	}
	return nil
}

func sign(h func() hash.Hash, key []byte, signingInput string) []byte {
	mac := hmac.New(h, key)
	mac.Write([]byte(signingInput))
	return mac.Sum(nil)
}
