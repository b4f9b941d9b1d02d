package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"go.uber.org/zap"

	"github.com/negotiate-sidecar/negotiate-sidecar/auth/authtest"
)

// demoAccessKey stands for the AccessKey of an Azure SignalR connection
// string. It exists only inside the demo process.
const demoAccessKey = "ZGVtby1hY2Nlc3Mta2V5LW9ubHktZm9yLXRoZS1kZW1vLTEyMzQ1Njc4OTA="

// runDemo starts, on 127.0.0.1, an identity provider, a stand-in for the
// Functions negotiate endpoint and the sidecar in front of it; performs one
// negotiate as a signed-in user; and prints the upstream token's claims beside
// the rewritten one's. Nothing leaves the machine.
func runDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("negotiate-sidecar demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	user := fs.String("user", "user-42", "the `id` in the demo user's sub claim")
	verbose := fs.Bool("v", false, "show the sidecar's logs")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	lvl := "warn"
	if *verbose {
		lvl = "info"
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	// An identity provider that publishes one RSA key, found by discovery.
	idp := authtest.NewIdP(authtest.NewRSAKey("demo-key"))
	defer idp.Close()
	idpURL := idp.Issuer()

	fn := &demoFunctions{}
	fnSrv := httptest.NewServer(fn)
	defer fnSrv.Close()
	fnURL := fnSrv.URL

	// The demo's configuration is read as any other, from flags alone:
	// nothing routes to the demo, so it stops at once.
	cfg, err := loadSettings([]string{
		"--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--upstream", fnURL,
		"--issuer", idpURL, "--audience", "api://demo", "--shutdown-delay", "0s", "--shutdown-timeout", "5s",
		"--connection-string", "Endpoint=https://demo.service.signalr.net;AccessKey=" + demoAccessKey + ";Version=1.0;",
	}, environment{}, false)
	if err != nil {
		return err
	}
	level := zap.NewAtomicLevelAt(levelOf(lvl))
	s, err := start(ctx, cfg, environment{}, nil, newLogger(level, "console", stderr), level)
	if err != nil {
		return err
	}
	defer func() { cancel(); _ = s.wait() }()

	client := &http.Client{Timeout: 10 * time.Second}
	if err := waitReady(ctx, client, "http://"+s.adminAddr.String()+"/readyz"); err != nil {
		return err
	}
	userJWT := idp.Token(jwt.MapClaims{"aud": "api://demo", "sub": *user, "email": "demo@example.com", "name": "Demo User", "exp": time.Now().Add(10 * time.Minute).Unix()})

	negotiateURL := "http://" + s.proxyAddr.String() + "/api/negotiate?negotiateVersion=1"
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, negotiateURL, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+userJWT)
	// A forged identity header, to show that the app never sees it.
	req.Header.Set("X-MS-CLIENT-PRINCIPAL-ID", "mallory")
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("demo negotiate: %w", err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return fmt.Errorf("demo negotiate: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("demo negotiate: status %s: %s", resp.Status, body)
	}
	var out struct {
		URL         string `json:"url"`
		AccessToken string `json:"accessToken"`
	}
	if err := json.Unmarshal(body, &out); err != nil {
		return fmt.Errorf("demo negotiate: %w", err)
	}

	fmt.Fprintf(stdout, "identity provider  %s (RS256 key, found by OIDC discovery)\n", idpURL)
	fmt.Fprintf(stdout, "functions stand-in %s\n", fnURL)
	fmt.Fprintf(stdout, "sidecar            http://%s  (admin http://%s)\n\n", s.proxyAddr, s.adminAddr)
	fmt.Fprintf(stdout, "POST %s\n  Authorization: Bearer <JWT for sub=%q>\n  X-MS-CLIENT-PRINCIPAL-ID: mallory   (forged, stripped)\n\n", negotiateURL, *user)
	fn.mu.Lock()
	sawID, upstreamToken := fn.sawPrincipalID, fn.lastToken
	fn.mu.Unlock()
	fmt.Fprintf(stdout, "the app saw X-MS-CLIENT-PRINCIPAL-ID: %q\n\n", sawID)
	if err := printClaimsSideBySide(stdout, upstreamToken, out.AccessToken); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "\nThe client connects to %s with the rewritten token;\nAzure SignalR Service now knows it as user %q.\n", out.URL, *user)
	return nil
}

