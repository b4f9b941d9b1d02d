package auth

import (
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// cachedAuthenticator is an authenticator with a cache, a fake clock and a
// key lookup that counts its calls, so that a test can tell a cache hit (no
// lookup) from a fresh check.
type cachedAuthenticator struct {
	*Authenticator
	lookups    atomic.Int32
	generation atomic.Uint64
	now        time.Time
}

func newCachedAuthenticator(t *testing.T, cache *Cache, key signingKey) *cachedAuthenticator {
	t.Helper()
	ks, err := NewKeySet(KeySetConfig{Static: jwksJSON(key), Client: http.DefaultClient})
	if err != nil {
		t.Fatal(err)
	}
	c := &cachedAuthenticator{now: time.Now()}
	a, err := New(Config{
		Providers: []Provider{{
			Issuer: testIssuer, Audiences: []string{testAudience}, Leeway: 30 * time.Second,
			Keys:       func(tok *jwt.Token) (any, error) { c.lookups.Add(1); return ks.Keyfunc(tok) },
			Generation: c.generation.Load,
		}},
		Cache: cache,
		Now:   func() time.Time { return c.now },
	})
	if err != nil {
		t.Fatal(err)
	}
	c.Authenticator = a
	return c
}

func (c *cachedAuthenticator) auth(tok string) (Identity, error) {
	return c.Authenticate([]string{"Bearer " + tok})
}

func TestCacheServesRepeatedTokensWithoutChecking(t *testing.T) {
	k := newECKey(t, "k1")
	cache := NewCache(10)
	a := newCachedAuthenticator(t, cache, k)
	tok := k.mint(t, jwt.MapClaims{"email": "alice@contoso.com"})
	for i := range 3 {
		id, err := a.auth(tok)
		if err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
		if id.UserID != "alice" || id.Name != "alice@contoso.com" || id.Claims()["email"] != "alice@contoso.com" || id.Expiry.IsZero() {
			t.Fatalf("call %d: identity %+v", i, id)
		}
	}
	if n := a.lookups.Load(); n != 1 {
		t.Errorf("%d key lookups for three calls with one token, want 1", n)
	}
	if s := cache.Stats(); s.Entries != 1 || s.Hits != 2 || s.Misses != 1 || s.Bytes <= 0 {
		t.Errorf("stats %+v, want 1 entry, 2 hits, 1 miss", s)
	}
}

func TestCacheKeepsNoRefusal(t *testing.T) {
	k, other := newECKey(t, "k1"), newECKey(t, "k1")
	cache := NewCache(10)
	a := newCachedAuthenticator(t, cache, k)
	forged := other.mint(t, nil)
	for range 3 {
		if _, err := a.auth(forged); reasonOfErr(err) != ReasonSignature {
			t.Fatalf("forged token: %v", err)
		}
	}
	if n := a.lookups.Load(); n != 3 {
		t.Errorf("%d key lookups, want every refused token checked again (3)", n)
	}
	if s := cache.Stats(); s.Entries != 0 {
		t.Errorf("a refused token was cached: %+v", s)
	}
	// A token that differs only in its signature is another token.
	good := k.mint(t, nil)
	if _, err := a.auth(good); err != nil {
		t.Fatal(err)
	}
	p := strings.Split(good, ".")
	p[2] = strings.Split(forged, ".")[2]
	if _, err := a.auth(strings.Join(p, ".")); reasonOfErr(err) != ReasonSignature {
		t.Fatalf("a good token's claims under another signature: %v", err)
	}
}

func TestCacheEntryLastsUntilExpiryPlusLeeway(t *testing.T) {
	k := newECKey(t, "k1")
	a := newCachedAuthenticator(t, NewCache(10), k)
	exp := a.now.Add(time.Minute).Truncate(time.Second)
	tok := k.mint(t, jwt.MapClaims{"exp": exp.Unix()})
	if _, err := a.auth(tok); err != nil {
		t.Fatal(err)
	}
	a.now = exp.Add(29 * time.Second) // inside the 30s leeway: still served from the cache
	if _, err := a.auth(tok); err != nil {
		t.Fatalf("inside the leeway: %v", err)
	}
	if n := a.lookups.Load(); n != 1 {
		t.Fatalf("%d lookups inside the leeway, want the cached entry (1)", n)
	}
	a.now = exp.Add(30 * time.Second) // past it: checked again, and refused as a fresh check would
	if _, err := a.auth(tok); reasonOfErr(err) != ReasonExpired {
		t.Fatalf("past exp plus leeway: %v, want expired", err)
	}
}

func TestCacheDropsEntriesWhenKeysChange(t *testing.T) {
	k := newECKey(t, "k1")
	a := newCachedAuthenticator(t, NewCache(10), k)
	tok := k.mint(t, nil)
	if _, err := a.auth(tok); err != nil {
		t.Fatal(err)
	}
	a.generation.Add(1) // a key rotated in or removed
	if _, err := a.auth(tok); err != nil {
		t.Fatal(err)
	}
	if n := a.lookups.Load(); n != 2 {
		t.Errorf("%d lookups, want the token checked again after the keys changed (2)", n)
	}
}

func TestCacheIsNotSharedAcrossAuthenticators(t *testing.T) {
	k := newECKey(t, "k1")
	cache := NewCache(10)
	before := newCachedAuthenticator(t, cache, k)
	after := newCachedAuthenticator(t, cache, k) // a reload with new rules
	tok := k.mint(t, nil)
	if _, err := before.auth(tok); err != nil {
		t.Fatal(err)
	}
	if _, err := after.auth(tok); err != nil {
		t.Fatal(err)
	}
	if n := after.lookups.Load(); n != 1 {
		t.Errorf("the reloaded authenticator used the old one's entry")
	}
}

func TestCacheIsBounded(t *testing.T) {
	k := newECKey(t, "k1")
	cache := NewCache(2)
	a := newCachedAuthenticator(t, cache, k)
	toks := []string{k.mint(t, jwt.MapClaims{"sub": "a"}), k.mint(t, jwt.MapClaims{"sub": "b"}), k.mint(t, jwt.MapClaims{"sub": "c"})}
	for _, tok := range toks {
		if _, err := a.auth(tok); err != nil {
			t.Fatal(err)
		}
	}
	if s := cache.Stats(); s.Entries != 2 {
		t.Fatalf("%d entries, want at most 2", s.Entries)
	}
	a.lookups.Store(0)
	a.auth(toks[2]) // the most recent: still cached
	a.auth(toks[0]) // the least recent: evicted
	if n := a.lookups.Load(); n != 1 {
		t.Errorf("%d lookups, want only the evicted token checked again", n)
	}

	// The byte bound: claims too large for the budget of two entries
	// leave room for one.
	big := NewCache(2)
	b := newCachedAuthenticator(t, big, k)
	pad := strings.Repeat("x", EntryBudget)
	for _, sub := range []string{"a", "b"} {
		if _, err := b.auth(k.mint(t, jwt.MapClaims{"sub": sub, "pad": pad})); err != nil {
			t.Fatal(err)
		}
	}
	if s := big.Stats(); s.Entries != 1 {
		t.Errorf("stats %+v, want one large entry", s)
	}
}

func TestNewCacheZeroDisables(t *testing.T) {
	if NewCache(0) != nil {
		t.Fatal("NewCache(0) made a cache")
	}
	if s := (*Cache)(nil).Stats(); s != (CacheStats{}) {
		t.Fatalf("nil cache stats %+v", s)
	}
	k := newECKey(t, "k1")
	a := newCachedAuthenticator(t, nil, k)
	tok := k.mint(t, nil)
	a.auth(tok)
	a.auth(tok)
	if n := a.lookups.Load(); n != 2 {
		t.Errorf("%d lookups without a cache, want 2", n)
	}
}

func TestKeySetGenerationCountsKeyChanges(t *testing.T) {
	k1, k2 := newECKey(t, "k1"), newECKey(t, "k2")
	p := newIDP(t, k1)
	ks, _ := startKeySet(t, KeySetConfig{JWKSURLs: []string{p.JWKSURL()}})
	eventually(t, "keys loaded", ks.Loaded)
	g := ks.Generation()
	if err := ks.Refresh(t.Context()); err != nil {
		t.Fatal(err)
	}
	if ks.Generation() != g {
		t.Fatalf("a refresh that brought the same keys changed the generation")
	}
	p.setKeys(k1, k2) // a key added
	if err := ks.Refresh(t.Context()); err != nil {
		t.Fatal(err)
	}
	g2 := ks.Generation()
	if g2 == g {
		t.Fatalf("a key added left the generation at %d", g)
	}
	p.setKeys(k2) // a key removed
	if err := ks.Refresh(t.Context()); err != nil {
		t.Fatal(err)
	}
	if ks.Generation() == g2 {
		t.Fatalf("a key removed left the generation at %d", g2)
	}
}

// BenchmarkAuthenticate compares a token checked afresh with one served from
// the cache.
func BenchmarkAuthenticate(b *testing.B) {
	k := newECKey(b, "k1")
	ks, err := NewKeySet(KeySetConfig{Static: jwksJSON(k), Client: http.DefaultClient})
	if err != nil {
		b.Fatal(err)
	}
	tok := []string{"Bearer " + k.mint(b, jwt.MapClaims{"email": "alice@contoso.com", "roles": []string{"a", "b"}})}
	for _, bc := range []struct {
		name  string
		cache *Cache
	}{{"uncached", nil}, {"cached", NewCache(100)}} {
		b.Run(bc.name, func(b *testing.B) {
			a, err := New(Config{Providers: []Provider{{Issuer: testIssuer, Audiences: []string{testAudience}, Keys: ks.Keyfunc, Generation: ks.Generation}}, Cache: bc.cache})
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := a.Authenticate(tok); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestMemoIsComputedOncePerToken: what a consumer derives from a cached
// identity is computed at the first request with the token, not at each.
func TestMemoIsComputedOncePerToken(t *testing.T) {
	k := newECKey(t, "k1")
	a := newCachedAuthenticator(t, NewCache(10), k)
	tok, other := k.mint(t, nil), k.mint(t, jwt.MapClaims{"sub": "bob"})
	computed := 0
	derive := func(id Identity) string {
		return id.Memo("greeting", func() any { computed++; return "hello " + id.UserID }).(string)
	}
	for range 3 {
		id, err := a.auth(tok)
		if err != nil {
			t.Fatal(err)
		}
		if got := derive(id); got != "hello alice" {
			t.Fatalf("memo %q", got)
		}
	}
	id, err := a.auth(other)
	if err != nil {
		t.Fatal(err)
	}
	if got := derive(id); got != "hello bob" {
		t.Fatalf("another token's memo %q", got)
	}
	if computed != 2 {
		t.Errorf("computed %d times for two tokens, want 2", computed)
	}
	if got := (Identity{UserID: "x"}).Memo("k", func() any { return 1 }); got != 1 {
		t.Errorf("a bare Identity's memo = %v", got)
	}
}
