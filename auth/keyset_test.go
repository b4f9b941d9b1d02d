package auth

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// startKeySet runs a key set against the test identity provider until the
// test ends.
func startKeySet(t *testing.T, cfg KeySetConfig) (*KeySet, *Authenticator) {
	t.Helper()
	if cfg.Client == nil {
		cfg.Client = &http.Client{Timeout: 5 * time.Second}
	}
	ks, err := NewKeySet(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { ks.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	iss := cfg.Issuer
	if iss == "" {
		iss = testIssuer
	}
	a, err := New(Config{Providers: []Provider{{Issuer: iss, Audiences: []string{testAudience}, Keys: ks.Keyfunc, Loaded: ks.Loaded}}})
	if err != nil {
		t.Fatal(err)
	}
	return ks, a
}

func reasonOfErr(err error) Reason {
	var ae *Error
	if errors.As(err, &ae) {
		return ae.Reason
	}
	return ""
}

func TestKeySetDiscovery(t *testing.T) {
	k := newRSAKey(t, "k1")
	p := newIDP(t, k)
	ks, a := startKeySet(t, KeySetConfig{Issuer: p.URL})
	eventually(t, "keys loaded by discovery", ks.Loaded)
	if _, err := a.Authenticate([]string{"Bearer " + k.mint(t, map[string]any{"iss": p.URL})}); err != nil {
		t.Fatalf("Authenticate: %v", err)
	}
}

func TestKeySetDiscoveryIssuerMismatch(t *testing.T) {
	k := newRSAKey(t, "k1")
	p := newIDP(t, k)
	p.issuer = "https://somewhere-else.test/"
	var mu sync.Mutex
	var lastErr error
	ks, _ := startKeySet(t, KeySetConfig{Issuer: p.URL, OnRefresh: func(err error) {
		mu.Lock()
		defer mu.Unlock()
		lastErr = err
	}})
	eventually(t, "a failed discovery", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return lastErr != nil
	})
	if ks.Loaded() {
		t.Fatal("keys loaded although the discovery document names another issuer")
	}
	mu.Lock()
	defer mu.Unlock()
	if !strings.Contains(lastErr.Error(), "names issuer") {
		t.Errorf("error = %v; want it to say the document names another issuer", lastErr)
	}
}

func TestKeySetStartsWhileIdentityProviderIsDown(t *testing.T) {
	k := newRSAKey(t, "k1")
	p := newIDP(t, k)
	p.setFailing(true)
	ks, a := startKeySet(t, KeySetConfig{JWKSURLs: []string{p.URL + "/jwks"}})
	eventually(t, "a first failed fetch", func() bool { return p.fetches.Load() >= 1 })
	if ks.Loaded() {
		t.Fatal("Loaded with the identity provider down")
	}
	_, err := a.Authenticate([]string{"Bearer " + k.mint(t, nil)})
	if reasonOfErr(err) != ReasonNoKeys {
		t.Fatalf("Authenticate before keys: %v, want reason %s", err, ReasonNoKeys)
	}
	p.setFailing(false)
	eventually(t, "keys loaded after the identity provider came back", ks.Loaded)
	if _, err := a.Authenticate([]string{"Bearer " + k.mint(t, nil)}); err != nil {
		t.Fatalf("Authenticate after recovery: %v", err)
	}
}

func TestKeySetPicksUpRotatedKeyOnUnknownKID(t *testing.T) {
	old, rotated := newRSAKey(t, "old"), newRSAKey(t, "new")
	p := newIDP(t, old)
	ks, a := startKeySet(t, KeySetConfig{JWKSURLs: []string{p.URL + "/jwks"}, RefreshInterval: time.Hour, UnknownKIDInterval: time.Hour})
	eventually(t, "keys loaded", ks.Loaded)
	p.setKeys(old, rotated)
	before := p.fetches.Load()
	if _, err := a.Authenticate([]string{"Bearer " + rotated.mint(t, nil)}); err != nil {
		t.Fatalf("token signed with the rotated key: %v", err)
	}
	if got := p.fetches.Load() - before; got != 1 {
		t.Errorf("JWKS fetched %d times for one unknown kid, want 1", got)
	}

	// Within the interval, another unknown kid does not reach the identity
	// provider: a caller cannot make us hammer it.
	stranger := newRSAKey(t, "stranger")
	for range 5 {
		if _, err := a.Authenticate([]string{"Bearer " + stranger.mint(t, nil)}); reasonOfErr(err) != ReasonUnknownKey {
			t.Fatalf("unknown kid: %v, want reason %s", err, ReasonUnknownKey)
		}
	}
	if got := p.fetches.Load() - before; got != 1 {
		t.Errorf("JWKS fetched %d times in all, want still 1 (rate limited)", got)
	}
}

func TestKeySetUnknownKIDDoesNotWaitForASlowIdentityProvider(t *testing.T) {
	k := newRSAKey(t, "k1")
	p := newIDP(t, k)
	ks, a := startKeySet(t, KeySetConfig{JWKSURLs: []string{p.URL + "/jwks"}, RefreshInterval: time.Hour, UnknownKIDWait: 20 * time.Millisecond})
	eventually(t, "keys loaded", ks.Loaded)

	stall := make(chan struct{})
	p.mu.Lock()
	p.stall = stall
	p.mu.Unlock()
	rotated := newRSAKey(t, "k2")
	p.setKeys(k, rotated)
	// The identity provider is stalled until we release it, so the only way
	// this returns is by giving up waiting.
	_, err := a.Authenticate([]string{"Bearer " + rotated.mint(t, nil)})
	if reasonOfErr(err) != ReasonUnknownKey {
		t.Fatalf("Authenticate: %v, want reason %s", err, ReasonUnknownKey)
	}
	// The refresh goes on in the background and lands once released.
	close(stall)
	eventually(t, "the rotated key after the background refresh", func() bool {
		_, err := a.Authenticate([]string{"Bearer " + rotated.mint(t, nil)})
		return err == nil
	})
}

func TestKeySetKeepsLastGoodKeysWhenRefreshFails(t *testing.T) {
	k := newRSAKey(t, "k1")
	p := newIDP(t, k)
	ks, a := startKeySet(t, KeySetConfig{JWKSURLs: []string{p.URL + "/jwks"}, RefreshInterval: time.Hour, UnknownKIDInterval: time.Millisecond})
	eventually(t, "keys loaded", ks.Loaded)
	for _, broken := range []func(){
		func() { p.setFailing(true) },
		func() { p.setFailing(false); p.setRawJWKS([]byte(`{"keys":[]}`)) },
		func() { p.setRawJWKS([]byte(`<html>maintenance</html>`)) },
	} {
		broken()
		before := p.fetches.Load()
		// An unknown kid forces a refresh against the broken provider.
		_, _ = a.Authenticate([]string{"Bearer " + newECKey(t, "x").mint(t, nil)})
		if p.fetches.Load() == before {
			t.Fatal("no refresh was attempted")
		}
		time.Sleep(2 * time.Millisecond) // past UnknownKIDInterval
		if _, err := a.Authenticate([]string{"Bearer " + k.mint(t, nil)}); err != nil {
			t.Fatalf("the last good key stopped working: %v", err)
		}
	}
}

func TestParseJWKS(t *testing.T) {
	k := newECKey(t, "k")
	tests := []struct {
		name    string
		doc     string
		want    int
		wantErr string
	}{
		{"one key", string(jwksJSON(k)), 1, ""},
		{"encryption keys skipped", `{"keys":[{"kty":"oct","use":"enc","k":"AAAA","kid":"e"}` + "," + strings.TrimPrefix(string(jwksJSON(k)), `{"keys":[`), 1, ""},
		{"not JSON", `nope`, 0, "not a JWKS document"},
		{"empty", `{"keys":[]}`, 0, "no usable signature key"},
		{"broken key", `{"keys":[{"kty":"RSA","kid":"bad","n":"!!","e":"AQAB"}]}`, 0, "no usable signature key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			keys, err := parseJWKS([]byte(tt.doc))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || len(keys) != tt.want {
				t.Fatalf("parseJWKS = %d keys, %v; want %d", len(keys), err, tt.want)
			}
		})
	}
}
