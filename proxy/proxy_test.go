package proxy

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/ecdsa"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/negotiate-sidecar/negotiate-sidecar/auth"
	"github.com/negotiate-sidecar/negotiate-sidecar/auth/authtest"
	"github.com/negotiate-sidecar/negotiate-sidecar/rewrite"
)

const (
	accessKey = "cHJveHktdGVzdC1hY2Nlc3Mta2V5LXRoYXQtc2lnbnMtc2lnbmFsci10b2tlbnM="
	issuer    = "https://idp.test/"
	audience  = "api://negotiate"
	hubAud    = "https://x.service.signalr.net/client/?hub=chat"
)

// serviceToken signs a token the way the SignalR binding does.
func serviceToken(claims, key string) string {
	enc := base64.RawURLEncoding.EncodeToString
	unsigned := enc([]byte(`{"alg":"HS256","typ":"JWT","kid":"-1895682698"}`)) + "." + enc([]byte(claims))
	mac := hmac.New(sha256.New, []byte(key))
	mac.Write([]byte(unsigned))
	return unsigned + "." + enc(mac.Sum(nil))
}

func negotiateBody(key string) string {
	now := time.Now().Unix()
	tok := serviceToken(fmt.Sprintf(`{"nbf":%d,"exp":%d,"iat":%d,"aud":%q}`, now, now+3600, now, hubAud), key)
	return `{"url":"https://x.service.signalr.net/client/?hub=chat","accessToken":"` + tok + `"}`
}

// upstream is a stand-in for the Functions app that records what it saw.
type upstream struct {
	*httptest.Server
	mu      sync.Mutex
	seen    []*http.Request
	handler http.HandlerFunc
}

func (u *upstream) requests() []*http.Request {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]*http.Request(nil), u.seen...)
}

func (u *upstream) last(t *testing.T) *http.Request {
	t.Helper()
	r := u.requests()
	if len(r) == 0 {
		t.Fatal("the upstream saw no request")
	}
	return r[len(r)-1]
}

type harness struct {
	front    *httptest.Server
	up       *upstream
	key      *ecdsa.PrivateKey
	metrics  *Metrics
	logs     *bytes.Buffer
	logMu    *sync.Mutex
	upstream *url.URL
}

type lockedBuffer struct {
	mu  *sync.Mutex
	buf *bytes.Buffer
}

func (l lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

// newHarness puts the proxy between an httptest frontend and an httptest
// upstream, with a real authenticator and rewriter.
func newHarness(t testing.TB, h http.HandlerFunc, mutate func(*Config)) *harness {
	t.Helper()
	signing := authtest.NewECKey("k1")
	key := signing.Signer.(*ecdsa.PrivateKey)
	ks, err := auth.NewKeySet(auth.KeySetConfig{Static: authtest.JWKS(signing), Client: http.DefaultClient})
	if err != nil {
		t.Fatal(err)
	}
	// With a token cache, as the sidecar runs by default.
	authn, err := auth.New(auth.Config{Providers: []auth.Provider{{Name: "test", Issuer: issuer, Audiences: []string{audience}, Leeway: 30 * time.Second, Keys: ks.Keyfunc, Loaded: ks.Loaded, Generation: ks.Generation}}, Cache: auth.NewCache(100)})
	if err != nil {
		t.Fatal(err)
	}
	rw, err := rewrite.New(rewrite.SignalR(), []rewrite.Key{{Hosts: []string{"x.service.signalr.net"}, Secret: []byte(accessKey)}}, rewrite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	up := &upstream{handler: h}
	up.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		up.mu.Lock()
		up.seen = append(up.seen, r.Clone(r.Context()))
		up.mu.Unlock()
		up.handler(w, r)
	}))
	t.Cleanup(up.Close)
	u, _ := url.Parse(up.URL)

	hs := &harness{up: up, key: key, metrics: NewMetrics(prometheus.NewRegistry()), logs: &bytes.Buffer{}, logMu: &sync.Mutex{}, upstream: u}
	core := zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()), zapcore.AddSync(lockedBuffer{hs.logMu, hs.logs}), zap.DebugLevel)
	cfg := Config{Upstream: u, Authenticator: authn, Rewriter: rw, Logger: zap.New(core), Metrics: hs.metrics}
	if mutate != nil {
		mutate(&cfg)
	}
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	hs.front = httptest.NewServer(p)
	t.Cleanup(hs.front.Close)
	return hs
}

