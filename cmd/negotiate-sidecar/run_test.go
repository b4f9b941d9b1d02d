package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/negotiate-sidecar/negotiate-sidecar/auth/authtest"
)

const testAccessKey = "aW50ZWdyYXRpb24tdGVzdC1hY2Nlc3Mta2V5LWZvci1uZWdvdGlhdGUtc2lkZWNhcg=="

// syncBuffer collects the sidecar's log output across goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// testIDP is the shared fake identity provider; its tokens are for
// api://app and expire in a minute.
type testIDP struct{ *authtest.IdP }

func newTestIDP(t *testing.T) *testIDP {
	t.Helper()
	p := &testIDP{authtest.NewIdP()}
	t.Cleanup(p.Close)
	return p
}

func (p *testIDP) mint(t *testing.T, sub string) string {
	t.Helper()
	return p.mintFor(t, sub, "api://app")
}

func (p *testIDP) mintFor(t *testing.T, sub, aud string) string {
	t.Helper()
	return p.Token(jwt.MapClaims{"sub": sub, "aud": aud, "iat": nil, "exp": time.Now().Add(time.Minute).Unix()})
}

// running is a sidecar started through run, as main starts it.
type running struct {
	proxy, admin string
	logs         *syncBuffer
	cancel       context.CancelFunc
	done         chan error
}

