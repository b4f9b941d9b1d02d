package rewrite

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// FuzzRewrite feeds arbitrary negotiate bodies to the rewriter. Whatever the
// upstream sends, the rewriter must not panic, must not return a body it did
// not verify, and what it returns must be JSON whose token verifies with the
// key and names the user. A rewriter with every option on must also cap exp,
// forward exactly the claims asked for, and leave every other claim as it was.
func FuzzRewrite(f *testing.F) {
	good := signHS256(sdkHeader, sdkClaims, testKey)
	signed := func(claims string) string { return `{"accessToken":"` + signHS256(sdkHeader, claims, testKey) + `"}` }
	for _, seed := range []string{
		string(body(good)),
		`{"AccessToken":"` + good + `"}`,
		`{"accessToken":"` + signHS256(sdkHeader, sdkClaims, otherKey) + `"}`,
		`{"accessToken":"a.b.c"}`,
		`{"accessToken":"` + good + `","x":[1,{"y":null}],"z":1e400}`,
		`{"url":"wss://x.service.signalr.net/client/hubs/chat?access_token=` + good + `","accessToken":"` + good + `"}`,
		`{"token":"` + good + `","baseUrl":"wss://x.service.signalr.net/client/hubs/chat","url":"wss://x.service.signalr.net/client/hubs/chat?access_token=` + good + `"}`,
		`{"url":"wss://x.service.signalr.net:443/client/hubs/chat?a=1&access_token=` + good + `#f"}`,
		`{"baseUrl":"wss://x.service.signalr.net/client/hubs/chat","url":"wss://x.service.signalr.net/client/hubs/chat?access_token=` + good + `","AccessToken":"` + good + `"}`,
		`{"accessToken":"` + good + `","AccessToken":"` + good + `","Url":"https://y/client/?hub=chat"}`,
		signed(`{"iat":1732694400,` + signalAud + `}`),
		signed(`{"exp":"soon",` + signalAud + `}`),
		signed(`{"nbf":1732700000,"exp":1.7327e9,"iat":-1e300,` + signalAud + `}`),
		signed(`{"asrs.s.coae":"false","tid":{"a":1},"asrs.u.sub":null,"exp":99999999999999999999,` + signalAud + `}`),
		signed(`{"nameid":"mallory","exp":1732698000,` + signalAud + `}`),
		`not json`,
		`{}`,
		``,
	} {
		f.Add([]byte(seed), "alice", "contoso", int64(1732695600))
		f.Add([]byte(seed), "", `"<&>`, int64(0))
	}
	f.Add([]byte(string(body(good))), "bob", "x", int64(testNow-1))
	signalR := newTestRewriterF(f, SignalR())
	webPubSub := newTestRewriterF(f, WebPubSub())
	lifetime := 30 * time.Minute
	allOptions := newOptionsRewriter(f, SignalR(), Options{
		ForwardClaims:       []string{"tid", "roles", "sub"},
		MaxTokenLifetime:    lifetime,
		BindToCallerExpiry:  true,
		CloseOnCallerExpiry: true,
	})
	f.Fuzz(func(t *testing.T, in []byte, user, claim string, expiry int64) {
		caller := Caller{UserID: user}
		for _, r := range []*Rewriter{signalR, webPubSub} {
			out, err := r.Rewrite(in, caller)
			if checkRewrite(t, r, in, out, err, caller) {
				checkUntouched(t, in, out, r.format, user)
			}
		}

		caller = Caller{
			UserID: user,
			Claims: map[string]any{
				"tid":   claim,
				"roles": []any{claim, json.Number("7"), true, nil},
				"sub":   map[string]any{"v": claim},
			},
		}
		if expiry != 0 {
			caller.Expiry = time.Unix(expiry, 0)
		}
		out, err := allOptions.Rewrite(in, caller)
		if !checkRewrite(t, allOptions, in, out, err, caller) {
			return
		}
		added := map[string]string{
			"tid":        string(appendQuoted(nil, claim)),
			"roles":      `[` + string(appendQuoted(nil, claim)) + `,7,true,null]`,
			"asrs.u.sub": `{"v":` + string(appendQuoted(nil, claim)) + `}`,
		}
		if expiry != 0 {
			added["asrs.s.coae"] = `"true"`
			added["asrs.s.aeo"] = `"` + strconv.FormatInt(expiry, 10) + `"`
		}
		claims := checkUntouched(t, in, out, SignalR(), user, "exp", "tid", "roles", "asrs.u.sub", "asrs.s.coae", "asrs.s.aeo")
		for name, want := range added {
			if i := claims.index(name); i < 0 || string(claims[i].value) != want {
				t.Fatalf("claim %s is not %s: %s", name, want, claims.appendJSON(nil))
			}
		}
		original, _ := payloadOf(t, in)
		limit := testNow + int64(lifetime/time.Second)
		if iat, ok := dateClaim(original, "iat"); ok {
			limit = iat + int64(lifetime/time.Second)
		}
		if expiry != 0 {
			limit = min(limit, expiry)
		}
		i := claims.index("exp")
		if i < 0 {
			t.Fatalf("no exp: %s", claims.appendJSON(nil))
		}
		exp, ok := jsonNumber(claims[i].value)
		if !ok || exp > float64(limit) {
			t.Fatalf("exp %s is above the cap %d", claims[i].value, limit)
		}
		// A lowered exp must leave a live token.
		validFrom := int64(testNow)
		if nbf, ok := dateClaim(original, "nbf"); ok {
			validFrom = max(validFrom, nbf)
		}
		if j := original.index("exp"); (j < 0 || !bytes.Equal(original[j].value, claims[i].value)) && exp <= float64(validFrom) {
			t.Fatalf("exp %s is not after the token's start %d", claims[i].value, validFrom)
		}
	})
}

