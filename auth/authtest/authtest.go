// Package authtest provides a fake OpenID Connect identity provider for tests
// and demonstrations, as net/http/httptest provides servers: it serves a
// discovery document and a JWKS on a loopback httptest.Server, mints tokens
// with its keys, and can rotate its keys, fail or stall on demand.
//
// Like httptest, its constructors panic where only a broken machine could
// make them fail (no randomness, no loopback listener).
package authtest

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
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Key is a signing key of an identity provider.
type Key struct {
	// ID is the key's kid, set in the header of the tokens it signs when
	// not empty.
	ID     string
	Method jwt.SigningMethod
	Signer crypto.Signer
}

// NewRSAKey returns a fresh 2048-bit RSA key for RS256.
func NewRSAKey(kid string) Key {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic("authtest: " + err.Error())
	}
	return Key{ID: kid, Method: jwt.SigningMethodRS256, Signer: k}
}

// NewECKey returns a fresh P-256 key for ES256.
func NewECKey(kid string) Key {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic("authtest: " + err.Error())
	}
	return Key{ID: kid, Method: jwt.SigningMethodES256, Signer: k}
}

// JWK returns the public JWK of the key.
func (k Key) JWK() map[string]string {
	enc := base64.RawURLEncoding.EncodeToString
	switch pub := k.Signer.Public().(type) {
	case *rsa.PublicKey:
		return map[string]string{"kty": "RSA", "kid": k.ID, "use": "sig", "alg": k.Method.Alg(),
			"n": enc(pub.N.Bytes()), "e": enc(big.NewInt(int64(pub.E)).Bytes())}
	case *ecdsa.PublicKey:
		// The uncompressed point: 0x04, then X and Y of 32 bytes each.
		b, err := pub.Bytes()
		if err != nil {
			panic("authtest: " + err.Error())
		}
		return map[string]string{"kty": "EC", "kid": k.ID, "use": "sig", "alg": k.Method.Alg(), "crv": "P-256",
			"x": enc(b[1:33]), "y": enc(b[33:])}
	}
	panic("authtest: unsupported key type")
}

// JWKS returns a JWKS document holding the public keys.
func JWKS(keys ...Key) []byte {
	list := []map[string]string{}
	for _, k := range keys {
		list = append(list, k.JWK())
	}
	b, _ := json.Marshal(map[string]any{"keys": list})
	return b
}

// Sign signs exactly the claims given, with extra header parameters if any.
func (k Key) Sign(header map[string]any, claims jwt.MapClaims) string {
	tok := jwt.NewWithClaims(k.Method, claims)
	if k.ID != "" {
		tok.Header["kid"] = k.ID
	}
	for name, v := range header {
		tok.Header[name] = v
	}
	s, err := tok.SignedString(k.Signer)
	if err != nil {
		panic("authtest: " + err.Error())
	}
	return s
}

// Paths of the documents an IdP serves.
const (
	DiscoveryPath = "/.well-known/openid-configuration"
	JWKSPath      = "/keys"
)

// IdP is an identity provider on loopback. Its issuer is its URL.
type IdP struct {
	*httptest.Server
	// Audience is the aud of the tokens Token mints; default "api://app".
	Audience string

	mu        sync.Mutex
	jwks      []byte
	keys      []Key
	failing   bool
	stall     chan struct{}
	issuer    string // named by discovery; default the URL
	jwksURI   string // named by discovery; default the URL's JWKSPath
	fetches   atomic.Int32
	discovery atomic.Int32
}

// NewIdP starts an identity provider that publishes keys; with none, one
// fresh ES256 key with kid "k1". Close it when done.
func NewIdP(keys ...Key) *IdP {
	if len(keys) == 0 {
		keys = []Key{NewECKey("k1")}
	}
	p := &IdP{Audience: "api://app"}
	p.SetKeys(keys...)
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+DiscoveryPath, p.serveDiscovery)
	mux.HandleFunc("GET "+JWKSPath, p.serveJWKS)
	// Assigned before it starts: the handlers read p.URL.
	p.Server = httptest.NewUnstartedServer(mux)
	p.Start()
	return p
}

func (p *IdP) serveDiscovery(w http.ResponseWriter, _ *http.Request) {
	p.discovery.Add(1)
	p.mu.Lock()
	iss, jwksURI, failing := p.issuer, p.jwksURI, p.failing
	p.mu.Unlock()
	if failing {
		http.Error(w, "down", http.StatusServiceUnavailable)
		return
	}
	if iss == "" {
		iss = p.URL
	}
	if jwksURI == "" {
		jwksURI = p.JWKSURL()
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]string{"issuer": iss, "jwks_uri": jwksURI})
}

func (p *IdP) serveJWKS(w http.ResponseWriter, r *http.Request) {
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
}

// Issuer is the iss of the provider's tokens: its URL.
func (p *IdP) Issuer() string { return p.URL }

// JWKSURL is where the provider serves its keys.
func (p *IdP) JWKSURL() string { return p.URL + JWKSPath }

// Key returns the first key published.
func (p *IdP) Key() Key {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.keys[0]
}

// SetKeys replaces the keys published: a rotation.
func (p *IdP) SetKeys(keys ...Key) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.keys, p.jwks = keys, JWKS(keys...)
}

// SetRawJWKS publishes a document as it is, valid or not. Key still
// returns the last keys set.
func (p *IdP) SetRawJWKS(doc []byte) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.jwks = doc
}

// SetFailing makes discovery and JWKS requests answer 503, or not.
func (p *IdP) SetFailing(failing bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.failing = failing
}

// Stall makes JWKS requests wait until the returned function is called.
func (p *IdP) Stall() (release func()) {
	ch := make(chan struct{})
	p.mu.Lock()
	p.stall = ch
	p.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			p.mu.Lock()
			p.stall = nil
			p.mu.Unlock()
			close(ch)
		})
	}
}

// SetDiscovery makes the discovery document name another issuer or
// jwks_uri; "" keeps the provider's own.
func (p *IdP) SetDiscovery(issuer, jwksURI string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.issuer, p.jwksURI = issuer, jwksURI
}

// JWKSFetches counts the JWKS requests served so far.
func (p *IdP) JWKSFetches() int { return int(p.fetches.Load()) }

// DiscoveryFetches counts the discovery requests served so far.
func (p *IdP) DiscoveryFetches() int { return int(p.discovery.Load()) }

// Token mints a token with the first key: iss the provider, aud Audience,
// sub "user", iat now and exp in five minutes, changed by claims; a nil
// claim is left out.
func (p *IdP) Token(claims jwt.MapClaims) string {
	now := time.Now()
	all := jwt.MapClaims{"iss": p.Issuer(), "aud": p.Audience, "sub": "user", "iat": now.Unix(), "exp": now.Add(5 * time.Minute).Unix()}
	for name, v := range claims {
		if v == nil {
			delete(all, name)
			continue
		}
		all[name] = v
	}
	return p.Key().Sign(nil, all)
}