// startRun calls run with the given flags plus loopback listeners on port 0
// and no shutdown delay (unless args set one), and waits until both
// listeners are up.
func startRun(t *testing.T, env map[string]string, args ...string) *running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{logs: &syncBuffer{}, cancel: cancel, done: make(chan error, 1)}
	args = append([]string{"--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--shutdown-delay", "0s"}, args...)
	go func() { r.done <- run(ctx, args, environ(env), io.Discard, r.logs) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-r.done:
		case <-time.After(20 * time.Second):
			t.Error("run did not return after cancel")
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for r.proxy == "" || r.admin == "" {
		select {
		case err := <-r.done:
			t.Fatalf("run returned early: %v\n%s", err, r.logs)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("listeners not up:\n%s", r.logs)
		}
		sc := bufio.NewScanner(strings.NewReader(r.logs.String()))
		for sc.Scan() {
			var line struct{ Msg, Listener, Addr string }
			if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == "listening" {
				if line.Listener == "proxy" {
					r.proxy = "http://" + line.Addr
				} else {
					r.admin = "http://" + line.Addr
				}
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	return r
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func waitStatus(t *testing.T, url string, want int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if code, _ := get(t, url); code == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never answered %d", url, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func signalRToken(aud string) string {
	now := time.Now().Unix()
	tok := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"nbf": now, "exp": now + 3600, "iat": now, "aud": aud})
	s, _ := tok.SignedString([]byte(testAccessKey))
	return s
}

func negotiate(t *testing.T, url, token string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("POST", url, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestRunEndToEnd(t *testing.T) {
	idp := newTestIDP(t)
	release, started := make(chan struct{}), make(chan struct{})
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/api/negotiate":
			w.Header().Set("Content-Type", "text/plain;charset=UTF-8")
			fmt.Fprintf(w, `{"url":"https://unit.service.signalr.net:8443/client/?hub=chat","accessToken":%q}`, signalRToken("https://unit.service.signalr.net:8443/client/?hub=chat"))
		case "/api/current-sdk/negotiate":
			// Current SDKs build aud from the Endpoint as written, without Port.
			fmt.Fprintf(w, `{"url":"https://unit.service.signalr.net:8443/client/?hub=chat","accessToken":%q}`, signalRToken("https://unit.service.signalr.net/client/?hub=chat"))
		case "/api/slow":
			close(started)
			<-release
			io.WriteString(w, "finished")
		}
	}))
	defer app.Close()

	cs := "Endpoint=https://unit.service.signalr.net;AccessKey=" + testAccessKey + ";Port=8443;Version=1.0;"
	r := startRun(t, map[string]string{"AzureSignalRConnectionString": cs, "NEGOTIATE_SIDECAR_AUDIENCE": "api://other,api://app"},
		"--upstream", app.URL, "--issuer", idp.URL)

	if code, _ := get(t, r.admin+"/healthz"); code != 200 {
		t.Errorf("/healthz = %d", code)
	}
	waitStatus(t, r.admin+"/readyz", 200)

	userTok := idp.mint(t, "user-7")
	code, body := negotiate(t, r.proxy+"/api/negotiate?negotiateVersion=1", userTok)
	if code != 200 {
		t.Fatalf("negotiate: %d %s", code, body)
	}
	var out struct{ AccessToken string }
	json.Unmarshal([]byte(body), &out)
	tok, err := jwt.Parse(out.AccessToken, func(*jwt.Token) (any, error) { return []byte(testAccessKey), nil }, jwt.WithValidMethods([]string{"HS256"}))
	if err != nil {
		t.Fatalf("rewritten token: %v", err)
	}
	if uid := tok.Claims.(jwt.MapClaims)["asrs.s.uid"]; uid != "user-7" {
		t.Errorf("asrs.s.uid = %v", uid)
	}
	// The same token again: served from the verified-token cache.
	if code, body := negotiate(t, r.proxy+"/api/current-sdk/negotiate", userTok); code != 200 {
		t.Errorf("aud without the connection string's Port: %d %s", code, body)
	}
	if code, _ := negotiate(t, r.proxy+"/api/negotiate", "garbage"); code != 401 {
		t.Errorf("bad token: %d, want 401", code)
	}
	// A well-signed token whose header marks an extension critical is
	// refused, and counted under its own reason.
	critical := jwt.NewWithClaims(jwt.SigningMethodES256, jwt.MapClaims{"iss": idp.URL, "aud": "api://app", "sub": "user-7", "exp": time.Now().Add(time.Minute).Unix()})
	critical.Header["kid"], critical.Header["crit"], critical.Header["b64"] = "k1", []string{"b64"}, false
	critTok, err := critical.SignedString(idp.Key().Signer)
	if err != nil {
		t.Fatal(err)
	}
	if code, _ := negotiate(t, r.proxy+"/api/negotiate", critTok); code != 401 {
		t.Errorf("token with crit: %d, want 401", code)
	}

	_, metrics := get(t, r.admin+"/metrics")
	for _, want := range []string{
		`negotiate_sidecar_negotiate_requests_total{outcome="rewritten"} 2`,
		`negotiate_sidecar_negotiate_requests_total{outcome="unauthenticated"} 2`,
		`negotiate_sidecar_jwks_fetch_success_total{provider="127.0.0.1:`,
		`negotiate_sidecar_jwt_authn_allowed_total{provider="127.0.0.1:`,
		`negotiate_sidecar_jwt_authn_denied_total{provider="",reason="malformed"} 1`,
		`negotiate_sidecar_jwt_authn_denied_total{provider="` + strings.TrimPrefix(idp.URL, "http://") + `",reason="crit"} 1`,
		`negotiate_sidecar_jwks_keys{provider="127.0.0.1:`,
		`negotiate_sidecar_build_info{go_version="go`,
		`negotiate_sidecar_upstream_duration_seconds_count{result="response",route="negotiate"} 2`,
		"negotiate_sidecar_token_cache_hits_total 1\n",
		"negotiate_sidecar_token_cache_misses_total 3\n",
		"negotiate_sidecar_token_cache_entries 1\n",
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}

	// Graceful shutdown: a request in flight when the signal comes finishes,
	// readiness turns 503 meanwhile, and run returns nil.
	slow := make(chan string, 1)
	go func() {
		resp, err := http.Get(r.proxy + "/api/slow")
		if err != nil {
			slow <- err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		slow <- string(b)
	}()
	<-started
	r.cancel()
	waitStatus(t, r.admin+"/readyz", 503)
	close(release)
	if got := <-slow; got != "finished" {
		t.Errorf("in-flight request: %q", got)
	}
	if err := <-r.done; err != nil {
		t.Errorf("run: %v", err)
	}
	r.done <- nil // for the cleanup

	logs := r.logs.String()
	if !strings.Contains(logs, `"reason":"crit"`) {
		t.Errorf("no log line with reason crit:\n%s", logs)
	}
	for _, secret := range []string{testAccessKey, out.AccessToken, cs, critTok} {
		if strings.Contains(logs, secret) {
			t.Fatal("the logs contain a secret")
		}
	}
}

func TestRunStartsWhileIdentityProviderIsDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + ln.Addr().String()
	ln.Close()
	app := httptest.NewServer(http.NotFoundHandler())
	defer app.Close()
	r := startRun(t, nil, "--upstream", app.URL, "--issuer", dead, "--audience", "api://app",
		"--connection-string", "Endpoint=https://x.service.signalr.net;AccessKey="+testAccessKey+";")
	if code, _ := get(t, r.admin+"/healthz"); code != 200 {
		t.Errorf("/healthz = %d, want 200", code)
	}
	if code, body := get(t, r.admin+"/readyz"); code != 503 || !strings.Contains(body, "no key loaded yet") {
		t.Errorf("/readyz = %d %q, want 503", code, body)
	}
	// A token of the configured issuer waits for keys; it cannot be judged yet.
	early, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"iss": dead, "aud": "api://app", "sub": "x", "exp": time.Now().Add(time.Minute).Unix()}).SignedString([]byte("k"))
	if code, _ := negotiate(t, r.proxy+"/api/negotiate", early); code != 503 {
		t.Errorf("negotiate before keys = %d, want 503", code)
	}
}

