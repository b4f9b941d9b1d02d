package rewrite

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"
)

const (
	wpsHost = "fake-wps.webpubsub.azure.com"
	// serviceKey signs the tokens the service issues; the app and the
	// sidecar never see it.
	serviceKey = "the service's own key"
)

// fakeIssuer stands in for the service's token API: it records what it was
// asked and issues a token for it, or fails.
type fakeIssuer struct {
	got    []TokenRequest
	ctx    context.Context
	err    error
	answer func(TokenRequest) string // default: a token as the service issues it
}

func (f *fakeIssuer) IssueToken(ctx context.Context, req TokenRequest) (string, error) {
	f.got = append(f.got, req)
	f.ctx = ctx
	if f.err != nil {
		return "", f.err
	}
	if f.answer != nil {
		return f.answer(req), nil
	}
	return serviceToken(req.UserID, req.Hub, req.Roles, req.Groups, entraNow.Unix()+int64(req.Minutes)*60), nil
}

// serviceToken is a client token as the service writes one.
func serviceToken(user, hub string, roles, groups []string, exp int64) string {
	claims := map[string]any{"sub": user, "nbf": entraNow.Unix(), "exp": exp, "iat": entraNow.Unix(), "aud": "https://" + wpsHost + "/client/hubs/" + hub}
	if len(roles) > 0 {
		claims["role"] = roles
	}
	if len(groups) > 0 {
		claims["webpubsub.group"] = groups
	}
	b, _ := json.Marshal(claims)
	return hs256(`{"alg":"HS256","typ":"JWT"}`, string(b), serviceKey)
}

// wpsClaims are an app token's claims with the given extra claims first.
func wpsClaims(extra string) string {
	n := entraNow.Unix()
	return fmt.Sprintf(`{%s"nbf":%d,"exp":%d,"iat":%d,"aud":"https://%s/client/hubs/chat"}`, extra, n, n+3600, n, wpsHost)
}

// wpsBody is the binding's body around tok.
func wpsBody(tok string) []byte {
	base := "wss://" + wpsHost + "/client/hubs/chat"
	return []byte(`{"baseUrl":"` + base + `","url":"` + base + `?access_token=` + tok + `","accessToken":"` + tok + `"}`)
}

