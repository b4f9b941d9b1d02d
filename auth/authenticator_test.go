package auth

import (
	"crypto/hmac"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/negotiate-sidecar/negotiate-sidecar/auth/authtest"
)

func newStaticAuthenticator(t *testing.T, mutate func(*Provider), keys ...signingKey) *Authenticator {
	t.Helper()
	ks, err := NewKeySet(KeySetConfig{Static: jwksJSON(keys...), Client: http.DefaultClient})
	if err != nil {
		t.Fatal(err)
	}
	p := Provider{Issuer: testIssuer, Audiences: []string{testAudience, "api://other"}, Leeway: 30 * time.Second, Keys: ks.Keyfunc, Loaded: ks.Loaded}
	if mutate != nil {
		mutate(&p)
	}
	a, err := New(Config{Providers: []Provider{p}})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestAuthenticate(t *testing.T) {
	rsaKey := newRSAKey(t, "rsa-1")
	ecKey := newECKey(t, "ec-1")
	stranger := newRSAKey(t, "rsa-1") // same kid, different key
	unknown := newRSAKey(t, "rsa-unknown")
	now := time.Now()

	// The classic confusion attack: an HS256 token whose HMAC key is the
	// identity provider's public key, which anyone can download.
	pubDER, err := x509.MarshalPKIXPublicKey(rsaKey.Signer.Public().(*rsa.PublicKey))
	if err != nil {
		t.Fatal(err)
	}
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
	hsWithPublicKey, _ := (&signingKey{authtest.Key{ID: "rsa-1", Method: jwt.SigningMethodHS256}}).mintHMAC(t, pubPEM)

	good := rsaKey.mint(t, nil)
	parts := strings.Split(good, ".")
	tampered := parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(`{"iss":"`+testIssuer+`","aud":"`+testAudience+`","sub":"mallory","exp":9999999999}`)) + "." + parts[2]

	unsigned := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"JWT","kid":"rsa-1"}`)) + "." + parts[1] + "."

	tests := []struct {
		name       string
		header     []string
		userClaim  string
		wantUser   string
		wantReason Reason
	}{
		{name: "RS256 token", header: []string{"Bearer " + good}, wantUser: "alice"},
		{name: "ES256 token", header: []string{"Bearer " + ecKey.mint(t, jwt.MapClaims{"sub": "bob"})}, wantUser: "bob"},
		{name: "scheme in any case", header: []string{"bearer " + good}, wantUser: "alice"},
		{name: "second accepted audience", header: []string{"Bearer " + rsaKey.mint(t, jwt.MapClaims{"aud": []string{"x", "api://other"}})}, wantUser: "alice"},
		{name: "expired within leeway", header: []string{"Bearer " + rsaKey.mint(t, jwt.MapClaims{"exp": now.Add(-10 * time.Second).Unix()})}, wantUser: "alice"},
		{name: "URI claim name with dots", header: []string{"Bearer " + rsaKey.mint(t, jwt.MapClaims{"http://schemas.example.com/claims/oid": "u-7"})}, userClaim: "http://schemas.example.com/claims/oid", wantUser: "u-7"},
		{name: "dotted path", header: []string{"Bearer " + rsaKey.mint(t, jwt.MapClaims{"ext": map[string]any{"user": map[string]any{"id": "u-9"}}})}, userClaim: "ext.user.id", wantUser: "u-9"},

		{name: "no header", header: nil, wantReason: ReasonMissing},
		{name: "empty bearer", header: []string{"Bearer "}, wantReason: ReasonMalformed},
		{name: "basic scheme", header: []string{"Basic YWxpY2U6cHc="}, wantReason: ReasonMalformed},
		{name: "two Authorization headers", header: []string{"Bearer " + good, "Bearer " + good}, wantReason: ReasonMalformed},
		{name: "not a JWT", header: []string{"Bearer abc.def"}, wantReason: ReasonMalformed},
		{name: "garbage segments", header: []string{"Bearer a.b.c"}, wantReason: ReasonMalformed},
		{name: "expired", header: []string{"Bearer " + rsaKey.mint(t, jwt.MapClaims{"exp": now.Add(-time.Minute).Unix()})}, wantReason: ReasonExpired},
		{name: "no exp", header: []string{"Bearer " + rsaKey.mint(t, jwt.MapClaims{"exp": nil})}, wantReason: ReasonMalformed},
		{name: "not yet valid", header: []string{"Bearer " + rsaKey.mint(t, jwt.MapClaims{"nbf": now.Add(time.Hour).Unix()})}, wantReason: ReasonNotYetValid},
		{name: "issued in the future", header: []string{"Bearer " + rsaKey.mint(t, jwt.MapClaims{"iat": now.Add(time.Hour).Unix()})}, wantReason: ReasonNotYetValid},
		{name: "wrong issuer", header: []string{"Bearer " + rsaKey.mint(t, jwt.MapClaims{"iss": "https://evil.test/"})}, wantReason: ReasonIssuer},
		{name: "no issuer", header: []string{"Bearer " + rsaKey.mint(t, jwt.MapClaims{"iss": nil})}, wantReason: ReasonIssuer},
		{name: "issuer not a string", header: []string{"Bearer " + rsaKey.mint(t, jwt.MapClaims{"iss": 7})}, wantReason: ReasonIssuer},
		{name: "issuer differing by a slash", header: []string{"Bearer " + rsaKey.mint(t, jwt.MapClaims{"iss": strings.TrimSuffix(testIssuer, "/")})}, wantReason: ReasonIssuer},
		{name: "wrong audience", header: []string{"Bearer " + rsaKey.mint(t, jwt.MapClaims{"aud": "api://someone-else"})}, wantReason: ReasonAudience},
		{name: "alg none", header: []string{"Bearer " + unsigned}, wantReason: ReasonAlgorithm},
		{name: "HS256 signed with the RSA public key", header: []string{"Bearer " + hsWithPublicKey}, wantReason: ReasonAlgorithm},
		{name: "unknown kid", header: []string{"Bearer " + unknown.mint(t, nil)}, wantReason: ReasonUnknownKey},
		{name: "known kid, other key", header: []string{"Bearer " + stranger.mint(t, nil)}, wantReason: ReasonSignature},
		{name: "tampered payload", header: []string{"Bearer " + tampered}, wantReason: ReasonSignature},
		{name: "user claim missing", header: []string{"Bearer " + rsaKey.mint(t, jwt.MapClaims{"sub": nil})}, wantReason: ReasonUserClaim},
		{name: "user claim empty", header: []string{"Bearer " + rsaKey.mint(t, jwt.MapClaims{"sub": ""})}, wantReason: ReasonUserClaim},
		{name: "user claim not a string", header: []string{"Bearer " + rsaKey.mint(t, jwt.MapClaims{"oid": 42})}, userClaim: "oid", wantReason: ReasonUserClaim},
		{name: "user claim with a newline", header: []string{"Bearer " + rsaKey.mint(t, jwt.MapClaims{"sub": "alice\r\nX-Evil: 1"})}, wantReason: ReasonUserClaim},
		{name: "unknown header parameter, not critical", header: []string{"Bearer " + rsaKey.mintWithHeader(t, map[string]any{"x-trace": "1"}, nil)}, wantUser: "alice"},
		{name: "crit naming an extension", header: []string{"Bearer " + rsaKey.mintWithHeader(t, map[string]any{"crit": []string{"exp"}, "exp": now.Add(-time.Hour).Unix()}, nil)}, wantReason: ReasonCrit},
		{name: "crit naming a registered parameter", header: []string{"Bearer " + rsaKey.mintWithHeader(t, map[string]any{"crit": []string{"kid"}}, nil)}, wantReason: ReasonCrit},
		{name: "crit empty", header: []string{"Bearer " + rsaKey.mintWithHeader(t, map[string]any{"crit": []string{}}, nil)}, wantReason: ReasonCrit},
		{name: "crit not a list", header: []string{"Bearer " + rsaKey.mintWithHeader(t, map[string]any{"crit": "b64", "b64": false}, nil)}, wantReason: ReasonCrit},
		{name: "crit null", header: []string{"Bearer " + rsaKey.mintWithHeader(t, map[string]any{"crit": nil}, nil)}, wantReason: ReasonCrit},
		{name: "crit with a bad signature", header: []string{"Bearer " + stranger.mintWithHeader(t, map[string]any{"crit": []string{"b64"}, "b64": false}, nil)}, wantReason: ReasonCrit},
		{name: "crit with an expired token", header: []string{"Bearer " + rsaKey.mintWithHeader(t, map[string]any{"crit": []string{"b64"}, "b64": false}, jwt.MapClaims{"exp": now.Add(-time.Hour).Unix()})}, wantReason: ReasonCrit},
		{name: "oversized token", header: []string{"Bearer " + strings.Repeat("a", MaxTokenBytes+1)}, wantReason: ReasonMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := newStaticAuthenticator(t, func(c *Provider) {
				if tt.userClaim != "" {
					c.UserClaim = tt.userClaim
				}
			}, rsaKey, ecKey)
			id, err := a.Authenticate(tt.header)
			if tt.wantReason == "" {
				if err != nil {
					t.Fatalf("Authenticate: %v", err)
				}
				if id.UserID != tt.wantUser || id.Issuer != testIssuer {
					t.Errorf("identity = %+v, want user %q issuer %q", id, tt.wantUser, testIssuer)
				}
				return
			}
			var ae *Error
			if !errors.As(err, &ae) {
				t.Fatalf("Authenticate = %+v, %v; want refusal %s", id, err, tt.wantReason)
			}
			if ae.Reason != tt.wantReason {
				t.Errorf("reason = %s (%v), want %s", ae.Reason, err, tt.wantReason)
			}
			for _, h := range tt.header {
				if tok := strings.TrimPrefix(strings.TrimPrefix(h, "Bearer "), "bearer "); len(tok) > 20 && strings.Contains(err.Error(), tok) {
					t.Errorf("the error contains the token")
				}
			}
		})
	}
}

func (k *signingKey) mintHMAC(t *testing.T, secret []byte) (string, error) {
	t.Helper()
	header := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT","kid":"` + k.ID + `"}`))
	claims := base64.RawURLEncoding.EncodeToString([]byte(`{"iss":"` + testIssuer + `","aud":"` + testAudience + `","sub":"mallory","exp":9999999999}`))
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(header + "." + claims))
	return header + "." + claims + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil)), nil
}