func TestConfigurationErrors(t *testing.T) {
	const key = "c2VjcmV0LWtleS10aGF0LW11c3Qtbm90LWxlYWs="
	good := []string{"--upstream", "http://127.0.0.1:1", "--issuer", "https://idp.test/", "--audience", "a", "--connection-string", "Endpoint=https://x.service.signalr.net;AccessKey=" + key}
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want []string
	}{
		{"nothing", nil, nil, []string{"upstream: required", "no identity provider", "no connection string"}},
		{"issuer without audience", []string{"--issuer", "https://idp.test/"}, nil, []string{`providers[0].audiences: at least one audience is required`}},
		{"bad upstream", append([]string{"--upstream", "127.0.0.1:80"}, good[2:]...), nil, []string{"must be an absolute http or https URL"}},
		{"upstream with a password", append([]string{"--upstream", "http://app:" + key + "@127.0.0.1:1"}, good[2:]...), nil, []string{`--upstream="http://REDACTED@127.0.0.1:1": must have no user, password`}},
		{"bad log format", append([]string{"--log-format", "xml"}, good...), nil, []string{"choose json or console"}},
		{"bad env duration", good, map[string]string{"NEGOTIATE_SIDECAR_LEEWAY": "soon"}, []string{"NEGOTIATE_SIDECAR_LEEWAY"}},
		{"alg none", append([]string{"--algorithms", "RS256,none"}, good...), nil, []string{`--algorithms="RS256,none": "none" not accepted`}},
		{"issuer not a URL, for discovery", append([]string{"--issuer", "corp-idp"}, good[:2]...), map[string]string{"NEGOTIATE_SIDECAR_AUDIENCE": "a", "AzureSignalRConnectionString": "Endpoint=https://x.service.signalr.net;AccessKey=" + key}, []string{`issuer "corp-idp", from which OpenID Connect discovery finds the keys (no JWKS URL is given), must be an absolute http or https URL`}},
		{"http JWKS URL", append(good, "--jwks-url", "http://idp.test/keys"), nil, []string{`JWKS URL "http://idp.test/keys" uses plain http`, "insecure_http: true"}},
		{"Microsoft Entra ID over plain http", append(good[:6:6], "--connection-string", "Endpoint=http://x.service.signalr.net;AuthType=azure.msi;ClientId=abc"), nil, []string{"\n  connection string 1 of the configuration: the key API at http://x.service.signalr.net/api/v1/auth/accessKey must be https (http only on loopback)"}},
		{"Microsoft Entra ID without a tenant", append(good[:6:6], "--connection-string", "Endpoint=https://x.service.signalr.net;AuthType=azure.app;ClientId=abc;ClientSecret="+key), nil, []string{"AuthType=azure.app needs ClientId, TenantId and ClientSecret or ClientCert"}},
		{"broken connection string", append(good[:6:6], "--connection-string", "AccessKey="+key), nil, []string{"Endpoint"}},
		{"bad negotiate path", append([]string{"--negotiate-path", "api/negotiate"}, good...), nil, []string{"must start with /"}},
		{"stray argument", append([]string{"serve"}, good...), nil, []string{`unexpected argument "serve"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"}, tt.args...)
			var stderr syncBuffer
			err := run(context.Background(), args, environ(tt.env), io.Discard, &stderr)
			if err == nil {
				t.Fatal("run succeeded")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			if strings.Contains(err.Error()+stderr.String(), key) {
				t.Error("the error shows the access key")
			}
		})
	}
}

func TestVersionAndDemo(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), []string{"version"}, nil, &out, io.Discard); err != nil || !strings.HasPrefix(out.String(), "negotiate-sidecar ") {
		t.Errorf("version: %q, %v", out.String(), err)
	}
	out.Reset()
	var stderr syncBuffer
	if err := run(context.Background(), []string{"demo", "--user", "demo-user-1"}, nil, &out, &stderr); err != nil {
		t.Fatalf("demo: %v\n%s", err, stderr.String())
	}
	for _, want := range []string{`asrs.s.uid: "demo-user-1"`, `the app saw X-MS-CLIENT-PRINCIPAL-ID: "demo-user-1"`, `kid: "-1895682698"`} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("demo output lacks %s:\n%s", want, out.String())
		}
	}
}

// environ turns a map into os.Environ's form.
func environ(m map[string]string) []string {
	var out []string
	for k, v := range m {
		out = append(out, k+"="+v)
	}
	return out
}

// TestTwoProvidersTwoEndpointsTwoKeysEach runs one sidecar for two identity
// providers and two SignalR endpoints, each in the middle of a key rotation
// (a primary and a secondary key), configured the way a Functions app with
// several endpoints is: through Azure__SignalR__Endpoints__* settings.
func TestTwoProvidersTwoEndpointsTwoKeysEach(t *testing.T) {
	idpA, idpB := newTestIDP(t), newTestIDP(t)
	keys := map[string][2]string{
		"east": {"ZWFzdC1wcmltYXJ5LWtleS1mb3ItdGhlLXRlc3QtMDE=", "ZWFzdC1zZWNvbmRhcnkta2V5LWZvci10aGUtdGVzdC0w"},
		"west": {"d2VzdC1wcmltYXJ5LWtleS1mb3ItdGhlLXRlc3QtMDE=", "d2VzdC1zZWNvbmRhcnkta2V5LWZvci10aGUtdGVzdC0w"},
	}
	aud := func(ep string) string { return "https://" + ep + ".service.signalr.net/client/?hub=chat" }
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ep, k := r.URL.Query().Get("ep"), r.URL.Query().Get("k")
		key := keys[ep][0]
		if k == "1" {
			key = keys[ep][1]
		}
		tok, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"exp": time.Now().Add(time.Hour).Unix(), "aud": aud(ep)}).SignedString([]byte(key))
		fmt.Fprintf(w, `{"url":%q,"accessToken":%q}`, aud(ep), tok)
	}))
	defer app.Close()

	cfg := filepath.Join(t.TempDir(), "config.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`upstream: %s
providers:
  - name: a
    issuer: %s
    audiences: [api://app]
  - name: b
    issuer: %s
    audiences: [api://b]
    user_claim: sub
`, app.URL, idpA.URL, idpB.URL)), 0o600)
	cs := func(ep string, i int) string {
		return "Endpoint=https://" + ep + ".service.signalr.net;AccessKey=" + keys[ep][i] + ";Version=1.0;"
	}
	env := map[string]string{
		"Azure__SignalR__Endpoints__east:primary":    cs("east", 0),
		"Azure__SignalR__Endpoints__east:secondary":  cs("east", 1),
		"Azure__SignalR__Endpoints__west__primary":   cs("west", 0),
		"Azure__SignalR__Endpoints__west__secondary": cs("west", 1),
	}
	r := startRun(t, env, "--config", cfg)
	waitStatus(t, r.admin+"/readyz", 200)

	callers := map[string]string{"a": idpA.mint(t, "user-of-a"), "b": idpB.mintFor(t, "user-of-b", "api://b")}
	for _, provider := range []string{"a", "b"} {
		for _, ep := range []string{"east", "west"} {
			for k := range 2 {
				code, body := negotiate(t, fmt.Sprintf("%s/api/negotiate?ep=%s&k=%d", r.proxy, ep, k), callers[provider])
				if code != 200 {
					t.Errorf("provider %s, %s key %d: %d %s", provider, ep, k, code, body)
					continue
				}
				var out struct{ AccessToken string }
				json.Unmarshal([]byte(body), &out)
				// The rewritten token must verify with the very key that
				// signed the app's token, and no other.
				tok, err := jwt.Parse(out.AccessToken, func(*jwt.Token) (any, error) { return []byte(keys[ep][k]), nil })
				if err != nil {
					t.Errorf("provider %s, %s key %d: not signed with that key: %v", provider, ep, k, err)
					continue
				}
				if got := tok.Claims.(jwt.MapClaims)["asrs.s.uid"]; got != "user-of-"+provider {
					t.Errorf("asrs.s.uid = %v", got)
				}
			}
		}
	}

	// A token claiming provider b's issuer but signed with a's key is refused.
	forged := jwt.NewWithClaims(jwt.SigningMethodES256, jwt.MapClaims{"iss": idpB.URL, "aud": "api://b", "sub": "mallory", "exp": time.Now().Add(time.Minute).Unix()})
	forged.Header["kid"] = "k1"
	s, _ := forged.SignedString(idpA.Key().Signer)
	if code, _ := negotiate(t, r.proxy+"/api/negotiate?ep=east", s); code != 401 {
		t.Errorf("issuer b signed with a's key: %d, want 401", code)
	}
	if !strings.Contains(r.logs.String(), `"endpoints":["east.service.signalr.net (2 key(s)`) {
		t.Errorf("the start log does not list the endpoints:\n%s", r.logs)
	}
}

// TestWebPubSub runs the sidecar for Azure Web PubSub: the connection string
// comes from the app's WebPubSubConnectionString, the user id goes into sub,
// and the token inside url is replaced by the rewritten one.
func TestWebPubSub(t *testing.T) {
	idp := newTestIDP(t)
	const key = "d2VicHVic3ViLWFjY2Vzcy1rZXktZm9yLXRoZS10ZXN0LTAx"
	const base = "wss://pubsub.webpubsub.azure.com/client/hubs/chat"
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
			"aud": "https://pubsub.webpubsub.azure.com/client/hubs/chat", "exp": time.Now().Add(time.Hour).Unix(),
			"role": []string{"webpubsub.joinLeaveGroup"},
		}).SignedString([]byte(key))
		fmt.Fprintf(w, `{"baseUrl":%q,"url":%q,"accessToken":%q}`, base, base+"?access_token="+tok, tok)
	}))
	defer app.Close()
	r := startRun(t, map[string]string{"WebPubSubConnectionString": "Endpoint=https://pubsub.webpubsub.azure.com;AccessKey=" + key + ";Version=1.0;"},
		"--service", "webpubsub", "--upstream", app.URL, "--issuer", idp.URL, "--audience", "api://app")
	waitStatus(t, r.admin+"/readyz", 200)

	code, body := negotiate(t, r.proxy+"/api/negotiate", idp.mint(t, "pubsub-user"))
	if code != 200 {
		t.Fatalf("negotiate: %d %s", code, body)
	}
	var out struct{ BaseURL, URL, AccessToken string }
	if err := json.Unmarshal([]byte(body), &out); err != nil {
		t.Fatal(err)
	}
	tok, err := jwt.Parse(out.AccessToken, func(*jwt.Token) (any, error) { return []byte(key), nil })
	if err != nil {
		t.Fatalf("rewritten token: %v", err)
	}
	c := tok.Claims.(jwt.MapClaims)
	if c["sub"] != "pubsub-user" || c["asrs.s.uid"] != nil {
		t.Errorf("claims %v: want sub = pubsub-user and no SignalR claim", c)
	}
	if out.URL != base+"?access_token="+out.AccessToken || out.BaseURL != base {
		t.Errorf("url %q does not carry the rewritten token", out.URL)
	}
}

