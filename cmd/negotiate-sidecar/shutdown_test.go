package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
)

// TestServerFailureStopsBoth makes one listener fail under a started
// sidecar: both servers must stop, at once rather than after the shutdown
// delay, the background work must end, and wait must return the failure,
// which run turns into a non-zero exit.
func TestServerFailureStopsBoth(t *testing.T) {
	idp := newTestIDP(t)
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	defer app.Close()
	for _, failing := range []string{"proxy", "admin"} {
		t.Run(failing, func(t *testing.T) {
			s := mustLoadArgs(t, nil, "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--upstream", app.URL,
				"--issuer", idp.URL, "--audience", "api://app", "--connection-string", "Endpoint=https://unit.service.signalr.net;AccessKey="+testAccessKey,
				"--shutdown-delay", "1m", "--shutdown-timeout", "5s")
			var logs syncBuffer
			level := zap.NewAtomicLevel()
			sc, err := start(context.Background(), s, environment{}, nil, newLogger(level, "json", &logs), level)
			if err != nil {
				t.Fatal(err)
			}
			proxyURL, adminURL := "http://"+sc.proxyAddr.String(), "http://"+sc.adminAddr.String()
			waitStatus(t, adminURL+"/readyz", 200)
			if code, _ := get(t, proxyURL+"/api/other"); code != 200 {
				t.Fatalf("proxy answered %d before the failure", code)
			}

			done := make(chan error, 1)
			go func() { done <- sc.wait() }()
			ln := sc.proxyLn
			if failing == "admin" {
				ln = sc.adminLn
			}
			ln.Close() // the server did not close it: to the server, a failure

			select {
			case err = <-done:
			case <-time.After(10 * time.Second):
				t.Fatalf("wait did not return after the %s listener failed:\n%s", failing, logs.String())
			}
			if err == nil || !strings.Contains(err.Error(), failing+" server") {
				t.Fatalf("wait returned %v, want the %s server's failure", err, failing)
			}
			for name, addr := range map[string]string{"proxy": sc.proxyAddr.String(), "admin": sc.adminAddr.String()} {
				if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
					c.Close()
					t.Errorf("the %s server still accepts connections", name)
				}
			}
			if left := backgroundGoroutines(); len(left) > 0 {
				t.Errorf("background goroutines still running after wait:\n%s", strings.Join(left, "\n\n"))
			}
			for _, want := range []string{`"msg":"a server failed; stopping"`, `"msg":"stopped"`} {
				if !strings.Contains(logs.String(), want) {
					t.Errorf("the log lacks %s:\n%s", want, logs.String())
				}
			}
			if strings.Contains(logs.String(), testAccessKey) {
				t.Error("the log shows the access key")
			}
		})
	}
}

// backgroundGoroutines returns the stacks of running key set refreshes and
// reloaders.
func backgroundGoroutines() []string {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "auth.(*KeyPool).Get.") || strings.Contains(g, "negotiate-sidecar.(*reloader).run(") {
			out = append(out, g)
		}
	}
	return out
}

// TestConnectionLimit runs the sidecar with --max-connections 2: while two
// connections are busy, a third is not served until one closes; idle
// keep-alive connections make room for new ones at once.
func TestConnectionLimit(t *testing.T) {
	idp := newTestIDP(t)
	arrived := make(chan struct{}, 10)
	release := make(chan struct{})
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/api/hold" {
			arrived <- struct{}{}
			select {
			case <-release:
			case <-r.Context().Done():
			}
		}
		io.WriteString(w, "ok")
	}))
	defer app.Close()
	defer close(release)
	r := startRun(t, nil, "--upstream", app.URL, "--issuer", idp.URL, "--audience", "api://app",
		"--connection-string", "Endpoint=https://unit.service.signalr.net;AccessKey="+testAccessKey, "--max-connections", "2")
	addr := strings.TrimPrefix(r.proxy, "http://")

	// send opens a connection and sends a GET of path on it.
	send := func(path string) (net.Conn, *bufio.Reader) {
		t.Helper()
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", path)
		return c, bufio.NewReader(c)
	}
	// answer reads a response within wait; nil if none came.
	answer := func(c net.Conn, br *bufio.Reader, wait time.Duration) *http.Response {
		t.Helper()
		c.SetReadDeadline(time.Now().Add(wait))
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			return nil
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}

	busy1, _ := send("/api/hold")
	busy2, br2 := send("/api/hold")
	for range 2 {
		select {
		case <-arrived:
		case <-time.After(10 * time.Second):
			t.Fatal("the held requests did not reach the app")
		}
	}
	third, br3 := send("/api/other")
	if resp := answer(third, br3, 500*time.Millisecond); resp != nil {
		t.Fatalf("a third connection was served (%d) while two were busy", resp.StatusCode)
	}
	busy1.Close()
	if resp := answer(third, br3, 5*time.Second); resp == nil || resp.StatusCode != 200 {
		t.Fatalf("the third connection was not served once one closed: %v", resp)
	}

	// Both open connections are now idle keep-alive ones, once the held
	// request is answered; a new connection must not wait for them to time out.
	release <- struct{}{}
	if resp := answer(busy2, br2, 5*time.Second); resp == nil || resp.StatusCode != 200 {
		t.Fatalf("the held request was not answered: %v", resp)
	}
	fourth, br4 := send("/api/other")
	if resp := answer(fourth, br4, 5*time.Second); resp == nil || resp.StatusCode != 200 {
		t.Fatalf("a new connection was not served while the others were idle: %v", resp)
	}
	if !strings.Contains(r.logs.String(), `"msg":"connection limit reached`) {
		t.Errorf("the limit was not logged:\n%s", r.logs.String())
	}
}
