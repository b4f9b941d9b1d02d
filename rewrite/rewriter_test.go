package rewrite

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/json"
	"errors"
	"hash"
	"strings"
	"testing"
)

const (
	testKey   = "dGhpcy1pcy1hLXRlc3QtYWNjZXNzLWtleS1mb3ItdW5pdC10ZXN0cw=="
	otherKey  = "YW5vdGhlci1rZXktdGhhdC1zaG91bGQtbmV2ZXItdmVyaWZ5LWFueXRoaW5n"
	sdkHeader = `{"alg":"HS256","typ":"JWT","kid":"-1895682698"}`
	sdkClaims = `{"nbf":1732694400,"exp":1732698000,"iat":1732694400,"aud":"https://x.service.signalr.net/client/?hub=chat"}`
)

// signHS256 builds a token from literal header and claims text, as the Azure
// SDK does, so tests control every byte.
func signHS256(header, claims, key string) string {
	unsigned := b64(header) + "." + b64(claims)
	mac := hmac.New(sha256.New, []byte(key))
	mac.Write([]byte(unsigned))
	return unsigned + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

func b64(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

func unb64(t *testing.T, s string) string {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		t.Fatalf("decoding %q: %v", s, err)
	}
	return string(b)
}

func newTestRewriter(t *testing.T, f Format) *Rewriter {
	t.Helper()
	r, err := New(f, []Key{{Hosts: []string{"x.service.signalr.net"}, Secret: []byte(testKey)}}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func body(token string) []byte {
	return []byte(`{"url":"https://x.service.signalr.net/client/?hub=chat","accessToken":"` + token + `"}`)
}

func TestRewriteSignalR(t *testing.T) {
	tests := []struct {
		name       string
		header     string
		claims     string
		body       func(token string) string
		user       string
		wantClaims string
		wantBody   func(token string) string
	}{
		{
			name:       "adds the user id first and keeps every other claim byte for byte",
			header:     sdkHeader,
			claims:     sdkClaims,
			user:       "alice",
			wantClaims: `{"asrs.s.uid":"alice","nbf":1732694400,"exp":1732698000,"iat":1732694400,"aud":"https://x.service.signalr.net/client/?hub=chat"}`,
		},
		{
			name:       "overwrites an existing user id in place, never making an array",
			header:     sdkHeader,
			claims:     `{"asrs.s.uid":"mallory","nbf":1,"exp":99999999999,"iat":1,"aud":"https://x.service.signalr.net/client/?hub=chat"}`,
			user:       "alice",
			wantClaims: `{"asrs.s.uid":"alice","nbf":1,"exp":99999999999,"iat":1,"aud":"https://x.service.signalr.net/client/?hub=chat"}`,
		},
		{
			name:       "overwrites the user id claims of older SDKs where present, and adds none",
			header:     sdkHeader,
			claims:     `{"nameid":"mallory","http://schemas.xmlsoap.org/ws/2005/05/identity/claims/nameidentifier":"mallory","exp":1,"aud":"https://x.service.signalr.net/client/?hub=chat"}`,
			user:       "alice",
			wantClaims: `{"asrs.s.uid":"alice","nameid":"alice","http://schemas.xmlsoap.org/ws/2005/05/identity/claims/nameidentifier":"alice","exp":1,"aud":"https://x.service.signalr.net/client/?hub=chat"}`,
		},
		{
			name:       "keeps large and fractional numbers exactly",
			header:     `{"alg":"HS256","typ":"JWT"}`,
			claims:     `{"exp":1.7326980000000001e9,"big":12345678901234567890123,"aud":"https://x.service.signalr.net/client/?hub=chat","asrs.s.aut":"Bearer"}`,
			user:       "bob",
			wantClaims: `{"asrs.s.uid":"bob","exp":1.7326980000000001e9,"big":12345678901234567890123,"aud":"https://x.service.signalr.net/client/?hub=chat","asrs.s.aut":"Bearer"}`,
		},
		{
			name:       "escapes a user id that needs it and leaves <>& alone",
			header:     sdkHeader,
			claims:     sdkClaims,
			user:       `a"b\c<d>&é`,
			wantClaims: `{"asrs.s.uid":"a\"b\\c<d>&é","nbf":1732694400,"exp":1732698000,"iat":1732694400,"aud":"https://x.service.signalr.net/client/?hub=chat"}`,
		},
		{
			name:   "accepts the PascalCase body of the isolated worker",
			header: sdkHeader,
			claims: sdkClaims,
			body: func(tok string) string {
				return `{"Url":"https://x.service.signalr.net/client/?hub=chat","AccessToken":"` + tok + `"}`
			},
			user:       "alice",
			wantClaims: `{"asrs.s.uid":"alice","nbf":1732694400,"exp":1732698000,"iat":1732694400,"aud":"https://x.service.signalr.net/client/?hub=chat"}`,
			wantBody: func(tok string) string {
				return `{"Url":"https://x.service.signalr.net/client/?hub=chat","AccessToken":"` + tok + `"}`
			},
		},
		{
			name:   "keeps unknown fields and their order",
			header: sdkHeader,
			claims: sdkClaims,
			body: func(tok string) string {
				return `{ "tokenLifetimeSeconds" : 3600, "accessToken": "` + tok + `", "url":"https://x.service.signalr.net/client/?hub=chat", "extra":{"a":[1,2]} }`
			},
			user:       "alice",
			wantClaims: `{"asrs.s.uid":"alice","nbf":1732694400,"exp":1732698000,"iat":1732694400,"aud":"https://x.service.signalr.net/client/?hub=chat"}`,
			wantBody: func(tok string) string {
				return `{"tokenLifetimeSeconds":3600,"accessToken":"` + tok + `","url":"https://x.service.signalr.net/client/?hub=chat","extra":{"a":[1,2]}}`
			},
		},
		{
			name:       "matches the audience host case-insensitively and without the default port",
			header:     sdkHeader,
			claims:     `{"exp":1,"aud":"https://X.Service.SignalR.net:443/client/?hub=chat"}`,
			user:       "alice",
			wantClaims: `{"asrs.s.uid":"alice","exp":1,"aud":"https://X.Service.SignalR.net:443/client/?hub=chat"}`,
		},
		{
			name:       "signs HS512 tokens with HS512",
			header:     `{"alg":"HS512","typ":"JWT"}`,
			claims:     sdkClaims,
			user:       "alice",
			wantClaims: `{"asrs.s.uid":"alice","nbf":1732694400,"exp":1732698000,"iat":1732694400,"aud":"https://x.service.signalr.net/client/?hub=chat"}`,
		},
	}
	r := newTestRewriter(t, SignalR())
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var tok string
			if strings.Contains(tt.header, "HS512") {
				tok = signWith(t, "HS512", tt.header, tt.claims, testKey)
			} else {
				tok = signHS256(tt.header, tt.claims, testKey)
			}
			in := string(body(tok))
			if tt.body != nil {
				in = tt.body(tok)
			}
			out, err := r.Rewrite([]byte(in), Caller{UserID: tt.user})
			if err != nil {
				t.Fatalf("Rewrite: %v", err)
			}
			newTok := tokenOf(t, out)
			parts := strings.Split(newTok, ".")
			if parts[0] != strings.Split(tok, ".")[0] {
				t.Errorf("header segment changed: %s", unb64(t, parts[0]))
			}
			if got := unb64(t, parts[1]); got != tt.wantClaims {
				t.Errorf("claims\n got %s\nwant %s", got, tt.wantClaims)
			}
			alg := "HS256"
			if strings.Contains(tt.header, "HS512") {
				alg = "HS512"
			}
			if want := signWith(t, alg, unb64(t, parts[0]), unb64(t, parts[1]), testKey); newTok != want {
				t.Errorf("the rewritten token is not signed with the access key")
			}
			if tt.wantBody != nil {
				if want := tt.wantBody(newTok); string(out) != want {
					t.Errorf("body\n got %s\nwant %s", out, want)
				}
			} else if !json.Valid(out) {
				t.Errorf("body is not JSON: %s", out)
			}
		})
	}
}