func newIssuingRewriter(t *testing.T, iss TokenIssuer, opts Options) *Rewriter {
	t.Helper()
	opts.Now = func() time.Time { return entraNow }
	r, err := New(WebPubSub(), []Key{
		{Hosts: []string{"fake.webpubsub.azure.com"}, Secret: []byte(fakeAccessKey), Endpoint: "https://fake.webpubsub.azure.com"},
		{Hosts: []string{wpsHost}, Issuer: iss, Endpoint: "https://" + wpsHost},
	}, opts)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestWebPubSubEntraAsksTheService: the service signed the app's token with a
// key nobody sees, so the sidecar asks it for a token for the verified user
// with the app's roles and groups and remaining lifetime, and puts it in
// every copy of the body.
func TestWebPubSubEntraAsksTheService(t *testing.T) {
	iss := &fakeIssuer{}
	r := newIssuingRewriter(t, iss, Options{})
	app := serviceToken("mallory", "chat", []string{"webpubsub.sendToGroup.lobby", "webpubsub.joinLeaveGroup"}, []string{"lobby"}, entraNow.Unix()+3600)
	type ctxKey struct{}
	ctx := context.WithValue(context.Background(), ctxKey{}, "the negotiate's")
	out, err := r.RewriteContext(ctx, wpsBody(app), Caller{UserID: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	want := TokenRequest{Hub: "chat", UserID: "alice", Roles: []string{"webpubsub.sendToGroup.lobby", "webpubsub.joinLeaveGroup"}, Groups: []string{"lobby"}, Minutes: 60}
	if len(iss.got) != 1 || fmt.Sprint(iss.got[0]) != fmt.Sprint(want) {
		t.Fatalf("asked the service for %+v, want %+v", iss.got, want)
	}
	if iss.ctx.Value(ctxKey{}) != "the negotiate's" {
		t.Error("the service was not asked within the negotiate's context")
	}
	var body struct{ BaseURL, URL, AccessToken string }
	if err := json.Unmarshal(out, &body); err != nil {
		t.Fatal(err)
	}
	issued := serviceToken("alice", "chat", want.Roles, want.Groups, entraNow.Unix()+3600)
	if body.AccessToken != issued {
		t.Errorf("accessToken is not the service's token for alice")
	}
	if body.URL != "wss://"+wpsHost+"/client/hubs/chat?access_token="+issued || body.BaseURL != "wss://"+wpsHost+"/client/hubs/chat" {
		t.Errorf("url %s, baseUrl %s", body.URL, body.BaseURL)
	}
	if r.ForeignToken(out, "alice") || !r.ForeignToken(out, "mallory") {
		t.Error("the body must hold tokens for alice only")
	}
}

// TestWebPubSubEntraBodies: every body shape the format accepts gets the
// service's token in each copy.
func TestWebPubSubEntraBodies(t *testing.T) {
	app := serviceToken("", "chat", nil, nil, entraNow.Unix()+3600)
	issued := serviceToken("alice", "chat", nil, nil, entraNow.Unix()+3600)
	base := "wss://" + wpsHost + "/client/hubs/chat"
	for _, tt := range []struct{ in, want string }{
		{`{"url":"` + base + `?access_token=` + app + `"}`, `{"url":"` + base + `?access_token=` + issued + `"}`},
		{`{"token":"` + app + `","baseUrl":"` + base + `","url":"` + base + `?access_token=` + app + `"}`,
			`{"token":"` + issued + `","baseUrl":"` + base + `","url":"` + base + `?access_token=` + issued + `"}`},
		{`{"baseUrl":"` + base + `","url":"` + base + `?access_token=` + app + `","AccessToken":"` + app + `"}`,
			`{"baseUrl":"` + base + `","url":"` + base + `?access_token=` + issued + `","AccessToken":"` + issued + `"}`},
	} {
		out, err := newIssuingRewriter(t, &fakeIssuer{}, Options{}).Rewrite([]byte(tt.in), Caller{UserID: "alice"})
		if err != nil || string(out) != tt.want {
			t.Errorf("%s:\n got %s, %v\nwant %s", tt.in, out, err, tt.want)
		}
	}
}

// TestWebPubSubEntraLifetime: the service takes whole minutes; the sidecar
// asks for the app's token's remaining time, capped as the Options say,
// rounded down, so that no cap is outlived.
func TestWebPubSubEntraLifetime(t *testing.T) {
	n := entraNow.Unix()
	app := func(iat, exp int64) string {
		return hs256(`{"alg":"HS256","typ":"JWT"}`, fmt.Sprintf(`{"nbf":%d,"exp":%d,"iat":%d,"aud":"https://%s/client/hubs/chat"}`, iat, exp, iat, wpsHost), serviceKey)
	}
	tests := []struct {
		name    string
		opts    Options
		tok     string
		caller  time.Time
		minutes int
		reason  Reason
	}{
		{"the app's remaining time", Options{}, app(n-600, n+3000), time.Time{}, 50, ""},
		{"rounded down", Options{}, app(n, n+3599), time.Time{}, 59, ""},
		{"max_token_lifetime from iat", Options{MaxTokenLifetime: 15 * time.Minute}, app(n-300, n+3300), time.Time{}, 10, ""},
		{"the caller's expiry", Options{BindToCallerExpiry: true}, app(n, n+3600), entraNow.Add(330 * time.Second), 5, ""},
		{"the caller's expiry after the token's", Options{BindToCallerExpiry: true}, app(n, n+3600), entraNow.Add(2 * time.Hour), 60, ""},
		{"the caller's token has under a minute left", Options{BindToCallerExpiry: true}, app(n, n+3600), entraNow.Add(30 * time.Second), 0, ReasonCallerExpired},
		{"the app's token has under a minute left", Options{}, app(n-3570, n+30), time.Time{}, 0, ReasonUnverified},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			iss := &fakeIssuer{}
			_, err := newIssuingRewriter(t, iss, tt.opts).Rewrite(wpsBody(tt.tok), Caller{UserID: "alice", Expiry: tt.caller})
			var re *Error
			switch {
			case tt.reason != "":
				if !errors.As(err, &re) || re.Reason != tt.reason || len(iss.got) != 0 {
					t.Errorf("error %v after %d request(s), want %s and none", err, len(iss.got), tt.reason)
				}
			case err != nil:
				t.Fatal(err)
			case len(iss.got) != 1 || iss.got[0].Minutes != tt.minutes:
				t.Errorf("asked for %+v, want %d minutes", iss.got, tt.minutes)
			}
		})
	}
}

func TestWebPubSubEntraRefusals(t *testing.T) {
	n := entraNow.Unix()
	hdr := `{"alg":"HS256","typ":"JWT"}`
	base := "wss://" + wpsHost + "/client/hubs/chat"
	aud := func(a string) string { return fmt.Sprintf(`{"nbf":%d,"exp":%d,"iat":%d,"aud":%q}`, n, n+3600, n, a) }
	good := hs256(hdr, wpsClaims(""), serviceKey)
	tests := []struct {
		name   string
		iss    *fakeIssuer
		body   []byte
		reason Reason
		msg    string
	}{
		{"HS384", nil, wpsBody(hs256(`{"alg":"HS384","typ":"JWT"}`, wpsClaims(""), serviceKey)), ReasonUnverified, "must be HS256"},
		{"a jku in the header", nil, wpsBody(hs256(`{"alg":"HS256","jku":"https://evil"}`, wpsClaims(""), serviceKey)), ReasonUnverified, `the header has "jku"`},
		{"typ not JWT", nil, wpsBody(hs256(`{"alg":"HS256","typ":"at+jwt"}`, wpsClaims(""), serviceKey)), ReasonUnverified, "typ is not"},
		{"a claim the service never writes", nil, wpsBody(hs256(hdr, wpsClaims(`"webpubsub.superuser":true,`), serviceKey)), ReasonUnverified, `the claim "webpubsub.superuser"`},
		{"a role that is not a string", nil, wpsBody(hs256(hdr, wpsClaims(`"role":{"all":true},`), serviceKey)), ReasonUnverified, "role is not a string"},
		{"groups that are not strings", nil, wpsBody(hs256(hdr, wpsClaims(`"webpubsub.group":[1],`), serviceKey)), ReasonUnverified, "webpubsub.group is not"},
		{"a sub that is not a string", nil, wpsBody(hs256(hdr, wpsClaims(`"sub":7,`), serviceKey)), ReasonUnverified, "sub is not a string"},
		{"aud for MQTT clients", nil, wpsBody(hs256(hdr, aud("https://"+wpsHost+"/clients/mqtt/hubs/chat"), serviceKey)), ReasonUnverified, "the aud is not of the form"},
		{"aud with a query", nil, wpsBody(hs256(hdr, aud("https://"+wpsHost+"/client/hubs/chat?x=1"), serviceKey)), ReasonUnverified, "the aud is not of the form"},
		{"aud with a hub the service refuses", nil, wpsBody(hs256(hdr, aud("https://"+wpsHost+"/client/hubs/9chat"), serviceKey)), ReasonUnverified, "the aud is not of the form"},
		{"aud over http for an https endpoint", nil, wpsBody(hs256(hdr, aud("http://"+wpsHost+"/client/hubs/chat"), serviceKey)), ReasonUnverified, "the aud is not of the form"},
		{"url for another hub", nil, []byte(`{"url":"wss://` + wpsHost + `/client/hubs/admin?access_token=` + good + `"}`), ReasonUnverified, "does not send clients to the endpoint and hub"},
		{"baseUrl for another hub", nil, []byte(`{"baseUrl":"wss://` + wpsHost + `/client/hubs/admin","url":"` + base + `?access_token=` + good + `"}`), ReasonUnverified, "baseUrl does not send clients"},
		{"baseUrl with a token of its own", nil, []byte(`{"baseUrl":"` + base + `?access_token=e0.e00","accessToken":"` + good + `"}`), ReasonUnverified, "baseUrl does not send clients"},
		{"baseUrl with the token", nil, []byte(`{"baseUrl":"` + base + `?access_token=` + good + `","accessToken":"` + good + `"}`), ReasonUnverified, "baseUrl does not send clients"},
		{"url over ws for an https endpoint", nil, []byte(`{"url":"ws://` + wpsHost + `/client/hubs/chat?access_token=` + good + `"}`), ReasonUnverified, "does not send clients"},
		{"url with another parameter", nil, []byte(`{"url":"` + base + `?access_token=` + good + `&role=admin"}`), ReasonUnverified, "does not send clients"},
		{"url for another host", nil, []byte(`{"url":"wss://elsewhere.example/client/hubs/chat?access_token=` + good + `"}`), ReasonUnverified, `the body's url names "elsewhere.example"`},
		{"no client URL", nil, []byte(`{"accessToken":"` + good + `"}`), ReasonUnverified, "the body has no client URL"},
		{"expired", nil, wpsBody(hs256(hdr, fmt.Sprintf(`{"exp":%d,"aud":"https://%s/client/hubs/chat"}`, n-1, wpsHost), serviceKey)), ReasonUnverified, "the token expired"},
		{"a lifetime over a day", nil, wpsBody(hs256(hdr, fmt.Sprintf(`{"iat":%d,"exp":%d,"aud":"https://%s/client/hubs/chat"}`, n, n+25*3600, wpsHost), serviceKey)), ReasonUnverified, "would live longer"},
		{"the service refuses", &fakeIssuer{err: errors.New("answered 403")}, wpsBody(good), ReasonIssue, "asking https://" + wpsHost + " for a client token: answered 403"},
		{"the service answers a token for someone else", &fakeIssuer{answer: func(r TokenRequest) string {
			return serviceToken("mallory", r.Hub, nil, nil, n+60)
		}}, wpsBody(good), ReasonIssue, "not for the caller"},
		{"the service answers a token for another hub", &fakeIssuer{answer: func(r TokenRequest) string {
			return serviceToken(r.UserID, "admin", nil, nil, n+60)
		}}, wpsBody(good), ReasonIssue, "not for the caller and the app's hub"},
		{"the service answers something else", &fakeIssuer{answer: func(TokenRequest) string { return "not a token" }}, wpsBody(good), ReasonIssue, "is not a token"},
		{"the service answers a token over the length limit", &fakeIssuer{answer: func(TokenRequest) string { return strings.Repeat("a", DefaultMaxTokenLength+1) }}, wpsBody(good), ReasonTooLong, "the service's token has"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			iss := tt.iss
			if iss == nil {
				iss = &fakeIssuer{}
			}
			_, err := newIssuingRewriter(t, iss, Options{}).Rewrite(tt.body, Caller{UserID: "alice"})
			var re *Error
			if !errors.As(err, &re) || re.Reason != tt.reason || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("error %v, want reason %s and %q", err, tt.reason, tt.msg)
			}
			if tt.reason == ReasonUnverified && len(iss.got) > 0 {
				t.Error("the service was asked for a token for a body that fails the checks")
			}
			if strings.Contains(err.Error(), good) || strings.Contains(err.Error(), "eyJ") {
				t.Error("the error shows a token")
			}
		})
	}
}

