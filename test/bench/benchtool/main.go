// Command benchtool provides the parts of the benchmark that are not the
// sidecar: a stand-in Functions app, a plain httputil.ReverseProxy to compare
// the sidecar with, and a minter of caller tokens and their JWKS. run.sh
// drives them; nothing here is part of the sidecar.
package main

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "benchtool:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) == 0 {
		return errors.New("usage: benchtool app|plainproxy|mint|freeport|hold [flags]")
	}
	fs := flag.NewFlagSet(args[0], flag.ContinueOnError)
	switch args[0] {
	case "app":
		listen := fs.String("listen", "127.0.0.1:0", "address")
		key := fs.String("access-key", "", "AccessKey that signs the negotiate token")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		return serve(*listen, appHandler(*key))
	case "plainproxy":
		listen := fs.String("listen", "127.0.0.1:0", "address")
		upstream := fs.String("upstream", "", "the app's URL")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		u, err := url.Parse(*upstream)
		if err != nil {
			return err
		}
		return serve(*listen, plainProxy(u))
	case "freeport":
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		defer ln.Close()
		fmt.Println(ln.Addr().(*net.TCPAddr).Port)
		return nil
	case "mint":
		jwks := fs.String("jwks", "", "where to write the JWKS")
		tokens := fs.String("tokens", "", "where to write the tokens, one a line")
		n := fs.Int("n", 2000, "how many distinct callers")
		issuer := fs.String("issuer", "", "iss")
		audience := fs.String("audience", "", "aud")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		return mint(*jwks, *tokens, *n, *issuer, *audience)
	case "hold":
		target := fs.String("url", "", "the negotiate URL")
		tokens := fs.String("tokens", "", "file whose first line is the caller token")
		n := fs.Int("n", 256, "how many connections")
		hold := fs.Duration("for", 5*time.Second, "how long to hold them after each has negotiated")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		return holdConnections(*target, *tokens, *n, *hold)
	}
	return fmt.Errorf("unknown command %q", args[0])
}

func serve(addr string, h http.Handler) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	fmt.Println(ln.Addr()) // run.sh reads the address
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	return srv.Serve(ln)
}

// appHandler answers negotiate with a SignalR connection info body, signed
// as the binding signs it, and every other route with a small JSON body. The
// token is made once: the benchmark measures what stands in front of the
// app, not the app.
func appHandler(accessKey string) http.Handler {
	const aud = "https://bench.service.signalr.net/client/?hub=chat"
	now := time.Now().Unix()
	enc := base64.RawURLEncoding.EncodeToString
	unsigned := enc([]byte(`{"alg":"HS256","typ":"JWT","kid":"-1895682698"}`)) + "." +
		enc(fmt.Appendf(nil, `{"nbf":%d,"exp":%d,"iat":%d,"aud":%q}`, now, now+24*3600, now, aud))
	mac := hmac.New(sha256.New, []byte(accessKey))
	mac.Write([]byte(unsigned))
	negotiate := fmt.Appendf(nil, `{"url":"https://bench.service.signalr.net/client/?hub=chat","accessToken":"%s.%s"}`, unsigned, enc(mac.Sum(nil)))
	other := []byte(`{"ok":true}`)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		body := other
		if strings.HasSuffix(r.URL.Path, "/negotiate") {
			body = negotiate
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body)
	})
}

// plainProxy is the baseline: httputil.ReverseProxy with a transport tuned
// for one upstream on loopback, doing nothing else.
func plainProxy(u *url.URL) http.Handler {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns = 1024
	t.MaxIdleConnsPerHost = 1024
	return &httputil.ReverseProxy{
		Rewrite:   func(pr *httputil.ProxyRequest) { pr.SetURL(u); pr.SetXForwarded() },
		Transport: t,
	}
}

// mint writes an ES256 JWKS and n tokens of distinct callers, valid for a day.
func mint(jwksPath, tokensPath string, n int, issuer, audience string) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	b64 := func(i *big.Int) string { return base64.RawURLEncoding.EncodeToString(i.FillBytes(make([]byte, 32))) }
	jwks, _ := json.Marshal(map[string]any{"keys": []map[string]string{{
		"kty": "EC", "crv": "P-256", "kid": "bench", "use": "sig", "alg": "ES256", "x": b64(key.X), "y": b64(key.Y),
	}}})
	if err := os.WriteFile(jwksPath, jwks, 0o600); err != nil {
		return err
	}
	var out strings.Builder
	exp := time.Now().Add(24 * time.Hour).Unix()
	for i := range n {
		tok := jwt.NewWithClaims(jwt.SigningMethodES256, jwt.MapClaims{
			"iss": issuer, "aud": audience, "sub": fmt.Sprintf("user-%d", i), "exp": exp,
			"email": fmt.Sprintf("user-%d@contoso.com", i), "roles": []string{"reader", "writer"},
		})
		tok.Header["kid"] = "bench"
		s, err := tok.SignedString(key)
		if err != nil {
			return err
		}
		out.WriteString(s + "\n")
	}
	return os.WriteFile(tokensPath, []byte(out.String()), 0o600)
}

// holdConnections opens n keep-alive connections to target, negotiates once
// on each, prints "held" and keeps them open and quiet for a while: the
// memory of a proxy that many clients stay connected to.
func holdConnections(target, tokensPath string, n int, hold time.Duration) error {
	u, err := url.Parse(target)
	if err != nil {
		return err
	}
	tokens, err := os.ReadFile(tokensPath)
	if err != nil {
		return err
	}
	tok, _, _ := strings.Cut(string(tokens), "\n")
	req := fmt.Sprintf("POST %s HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\nContent-Length: 0\r\n\r\n", u.RequestURI(), u.Host, tok)
	conns := make([]net.Conn, 0, n)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range n {
		c, err := net.DialTimeout("tcp", u.Host, 5*time.Second)
		if err != nil {
			return err
		}
		conns = append(conns, c)
		if _, err := io.WriteString(c, req); err != nil {
			return err
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("negotiate answered %s", resp.Status)
		}
	}
	fmt.Println("held", n)
	time.Sleep(hold)
	return nil
}
