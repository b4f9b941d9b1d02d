package rewrite

import (
	"context"
	"encoding/json"
	"net/url"
	"regexp"
	"strings"
	"time"
)

// TokenIssuer asks the Web PubSub service to issue a client token, for an
// endpoint the app reaches with Microsoft Entra ID. In that mode the service
// signs client tokens with a key of its own that neither the app nor the
// sidecar ever holds, so the sidecar cannot sign a token again as it does
// with an access key: it asks the service for a new one instead (package
// rewrite/entra implements it).
//
// IssueToken is called on the negotiate's path, with the request's context;
// it must return within the context's deadline. Its errors must not contain
// a token or a credential: they reach the logs.
type TokenIssuer interface {
	IssueToken(ctx context.Context, req TokenRequest) (string, error)
}

// TokenRequest is what the sidecar asks the service for: a client token for
// the verified user, with the roles and groups the app's token gave, for at
// most the time the app's token had left.
type TokenRequest struct {
	Hub     string
	UserID  string
	Roles   []string
	Groups  []string
	Minutes int // whole minutes, at least 1, as the service takes them
}

// issuedClaims are the claims of a client token the Web PubSub service or
// its SDKs write: the user, roles and groups, the times, the audience
// (Azure/azure-sdk-for-net,
// sdk/webpubsub/Azure.Messaging.WebPubSub/src/WebPubSubServiceClient_helpers.cs,
// GenerateTokenFromAzureKeyCredential; Azure/azure-sdk-for-js,
// sdk/web-pubsub/web-pubsub/src/hubClient.ts, getClientAccessToken). A
// token with any other claim is refused: the sidecar would not carry it
// into the service's token, and the app meant something by it.
var issuedClaims = map[string]bool{
	"sub": true, "role": true, "webpubsub.group": true,
	"nbf": true, "exp": true, "iat": true, "aud": true,
}

// hubName is the service's pattern for a hub name (Azure/azure-sdk-for-js,
// sdk/web-pubsub/web-pubsub/src/generated/models/parameters.ts, hub).
var hubName = regexp.MustCompile("^[A-Za-z][A-Za-z0-9_`,.\\[\\]]{0,127}$")

// checkIssued makes every check the sidecar can make of a Web PubSub client
// token for an endpoint the app reaches with Microsoft Entra ID, which the
// service signed with a key nobody else sees, and returns what to ask the
// service for in its place. As with checkUnverified for SignalR, the token
// is trusted because the app in the pod returned it on a negotiate route;
// the checks make sure it is one the service could have issued for this
// endpoint, so that an app that echoes a client's text cannot have the
// sidecar ask for roles of the client's choosing:
//
//   - HS256, with a header of alg, typ JWT and an optional kid;
//   - an aud of the form {endpoint}/client/hubs/{hub}, the endpoint k's;
//   - every client URL of the body (url, baseUrl) for the same endpoint and
//     hub, with ws or wss, and nothing in its query but url's access_token;
//   - numeric exp, not past, with iat and nbf, where present, not in the
//     future, and a lifetime of at most maxUnverifiedLifetime;
//   - no claim but issuedClaims, role and webpubsub.group strings or
//     arrays of strings.
func (r *Rewriter) checkIssued(obj object, t *token, aud *url.URL, k Key) (TokenRequest, error) {
	if t.alg != 0 {
		return TokenRequest{}, fail(ReasonUnverified, "a token the sidecar cannot verify must be HS256, as the service signs them")
	}
	hdr := t.headerObject()
	for _, m := range hdr {
		switch m.name {
		case "alg":
		case "typ", "kid":
			s, _, err := hdr.stringValue(m.name)
			if err != nil || m.name == "typ" && s != "JWT" {
				return TokenRequest{}, fail(ReasonUnverified, "the header's %s is not what the service writes", m.name)
			}
		default:
			return TokenRequest{}, fail(ReasonUnverified, "the header has %q, which the service never writes", m.name)
		}
	}
	hub, err := issuedHub(aud, k)
	if err != nil {
		return TokenRequest{}, err
	}
	if err := r.checkIssuedURLs(obj, aud); err != nil {
		return TokenRequest{}, err
	}
	if err := r.checkUnverifiedTimes(t.claims); err != nil {
		return TokenRequest{}, err
	}
	req := TokenRequest{Hub: hub}
	for _, m := range t.claims {
		if !issuedClaims[m.name] {
			return TokenRequest{}, fail(ReasonUnverified, "the token has the claim %q, which the service never writes into client tokens", m.name)
		}
	}
	if _, ok, err := t.claims.stringValue("sub"); ok && err != nil {
		return TokenRequest{}, fail(ReasonUnverified, "the token's sub is not a string")
	}
	if req.Roles, err = stringList(t.claims, "role"); err != nil {
		return TokenRequest{}, err
	}
	if req.Groups, err = stringList(t.claims, "webpubsub.group"); err != nil {
		return TokenRequest{}, err
	}
	return req, nil
}