func (h *harness) logText() string {
	h.logMu.Lock()
	defer h.logMu.Unlock()
	return h.logs.String()
}

func (h *harness) mint(t testing.TB, claims jwt.MapClaims) string {
	t.Helper()
	c := jwt.MapClaims{"iss": issuer, "aud": audience, "sub": "alice", "exp": time.Now().Add(time.Minute).Unix()}
	for k, v := range claims {
		c[k] = v
	}
	tok := jwt.NewWithClaims(jwt.SigningMethodES256, c)
	tok.Header["kid"] = "k1"
	s, err := tok.SignedString(h.key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func (h *harness) do(t *testing.T, method, path string, header http.Header) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, h.front.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := h.front.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

func bearer(tok string) http.Header { return http.Header{"Authorization": {"Bearer " + tok}} }

func claimsOf(t *testing.T, body string) map[string]any {
	t.Helper()
	var b struct {
		AccessToken string `json:"accessToken"`
	}
	if err := json.Unmarshal([]byte(body), &b); err != nil {
		t.Fatalf("body %q: %v", body, err)
	}
	tok, err := jwt.Parse(b.AccessToken, func(*jwt.Token) (any, error) { return []byte(accessKey), nil }, jwt.WithValidMethods([]string{"HS256"}), jwt.WithAudience(hubAud))
	if err != nil {
		t.Fatalf("the returned token does not verify with the access key: %v", err)
	}
	return tok.Claims.(jwt.MapClaims)
}

func TestNegotiateIsRewrittenForTheVerifiedCaller(t *testing.T) {
	h := newHarness(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain;charset=UTF-8")
		w.Header().Set("ETag", `"abc"`)
		io.WriteString(w, negotiateBody(accessKey))
	}, nil)
	tok := h.mint(t, jwt.MapClaims{"email": "alice@contoso.com", "roles": []string{"a", "b"}})
	hdr := bearer(tok)
	hdr.Set("X-Forwarded-For", "203.0.113.7")
	resp, body := h.do(t, "POST", "/api/negotiate?negotiateVersion=1", hdr)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	if got := claimsOf(t, body)["asrs.s.uid"]; got != "alice" {
		t.Errorf("asrs.s.uid = %v, want alice", got)
	}
	if resp.ContentLength != int64(len(body)) {
		t.Errorf("Content-Length %d, body %d bytes", resp.ContentLength, len(body))
	}
	if resp.Header.Get("ETag") != "" || resp.Header.Get("Cache-Control") != "no-store" {
		t.Errorf("ETag %q, Cache-Control %q; want none and no-store", resp.Header.Get("ETag"), resp.Header.Get("Cache-Control"))
	}

	r := h.up.last(t)
	frontHost := strings.TrimPrefix(h.front.URL, "http://")
	checks := map[string][2]string{
		"X-MS-CLIENT-PRINCIPAL-ID":   {r.Header.Get("X-MS-CLIENT-PRINCIPAL-ID"), "alice"},
		"X-MS-CLIENT-PRINCIPAL-NAME": {r.Header.Get("X-MS-CLIENT-PRINCIPAL-NAME"), "alice@contoso.com"},
		"X-MS-CLIENT-PRINCIPAL-IDP":  {r.Header.Get("X-MS-CLIENT-PRINCIPAL-IDP"), issuer},
		"Authorization":              {r.Header.Get("Authorization"), "Bearer " + tok},
		"Host":                       {r.Host, frontHost},
		"X-Forwarded-Host":           {r.Header.Get("X-Forwarded-Host"), frontHost},
		"X-Forwarded-Proto":          {r.Header.Get("X-Forwarded-Proto"), "http"},
		"X-Forwarded-For":            {r.Header.Get("X-Forwarded-For"), "203.0.113.7, 127.0.0.1"},
		"Accept-Encoding":            {r.Header.Get("Accept-Encoding"), "identity"},
		"path":                       {r.URL.RequestURI(), "/api/negotiate?negotiateVersion=1"},
	}
	for name, c := range checks {
		if c[0] != c[1] {
			t.Errorf("upstream saw %s = %q, want %q", name, c[0], c[1])
		}
	}
	raw, err := base64.StdEncoding.DecodeString(r.Header.Get("X-MS-CLIENT-PRINCIPAL"))
	if err != nil {
		t.Fatalf("X-MS-CLIENT-PRINCIPAL: %v", err)
	}
	var principal struct {
		AuthTyp string `json:"auth_typ"`
		Claims  []struct{ Typ, Val string }
	}
	if err := json.Unmarshal(raw, &principal); err != nil {
		t.Fatalf("X-MS-CLIENT-PRINCIPAL: %v", err)
	}
	got := map[string][]string{}
	for _, c := range principal.Claims {
		got[c.Typ] = append(got[c.Typ], c.Val)
	}
	if strings.Join(got["roles"], ",") != "a,b" || strings.Join(got["sub"], ",") != "alice" || principal.AuthTyp != issuer {
		t.Errorf("X-MS-CLIENT-PRINCIPAL = %s", raw)
	}

	if got := testutil.ToFloat64(h.metric(OutcomeRewritten)); got != 1 {
		t.Errorf("rewritten counter = %v, want 1", got)
	}
	logs := h.logText()
	if !strings.Contains(logs, `"outcome":"rewritten"`) {
		t.Errorf("no negotiate log line: %s", logs)
	}
	for _, secret := range []string{tok, accessKey, strings.Split(tok, ".")[2]} {
		if strings.Contains(logs, secret) {
			t.Fatalf("the logs contain a secret")
		}
	}
}

func (h *harness) metric(outcome string) prometheus.Collector {
	return h.metrics.negotiates.WithLabelValues(outcome)
}

func TestNegotiateRouteSpellingsAllRequireAuthentication(t *testing.T) {
	h := newHarness(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, negotiateBody(accessKey)) }, nil)
	for _, p := range []string{
		"/api/negotiate", "/API/Negotiate", "/api/negotiate/", "/api/%6Eegotiate", "/api/x/../negotiate",
		"/api/./negotiate", "//api//negotiate", "/api/chat/negotiate", "/negotiate", `/api\negotiate`, "/api/NEGOTIATE?negotiateVersion=1",
	} {
		t.Run(p, func(t *testing.T) {
			req, err := http.NewRequest("POST", h.front.URL, nil)
			if err != nil {
				t.Fatal(err)
			}
			// Send the path exactly as written, without client-side cleaning.
			req.URL.Opaque = strings.SplitN(p, "?", 2)[0]
			resp, err := h.front.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusUnauthorized {
				t.Errorf("status %d, want 401", resp.StatusCode)
			}
		})
	}
	if n := len(h.up.requests()); n != 0 {
		t.Errorf("the upstream saw %d unauthenticated negotiate requests", n)
	}
}

