package rewrite

import (
	"errors"
	"strings"
	"testing"
)

// Keys of several endpoints, as the sidecar builds them from connection
// strings: three emulators on one host (two sharing a key), a cloud endpoint
// with a ClientEndpoint, and one with Port applied.
const (
	keyA = "a-key-of-the-emulator-on-8081-and-8083="
	keyB = "b-key-of-the-emulator-on-8082="
	keyD = "d-key-of-the-cloud-endpoint="
	keyE = "e-key-of-the-endpoint-with-port="
)

var endpointKeys = []Key{
	{Endpoint: "A", Hosts: []string{"127.0.0.1:8081"}, Secret: []byte(keyA)},
	{Endpoint: "B", Hosts: []string{"127.0.0.1:8082"}, Secret: []byte(keyB)},
	{Endpoint: "C", Hosts: []string{"127.0.0.1:8083"}, Secret: []byte(keyA)},
	{Endpoint: "D", Hosts: []string{"x.service.signalr.net"}, ClientHosts: []string{"chat.example.com"}, Secret: []byte(keyD)},
	{Endpoint: "E", Hosts: []string{"y.service.signalr.net:8443", "y.service.signalr.net"}, Secret: []byte(keyE)},
}

func TestResolveChoosesTheEndpoint(t *testing.T) {
	const emulatorAud = "http://127.0.0.1/client/?hub=chat" // what the SDK writes for all three
	tests := []struct {
		name string
		aud  string
		url  string // "" for a body without url
		key  string
		want string // the endpoint, or the reason of the refusal
	}{
		{"aud without port, url names the port", emulatorAud, "http://127.0.0.1:8082/client/?hub=chat", keyB, "B"},
		{"two endpoints share a key: the url tells them apart", emulatorAud, "http://127.0.0.1:8083/client/?hub=chat", keyA, "C"},
		{"two endpoints share a key, the other one", emulatorAud, "http://127.0.0.1:8081/client/?hub=chat", keyA, "A"},
		{"url naming none of the candidates narrows nothing", emulatorAud, "https://gateway.example.com/client/?hub=chat", keyB, "B"},
		{"no url: the key decides", emulatorAud, "", keyB, "B"},
		{"url names an endpoint whose key did not sign", emulatorAud, "http://127.0.0.1:8081/client/?hub=chat", keyB, string(ReasonSignature)},
		{"aud with the endpoint's port", "http://127.0.0.1:8082/client/hubs/chat", "ws://127.0.0.1:8082/client/hubs/chat", keyB, "B"},
		{"aud with a port chooses by it", "http://127.0.0.1:8082/client/hubs/chat", "", keyA, string(ReasonSignature)},
		{"aud with a port no endpoint has", "http://127.0.0.1:9999/client/?hub=chat", "", keyA, string(ReasonUnknownEndpoint)},
		{"aud of another host", "http://127.0.0.2/client/?hub=chat", "http://127.0.0.1:8082/client/?hub=chat", keyB, string(ReasonUnknownEndpoint)},
		{"ClientEndpoint in url, Endpoint in aud", "https://X.Service.SignalR.net/client/?hub=chat", "https://chat.example.com/client/?hub=chat", keyD, "D"},
		{"Endpoint with Port: aud without port", "https://y.service.signalr.net/client/?hub=chat", "https://y.service.signalr.net:8443/client/?hub=chat", keyE, "E"},
		{"Endpoint with Port: aud with it, as SDKs before 2021 wrote", "https://y.service.signalr.net:8443/client/?hub=chat", "https://y.service.signalr.net:8443/client/?hub=chat", keyE, "E"},
		{"default port in aud is no port", "https://y.service.signalr.net:443/client/?hub=chat", "", keyE, "E"},
	}
	r, err := New(SignalR(), endpointKeys, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok := signHS256(sdkHeader, `{"nbf":1732694400,"exp":1732698000,"iat":1732694400,"aud":"`+tt.aud+`"}`, tt.key)
			body := `{"accessToken":"` + tok + `"}`
			if tt.url != "" {
				body = `{"url":"` + tt.url + `","accessToken":"` + tok + `"}`
			}
			k, err := r.Resolve([]byte(body))
			got := k.Endpoint
			var re *Error
			if errors.As(err, &re) {
				got = string(re.Reason)
			} else if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Fatalf("resolved to %s (%v), want %s", got, err, tt.want)
			}
			out, err := r.Rewrite([]byte(body), Caller{UserID: "alice"})
			if err != nil {
				if re == nil {
					t.Fatalf("Resolve accepted what Rewrite refuses: %v", err)
				}
				return
			}
			if re != nil {
				t.Fatal("Rewrite accepted what Resolve refuses")
			}
			newTok := tokenOf(t, out)
			p := strings.Split(newTok, ".")
			if newTok != signHS256(unb64(t, p[0]), unb64(t, p[1]), tt.key) {
				t.Error("the rewritten token is not signed with the key that signed the original")
			}
		})
	}
}

