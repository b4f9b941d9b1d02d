package auth

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
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
	p.SetDiscovery("https://somewhere-else.test/", "")
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
	if !errors.Is(lastErr, ErrIssuerMismatch) || !errors.Is(lastErr, ErrDiscovery) || !strings.Contains(lastErr.Error(), "names issuer") {
		t.Errorf("error = %v; want it to say the document names another issuer", lastErr)
	}
}

func TestKeySetStartsWhileIdentityProviderIsDown(t *testing.T) {
	k := newRSAKey(t, "k1")
	p := newIDP(t, k)
	p.SetFailing(true)
	ks, a := startKeySet(t, KeySetConfig{JWKSURLs: []string{p.JWKSURL()}})
	eventually(t, "a first failed fetch", func() bool { return p.JWKSFetches() >= 1 })
	if ks.Loaded() {
		t.Fatal("Loaded with the identity provider down")
	}
	_, err := a.Authenticate([]string{"Bearer " + k.mint(t, nil)})
	if reasonOfErr(err) != ReasonNoKeys {
		t.Fatalf("Authenticate before keys: %v, want reason %s", err, ReasonNoKeys)
	}
	p.SetFailing(false)
	eventually(t, "keys loaded after the identity provider came back", ks.Loaded)
	if _, err := a.Authenticate([]string{"Bearer " + k.mint(t, nil)}); err != nil {
		t.Fatalf("Authenticate after recovery: %v", err)
	}
}

