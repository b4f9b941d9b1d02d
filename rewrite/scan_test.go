package rewrite

import (
	"encoding/base64"
	"fmt"
	"strings"
	"testing"
)

// scanToken is a compact JWS with the given header and payload and a dummy
// signature: the scan reads tokens, it does not verify them.
func scanToken(header, payload string) string {
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(header)) + "." + enc([]byte(payload)) + "." + enc([]byte("signature-bytes-here"))
}

func TestForeignToken(t *testing.T) {
	sr, err := New(SignalR(), []Key{{Hosts: []string{"x.service.signalr.net"}, Secret: []byte(testKey)}}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	wps, err := New(WebPubSub(), []Key{{Hosts: []string{"x.webpubsub.azure.com"}, Secret: []byte(testKey)}}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	const hdr = `{"alg":"HS256","typ":"JWT"}`
	alice := scanToken(hdr, `{"asrs.s.uid":"alice","aud":"https://x.service.signalr.net/client/?hub=chat"}`)
	anonymous := scanToken(hdr, `{"aud":"https://x.service.signalr.net/client/?hub=chat","exp":1}`)
	spaced := scanToken(`{ "alg" : "HS256" }`, `{"aud":"x"}`)
	indented := scanToken(" \n{\"alg\":\"HS256\"}", " {\"aud\":\"x\"}")
	escaped := strings.Replace(anonymous, "eyJ", `ey\u004a`, 1)
	tests := []struct {
		name string
		r    *Rewriter
		text string
		user string
		want bool
	}{
		{"a signature that decodes to a brace", sr, strings.TrimSuffix(alice, alice[strings.LastIndexByte(alice, '.')+1:]) + base64.RawURLEncoding.EncodeToString([]byte("{ random signature bytes")), "alice", false},
		{"the caller's own token", sr, `{"url":"https://x/client/?hub=chat","accessToken":"` + alice + `"}`, "alice", false},
		{"another caller's token", sr, `{"accessToken":"` + alice + `"}`, "bob", true},
		{"any token for no caller", sr, `{"accessToken":"` + alice + `"}`, "", true},
		{"a second, unrewritten copy", sr, `{"accessToken":"` + alice + `","token":"` + anonymous + `"}`, "alice", true},
		{"nested", sr, `{"accessToken":"` + alice + `","conn":{"accessToken":"` + anonymous + `"}}`, "alice", true},
		{"in a URL", sr, `https://x/client/?hub=chat&access_token=` + anonymous, "alice", true},
		{"in a cookie", sr, `sr=` + anonymous + `; Path=/; HttpOnly`, "alice", true},
		{"header with spaces", sr, spaced, "alice", true},
		{"header and payload with leading whitespace", sr, indented, "alice", true},
		{"JSON escapes", sr, `{"x":"` + escaped + `"}`, "alice", true},
		{"JSON-escaped slash and dots", sr, strings.ReplaceAll(`"`+anonymous+`"`, ".", `\u002e`), "alice", true},
		{"percent-encoded dots", sr, `/login?next=` + strings.ReplaceAll(anonymous, ".", "%2E"), "alice", true},
		{"percent-encoded twice", sr, strings.ReplaceAll(anonymous, ".", "%252E"), "alice", true},
		{"glued to a word", sr, "Bearer" + anonymous, "alice", true},
		{"without signature", sr, strings.TrimSuffix(anonymous, anonymous[strings.LastIndexByte(anonymous, '.')+1:]), "alice", true},
		{"names the caller, and someone else in nameid", sr, scanToken(hdr, `{"asrs.s.uid":"alice","nameid":"bob"}`), "alice", true},
		{"names the caller, and someone else in ASRS.S.UID", sr, scanToken(hdr, `{"ASRS.S.UID":"bob","asrs.s.uid":"alice"}`), "alice", true},
		{"names the caller, and someone else in NameId", sr, scanToken(hdr, `{"asrs.s.uid":"alice","NameId":"bob"}`), "alice", true},
		{"names the caller, and someone else in SUB", wps, scanToken(hdr, `{"SUB":"bob","sub":"alice"}`), "alice", true},
		{"names the caller, and no one in a numeric NAMEID", sr, scanToken(hdr, `{"asrs.s.uid":"alice","NAMEID":1}`), "alice", true},
		{"glued after a dotted prefix", sr, "v.x_" + anonymous, "alice", true},
		{"a header with many spaces first", sr, "v1." + scanToken(strings.Repeat(" ", 60)+`{"alg":"HS256"}`, `{"aud":"x"}`), "alice", true},
		{"percent-encoded four times", sr, strings.ReplaceAll(anonymous, ".", "%2525252E"), "alice", true},
		{"the user claim of the other service", sr, scanToken(hdr, `{"sub":"alice"}`), "alice", true},
		{"Web PubSub names the user in sub", wps, `{"url":"wss://x/client/hubs/chat?access_token=` + scanToken(hdr, `{"sub":"alice"}`) + `"}`, "alice", false},
		{"Web PubSub token for no one", wps, scanToken(hdr, `{"role":["webpubsub.joinLeaveGroup"]}`), "alice", true},
		{"hostnames and versions", sr, `{"url":"https://x.service.signalr.net/client/?hub=chat","v":"1.0.3","ip":"10.0.0.1"}`, "alice", false},
		{"base64 that is not JSON", sr, base64.RawURLEncoding.EncodeToString([]byte("hello there")) + "." + base64.RawURLEncoding.EncodeToString([]byte("general kenobi")) + ".x", "alice", false},
		{"an error document", sr, `{"type":"about:blank","title":"Unauthorized","status":401}`, "", false},
		{"empty", sr, ``, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.r.ForeignToken([]byte(tt.text), tt.user); got != tt.want {
				t.Errorf("ForeignToken(%q, %q) = %v, want %v", tt.text, tt.user, got, tt.want)
			}
		})
	}
}

// FuzzForeignToken embeds a token for someone else in arbitrary text: it must
// always be found, whatever surrounds it.
func FuzzForeignToken(f *testing.F) {
	f.Add("", "", "mallory")
	f.Add(`{"accessToken":"`, `"}`, "bob")
	f.Add("x.y.", ".z", "")
	f.Add("e30", "%2", `a"b`)
	f.Fuzz(func(t *testing.T, before, after, user string) {
		sr, err := New(SignalR(), []Key{{Hosts: []string{"x"}, Secret: []byte(testKey)}}, Options{})
		if err != nil {
			t.Fatal(err)
		}
		payload, _ := appendValue(nil, map[string]string{"asrs.s.uid": user + "-not-alice"})
		tok := scanToken(`{"alg":"HS256"}`, string(payload))
		text := before + " " + tok + " " + after
		if !sr.ForeignToken([]byte(text), "alice") {
			t.Fatalf("a token for %q in %q was not found", user+"-not-alice", text)
		}
		_ = sr.ForeignToken([]byte(before+after), fmt.Sprint(len(before)))

		// And a token naming alice, whatever its signature bytes, is hers.
		enc := base64.RawURLEncoding.EncodeToString
		own := enc([]byte(`{"alg":"HS256"}`)) + "." + enc([]byte(`{"asrs.s.uid":"alice"}`)) + "." + enc([]byte(before))
		if sr.ForeignToken([]byte(`{"accessToken":"`+own+`"}`), "alice") {
			t.Fatalf("alice's own token with signature %q was taken for a foreign one", before)
		}
	})
}

// TestMayOpenObject holds the first-character filter of opensObject to what
// decoding finds, for every pair of leading characters (two make the first
// byte): a segment it passes over never decodes to JSON whitespace or '{'
// first, and one it lets through can.
func TestMayOpenObject(t *testing.T) {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	for _, c0 := range []byte(alphabet) {
		opens := false
		for _, c1 := range []byte(alphabet) {
			b, err := base64.RawURLEncoding.DecodeString(string([]byte{c0, c1}))
			if err != nil {
				t.Fatal(err)
			}
			if strings.IndexByte(" \t\n\r{", b[0]) >= 0 {
				opens = true
			}
		}
		if mayOpenObject(c0) != opens {
			t.Errorf("mayOpenObject(%q) = %v, but a segment starting with it can open an object: %v", c0, mayOpenObject(c0), opens)
		}
	}
}
