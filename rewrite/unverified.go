package rewrite

import (
	"net/url"
	"strings"
	"time"
)

// maxUnverifiedLifetime bounds the lifetime of a token the sidecar cannot
// verify. The SDK's client tokens live an hour by default; a day leaves room
// for apps that ask for longer without letting a token live for ever.
const maxUnverifiedLifetime = 24 * time.Hour

// clockSkew is how far in the future an unverified token's iat and nbf may be.
const clockSkew = 5 * time.Minute

// sdkSystemClaims are the service's claims the SignalR SDK writes into client
// tokens (Azure/azure-signalr, src/Microsoft.Azure.SignalR.Common/Utilities/ClaimsUtility.cs
// and Constants.cs). An unverified token carrying any other asrs.s. claim is
// refused: the sidecar does not sign what it does not understand.
var sdkSystemClaims = map[string]bool{
	"asrs.s.uid": true, "asrs.s.sn": true, "asrs.s.ssticky": true, "asrs.s.dc": true,
	"asrs.s.cht": true, "asrs.s.aut": true, "asrs.s.secn": true, "asrs.s.derror": true,
	"asrs.s.nt": true, "asrs.s.rt": true, "asrs.s.ttl": true, "asrs.s.htt": true,
	"asrs.s.coae": true, "asrs.s.aeo": true,
}

// kid returns the header's kid, "" when it has none.
func (t *token) kid() (string, error) {
	kid, _, err := t.headerObject().stringValue("kid")
	if err != nil {
		return "", fail(ReasonMalformedToken, "header: %v", err)
	}
	return kid, nil
}

// checkUnverified makes every check the sidecar can make of a SignalR client
// token signed by a key it cannot see, the temporary key of an app that
// signs in with Microsoft Entra ID. Such a token is trusted because it came
// from the app in the pod, on a negotiate route; the checks make sure it is
// one the SDK could have made for this endpoint, so that an app that echoes
// what a client sent cannot get the sidecar to sign a token of the client's
// making:
//
//   - HS256 (the SDK's default and the Functions binding's), with a header
//     of alg, typ JWT and a kid, as the SDK writes it in this mode;
//   - an aud of the SDK's form, {scheme}://{host}/client/?hub={hub};
//   - every client URL in the body (url, Url) for the same endpoint and
//     hub;
//   - numeric exp, not past, with iat and nbf, where present, not in the
//     future, and a lifetime of at most maxUnverifiedLifetime;
//   - no asrs.s. claim outside what the SDK writes, and none of the
//     service's claims spelt in another case.
func (r *Rewriter) checkUnverified(obj object, t *token, aud *url.URL, client string) error {
	if t.alg != 0 {
		return fail(ReasonUnverified, "a token the sidecar cannot verify must be HS256, as the SDK signs them")
	}
	hdr := t.headerObject()
	for _, m := range hdr {
		switch m.name {
		case "alg", "kid":
		case "typ":
			if typ, _, err := hdr.stringValue("typ"); err != nil || typ != "JWT" {
				return fail(ReasonUnverified, "the header's typ is not \"JWT\"")
			}
		default:
			return fail(ReasonUnverified, "the header has %q, which the SDK never writes", m.name)
		}
	}
	if kid, err := t.kid(); err != nil || kid == "" {
		return fail(ReasonUnverified, "the header has no kid: an app signing in with Microsoft Entra ID writes its key's id there")
	}
	hub, err := sdkHub(aud)
	if err != nil {
		return err
	}
	if err := r.checkClientURL(obj, hub, client); err != nil {
		return err
	}
	if err := r.checkUnverifiedTimes(t.claims); err != nil {
		return err
	}
	for _, m := range t.claims {
		// The service's claims in another case are refused: a reader that
		// looks claims up without regard to case (.NET's
		// ClaimsIdentity.FindFirst does) would take an "ASRS.S.UID" ahead
		// of the asrs.s.uid the sidecar writes.
		if lower := strings.ToLower(m.name); lower != m.name && (strings.HasPrefix(lower, "asrs.") || r.format.isSystemClaim(lower)) {
			return fail(ReasonUnverified, "the claim %q is not spelt as the SDK writes it", m.name)
		}
		if strings.HasPrefix(m.name, "asrs.s.") && !sdkSystemClaims[m.name] {
			return fail(ReasonUnverified, "the token has the claim %q, which the SDK never writes into client tokens", m.name)
		}
	}
	return nil
}