func TestKeySetPicksUpRotatedKeyOnUnknownKID(t *testing.T) {
	old, rotated := newRSAKey(t, "old"), newRSAKey(t, "new")
	p := newIDP(t, old)
	ks, a := startKeySet(t, KeySetConfig{JWKSURLs: []string{p.JWKSURL()}, RefreshInterval: time.Hour, UnknownKIDInterval: time.Hour})
	eventually(t, "keys loaded", ks.Loaded)
	p.setKeys(old, rotated)
	before := p.JWKSFetches()
	if _, err := a.Authenticate([]string{"Bearer " + rotated.mint(t, nil)}); err != nil {
		t.Fatalf("token signed with the rotated key: %v", err)
	}
	if got := p.JWKSFetches() - before; got != 1 {
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
	if got := p.JWKSFetches() - before; got != 1 {
		t.Errorf("JWKS fetched %d times in all, want still 1 (rate limited)", got)
	}
}

func TestKeySetUnknownKIDDoesNotWaitForASlowIdentityProvider(t *testing.T) {
	k := newRSAKey(t, "k1")
	p := newIDP(t, k)
	ks, a := startKeySet(t, KeySetConfig{JWKSURLs: []string{p.JWKSURL()}, RefreshInterval: time.Hour, UnknownKIDWait: 20 * time.Millisecond})
	eventually(t, "keys loaded", ks.Loaded)

	release := p.Stall()
	rotated := newRSAKey(t, "k2")
	p.setKeys(k, rotated)
	// The identity provider is stalled until we release it, so the only way
	// this returns is by giving up waiting.
	_, err := a.Authenticate([]string{"Bearer " + rotated.mint(t, nil)})
	if reasonOfErr(err) != ReasonUnknownKey {
		t.Fatalf("Authenticate: %v, want reason %s", err, ReasonUnknownKey)
	}
	// The refresh goes on in the background and lands once released.
	release()
	eventually(t, "the rotated key after the background refresh", func() bool {
		_, err := a.Authenticate([]string{"Bearer " + rotated.mint(t, nil)})
		return err == nil
	})
}

func TestKeySetKeepsLastGoodKeysWhenRefreshFails(t *testing.T) {
	k := newRSAKey(t, "k1")
	p := newIDP(t, k)
	ks, a := startKeySet(t, KeySetConfig{JWKSURLs: []string{p.JWKSURL()}, RefreshInterval: time.Hour, UnknownKIDInterval: time.Millisecond})
	eventually(t, "keys loaded", ks.Loaded)
	for _, broken := range []func(){
		func() { p.SetFailing(true) },
		func() { p.SetFailing(false); p.SetRawJWKS([]byte(`{"keys":[]}`)) },
		func() { p.SetRawJWKS([]byte(`<html>maintenance</html>`)) },
	} {
		broken()
		before := p.JWKSFetches()
		// An unknown kid forces a refresh against the broken provider.
		_, _ = a.Authenticate([]string{"Bearer " + newECKey(t, "x").mint(t, nil)})
		if p.JWKSFetches() == before {
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

// pinnedClient is a client that sends every request, whatever host its URL
// names, to addr on loopback, so that tests can use URLs of identity
// providers elsewhere without leaving the machine.
func pinnedClient(addr string) *http.Client {
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		},
	}}
}

func TestCheckURL(t *testing.T) {
	const absolute = "must be an absolute http or https URL"
	tests := []struct {
		url      string
		insecure bool
		want     string // "" accepted, "insecure" ErrInsecureHTTP, else the error
	}{
		{"https://login.example.test/keys", false, ""},
		{"HTTPS://login.example.test/keys", false, ""},
		{"http://127.0.0.1:8080/keys", false, ""},
		{"http://127.45.6.7/keys", false, ""},
		{"http://[::1]:8080/keys", false, ""},
		{"http://localhost:8080/keys", false, ""},
		{"http://LocalHost/keys", false, ""},
		{"http://idp.example.test/keys", false, "insecure"},
		{"http://10.0.0.7/keys", false, "insecure"},
		{"http://[::ffff:10.0.0.7]/keys", false, "insecure"},
		{"http://localhost.example.test/keys", false, "insecure"},
		{"http://127.0.0.1.example.test/keys", false, "insecure"},
		{"http://keycloak.auth.svc.cluster.local/realms/x", true, ""},
		{"http://10.0.0.7/keys", true, ""},
		{"idp.example.test/keys", false, absolute},
		{"idp.example.test/keys", true, absolute},
		{"/keys", true, absolute},
		{"ftp://idp.example.test/keys", true, absolute},
		{"https:///keys", false, absolute},
		{"", false, absolute},
	}
	for _, tt := range tests {
		err := CheckURL(tt.url, tt.insecure)
		switch tt.want {
		case "":
			if err != nil {
				t.Errorf("CheckURL(%q, %v) = %v, want accepted", tt.url, tt.insecure, err)
			}
		case "insecure":
			if !errors.Is(err, ErrInsecureHTTP) {
				t.Errorf("CheckURL(%q, %v) = %v, want ErrInsecureHTTP", tt.url, tt.insecure, err)
			}
		default:
			if err == nil || err.Error() != tt.want {
				t.Errorf("CheckURL(%q, %v) = %v, want %q", tt.url, tt.insecure, err, tt.want)
			}
		}
	}
}

func TestNewKeySetRefusesInsecureURLs(t *testing.T) {
	client := &http.Client{Timeout: time.Second}
	static := jwksJSON(newECKey(t, "k"))
	tests := []struct {
		name string
		cfg  KeySetConfig
		want string // "" accepted
	}{
		{"https JWKS URL", KeySetConfig{JWKSURLs: []string{"https://idp.example.test/keys"}}, ""},
		{"http JWKS URL on loopback", KeySetConfig{JWKSURLs: []string{"http://127.0.0.1:1/keys"}}, ""},
		{"http JWKS URL", KeySetConfig{JWKSURLs: []string{"http://idp.example.test/keys"}},
			`key set: JWKS URL "http://idp.example.test/keys" uses plain http to a host that is not loopback; use https, or set insecure_http: true (--insecure-http) for an identity provider inside the cluster`},
		{"http JWKS URL allowed", KeySetConfig{JWKSURLs: []string{"http://idp.example.test/keys"}, InsecureHTTP: true}, ""},
		{"http issuer for discovery", KeySetConfig{Issuer: "http://idp.example.test"},
			`key set: issuer "http://idp.example.test", from which OpenID Connect discovery finds the keys (no JWKS URL is given), uses plain http to a host that is not loopback; use https, or set insecure_http: true (--insecure-http) for an identity provider inside the cluster`},
		{"http issuer for discovery allowed", KeySetConfig{Issuer: "http://idp.example.test", InsecureHTTP: true}, ""},
		{"issuer not a URL, for discovery", KeySetConfig{Issuer: "idp.example.test"},
			`key set: issuer "idp.example.test", from which OpenID Connect discovery finds the keys (no JWKS URL is given), must be an absolute http or https URL`},
		{"issuer not a URL, for discovery, beside static keys", KeySetConfig{Issuer: "idp.example.test", Static: static},
			`key set: issuer "idp.example.test", from which OpenID Connect discovery finds the keys (no JWKS URL is given), must be an absolute http or https URL`},
		// With JWKS URLs the issuer is only compared with iss, never fetched.
		{"issuer any string beside JWKS URLs", KeySetConfig{Issuer: "urn:idp", JWKSURLs: []string{"https://idp.example.test/keys"}}, ""},
		{"http issuer beside JWKS URLs", KeySetConfig{Issuer: "http://idp.example.test", JWKSURLs: []string{"https://idp.example.test/keys"}}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.cfg.Client = client
			_, err := NewKeySet(tt.cfg)
			if got := fmt.Sprint(err); (tt.want == "" && err != nil) || (tt.want != "" && got != tt.want) {
				t.Errorf("NewKeySet = %v, want %q", err, tt.want)
			}
		})
	}
}