func TestRewriteRefuses(t *testing.T) {
	good := signHS256(sdkHeader, sdkClaims, testKey)
	tests := []struct {
		name string
		body string
		want Reason
	}{
		{"empty body", ``, ReasonNotJSON},
		{"HTML error page", `<html><body>oops</body></html>`, ReasonNotJSON},
		{"JSON array", `[1,2]`, ReasonNotJSON},
		{"trailing garbage", string(body(good)) + `x`, ReasonNotJSON},
		{"two objects", string(body(good)) + `{}`, ReasonNotJSON},
		{"duplicate token members", `{"accessToken":"a.b.c","accessToken":"` + good + `"}`, ReasonNotJSON},
		{"no token", `{"url":"https://x.service.signalr.net/client/?hub=chat"}`, ReasonNoToken},
		{"token not a string", `{"accessToken":42}`, ReasonNoToken},
		{"both spellings, two tokens", `{"accessToken":"` + good + `","AccessToken":"` + signHS256(sdkHeader, strings.Replace(sdkClaims, "1732698000", "1732698001", 1), testKey) + `"}`, ReasonTokenMismatch},
		{"a URL is no copy of a SignalR token", `{"url":"https://x.service.signalr.net/client/?hub=chat&access_token=` + good + `"}`, ReasonNoToken},
		{"two segments", `{"accessToken":"abc.def"}`, ReasonMalformedToken},
		{"bad base64", `{"accessToken":"!!!.def.ghi"}`, ReasonMalformedToken},
		{"alg none", `{"accessToken":"` + b64(`{"alg":"none"}`) + "." + b64(sdkClaims) + `."}`, ReasonMalformedToken},
		{"alg RS256", `{"accessToken":"` + b64(`{"alg":"RS256"}`) + "." + b64(sdkClaims) + `.c2ln"}`, ReasonMalformedToken},
		{"duplicate alg", `{"accessToken":"` + signHS256(`{"alg":"HS256","alg":"none"}`, sdkClaims, testKey) + `"}`, ReasonMalformedToken},
		{"no aud", `{"accessToken":"` + signHS256(sdkHeader, `{"exp":1}`, testKey) + `"}`, ReasonMalformedToken},
		{"aud not a URL", `{"accessToken":"` + signHS256(sdkHeader, `{"aud":"chat"}`, testKey) + `"}`, ReasonMalformedToken},
		{"duplicate claim", `{"accessToken":"` + signHS256(sdkHeader, `{"aud":"https://x.service.signalr.net/","asrs.s.uid":"a","asrs.s.uid":"b"}`, testKey) + `"}`, ReasonMalformedToken},
		{"other endpoint", `{"accessToken":"` + signHS256(sdkHeader, `{"aud":"https://y.service.signalr.net/client/?hub=chat"}`, testKey) + `"}`, ReasonUnknownEndpoint},
		{"signed with another key", string(body(signHS256(sdkHeader, sdkClaims, otherKey))), ReasonSignature},
		{"signed with the base64-decoded key", string(body(signHS256(sdkHeader, sdkClaims, mustDecode(testKey)))), ReasonSignature},
		{"tampered claims", string(body(tamper(good))), ReasonSignature},
		{"too long", string(body(signHS256(sdkHeader, `{"pad":"`+strings.Repeat("x", 3000)+`","aud":"https://x.service.signalr.net/client/?hub=chat"}`, testKey))), ReasonTooLong},
	}
	r := newTestRewriter(t, SignalR())
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := r.Rewrite([]byte(tt.body), Caller{UserID: "alice"})
			var re *Error
			if !errors.As(err, &re) {
				t.Fatalf("Rewrite = %q, %v; want a *rewrite.Error", out, err)
			}
			if re.Reason != tt.want {
				t.Errorf("reason = %s (%v), want %s", re.Reason, err, tt.want)
			}
			if strings.Contains(err.Error(), testKey) || strings.Contains(err.Error(), good) {
				t.Errorf("the error leaks a key or token: %v", err)
			}
		})
	}
}

