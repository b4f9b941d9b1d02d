package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/negotiate-sidecar/negotiate-sidecar/auth/authtest"
	"github.com/negotiate-sidecar/negotiate-sidecar/cmd/internal/cli"
)

// demoAccessKey stands for the AccessKey of an Azure SignalR connection
// string. It exists only inside the demo process.
const demoAccessKey = "ZGVtby1hY2Nlc3Mta2V5LW9ubHktZm9yLXRoZS1kZW1vLTEyMzQ1Njc4OTA="

// demoSettings are the demo's flags.
type demoSettings struct {
	user    string
	verbose bool
}

// demoCommand is the demo's command line.
func demoCommand() *cli.Command[demoSettings] {
	return &cli.Command[demoSettings]{
		Name:  "negotiate-sidecar demo",
		Usage: "Usage: negotiate-sidecar demo [--user ID] [-v]\n\nRuns an identity provider, a stand-in for the Functions negotiate endpoint and the\nsidecar on 127.0.0.1, performs one negotiate as a signed-in user, and prints the\napp's token beside the rewritten one. Nothing leaves the machine.",
		Settings: []cli.Setting[demoSettings]{
			{Flag: "user", Meta: "ID", Default: "user-42", Help: "The id in the demo user's `sub` claim.",
				Value: cli.String(func(d *demoSettings, _ int) *string { return &d.user }, func(v string) error {
					if strings.TrimSpace(v) == "" {
						return errors.New("the demo user needs an id; give one such as --user alice, or leave --user out for user-42")
					}
					return nil
				})},
			{Flag: "v", Help: "Show the sidecar's logs.", Value: cli.Bool(func(d *demoSettings, _ int) *bool { return &d.verbose })},
		},
	}
}

// runDemo starts, on 127.0.0.1, an identity provider, a stand-in for the
// Functions negotiate endpoint and the sidecar in front of it; performs one
// negotiate as a signed-in user; and prints the upstream token's claims beside
// the rewritten one's. Nothing leaves the machine.
func runDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	c := demoCommand()
	d, l, err := c.Load(args, nil)
	if errors.Is(err, cli.ErrHelp) {
		c.Help(stdout)
		return nil
	}
	if err == nil {
		err = errors.Join(c.Validate(&d, l)...)
	}
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	// An identity provider that publishes one RSA key, found by discovery.
	idp := authtest.NewIdP(authtest.NewRSAKey("demo-key"))
	defer idp.Close()
	fn := &demoFunctions{}
	fnSrv := httptest.NewServer(fn)
	defer fnSrv.Close()

	s, err := startDemoSidecar(ctx, idp.Issuer(), fnSrv.URL, d.verbose, stderr)
	if s != nil {
		defer func() { cancel(); _ = s.wait() }()
	}
	if err != nil {
		return err
	}

	userJWT := idp.Token(jwt.MapClaims{"aud": "api://demo", "sub": d.user, "email": "demo@example.com", "name": "Demo User", "exp": time.Now().Add(10 * time.Minute).Unix()})
	negotiateURL := "http://" + s.proxyAddr.String() + "/api/negotiate?negotiateVersion=1"
	out, err := demoNegotiate(ctx, negotiateURL, userJWT)
	if err != nil {
		return fmt.Errorf("demo negotiate: %w", err)
	}

	fmt.Fprintf(stdout, "identity provider  %s (RS256 key, found by OIDC discovery)\n", idp.Issuer())
	fmt.Fprintf(stdout, "functions stand-in %s\n", fnSrv.URL)
	fmt.Fprintf(stdout, "sidecar            http://%s  (admin http://%s)\n\n", s.proxyAddr, s.adminAddr)
	fmt.Fprintf(stdout, "POST %s\n  Authorization: Bearer <JWT for sub=%q>\n  X-MS-CLIENT-PRINCIPAL-ID: mallory   (forged, stripped)\n\n", negotiateURL, d.user)
	fn.mu.Lock()
	sawID, upstreamToken := fn.sawPrincipalID, fn.lastToken
	fn.mu.Unlock()
	fmt.Fprintf(stdout, "the app saw X-MS-CLIENT-PRINCIPAL-ID: %q\n\n", sawID)
	if err := printClaimsSideBySide(stdout, upstreamToken, out.AccessToken); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "\nThe client connects to %s with the rewritten token;\nAzure SignalR Service now knows it as user %q.\n", out.URL, d.user)
	return nil
}

// startDemoSidecar starts the sidecar in front of the app at upstream, for
// callers of the identity provider at issuer, and waits until it is ready.
// Once started, the caller stops it (cancel, then wait), ready or not.
// Its configuration is read as any other, from flags alone; nothing routes
// to the demo, so it stops at once.
func startDemoSidecar(ctx context.Context, issuer, upstream string, verbose bool, stderr io.Writer) (*sidecar, error) {
	cfg, err := loadSettings([]string{
		"--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--upstream", upstream,
		"--issuer", issuer, "--audience", "api://demo", "--shutdown-delay", "0s", "--shutdown-timeout", "5s",
		"--connection-string", "Endpoint=https://demo.service.signalr.net;AccessKey=" + demoAccessKey + ";Version=1.0;",
	}, environment{}, false)
	if err != nil {
		return nil, err
	}
	level := zap.NewAtomicLevelAt(zapcore.WarnLevel)
	if verbose {
		level.SetLevel(zapcore.InfoLevel)
	}
	s, err := start(ctx, cfg, environment{}, nil, newLogger(level, "console", stderr), level)
	if err != nil {
		return nil, err
	}
	// Started, it is the caller's to stop, ready or not.
	return s, waitReady(ctx, &http.Client{Timeout: 10 * time.Second}, "http://"+s.adminAddr.String()+"/readyz")
}

// demoAnswer is what the demo reads of a negotiate answer.
type demoAnswer struct {
	URL         string `json:"url"`
	AccessToken string `json:"accessToken"`
}

// demoNegotiate performs the negotiate as the user of userJWT, with a forged
// identity header to show that the app never sees it.
func demoNegotiate(ctx context.Context, url, userJWT string) (demoAnswer, error) {
	var out demoAnswer
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, nil)
	if err != nil {
		return out, err
	}
	req.Header.Set("Authorization", "Bearer "+userJWT)
	req.Header.Set("X-MS-CLIENT-PRINCIPAL-ID", "mallory")
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		return out, err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return out, err
	}
	if resp.StatusCode != http.StatusOK {
		return out, fmt.Errorf("status %s: %s", resp.Status, body)
	}
	return out, json.Unmarshal(body, &out)
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