// sdkHub returns the hub of an aud of the SDK's form
// {scheme}://{host}/client/?hub={hub}, the hub in lowercase as the SDK
// writes it (Azure/azure-signalr, ServiceEndpoint.cs).
func sdkHub(aud *url.URL) (string, error) {
	q, err := url.ParseQuery(aud.RawQuery)
	if aud.Path != "/client/" || err != nil || len(q) != 1 || len(q["hub"]) != 1 || q.Get("hub") == "" || aud.Fragment != "" || aud.User != nil {
		return "", fail(ReasonUnverified, "the aud is not of the form the SDK writes, {scheme}://{host}/client/?hub={hub}")
	}
	return q.Get("hub"), nil
}

// checkClientURL checks that every client URL of the body sends clients to
// the hub of the token's aud, at client, the host resolveEntra found in the
// first: a client may read any of them (url or Url), and one left unchecked
// could send the caller's token elsewhere.
func (r *Rewriter) checkClientURL(obj object, hub, client string) error {
	return r.eachClientURL(obj, func(name string, u *url.URL) error {
		if u.Host == "" || CanonicalHost(u) != client {
			return fail(ReasonUnverified, "the body's %s does not send clients to the endpoint of the token's aud", name)
		}
		q, qerr := url.ParseQuery(u.RawQuery)
		if qerr != nil || len(q["hub"]) != 1 || !strings.EqualFold(q.Get("hub"), hub) || !strings.HasSuffix(u.Path, "/client/") {
			return fail(ReasonUnverified, "the body's %s does not send clients to the hub of the token's aud", name)
		}
		return nil
	})
}

// eachClientURL calls check with every client URL of the body that is
// present, in the order of the format's fields, for the checks of SignalR
// and of Web PubSub bodies alike: the body must have one at least, and each
// must be a URL.
func (r *Rewriter) eachClientURL(obj object, check func(name string, u *url.URL) error) error {
	seen := false
	for _, name := range r.format.ClientURLFields {
		raw, ok, err := obj.stringValue(name)
		if !ok {
			continue
		}
		seen = true
		u, perr := url.Parse(raw)
		if err != nil || perr != nil {
			return fail(ReasonUnverified, "the body's %s is not a URL", name)
		}
		if err := check(name, u); err != nil {
			return err
		}
	}
	if !seen {
		return fail(ReasonUnverified, "the body has no client URL")
	}
	return nil
}

// checkUnverifiedTimes checks exp, iat and nbf of an unverified token.
func (r *Rewriter) checkUnverifiedTimes(claims object) error {
	now := r.opts.Now()
	exp, ok := dateClaim(claims, "exp")
	if !ok {
		return fail(ReasonUnverified, "the token has no numeric exp")
	}
	if exp <= now.Unix() {
		return fail(ReasonUnverified, "the token expired at %s", time.Unix(exp, 0).UTC().Format(time.RFC3339))
	}
	start := now.Unix()
	for _, name := range []string{"iat", "nbf"} {
		i := claims.index(name)
		if i < 0 {
			continue
		}
		v, ok := dateClaim(claims, name)
		if !ok {
			return fail(ReasonUnverified, "the token's %s is not a number", name)
		}
		if v > now.Add(clockSkew).Unix() {
			return fail(ReasonUnverified, "the token's %s is in the future", name)
		}
		start = min(start, v)
	}
	if exp-start > int64(maxUnverifiedLifetime/time.Second) {
		return fail(ReasonUnverified, "the token would live longer than %s", maxUnverifiedLifetime)
	}
	return nil
}