func waitReady(ctx context.Context, client *http.Client, url string) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return errors.New("the sidecar did not become ready within 10s")
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// demoFunctions stands in for a Node.js Functions app whose negotiate
// function returns the signalRConnectionInfo binding unchanged: a token with
// no user id, as text/plain, signed with the AccessKey.
type demoFunctions struct {
	mu             sync.Mutex
	lastToken      string
	sawPrincipalID string
}

func (f *demoFunctions) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !strings.HasSuffix(strings.ToLower(r.URL.Path), "/negotiate") {
		http.NotFound(w, r)
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sawPrincipalID = r.Header.Get("X-MS-CLIENT-PRINCIPAL-ID")
	now := time.Now().Unix()
	// Built by hand to keep the claim order the Azure SDK uses.
	payload := fmt.Sprintf(`{"nbf":%d,"exp":%d,"iat":%d,"aud":"https://demo.service.signalr.net/client/?hub=chat"}`, now, now+3600, now)
	header := `{"alg":"HS256","typ":"JWT","kid":"-1895682698"}`
	unsigned := base64.RawURLEncoding.EncodeToString([]byte(header)) + "." + base64.RawURLEncoding.EncodeToString([]byte(payload))
	sig, _ := jwt.SigningMethodHS256.Sign(unsigned, []byte(demoAccessKey))
	f.lastToken = unsigned + "." + base64.RawURLEncoding.EncodeToString(sig)
	w.Header().Set("Content-Type", "text/plain;charset=UTF-8")
	fmt.Fprintf(w, `{"url":"https://demo.service.signalr.net/client/?hub=chat","accessToken":%q}`, f.lastToken)
}

// printClaimsSideBySide prints the claims of two tokens in two columns.
func printClaimsSideBySide(w io.Writer, before, after string) error {
	b, err := claimLines(before)
	if err != nil {
		return fmt.Errorf("upstream token: %w", err)
	}
	a, err := claimLines(after)
	if err != nil {
		return fmt.Errorf("rewritten token: %w", err)
	}
	width := len("upstream token (from the app)")
	for _, l := range b {
		width = max(width, len(l))
	}
	fmt.Fprintf(w, "%-*s   %s\n", width, "upstream token (from the app)", "rewritten token (to the client)")
	fmt.Fprintf(w, "%s   %s\n", strings.Repeat("-", width), strings.Repeat("-", width))
	for i := range max(len(a), len(b)) {
		var l, r string
		if i < len(b) {
			l = b[i]
		}
		if i < len(a) {
			r = a[i]
		}
		fmt.Fprintf(w, "%-*s   %s\n", width, l, r)
	}
	return nil
}

// claimLines decodes a token's header and claims, one "name: value" a line,
// in the order they appear in the token.
func claimLines(token string) ([]string, error) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return nil, errors.New("not a JWT")
	}
	var lines []string
	for i, label := range []string{"header", "claims"} {
		raw, err := base64.RawURLEncoding.DecodeString(parts[i])
		if err != nil {
			return nil, err
		}
		dec := json.NewDecoder(strings.NewReader(string(raw)))
		if _, err := dec.Token(); err != nil {
			return nil, err
		}
		lines = append(lines, label+":")
		for dec.More() {
			k, err := dec.Token()
			if err != nil {
				return nil, err
			}
			var v json.RawMessage
			if err := dec.Decode(&v); err != nil {
				return nil, err
			}
			lines = append(lines, fmt.Sprintf("  %s: %s", k, v))
		}
	}
	return lines, nil
}