func TestRewriteWebPubSub(t *testing.T) {
	claims := `{"sub":"anonymous","role":["webpubsub.joinLeaveGroup"],"exp":1732698000,"iat":1732694400,"aud":"https://x.service.signalr.net/client/hubs/chat"}`
	tok := signHS256(`{"alg":"HS256","typ":"JWT"}`, claims, testKey)
	in := `{"baseUrl":"wss://x.service.signalr.net/client/hubs/chat","url":"wss://x.service.signalr.net/client/hubs/chat?access_token=` + tok + `&x=1","accessToken":"` + tok + `"}`
	r := newTestRewriter(t, WebPubSub())
	out, err := r.Rewrite([]byte(in), Caller{UserID: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	newTok := tokenOf(t, out)
	if got, want := unb64(t, strings.Split(newTok, ".")[1]), strings.Replace(claims, `"anonymous"`, `"alice"`, 1); got != want {
		t.Errorf("claims\n got %s\nwant %s", got, want)
	}
	want := `{"baseUrl":"wss://x.service.signalr.net/client/hubs/chat","url":"wss://x.service.signalr.net/client/hubs/chat?access_token=` + newTok + `&x=1","accessToken":"` + newTok + `"}`
	if string(out) != want {
		t.Errorf("body\n got %s\nwant %s", out, want)
	}

	t.Run("refuses a url whose token differs", func(t *testing.T) {
		other := signHS256(`{"alg":"HS256","typ":"JWT"}`, strings.Replace(claims, "anonymous", "x", 1), testKey)
		in := `{"url":"wss://x.service.signalr.net/client/hubs/chat?access_token=` + other + `","accessToken":"` + tok + `"}`
		_, err := r.Rewrite([]byte(in), Caller{UserID: "alice"})
		var re *Error
		if !errors.As(err, &re) || re.Reason != ReasonURLMismatch {
			t.Fatalf("err = %v, want reason %s", err, ReasonURLMismatch)
		}
	})
}

func TestNewRefusesIncompleteKeys(t *testing.T) {
	for _, keys := range [][]Key{nil, {{Hosts: []string{"x"}}}, {{Secret: []byte("k")}}} {
		if _, err := New(SignalR(), keys, Options{}); err == nil {
			t.Errorf("New(%v) succeeded", keys)
		}
	}
}

func TestRewriteTriesEveryKeyOfTheEndpoint(t *testing.T) {
	r, err := New(SignalR(), []Key{
		{Hosts: []string{"x.service.signalr.net"}, Secret: []byte(otherKey)},
		{Hosts: []string{"x.service.signalr.net"}, Secret: []byte(testKey)},
	}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	out, err := r.Rewrite(body(signHS256(sdkHeader, sdkClaims, testKey)), Caller{UserID: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	tok := tokenOf(t, out)
	p := strings.Split(tok, ".")
	if tok != signHS256(unb64(t, p[0]), unb64(t, p[1]), testKey) {
		t.Error("the rewritten token must be signed with the key that verified the original")
	}
}

func tokenOf(t *testing.T, b []byte) string {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("output is not JSON: %v: %s", err, b)
	}
	for _, k := range []string{"accessToken", "AccessToken"} {
		if s, ok := m[k].(string); ok {
			return s
		}
	}
	t.Fatalf("no token in %s", b)
	return ""
}

func tamper(tok string) string {
	p := strings.Split(tok, ".")
	p[1] = b64(`{"nbf":1732694400,"exp":9999999999,"iat":1732694400,"aud":"https://x.service.signalr.net/client/?hub=chat"}`)
	return strings.Join(p, ".")
}

func mustDecode(s string) string {
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return string(b)
}

func signWith(t *testing.T, alg, header, claims, key string) string {
	t.Helper()
	h := map[string]func() hash.Hash{"HS256": sha256.New, "HS384": sha512.New384, "HS512": sha512.New}[alg]
	unsigned := b64(header) + "." + b64(claims)
	mac := hmac.New(h, []byte(key))
	mac.Write([]byte(unsigned))
	return unsigned + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}