func TestAuthenticateDisplayName(t *testing.T) {
	k := newECKey(t, "ec")
	a := newStaticAuthenticator(t, nil, k)
	for _, tt := range []struct {
		claims jwt.MapClaims
		want   string
	}{
		{jwt.MapClaims{"preferred_username": "alice@contoso.com", "email": "a@x"}, "alice@contoso.com"},
		{jwt.MapClaims{"email": "a@x", "name": "Alice"}, "a@x"},
		{jwt.MapClaims{"name": "Alice"}, "Alice"},
		{jwt.MapClaims{}, "alice"},
	} {
		id, err := a.Authenticate([]string{"Bearer " + k.mint(t, tt.claims)})
		if err != nil {
			t.Fatal(err)
		}
		if id.Name != tt.want {
			t.Errorf("claims %v: name = %q, want %q", tt.claims, id.Name, tt.want)
		}
	}
}

func TestNewRejectsUnsafeConfig(t *testing.T) {
	keys := func(*jwt.Token) (any, error) { return nil, errors.New("unused") }
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"no provider", Config{}, "no identity provider is configured"},
		{"no issuer", Config{Providers: []Provider{{Audiences: []string{"a"}, Keys: keys}}}, "an issuer is required"},
		{"no audience", Config{Providers: []Provider{{Issuer: "i", Keys: keys}}}, "at least one audience is required"},
		{"empty audience", Config{Providers: []Provider{{Issuer: "i", Audiences: []string{""}, Keys: keys}}}, "an audience is empty"},
		{"alg none", Config{Providers: []Provider{{Issuer: "i", Audiences: []string{"a"}, Algorithms: []string{"none"}, Keys: keys}}}, `"none" not accepted`},
		{"HS256 against a JWKS", Config{Providers: []Provider{{Issuer: "i", Audiences: []string{"a"}, Algorithms: []string{"RS256", "HS256"}, Keys: keys}}}, `"HS256" not accepted`},
		{"no keys", Config{Providers: []Provider{{Issuer: "i", Audiences: []string{"a"}}}}, "a key source is required"},
		{"same issuer twice", Config{Providers: []Provider{{Name: "a", Issuer: "i", Audiences: []string{"a"}, Keys: keys}, {Name: "b", Issuer: "i", Audiences: []string{"a"}, Keys: keys}}}, `issuer "i" is configured twice`},
		{"same name twice", Config{Providers: []Provider{{Name: "a", Issuer: "i", Audiences: []string{"a"}, Keys: keys}, {Name: "a", Issuer: "j", Audiences: []string{"a"}, Keys: keys}}}, `provider "a": the name is used twice`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("New = %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

// TestCritRefusedWhileKeysLoad: a token with crit can never be accepted, so
// it is refused (401) at once rather than told to come back once keys load
// (503).
func TestCritRefusedWhileKeysLoad(t *testing.T) {
	k := newRSAKey(t, "k")
	a := newStaticAuthenticator(t, func(p *Provider) { p.Loaded = func() bool { return false } }, k)
	_, err := a.Authenticate([]string{"Bearer " + k.mint(t, nil)})
	if reasonOfErr(err) != ReasonNoKeys {
		t.Fatalf("token without crit: %v, want reason %s", err, ReasonNoKeys)
	}
	_, err = a.Authenticate([]string{"Bearer " + k.mintWithHeader(t, map[string]any{"crit": []string{"b64"}, "b64": false}, nil)})
	var ae *Error
	if !errors.As(err, &ae) || ae.Reason != ReasonCrit || ae.Provider != testIssuer {
		t.Fatalf("token with crit: %#v, want reason %s from provider %q", err, ReasonCrit, testIssuer)
	}
}

func TestAlgorithmsRestrictAcceptedTokens(t *testing.T) {
	ec, rs := newECKey(t, "ec"), newRSAKey(t, "rs")
	a := newStaticAuthenticator(t, func(c *Provider) { c.Algorithms = []string{"ES256"} }, ec, rs)
	if _, err := a.Authenticate([]string{"Bearer " + ec.mint(t, nil)}); err != nil {
		t.Fatalf("ES256: %v", err)
	}
	_, err := a.Authenticate([]string{"Bearer " + rs.mint(t, nil)})
	var ae *Error
	if !errors.As(err, &ae) || ae.Reason != ReasonAlgorithm {
		t.Fatalf("RS256 with only ES256 allowed: %v, want reason %s", err, ReasonAlgorithm)
	}
}

func TestProvidersAreIsolatedByIssuer(t *testing.T) {
	keyA, keyB := newRSAKey(t, "shared-kid"), newECKey(t, "b")
	ksA, err := NewKeySet(KeySetConfig{Static: jwksJSON(keyA), Client: http.DefaultClient})
	if err != nil {
		t.Fatal(err)
	}
	ksB, err := NewKeySet(KeySetConfig{Static: jwksJSON(keyB), Client: http.DefaultClient})
	if err != nil {
		t.Fatal(err)
	}
	a, err := New(Config{Providers: []Provider{
		{Name: "a", Issuer: "https://a.test/", Audiences: []string{testAudience}, Keys: ksA.Keyfunc},
		{Name: "b", Issuer: "https://b.test/", Audiences: []string{"api://b"}, Keys: ksB.Keyfunc, UserClaim: "oid"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name         string
		token        string
		wantUser     string
		wantProvider string
		wantReason   Reason
	}{
		{"issuer A with A's key", keyA.mint(t, jwt.MapClaims{"iss": "https://a.test/"}), "alice", "a", ""},
		{"issuer B with B's key and B's rules", keyB.mint(t, jwt.MapClaims{"iss": "https://b.test/", "aud": "api://b", "oid": "o-1"}), "o-1", "b", ""},
		{"issuer B signed with A's key", keyA.mint(t, jwt.MapClaims{"iss": "https://b.test/", "aud": "api://b", "oid": "o-1"}), "", "b", ReasonUnknownKey},
		{"issuer A with B's audience", keyA.mint(t, jwt.MapClaims{"iss": "https://a.test/", "aud": "api://b"}), "", "a", ReasonAudience},
		{"unconfigured issuer", keyA.mint(t, jwt.MapClaims{"iss": "https://c.test/"}), "", "", ReasonIssuer},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, err := a.Authenticate([]string{"Bearer " + tt.token})
			if tt.wantReason == "" {
				if err != nil || id.UserID != tt.wantUser || id.Provider != tt.wantProvider {
					t.Fatalf("Authenticate = %+v, %v; want user %q from %q", id, err, tt.wantUser, tt.wantProvider)
				}
				return
			}
			var ae *Error
			if !errors.As(err, &ae) || ae.Reason != tt.wantReason || ae.Provider != tt.wantProvider {
				t.Fatalf("Authenticate error = %#v, want reason %s from provider %q", err, tt.wantReason, tt.wantProvider)
			}
		})
	}
	if got := a.Providers(); len(got) != 2 || got[0] != "a" || got[1] != "b" {
		t.Errorf("Providers() = %v", got)
	}
}

// TestCheckAgreesWithParseWithClaims: verify decodes a token once and checks
// it as jwt.Parser.ParseWithClaims would after decoding it; for each kind of
// token both must give the same error, word for word, or none.
func TestCheckAgreesWithParseWithClaims(t *testing.T) {
	k, other := newECKey(t, "ec"), newECKey(t, "other")
	rsaKey := newRSAKey(t, "rsa")
	a := newStaticAuthenticator(t, func(p *Provider) { p.Algorithms = []string{"ES256", "RS256"} }, k, rsaKey)
	p := a.providers[testIssuer]
	parser := jwt.NewParser(jwt.WithValidMethods(p.Algorithms), jwt.WithIssuer(p.Issuer), jwt.WithAudience(p.Audiences...),
		jwt.WithLeeway(p.Leeway), jwt.WithExpirationRequired(), jwt.WithIssuedAt(), jwt.WithTimeFunc(time.Now), jwt.WithJSONNumber())
	now := time.Now()
	signedByOther := other.mint(t, nil)
	forged := k.mint(t, nil)
	forged = forged[:strings.LastIndexByte(forged, '.')+1] + signedByOther[strings.LastIndexByte(signedByOther, '.')+1:]
	hmacToken, _ := k.mintHMAC(t, []byte("secret"))
	for name, tok := range map[string]string{
		"valid":            k.mint(t, nil),
		"valid RSA":        rsaKey.mint(t, nil),
		"expired":          k.mint(t, jwt.MapClaims{"exp": now.Add(-time.Hour).Unix()}),
		"no exp":           k.mint(t, jwt.MapClaims{"exp": nil}),
		"not yet valid":    k.mint(t, jwt.MapClaims{"nbf": now.Add(time.Hour).Unix()}),
		"issued later":     k.mint(t, jwt.MapClaims{"iat": now.Add(time.Hour).Unix()}),
		"other audience":   k.mint(t, jwt.MapClaims{"aud": "api://nope"}),
		"unknown key":      signedByOther,
		"forged signature": forged,
		"HMAC":             hmacToken,
		"exp not a number": k.mint(t, jwt.MapClaims{"exp": "tomorrow"}),
	} {
		t.Run(name, func(t *testing.T) {
			claims := jwt.MapClaims{}
			tok1, parts, err := a.peek.ParseUnverified(tok, claims)
			if err != nil {
				t.Fatalf("the token does not decode: %v", err)
			}
			got := p.check(tok1, tok[:len(parts[0])+1+len(parts[1])], claims)
			_, want := parser.ParseWithClaims(tok, jwt.MapClaims{}, p.Keys)
			if fmt.Sprint(got) != fmt.Sprint(want) || got != nil && reasonOf(got) != reasonOf(want) {
				t.Errorf("check = %v, ParseWithClaims = %v", got, want)
			}
		})
	}
}
