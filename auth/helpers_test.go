package auth

import (
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/negotiate-sidecar/negotiate-sidecar/auth/authtest"
)

const (
	testIssuer   = "https://idp.test/"
	testAudience = "api://negotiate"
)

// signingKey is a test identity provider key whose tokens carry this
// package's test issuer and audience by default.
type signingKey struct{ authtest.Key }

func newRSAKey(t testing.TB, kid string) signingKey {
	t.Helper()
	return signingKey{authtest.NewRSAKey(kid)}
}

func newECKey(t testing.TB, kid string) signingKey {
	t.Helper()
	return signingKey{authtest.NewECKey(kid)}
}

func plainKeys(keys []signingKey) []authtest.Key {
	var out []authtest.Key
	for _, k := range keys {
		out = append(out, k.Key)
	}
	return out
}

func jwksJSON(keys ...signingKey) []byte { return authtest.JWKS(plainKeys(keys)...) }

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
	return k.Sign(header, c)
}

// idp is the shared fake identity provider, taking this package's keys.
type idp struct{ *authtest.IdP }

func newIDP(t *testing.T, keys ...signingKey) *idp {
	t.Helper()
	p := &idp{authtest.NewIdP(plainKeys(keys)...)}
	t.Cleanup(p.Close)
	return p
}

func (p *idp) setKeys(keys ...signingKey) { p.SetKeys(plainKeys(keys)...) }

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
