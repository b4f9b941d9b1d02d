package auth

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

// signRaw signs header and payload exactly as written, with k's algorithm.
func (k signingKey) signRaw(t *testing.T, header, payload string) string {
	t.Helper()
	enc := base64.RawURLEncoding.EncodeToString
	unsigned := enc([]byte(header)) + "." + enc([]byte(payload))
	sig, err := k.Method.Sign(unsigned, k.Signer)
	if err != nil {
		t.Fatal(err)
	}
	return unsigned + "." + enc(sig)
}

// TestAmbiguousJSONIsRefused: a token the identity provider signed, but whose
// JSON reads differently depending on the parser, is refused.
func TestAmbiguousJSONIsRefused(t *testing.T) {
	k := newECKey(t, "k1")
	a := newStaticAuthenticator(t, nil, k)
	exp := time.Now().Add(time.Minute).Unix()
	claims := func(extra string) string {
		return fmt.Sprintf(`{"iss":%q,"aud":%q,"exp":%d%s}`, testIssuer, testAudience, exp, extra)
	}
	hdr := `{"alg":"ES256","typ":"JWT","kid":"k1"}`
	for _, tc := range []struct {
		name, header, payload string
		want                  Reason
	}{
		{"well formed", hdr, claims(`,"sub":"alice"`), ""},
		{"sub twice", hdr, claims(`,"sub":"alice","sub":"mallory"`), ReasonMalformed},
		{"sub twice, once escaped", hdr, claims(`,"sub":"alice","s\u0075b":"mallory"`), ReasonMalformed},
		{"nested member twice", hdr, claims(`,"sub":"alice","ext":{"id":"a","id":"b"}`), ReasonMalformed},
		{"data after the payload", hdr, claims(`,"sub":"alice"`) + ` x`, ReasonMalformed},
		{"alg twice", `{"alg":"none","alg":"ES256","kid":"k1"}`, claims(`,"sub":"alice"`), ReasonMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := a.Authenticate([]string{"Bearer " + k.signRaw(t, tc.header, tc.payload)})
			if got := reasonOfErr(err); got != tc.want {
				t.Errorf("reason %q (%v), want %q", got, err, tc.want)
			}
		})
	}
}

func TestParseJWKSRefusesDuplicateMembers(t *testing.T) {
	k := newECKey(t, "k1")
	good := string(jwksJSON(k))
	dup := strings.Replace(good, `"kid":"k1"`, `"kid":"k1","kid":"k2"`, 1)
	if _, err := parseJWKS([]byte(good)); err != nil {
		t.Fatalf("a well-formed JWKS: %v", err)
	}
	if _, err := parseJWKS([]byte(dup)); err == nil || !strings.Contains(err.Error(), "twice") {
		t.Errorf("a JWKS with kid twice: %v, want refused", err)
	}
	for name, doc := range map[string]string{
		"keys and KEYS": strings.Replace(good, `{"keys":`, `{"KEYS":[],"keys":`, 1),
		"kid and KID":   strings.Replace(good, `"kid":"k1"`, `"kid":"k1","KID":"zz"`, 1),
	} {
		if _, err := parseJWKS([]byte(doc)); err == nil {
			t.Errorf("a JWKS with %s was accepted: encoding/json reads either", name)
		}
	}
	if _, err := NewKeySet(KeySetConfig{Static: []byte(dup), Client: http.DefaultClient}); err == nil {
		t.Error("a static JWKS with kid twice was accepted")
	}
}

// referenceStrict is strictJSON written plainly with encoding/json's
// tokenizer: the oracle the scanner is fuzzed against.
func referenceStrict(b []byte) bool {
	if !json.Valid(b) {
		return false
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber() // as the JWT library reads claims: 1E700 is a number, not an error
	var walk func() bool
	walk = func() bool {
		tok, err := dec.Token()
		if err != nil {
			return false
		}
		switch tok {
		case json.Delim('{'):
			seen := map[string]bool{}
			for dec.More() {
				name, _ := dec.Token()
				n, _ := name.(string)
				if seen[n] {
					return false
				}
				seen[n] = true
				if !walk() {
					return false
				}
			}
			_, err = dec.Token()
		case json.Delim('['):
			for dec.More() {
				if !walk() {
					return false
				}
			}
			_, err = dec.Token()
		}
		return err == nil
	}
	return walk()
}

func FuzzStrictJSON(f *testing.F) {
	for _, s := range []string{`{"a":1,"b":[{"a":2,"a":3}]}`, `{"sub":"a","s\u0075b":"b"}`, "{\"\xe8\":1,\"\xe9\":2}", ` [1, {"x":{}} ] `, `{"a":1} x`, `"s"`, `{}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		got := strictJSON(b, false) == nil
		if want := referenceStrict(b); got != want {
			t.Fatalf("strictJSON(%q) accepts: %v, the tokenizer says %v", b, got, want)
		}
	})
}