func TestKeySetRedirects(t *testing.T) {
	k := newECKey(t, "k1")
	var plainHits atomic.Int32
	plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		plainHits.Add(1)
		_, _ = w.Write(jwksJSON(k))
	}))
	t.Cleanup(plain.Close)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /jwks", func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write(jwksJSON(k)) })
	mux.HandleFunc("GET /to-plain", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, plain.URL+"/jwks", http.StatusFound)
	})
	mux.HandleFunc("GET /to-elsewhere", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "http://idp.example.test/jwks", http.StatusFound)
	})
	// /hops/n redirects n times before serving the keys.
	mux.HandleFunc("GET /hops/{n}", func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(r.PathValue("n"))
		if n == 0 {
			_, _ = w.Write(jwksJSON(k))
			return
		}
		http.Redirect(w, r, "/hops/"+strconv.Itoa(n-1), http.StatusFound)
	})
	secure := httptest.NewTLSServer(mux)
	t.Cleanup(secure.Close)
	plainMux := httptest.NewServer(mux) // the same routes over http on loopback
	t.Cleanup(plainMux.Close)

	tests := []struct {
		name     string
		url      string
		insecure bool
		wantIs   error  // nil: keys load
		wantText string // in the error
	}{
		{"https", secure.URL + "/jwks", false, nil, ""},
		{"https to https", secure.URL + "/hops/1", false, nil, ""},
		{"five redirects", secure.URL + "/hops/5", false, nil, ""},
		{"six redirects", secure.URL + "/hops/6", false, nil, "stopped after 5 redirects"},
		{"https to http on loopback", secure.URL + "/to-plain", false, ErrRedirectDowngrade, "redirect to " + plain.URL + "/jwks: "},
		{"https to http, even when http is allowed", secure.URL + "/to-plain", true, ErrRedirectDowngrade, ""},
		{"http on loopback to http elsewhere", plainMux.URL + "/to-elsewhere", false, ErrInsecureHTTP, "redirect to http://idp.example.test/jwks uses plain http"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			plainHits.Store(0)
			ks, err := NewKeySet(KeySetConfig{JWKSURLs: []string{tt.url}, Client: secure.Client(), InsecureHTTP: tt.insecure})
			if err != nil {
				t.Fatal(err)
			}
			err = ks.Refresh(context.Background())
			if tt.wantIs == nil && tt.wantText == "" {
				if err != nil || !ks.Loaded() {
					t.Fatalf("Refresh = %v, loaded %v; want keys", err, ks.Loaded())
				}
				return
			}
			if err == nil || ks.Loaded() {
				t.Fatalf("Refresh = %v, loaded %v; want a refusal", err, ks.Loaded())
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("Refresh = %v, want %v", err, tt.wantIs)
			}
			if !strings.Contains(err.Error(), tt.wantText) {
				t.Errorf("Refresh = %v, want it to contain %q", err, tt.wantText)
			}
			if plainHits.Load() != 0 {
				t.Error("the http server was reached")
			}
		})
	}

	// The client's own redirect policy still applies after ours.
	t.Run("client's own CheckRedirect", func(t *testing.T) {
		own := errors.New("no redirects here")
		c := secure.Client()
		c.CheckRedirect = func(*http.Request, []*http.Request) error { return own }
		ks, err := NewKeySet(KeySetConfig{JWKSURLs: []string{secure.URL + "/hops/1"}, Client: c})
		if err != nil {
			t.Fatal(err)
		}
		if err := ks.Refresh(context.Background()); !errors.Is(err, own) {
			t.Errorf("Refresh = %v, want the client's own refusal", err)
		}
	})
}