// issuedHub returns the hub of an aud {endpoint}/client/hubs/{hub}, where
// endpoint is k's as the SDKs write it: scheme, host, port unless the
// default, and path (WebPubSubServiceClient_helpers.cs builds it from the
// endpoint's AbsoluteUri).
func issuedHub(aud *url.URL, k Key) (string, error) {
	ep, err := url.Parse(k.Endpoint)
	if err != nil {
		return "", fail(ReasonUnverified, "the endpoint of the token's audience cannot be read")
	}
	prefix := strings.TrimRight(ep.EscapedPath(), "/") + "/client/hubs/"
	hub, ok := strings.CutPrefix(aud.EscapedPath(), prefix)
	if !ok || !hubName.MatchString(hub) || aud.RawQuery != "" || aud.ForceQuery || aud.Fragment != "" || aud.User != nil ||
		!strings.EqualFold(aud.Scheme, ep.Scheme) || CanonicalHost(aud) != CanonicalHost(ep) {
		return "", fail(ReasonUnverified, "the aud is not of the form the service writes, {endpoint}/client/hubs/{hub}, for the endpoint %s", k.Endpoint)
	}
	return hub, nil
}

// checkIssuedURLs checks that every client URL of the body sends clients to
// the endpoint and hub of the token's aud, with ws for http and wss for
// https, as the SDKs build them (WebPubSubServiceClient_helpers.cs,
// GetClientAccessUriInternal).
func (r *Rewriter) checkIssuedURLs(obj object, aud *url.URL) error {
	scheme := "wss"
	if strings.EqualFold(aud.Scheme, "http") {
		scheme = "ws"
	}
	return r.eachClientURL(obj, func(name string, u *url.URL) error {
		// Only the URL member carries the token, and findToken made sure it
		// is the one being replaced; a baseUrl has no query at all, and an
		// access_token in it would reach the client unreplaced.
		q, qerr := url.ParseQuery(u.RawQuery)
		extra := len(q) > 1 || len(q) == 1 && (name != r.format.URLField || len(q["access_token"]) != 1)
		if !strings.EqualFold(u.Scheme, scheme) || CanonicalHost(u) != CanonicalHost(aud) || u.EscapedPath() != aud.EscapedPath() ||
			qerr != nil || extra || u.Fragment != "" || u.User != nil {
			return fail(ReasonUnverified, "the body's %s does not send clients to the endpoint and hub of the token's aud", name)
		}
		return nil
	})
}

// stringList reads a claim that is a string or an array of strings.
func stringList(claims object, name string) ([]string, error) {
	i := claims.index(name)
	if i < 0 {
		return nil, nil
	}
	var one string
	if err := json.Unmarshal(claims[i].value, &one); err == nil {
		return []string{one}, nil
	}
	var list []string
	if err := json.Unmarshal(claims[i].value, &list); err != nil {
		return nil, fail(ReasonUnverified, "the token's %s is not a string or an array of strings", name)
	}
	return list, nil
}

// issue asks the service for a token for the caller in place of the app's,
// with the roles and groups of the app's, for the whole minutes the app's
// token had left, or fewer where the Options cap the lifetime. The service
// issues tokens by the minute; a lifetime rounded up could outlive a cap,
// so it is rounded down, and under a minute is refused.
func (r *Rewriter) issue(ctx context.Context, t *token, sg signer, c Caller) (string, error) {
	now := r.opts.Now().Unix()
	end, _ := dateClaim(t.claims, "exp") // checkUnverifiedTimes found it numeric
	callerBound := false
	if r.lifetime > 0 {
		issued := now
		if iat, ok := dateClaim(t.claims, "iat"); ok {
			issued = iat
		}
		end = min(end, addSeconds(issued, r.lifetime))
	}
	if r.opts.BindToCallerExpiry && !c.Expiry.IsZero() && c.Expiry.Unix() < end {
		end, callerBound = c.Expiry.Unix(), true
	}
	minutes := (end - now) / 60
	if minutes < 1 {
		if callerBound {
			return "", fail(ReasonCallerExpired, "the caller's token expires at %d, under a minute from now, the shortest lifetime the service issues", c.Expiry.Unix())
		}
		return "", fail(ReasonUnverified, "the token has under a minute left (until %s), the shortest lifetime the service issues", time.Unix(end, 0).UTC().Format(time.RFC3339))
	}
	req := *sg.issue
	req.UserID = c.UserID
	req.Minutes = int(min(minutes, int64(maxUnverifiedLifetime/time.Minute)))
	out, err := sg.key.Issuer.IssueToken(ctx, req)
	if err != nil {
		return "", fail(ReasonIssue, "asking %s for a client token: %v", sg.key.Endpoint, err)
	}
	if len(out) > r.maxLen {
		return "", fail(ReasonTooLong, "the service's token has %d characters; the limit for %s is %d", len(out), r.format.Name, r.maxLen)
	}
	// The answer goes to the caller as it is: it must be a token for the
	// caller and this hub, whatever the service (or whatever answered in its
	// place) meant.
	nt, err := parseToken(out)
	if err != nil {
		return "", fail(ReasonIssue, "the service's answer from %s is not a token: %v", sg.key.Endpoint, err)
	}
	sub, _, serr := nt.claims.stringValue(r.format.UserClaim)
	naud, aerr := audience(nt.claims)
	oaud, _ := audience(t.claims)
	if serr != nil || sub != c.UserID || aerr != nil || naud.String() != oaud.String() {
		return "", fail(ReasonIssue, "the token from %s is not for the caller and the app's hub", sg.key.Endpoint)
	}
	return out, nil
}