// TestTokenLengthLimitPerService runs the sidecar for Web PubSub with a
// token carrying many groups: longer than SignalR's 4096 characters, it
// passes by default, and --max-token-length (here from the environment)
// sets a lower limit.
func TestTokenLengthLimitPerService(t *testing.T) {
	idp := newTestIDP(t)
	const key = "d2VicHVic3ViLWFjY2Vzcy1rZXktZm9yLXRoZS10ZXN0LTAy"
	const base = "wss://pubsub.webpubsub.azure.com/client/hubs/chat"
	var groups []string
	for i := range 150 {
		groups = append(groups, fmt.Sprintf("webpubsub.joinLeaveGroup.room-%03d", i))
	}
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
			"aud": "https://pubsub.webpubsub.azure.com/client/hubs/chat", "exp": time.Now().Add(time.Hour).Unix(),
			"role": groups,
		}).SignedString([]byte(key))
		fmt.Fprintf(w, `{"token":%q,"baseUrl":%q,"url":%q}`, tok, base, base+"?access_token="+tok)
	}))
	defer app.Close()
	for _, tt := range []struct {
		limit string
		want  int
	}{{"", 200}, {"5000", 502}} {
		t.Run("limit "+tt.limit, func(t *testing.T) {
			env := map[string]string{
				"WebPubSubConnectionString":          "Endpoint=https://pubsub.webpubsub.azure.com;AccessKey=" + key + ";Version=1.0;",
				"NEGOTIATE_SIDECAR_MAX_TOKEN_LENGTH": tt.limit,
			}
			r := startRun(t, env, "--service", "webpubsub", "--upstream", app.URL, "--issuer", idp.URL, "--audience", "api://app")
			waitStatus(t, r.admin+"/readyz", 200)
			code, body := negotiate(t, r.proxy+"/api/negotiate", idp.mint(t, "pubsub-user"))
			if code != tt.want {
				t.Fatalf("negotiate: %d %s, want %d", code, body, tt.want)
			}
			if code != 200 {
				return
			}
			var out struct{ Token string }
			if err := json.Unmarshal([]byte(body), &out); err != nil {
				t.Fatal(err)
			}
			if len(out.Token) <= 4096 {
				t.Fatalf("the token has %d characters; the test needs one over SignalR's limit", len(out.Token))
			}
		})
	}
}