func TestKeySetDiscoveryRefusesInsecureJWKSURI(t *testing.T) {
	k := newRSAKey(t, "k1")
	p := newIDP(t, k)
	p.SetDiscovery("", "http://keys.example.test/keys")

	// The issuer is on loopback, but the JWKS it names is not.
	ks, err := NewKeySet(KeySetConfig{Issuer: p.URL, Client: pinnedClient(p.Listener.Addr().String())})
	if err != nil {
		t.Fatal(err)
	}
	err = ks.Refresh(context.Background())
	if !errors.Is(err, ErrInsecureHTTP) || !strings.Contains(err.Error(), `jwks_uri "http://keys.example.test/keys" uses plain http`) {
		t.Fatalf("Refresh = %v, want the jwks_uri refused as plain http", err)
	}
	if p.JWKSFetches() != 0 || ks.Loaded() {
		t.Fatalf("keys fetched (%d) or loaded (%v) from a refused jwks_uri", p.JWKSFetches(), ks.Loaded())
	}

	// An identity provider inside the cluster, opted in: both the issuer
	// and the jwks_uri are plain http to hosts other than loopback.
	p.SetDiscovery("http://idp.example.test", "http://keys.example.test/keys")
	ks, err = NewKeySet(KeySetConfig{Issuer: "http://idp.example.test", InsecureHTTP: true, Client: pinnedClient(p.Listener.Addr().String())})
	if err != nil {
		t.Fatal(err)
	}
	if err := ks.Refresh(context.Background()); err != nil || !ks.Loaded() {
		t.Fatalf("Refresh with insecure HTTP allowed = %v, loaded %v", err, ks.Loaded())
	}
	if p.JWKSFetches() != 1 {
		t.Errorf("JWKS fetched %d times, want 1", p.JWKSFetches())
	}
}

// TestKeySetErrorsHideURLCredentials checks that a credential inside a key
// set URL, a SAS signature or a password, never reaches an error or a log.
func TestKeySetErrorsHideURLCredentials(t *testing.T) {
	for in, want := range map[string]string{
		"https://user:pw@keys.example.test/jwks.json?sv=2024&sig=SASSECRET": "https://REDACTED@keys.example.test/jwks.json?REDACTED",
		"http://SECRETUSER@127.0.0.1:1/keys":                                "http://REDACTED@127.0.0.1:1/keys",
		"https://keys.example.test/jwks.json?SECRETSIG":                     "https://keys.example.test/jwks.json?REDACTED",
	} {
		if got := DisplayURL(in); got != want {
			t.Errorf("DisplayURL(%q) = %q, want %q", in, got, want)
		}
	}
	if got := DisplayURL("https://keys.example.test/jwks.json"); got != "https://keys.example.test/jwks.json" {
		t.Errorf("DisplayURL of a plain URL = %q", got)
	}
	down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { http.Error(w, "no", 404) }))
	addr := down.URL
	down.Close() // nothing listens there now: the client's own error names the URL
	for _, u := range []string{addr + "/keys?sig=SASSECRET", strings.Replace(addr, "http://", "http://admin:PWSECRET@", 1) + "/keys", strings.Replace(addr, "http://", "http://USERSECRET@", 1) + "/keys"} {
		ks, err := NewKeySet(KeySetConfig{JWKSURLs: []string{u}, Client: &http.Client{Timeout: 2 * time.Second}})
		if err != nil {
			t.Fatal(err)
		}
		err = ks.Refresh(t.Context())
		if err == nil || strings.Contains(err.Error(), "SECRET") {
			t.Errorf("refresh error %v shows the credential", err)
		}
	}
}
