package rewrite

import (
	"encoding/json"
	"strings"
	"testing"
)

// FuzzEntraRewrite feeds negotiate bodies for an endpoint reached with
// Microsoft Entra ID. Whatever the header, claims and url, a token the
// rewriter signs carries the sidecar's kid and the caller's id, is signed
// with the sidecar's key, keeps the app's aud, and passes again every check
// an unverified token must pass.
func FuzzEntraRewrite(f *testing.F) {
	f.Add(entraHeader, entraClaims(""), "https://"+entraHost+"/client/?hub=chat")
	f.Add(entraHeader, entraClaims(`"asrs.s.aut":"Bearer","role":["a","b"],`), "https://"+entraHost+"/client/?hub=chat")
	f.Add(`{"alg":"HS256","kid":"x"}`, entraClaims(`"asrs.s.uid":["a","b"],`), "https://"+entraHost+"/client/?hub=Chat&x=1")
	f.Add(`{"alg":"HS256","kid":"`+sidecarKid+`","typ":"JWT"}`, entraClaims(""), "https://"+entraHost+"/client/?hub=chat")
	f.Add(entraHeader, entraClaims(`"Asrs.S.Uid":"victim","NameId":"victim",`), "https://"+entraHost+"/client/?hub=chat")
	f.Fuzz(func(t *testing.T, header, claims, url string) {
		r := newEntraRewriter(t, ownKey{key: SigningKey{ID: sidecarKid, Secret: []byte(sidecarKey)}})
		body, err := json.Marshal(map[string]string{"url": url, "accessToken": hs256(header, claims, appKey)})
		if err != nil {
			return
		}
		out, err := r.Rewrite(body, Caller{UserID: "fuzz-user"})
		if err != nil {
			return
		}
		obj, err := parseObject(out)
		if err != nil {
			t.Fatalf("output is not JSON: %v", err)
		}
		tok, _, _ := obj.stringValue("accessToken")
		parts := strings.Split(tok, ".")
		if len(parts) != 3 || hs256(segment(t, tok, 0), segment(t, tok, 1), sidecarKey) != tok {
			t.Fatalf("output token not signed with the sidecar's key: %s", tok)
		}
		hdr, err := parseObject([]byte(segment(t, tok, 0)))
		if err != nil {
			t.Fatal(err)
		}
		if kid, _, _ := hdr.stringValue("kid"); kid != sidecarKid {
			t.Fatalf("kid %q, want the sidecar's", kid)
		}
		payload, err := parseObject([]byte(segment(t, tok, 1)))
		if err != nil {
			t.Fatal(err)
		}
		if uid, _, _ := payload.stringValue("asrs.s.uid"); uid != "fuzz-user" {
			t.Fatalf("asrs.s.uid %q", uid)
		}
		in, err := parseObject([]byte(claims))
		if err != nil {
			t.Fatalf("accepted claims that do not parse: %v", err)
		}
		if a, b := in.index("aud"), payload.index("aud"); a < 0 || string(in[a].value) != string(payload[b].value) {
			t.Fatal("the aud changed")
		}
		// No spelling of a user claim names anyone else.
		if r.ForeignToken(out, "fuzz-user") {
			t.Fatalf("the output holds a token naming someone else: %s", out)
		}
		// The output passes the same checks, under the sidecar's kid.
		parsed, err := parseToken(tok)
		if err != nil {
			t.Fatal(err)
		}
		aud, err := audience(parsed.claims)
		if err != nil {
			t.Fatal(err)
		}
		if err := r.checkUnverified(obj, parsed, aud, r.clientHost(obj)); err != nil {
			t.Fatalf("the output fails the checks its input passed: %v", err)
		}
	})
}