// The Web PubSub bodies in the shapes apps return them, each with every
// copy of the token rewritten alike and every other byte kept.
func TestRewriteWebPubSubBodies(t *testing.T) {
	const base = "wss://x.webpubsub.azure.com/client/hubs/chat"
	// Claims in the order the JavaScript SDK writes them (role, iat, exp,
	// aud: jsonwebtoken appends iat, exp and aud to the payload given).
	claims := `{"role":["webpubsub.joinLeaveGroup.lobby"],"iat":1732694400,"exp":1732698000,"aud":"https://x.webpubsub.azure.com/client/hubs/chat"}`
	tok := signHS256(`{"alg":"HS256","typ":"JWT"}`, claims, testKey)
	bodies := map[string]string{
		"binding":        `{"baseUrl":"` + base + `","url":"` + base + `?access_token=` + tok + `","accessToken":"` + tok + `"}`,
		"JavaScript SDK": `{"token":"` + tok + `","baseUrl":"` + base + `","url":"` + base + `?access_token=` + tok + `"}`,
		"url alone":      `{"url":"` + base + `?access_token=` + tok + `"}`,
		"isolated .NET":  `{"baseUrl":"` + base + `","url":"` + base + `?access_token=` + tok + `","AccessToken":"` + tok + `"}`,
		"extra fields":   `{"expiresIn":3600,"url":"` + base + `?access_token=` + tok + `&group=lobby","groups":["lobby"],"token":"` + tok + `"}`,
	}
	r, err := New(WebPubSub(), []Key{{Hosts: []string{"x.webpubsub.azure.com"}, Secret: []byte(testKey)}}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for name, in := range bodies {
		t.Run(name, func(t *testing.T) {
			out, err := r.Rewrite([]byte(in), Caller{UserID: "alice"})
			if err != nil {
				t.Fatal(err)
			}
			// Every body has the url; its token ends at a quote or '&'.
			newTok := strings.SplitN(string(out), "access_token=", 2)[1]
			newTok = newTok[:strings.IndexAny(newTok, `"&`)]
			if want := strings.ReplaceAll(in, tok, newTok); string(out) != want {
				t.Errorf("body\n got %s\nwant %s", out, want)
			}
			if got, want := unb64(t, strings.Split(newTok, ".")[1]), `{"sub":"alice",`+claims[1:]; got != want {
				t.Errorf("claims\n got %s\nwant %s", got, want)
			}
			if p := strings.Split(newTok, "."); newTok != signHS256(unb64(t, p[0]), unb64(t, p[1]), testKey) {
				t.Error("the rewritten token is not signed with the key")
			}
		})
	}

	other := signHS256(`{"alg":"HS256","typ":"JWT"}`, strings.Replace(claims, "lobby", "admins", 1), testKey)
	foreign := signHS256(`{"alg":"HS256","typ":"JWT"}`, claims, otherKey)
	refused := []struct {
		name string
		body string
		want Reason
	}{
		{"token and accessToken differ", `{"token":"` + tok + `","accessToken":"` + other + `"}`, ReasonTokenMismatch},
		{"url carries another token", `{"token":"` + tok + `","url":"` + base + `?access_token=` + other + `"}`, ReasonURLMismatch},
		{"url carries the token twice", `{"url":"` + base + `?access_token=` + tok + `&access_token=` + tok + `"}`, ReasonURLMismatch},
		{"url is not a string", `{"token":"` + tok + `","url":7}`, ReasonURLMismatch},
		{"url escapes the token", `{"url":"` + base + `?access_token=` + strings.Replace(tok, ".", "%2E", 1) + `"}`, ReasonURLMismatch},
		{"baseUrl alone", `{"baseUrl":"` + base + `"}`, ReasonNoToken},
		{"url without a token", `{"url":"` + base + `"}`, ReasonNoToken},
		{"every copy signed with another key", `{"token":"` + foreign + `","url":"` + base + `?access_token=` + foreign + `"}`, ReasonSignature},
	}
	for _, tt := range refused {
		t.Run("refuses "+tt.name, func(t *testing.T) {
			out, err := r.Rewrite([]byte(tt.body), Caller{UserID: "alice"})
			var re *Error
			if !errors.As(err, &re) || re.Reason != tt.want {
				t.Fatalf("Rewrite = %s, %v; want reason %s", out, err, tt.want)
			}
			if strings.Contains(err.Error(), tok) || strings.Contains(err.Error(), other) {
				t.Errorf("the error shows a token: %v", err)
			}
		})
	}
}

func TestTokenLengthLimitPerService(t *testing.T) {
	webPubSubKey := []Key{{Hosts: []string{"x.webpubsub.azure.com"}, Secret: []byte(testKey)}}
	// A token with many groups, of about n characters.
	tokenOf := func(n int) string {
		var groups []string
		for i := 0; len(strings.Join(groups, ","))*4/3 < n; i++ {
			groups = append(groups, `"webpubsub.joinLeaveGroup.room-`+strings.Repeat("x", 20)+`"`)
		}
		return signHS256(`{"alg":"HS256","typ":"JWT"}`, `{"role":[`+strings.Join(groups, ",")+`],"iat":1,"exp":2,"aud":"https://x.webpubsub.azure.com/client/hubs/chat"}`, testKey)
	}
	tests := []struct {
		name   string
		format Format
		keys   []Key
		max    int
		token  string
		ok     bool
	}{
		{"Web PubSub takes tokens over SignalR's 4096", WebPubSub(), webPubSubKey, 0, tokenOf(6000), true},
		{"Web PubSub refuses tokens over its default", WebPubSub(), webPubSubKey, 0, tokenOf(DefaultMaxTokenLength), false},
		{"Web PubSub with a lower limit set", WebPubSub(), webPubSubKey, 5000, tokenOf(6000), false},
		{"Web PubSub with a higher limit set", WebPubSub(), webPubSubKey, 40000, tokenOf(DefaultMaxTokenLength), true},
		{"SignalR with a lower limit set", SignalR(), []Key{{Hosts: []string{"x.service.signalr.net"}, Secret: []byte(testKey)}}, 200, signHS256(sdkHeader, sdkClaims, testKey), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := New(tt.format, tt.keys, Options{MaxTokenLength: tt.max})
			if err != nil {
				t.Fatal(err)
			}
			_, err = r.Rewrite([]byte(`{"accessToken":"`+tt.token+`"}`), Caller{UserID: "alice"})
			var re *Error
			switch {
			case tt.ok && err != nil:
				t.Fatalf("refused a %d-character token: %v", len(tt.token), err)
			case !tt.ok && (!errors.As(err, &re) || re.Reason != ReasonTooLong):
				t.Fatalf("a %d-character token: %v, want reason %s", len(tt.token), err, ReasonTooLong)
			}
		})
	}
	for _, n := range []int{-1, MaxTokenLength + 1} {
		if _, err := New(SignalR(), []Key{{Hosts: []string{"x"}, Secret: []byte("k")}}, Options{MaxTokenLength: n}); err == nil {
			t.Errorf("New(SignalR()) accepts a maximum token length of %d", n)
		}
	}
}