// TestWebPubSubEntraEndpoints: the Functions extension's identity-based
// settings name an endpoint the rewriter asks the service for tokens for.
func TestWebPubSubEntraEndpoints(t *testing.T) {
	f := WebPubSub()
	list := f.FromEnv(map[string]string{
		"WebPubSubConnectionString__serviceUri": "https://" + wpsHost,
		"WebPubSubConnectionString__credential": "managedidentity",
		"WebPubSubConnectionString__clientId":   "00000000-0000-0000-0000-00000000000a",
	})
	eps, err := f.Endpoints(list)
	if err != nil {
		t.Fatal(err)
	}
	if len(eps) != 1 || eps[0].Entra == nil || !slices.Equal(eps[0].Hosts, []string{wpsHost}) || !slices.Equal(eps[0].ClientHosts, []string{wpsHost}) ||
		eps[0].Entra.String() != "Endpoint=https://"+wpsHost+";credential=managedidentity;ClientId=00000000-0000-0000-0000-00000000000a" {
		t.Fatalf("endpoints %+v", eps)
	}
	eps[0].Issuer = &fakeIssuer{}
	keys := Keys(eps)
	if len(keys) != 1 || keys[0].Issuer == nil || keys[0].Source != nil || keys[0].Secret != nil {
		t.Fatalf("Keys: %+v", keys)
	}
	if _, err := New(f, keys, Options{}); err != nil {
		t.Fatal(err)
	}
	_, err = New(f, keys, Options{ForwardClaims: []string{"email"}})
	if err == nil || !strings.Contains(err.Error(), "forward claims cannot go into the tokens the webpubsub service issues") {
		t.Errorf("New with forward claims: %v", err)
	}
	if _, err := url.Parse(keys[0].Endpoint); err != nil {
		t.Error(err)
	}
}

