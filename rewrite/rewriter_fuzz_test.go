package rewrite

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

// FuzzRewrite feeds arbitrary negotiate bodies to the rewriter. Whatever the
// upstream sends, the rewriter must not panic, must not return a body it did
// not verify, and what it returns must be JSON whose token verifies with the
// key and names the user.
func FuzzRewrite(f *testing.F) {
	good := signHS256(sdkHeader, sdkClaims, testKey)
	for _, seed := range []string{
		string(body(good)),
		`{"AccessToken":"` + good + `"}`,
		`{"accessToken":"` + signHS256(sdkHeader, sdkClaims, otherKey) + `"}`,
		`{"accessToken":"a.b.c"}`,
		`{"accessToken":"` + good + `","x":[1,{"y":null}],"z":1e400}`,
		`{"url":"wss://x.service.signalr.net/client/hubs/chat?access_token=` + good + `","accessToken":"` + good + `"}`,
		`not json`,
		`{}`,
		``,
	} {
		f.Add([]byte(seed), "alice")
	}
	signalR := newTestRewriterF(f, SignalR)
	webPubSub := newTestRewriterF(f, WebPubSub)
	f.Fuzz(func(t *testing.T, in []byte, user string) {
		for _, r := range []*Rewriter{signalR, webPubSub} {
			out, err := r.Rewrite(in, Caller{UserID: user})
			if err != nil {
				if _, ok := err.(*Error); !ok {
					t.Fatalf("error is %T, not *rewrite.Error: %v", err, err)
				}
				if strings.Contains(err.Error(), testKey) {
					t.Fatalf("error leaks the key: %v", err)
				}
				continue
			}
			if !json.Valid(out) {
				t.Fatalf("output is not JSON: %q", out)
			}
			obj, err := parseObject(out)
			if err != nil {
				t.Fatalf("output does not parse: %v", err)
			}
			_, tok, err := r.findToken(obj)
			if err != nil {
				t.Fatalf("output has no token: %v", err)
			}
			// The output token must itself be accepted by the rewriter, which
			// proves it is signed with the key, and carry the user id.
			again, err := r.rewriteToken(tok, Caller{UserID: user})
			if err != nil {
				t.Fatalf("output token does not verify: %v", err)
			}
			if again != tok {
				t.Fatalf("rewriting twice changed the token")
			}
			if bytes.Equal(in, out) && !strings.Contains(string(in), user) {
				t.Fatalf("output equals input but the user was not in it")
			}
		}
	})
}

func newTestRewriterF(f *testing.F, format Format) *Rewriter {
	r, err := New(format, []Key{{Hosts: []string{"x.service.signalr.net"}, Secret: []byte(testKey)}}, Options{})
	if err != nil {
		f.Fatal(err)
	}
	return r
}