// checkRewrite checks what every successful rewrite must satisfy and reports
// whether there was one.
func checkRewrite(t *testing.T, r *Rewriter, in, out []byte, err error, c Caller) bool {
	t.Helper()
	if err != nil {
		if _, ok := err.(*Error); !ok {
			t.Fatalf("error is %T, not *rewrite.Error: %v", err, err)
		}
		if strings.Contains(err.Error(), testKey) {
			t.Fatalf("error leaks the key: %v", err)
		}
		return false
	}
	if !json.Valid(out) {
		t.Fatalf("output is not JSON: %q", out)
	}
	obj, _, tok, err := r.read(out)
	if err != nil {
		t.Fatalf("output has no single token: %v", err)
	}
	// The output token must itself be accepted by the rewriter, which
	// proves it is signed with the key, and carry the user id.
	key, err := r.resolve(obj, tok)
	if err != nil {
		t.Fatalf("output token does not verify: %v", err)
	}
	again, err := r.resign(tok, key, c)
	if err != nil {
		t.Fatalf("output token cannot be rewritten again: %v", err)
	}
	if again != tok.raw {
		t.Fatalf("rewriting twice changed the token")
	}
	if bytes.Equal(in, out) && !strings.Contains(string(in), c.UserID) {
		t.Fatalf("output equals input but the user was not in it")
	}
	return true
}

// checkUntouched checks that the output token has the input's header segment
// and the user id, that the format's legacy user id claims hold it where the
// input had them and appear nowhere else, and that every other claim of the
// input not named in changed is still there with its exact text, in the same
// order. It returns the output token's claims.
func checkUntouched(t *testing.T, in, out []byte, f Format, user string, changed ...string) object {
	t.Helper()
	before, header := payloadOf(t, in)
	after, newHeader := payloadOf(t, out)
	if header != newHeader {
		t.Fatalf("header segment changed")
	}
	uid := appendQuoted(nil, user)
	if i := after.index(f.UserClaim); i < 0 || !bytes.Equal(after[i].value, uid) {
		t.Fatalf("the user claim %s does not hold the user id", f.UserClaim)
	}
	for _, name := range f.LegacyUserClaims {
		i, had := after.index(name), before.index(name) >= 0
		if had != (i >= 0) || had && !bytes.Equal(after[i].value, uid) {
			t.Fatalf("legacy user claim %s: present before %v, after %v, or not the user id", name, had, i >= 0)
		}
	}
	changed = append(changed, f.UserClaim)
	changed = append(changed, f.LegacyUserClaims...)
	var kept []string
	for _, m := range after {
		if !slices.Contains(changed, m.name) {
			kept = append(kept, m.name)
		}
	}
	var want []string
	for _, m := range before {
		if slices.Contains(changed, m.name) {
			continue
		}
		want = append(want, m.name)
		if i := after.index(m.name); i < 0 || !bytes.Equal(after[i].value, m.value) {
			t.Fatalf("claim %s changed", m.name)
		}
	}
	if !slices.Equal(kept, want) {
		t.Fatalf("claims changed order or appeared: %q, want %q", kept, want)
	}
	return after
}

// payloadOf returns the parsed payload and the header segment of the token in
// a body the rewriter has accepted.
func payloadOf(t *testing.T, b []byte) (object, string) {
	t.Helper()
	obj, err := parseObject(b)
	if err != nil {
		t.Fatal(err)
	}
	var tok string
	for _, name := range []string{"accessToken", "AccessToken", "token"} {
		if s, ok, _ := obj.stringValue(name); ok {
			tok = s
		}
	}
	if tok == "" {
		_, tok, _, _ = urlToken(obj, "url")
	}
	parts := strings.Split(tok, ".")
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	claims, err := parseObject(payload)
	if err != nil {
		t.Fatal(err)
	}
	return claims, parts[0]
}

func newTestRewriterF(f *testing.F, format Format) *Rewriter {
	r, err := New(format, []Key{{Hosts: []string{"x.service.signalr.net"}, Secret: []byte(testKey)}}, Options{})
	if err != nil {
		f.Fatal(err)
	}
	return r
}