// FuzzWebPubSubEntra feeds the checks of a token the sidecar cannot verify
// with bodies of any shape: they never panic, the service is asked only for a
// hub it accepts and whole minutes within a day, and every copy of the token
// in a rewritten body names the caller.
func FuzzWebPubSubEntra(f *testing.F) {
	good := hs256(`{"alg":"HS256","typ":"JWT"}`, wpsClaims(`"role":["webpubsub.joinLeaveGroup"],"webpubsub.group":"lobby",`), serviceKey)
	f.Add(wpsBody(good))
	f.Add([]byte(`{"url":"wss://` + wpsHost + `/client/hubs/chat?access_token=` + good + `"}`))
	f.Add([]byte(`{"url":"wss://` + wpsHost + `/client/hubs/a%2Fb?access_token=` + good + `"}`))
	f.Add([]byte(`{"baseUrl":"wss://` + wpsHost + `/client/hubs/chat?access_token=e0.e00","AccessToken":"` + good + `"}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		iss := &fakeIssuer{}
		r := newIssuingRewriter(t, iss, Options{})
		out, err := r.Rewrite(body, Caller{UserID: "alice"})
		for _, req := range iss.got {
			if !hubName.MatchString(req.Hub) || req.Minutes < 1 || req.Minutes > 24*60 || req.UserID != "alice" {
				t.Fatalf("asked the service for %+v", req)
			}
		}
		if err != nil {
			return
		}
		// Every copy of the token names the caller. Other members are kept
		// as the app sent them; a token in one of them is the handler's last
		// scan's to refuse (ForeignToken).
		_, _, tok, err := r.read(out)
		if err != nil {
			t.Fatalf("the rewritten body cannot be read again: %v", err)
		}
		if sub, _, err := tok.claims.stringValue("sub"); err != nil || sub != "alice" {
			t.Fatalf("the rewritten body holds a token for %q: %s", sub, out)
		}
	})
}