func TestMatcherPatterns(t *testing.T) {
	m, err := NewMatcher([]string{"/api/*/negotiate", "/hub/Negotiate"})
	if err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]bool{
		"/api/chat/negotiate": true, "/API/Chat/Negotiate/": true, "/hub/negotiate": true, "/api/negotiate": false, "/api/a/b/negotiate": false, "/other": false,
	} {
		if got := m.Match(p); got != want {
			t.Errorf("Match(%q) = %v, want %v", p, got, want)
		}
	}
	for _, bad := range []string{"api/negotiate", "/api/[/negotiate"} {
		if _, err := NewMatcher([]string{bad}); err == nil {
			t.Errorf("NewMatcher(%q) accepted a bad pattern", bad)
		}
	}
}

func TestRefusals(t *testing.T) {
	h := newHarness(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, negotiateBody(accessKey)) }, nil)
	tests := []struct {
		name      string
		header    http.Header
		challenge string
	}{
		{"no token", nil, "Bearer"},
		{"expired", bearer(h.mint(t, jwt.MapClaims{"exp": time.Now().Add(-time.Hour).Unix()})), `Bearer error="invalid_token", error_description="the token has expired"`},
		{"wrong audience", bearer(h.mint(t, jwt.MapClaims{"aud": "api://other"})), `Bearer error="invalid_token", error_description="the token is not valid"`},
		{"garbage", http.Header{"Authorization": {"Bearer not-a-jwt"}}, `Bearer error="invalid_token", error_description="the token is not valid"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := h.do(t, "POST", "/api/negotiate", tt.header)
			if resp.StatusCode != 401 {
				t.Fatalf("status %d, want 401", resp.StatusCode)
			}
			if got := resp.Header.Get("WWW-Authenticate"); got != tt.challenge {
				t.Errorf("WWW-Authenticate = %q, want %q", got, tt.challenge)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/problem+json" {
				t.Errorf("Content-Type = %q", ct)
			}
			var p struct {
				Status int    `json:"status"`
				Title  string `json:"title"`
			}
			if err := json.Unmarshal([]byte(body), &p); err != nil || p.Status != 401 {
				t.Errorf("body %q is not a 401 problem document", body)
			}
		})
	}
	if n := len(h.up.requests()); n != 0 {
		t.Errorf("the upstream saw %d refused requests", n)
	}
}

func TestPreflightIsForwardedWithoutAuthentication(t *testing.T) {
	h := newHarness(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Access-Control-Allow-Origin", "*")
		w.WriteHeader(204)
	}, nil)
	resp, _ := h.do(t, "OPTIONS", "/api/negotiate", http.Header{"Origin": {"https://app.example"}, "Access-Control-Request-Method": {"POST"}})
	if resp.StatusCode != 204 || resp.Header.Get("Access-Control-Allow-Origin") != "*" {
		t.Fatalf("preflight: status %d, headers %v", resp.StatusCode, resp.Header)
	}
}

func TestUpstreamProblemsNeverLeakAToken(t *testing.T) {
	big := `{"accessToken":"` + strings.Repeat("a", DefaultMaxBodyBytes) + `"}`
	tests := []struct {
		name   string
		status int
		body   string
		gzip   bool
		want   int
		reason string
	}{
		{"garbage", 200, "<html>oops</html>", false, 502, "not_json"},
		{"no token", 200, `{"url":"x"}`, false, 502, "no_token"},
		{"signed with another key", 200, negotiateBody("c29tZS1vdGhlci1rZXk="), false, 502, "signature"},
		{"huge body", 200, big, false, 502, ""},
		{"gzip body", 200, negotiateBody(accessKey), true, 200, ""},
		{"app error passes through", 500, `{"error":"boom"}`, false, 500, ""},
		{"app 401 passes through", 401, `unauthorized`, false, 401, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, func(w http.ResponseWriter, r *http.Request) {
				if tt.gzip {
					w.Header().Set("Content-Encoding", "gzip")
					w.WriteHeader(tt.status)
					zw := gzip.NewWriter(w)
					io.WriteString(zw, tt.body)
					zw.Close()
					return
				}
				w.WriteHeader(tt.status)
				io.WriteString(w, tt.body)
			}, nil)
			resp, body := h.do(t, "POST", "/api/negotiate", bearer(h.mint(t, nil)))
			if resp.StatusCode != tt.want {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tt.want, body)
			}
			switch tt.want {
			case 502:
				if strings.Contains(body, "accessToken") || resp.Header.Get("Content-Type") != "application/problem+json" {
					t.Errorf("502 body %q", body)
				}
				if tt.reason != "" && !strings.Contains(h.logText(), `"reason":"`+tt.reason+`"`) {
					t.Errorf("log lacks reason %s: %s", tt.reason, h.logText())
				}
				if !strings.Contains(h.logText(), `"level":"warn"`) {
					t.Errorf("no warning logged")
				}
			case 200:
				if claimsOf(t, body)["asrs.s.uid"] != "alice" {
					t.Errorf("not rewritten: %s", body)
				}
			default:
				if body != tt.body {
					t.Errorf("body %q, want it unchanged %q", body, tt.body)
				}
			}
		})
	}
}

func TestUpstreamUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead, _ := url.Parse("http://" + ln.Addr().String())
	ln.Close()
	h := newHarness(t, nil, func(c *Config) { c.Upstream = dead })
	for _, p := range []string{"/api/negotiate", "/api/other"} {
		resp, body := h.do(t, "POST", p, bearer(h.mint(t, nil)))
		if resp.StatusCode != 502 || resp.Header.Get("Content-Type") != "application/problem+json" {
			t.Errorf("%s: status %d, body %q; want 502 problem", p, resp.StatusCode, body)
		}
	}
	if got := testutil.ToFloat64(h.metric(OutcomeUpstreamUnreachable)); got != 1 {
		t.Errorf("upstream_unreachable counter = %v, want 1", got)
	}
}

func TestSpoofedIdentityHeadersAreStripped(t *testing.T) {
	h := newHarness(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, negotiateBody(accessKey)) }, nil)
	spoof := http.Header{
		"X-Ms-Client-Principal-Id":    {"mallory"},
		"x_ms_client_principal_id":    {"mallory"},
		"X_MS_CLIENT_PRINCIPAL":       {"bWFsbG9yeQ=="},
		"X-MS-CLIENT-PRINCIPAL-NAME":  {"mallory"},
		"x-ms-client-principal-idp":   {"evil"},
		"X-MS-TOKEN-AAD-ID-TOKEN":     {"evil.forged.token"},
		"x_ms_token_aad_access_token": {"evil.forged.token"},
	}
	for _, tc := range []struct {
		name, path string
		token      bool
		wantID     string
	}{
		{"negotiate", "/api/negotiate", true, "alice"},
		{"other route with token", "/api/messages", true, "alice"},
		{"other route without token", "/api/messages", false, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hdr := spoof.Clone()
			if tc.token {
				hdr.Set("Authorization", "Bearer "+h.mint(t, nil))
			}
			resp, _ := h.do(t, "POST", tc.path, hdr)
			if resp.StatusCode != 200 {
				t.Fatalf("status %d", resp.StatusCode)
			}
			r := h.up.last(t)
			for name, v := range r.Header {
				if isIdentityHeader(name) && name != "X-Ms-Client-Principal-Id" && name != "X-Ms-Client-Principal-Name" && name != "X-Ms-Client-Principal-Idp" && name != "X-Ms-Client-Principal" {
					t.Errorf("spoofed header %s: %v reached the app", name, v)
				}
				if strings.Contains(strings.Join(v, ","), "mallory") || strings.Contains(strings.Join(v, ","), "evil") || strings.Contains(strings.Join(v, ","), "bWFsbG9yeQ") {
					t.Errorf("spoofed value in %s: %v", name, v)
				}
			}
			if got := r.Header.Get("X-MS-CLIENT-PRINCIPAL-ID"); got != tc.wantID {
				t.Errorf("X-MS-CLIENT-PRINCIPAL-ID = %q, want %q", got, tc.wantID)
			}
		})
	}
}

func TestOtherRoutesPassThrough(t *testing.T) {
	large := strings.Repeat("0123456789abcdef", 1<<16) // 1 MiB, beyond the negotiate bound
	h := newHarness(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/api/large":
			io.WriteString(w, large)
		case "/api/stream":
			w.Header().Set("Content-Type", "text/event-stream")
			for i := range 3 {
				fmt.Fprintf(w, "data: %d\n\n", i)
				w.(http.Flusher).Flush()
			}
		case "/api/echo":
			b, _ := io.ReadAll(r.Body)
			w.WriteHeader(201)
			w.Write(b)
		}
	}, nil)
	if resp, body := h.do(t, "GET", "/api/large", nil); resp.StatusCode != 200 || body != large {
		t.Errorf("large body: status %d, %d bytes", resp.StatusCode, len(body))
	}
	if resp, body := h.do(t, "GET", "/api/stream", bearer("not-even-a-jwt")); resp.StatusCode != 200 || body != "data: 0\n\ndata: 1\n\ndata: 2\n\n" {
		t.Errorf("stream: status %d, %q", resp.StatusCode, body)
	}
	resp, err := h.front.Client().Post(h.front.URL+"/api/echo", "text/plain", strings.NewReader("hello"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 201 || string(b) != "hello" {
		t.Errorf("echo: %d %q", resp.StatusCode, b)
	}
}

func TestWebSocketUpgradePassesThrough(t *testing.T) {
	h := newHarness(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "websocket" {
			http.Error(w, "want upgrade", 400)
			return
		}
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
		brw.Flush()
		line, _ := brw.ReadString('\n')
		brw.WriteString("echo:" + line)
		brw.Flush()
	}, nil)
	conn, err := net.Dial("tcp", strings.TrimPrefix(h.front.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(conn, "GET /api/ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 101 {
		t.Fatalf("status %d, want 101", resp.StatusCode)
	}
	fmt.Fprintf(conn, "ping\n")
	line, err := br.ReadString('\n')
	if err != nil || line != "echo:ping\n" {
		t.Fatalf("after upgrade read %q, %v", line, err)
	}
}

func TestTokenOptionsApplyToTheCaller(t *testing.T) {
	withOptions := func(c *Config) {
		rw, err := rewrite.New(rewrite.SignalR(), []rewrite.Key{{Hosts: []string{"x.service.signalr.net"}, Secret: []byte(accessKey)}},
			rewrite.Options{ForwardClaims: []string{"email"}, BindToCallerExpiry: true, CloseOnCallerExpiry: true})
		if err != nil {
			t.Fatal(err)
		}
		c.Rewriter = rw
	}
	h := newHarness(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, negotiateBody(accessKey)) }, withOptions)

	exp := time.Now().Add(10 * time.Minute).Unix()
	tok := h.mint(t, jwt.MapClaims{"email": "alice@contoso.com", "exp": exp})
	// The second time, the token is served from the cache.
	for i := range 2 {
		resp, body := h.do(t, "POST", "/api/negotiate", bearer(tok))
		if resp.StatusCode != 200 {
			t.Fatalf("request %d: status %d: %s", i, resp.StatusCode, body)
		}
		c := claimsOf(t, body)
		if c["email"] != "alice@contoso.com" || c["asrs.s.coae"] != "true" || c["asrs.s.aeo"] != fmt.Sprint(exp) {
			t.Errorf("request %d: claims %v", i, c)
		}
		if got, _ := jwt.MapClaims(c).GetExpirationTime(); got.Unix() != exp {
			t.Errorf("request %d: exp = %v, want the caller's %d", i, got, exp)
		}
	}

	// A token that expired a moment ago passes the leeway but cannot give
	// the connection a future: the caller is told to get a new one.
	resp, body := h.do(t, "POST", "/api/negotiate", bearer(h.mint(t, jwt.MapClaims{"exp": time.Now().Add(-5 * time.Second).Unix()})))
	if resp.StatusCode != 401 || !strings.Contains(resp.Header.Get("WWW-Authenticate"), "expired") {
		t.Fatalf("expired caller: %d %q %s", resp.StatusCode, resp.Header.Get("WWW-Authenticate"), body)
	}
}

func TestRequestIDAndTraceContext(t *testing.T) {
	h := newHarness(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Request-ID", "from-the-app")
		io.WriteString(w, negotiateBody(accessKey))
	}, nil)
	const traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	tests := []struct {
		name   string
		sent   []string
		keep   bool
		header http.Header
	}{
		{"kept when well formed", []string{"req-123"}, true, nil},
		{"generated when absent", nil, false, nil},
		{"replaced when it could break a log line", []string{"a b\tc"}, false, nil},
		{"replaced when repeated", []string{"one", "two"}, false, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hdr := bearer(h.mint(t, nil))
			hdr["X-Request-Id"] = tt.sent
			hdr.Set("Traceparent", traceparent)
			resp, _ := h.do(t, "POST", "/api/negotiate", hdr)
			got := resp.Header.Values("X-Request-ID")
			if len(got) != 1 {
				t.Fatalf("response X-Request-ID = %q, want exactly one", got)
			}
			if tt.keep && got[0] != tt.sent[0] {
				t.Errorf("X-Request-ID = %q, want the caller's %q", got[0], tt.sent[0])
			}
			if !tt.keep && (len(got[0]) != 32 || slices.Contains(tt.sent, got[0])) {
				t.Errorf("X-Request-ID = %q, want a new 32-character id", got[0])
			}
			r := h.up.last(t)
			if r.Header.Get("X-Request-ID") != got[0] {
				t.Errorf("the app saw request id %q, the caller %q", r.Header.Get("X-Request-ID"), got[0])
			}
			if r.Header.Get("Traceparent") != traceparent {
				t.Errorf("traceparent = %q, want it untouched", r.Header.Get("Traceparent"))
			}
			if !strings.Contains(h.logText(), `"request_id":"`+got[0]+`"`) {
				t.Errorf("the negotiate log line lacks the request id")
			}
		})
	}
}

func TestNegotiateTimeout(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	h := newHarness(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}, func(c *Config) { c.NegotiateTimeout = 50 * time.Millisecond })
	resp, body := h.do(t, "POST", "/api/negotiate", bearer(h.mint(t, nil)))
	if resp.StatusCode != http.StatusGatewayTimeout || resp.Header.Get("Content-Type") != "application/problem+json" {
		t.Fatalf("status %d %q, want 504 problem", resp.StatusCode, body)
	}
	if got := testutil.ToFloat64(h.metric(OutcomeUpstreamTimeout)); got != 1 {
		t.Errorf("upstream_timeout counter = %v, want 1", got)
	}
}

// A browser client on another origin must be able to read our refusals, or it
// cannot tell an expired token from a network failure.
func TestRefusalsAreReadableCrossOrigin(t *testing.T) {
	h := newHarness(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, negotiateBody(accessKey)) }, nil)
	hdr := http.Header{"Origin": {"https://app.example"}}
	resp, _ := h.do(t, "POST", "/api/negotiate", hdr)
	if resp.StatusCode != 401 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	for name, want := range map[string]string{
		"Access-Control-Allow-Origin":      "https://app.example",
		"Access-Control-Allow-Credentials": "true",
		"Access-Control-Expose-Headers":    "WWW-Authenticate, Retry-After, X-Request-ID",
		"Vary":                             "Origin",
	} {
		if got := resp.Header.Get(name); got != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
	// Without an Origin, no CORS headers.
	resp, _ = h.do(t, "POST", "/api/negotiate", nil)
	if got := resp.Header.Get("Access-Control-Allow-Origin"); got != "" {
		t.Errorf("Access-Control-Allow-Origin = %q without an Origin", got)
	}
}
