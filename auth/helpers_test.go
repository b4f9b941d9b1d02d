package auth

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

const (
	testIssuer   = "https://idp.test/"
	testAudience = "api://negotiate"
)

// signingKey is a test identity provider key.
type signingKey struct {
	kid    string
	alg    jwt.SigningMethod
	signer crypto.Signer
}

func newRSAKey(t testing.TB, kid string) signingKey {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return signingKey{kid: kid, alg: jwt.SigningMethodRS256, signer: k}
}

func newECKey(t testing.TB, kid string) signingKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return signingKey{kid: kid, alg: jwt.SigningMethodES256, signer: k}
}

// jwk returns the public JWK of the key.
func (k signingKey) jwk() map[string]string {
	enc := base64.RawURLEncoding.EncodeToString
	switch pub := k.signer.Public().(type) {
	case *rsa.PublicKey:
		return map[string]string{"kty": "RSA", "kid": k.kid, "use": "sig", "alg": "RS256",
			"n": enc(pub.N.Bytes()), "e": enc(big.NewInt(int64(pub.E)).Bytes())}
	case *ecdsa.PublicKey:
		b := func(i *big.Int) string { return enc(i.FillBytes(make([]byte, 32))) }
		return map[string]string{"kty": "EC", "kid": k.kid, "use": "sig", "alg": "ES256", "crv": "P-256",
			"x": b(pub.X), "y": b(pub.Y)}
	}
	panic("unknown key type")
}

func jwksJSON(keys ...signingKey) []byte {
	var list []map[string]string
	for _, k := range keys {
		list = append(list, k.jwk())
	}
	b, _ := json.Marshal(map[string]any{"keys": list})
	return b
}

// mint signs claims with the key; nil values remove a default claim.
func (k signingKey) mint(t testing.TB, claims jwt.MapClaims) string {
	t.Helper()
	return k.mintWithHeader(t, nil, claims)
}

// mintWithHeader is mint with extra JWS header parameters.
func (k signingKey) mintWithHeader(t testing.TB, header map[string]any, claims jwt.MapClaims) string {
	t.Helper()
	now := time.Now()
	c := jwt.MapClaims{
		"iss": testIssuer, "aud": testAudience, "sub": "alice",
		"iat": now.Unix(), "exp": now.Add(5 * time.Minute).Unix(),
	}
	for name, v := range claims {
		if v == nil {
			delete(c, name)
			continue
		}
		c[name] = v
	}
	tok := jwt.NewWithClaims(k.alg, c)
	if k.kid != "" {
		tok.Header["kid"] = k.kid
	}
	for name, v := range header {
		tok.Header[name] = v
	}
	s, err := tok.SignedString(k.signer)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// idp is a test identity provider on loopback whose keys can be swapped and
// which can be made to fail or stall.
type idp struct {
	*httptest.Server
	mu       sync.Mutex
	jwks     []byte
	failing  bool
	stall    chan struct{} // when set, JWKS requests wait for it to close
	fetches  atomic.Int32
	issuer   string // issuer named in the discovery document; default the server URL
	jwksURI  string // jwks_uri named in the discovery document; default the server's /jwks
	discover atomic.Int32
}

func newIDP(t *testing.T, keys ...signingKey) *idp {
	t.Helper()
	p := &idp{jwks: jwksJSON(keys...)}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		p.discover.Add(1)
		p.mu.Lock()
		iss, jwksURI := p.issuer, p.jwksURI
		failing := p.failing
		p.mu.Unlock()
		if failing {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		if iss == "" {
			iss = p.URL
		}
		if jwksURI == "" {
			jwksURI = p.URL + "/jwks"
		}
		_ = json.NewEncoder(w).Encode(map[string]string{"issuer": iss, "jwks_uri": jwksURI})
	})
	mux.HandleFunc("GET /jwks", func(w http.ResponseWriter, r *http.Request) {
		p.fetches.Add(1)
		p.mu.Lock()
		body, failing, stall := p.jwks, p.failing, p.stall
		p.mu.Unlock()
		if stall != nil {
			select {
			case <-stall:
			case <-r.Context().Done():
				return
			}
		}
		if failing {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body)
	})
	// Assigned before it starts: the handlers read p.URL.
	p.Server = httptest.NewUnstartedServer(mux)
	p.Start()
	t.Cleanup(p.Close)
	return p
}

func (p *idp) setKeys(keys ...signingKey) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.jwks = jwksJSON(keys...)
}

func (p *idp) setFailing(v bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.failing = v
}

func (p *idp) setRawJWKS(b []byte) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.jwks = b
}

// eventually polls cond until it holds or the test's patience runs out. It
// waits for background work; it does not measure speed.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting: %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
