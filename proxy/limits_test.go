package proxy

import (
	"bufio"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// newLimitedHarness is newHarness with request limits and a frontend
// configured like the sidecar's proxy server.
func newLimitedHarness(t *testing.T, h http.HandlerFunc, maxBytes int64, timeout time.Duration, mutate func(*Config)) *harness {
	t.Helper()
	var cfg *Config
	hs := newHarness(t, h, func(c *Config) {
		c.MaxRequestBytes, c.RequestTimeout = maxBytes, timeout
		if mutate != nil {
			mutate(c)
		}
		cfg = c
	})
	p, err := New(*cfg)
	if err != nil {
		t.Fatal(err)
	}
	front := httptest.NewUnstartedServer(p)
	front.Config.ReadHeaderTimeout = 10 * time.Second
	front.Config.IdleTimeout = 2 * time.Minute
	front.Start()
	t.Cleanup(front.Close)
	hs.front = front
	return hs
}

// echoNegotiate answers a negotiate, first recording the body and
// Content-Length the app received.
type echoNegotiate struct {
	mu       sync.Mutex
	body     []string
	length   []int64
	chunked  []bool
	requests atomic.Int32
}

func (e *echoNegotiate) serve(w http.ResponseWriter, r *http.Request) {
	e.requests.Add(1)
	b, _ := io.ReadAll(r.Body)
	e.mu.Lock()
	e.body = append(e.body, string(b))
	e.length = append(e.length, r.ContentLength)
	e.chunked = append(e.chunked, len(r.TransferEncoding) > 0)
	e.mu.Unlock()
	io.WriteString(w, negotiateBody(accessKey))
}

func TestNegotiateRequestBodies(t *testing.T) {
	small := `{"hub":"chat"}`
	large := strings.Repeat("x", 100)
	tests := []struct {
		name       string
		body       io.Reader // a reader without a known length is sent chunked
		wantStatus int
		wantBody   string // the body the app receives
	}{
		{"no body", nil, 200, ""},
		{"small body with a length", strings.NewReader(small), 200, small},
		{"small body chunked", io.MultiReader(strings.NewReader(small)), 200, small},
		{"body exactly at the bound", strings.NewReader(large[:64]), 200, large[:64]},
		{"larger body with a length", strings.NewReader(large), http.StatusRequestEntityTooLarge, ""},
		{"larger body chunked", io.MultiReader(strings.NewReader(large)), http.StatusRequestEntityTooLarge, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			app := &echoNegotiate{}
			h := newLimitedHarness(t, app.serve, 64, 5*time.Second, nil)
			req, err := http.NewRequest("POST", h.front.URL+"/api/negotiate", tc.body)
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Authorization", "Bearer "+h.mint(t, nil))
			resp, err := h.front.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.wantStatus {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.wantStatus, body)
			}
			if tc.wantStatus != 200 {
				if app.requests.Load() != 0 {
					t.Error("the app saw a request whose body was refused")
				}
				if ct := resp.Header.Get("Content-Type"); ct != "application/problem+json" {
					t.Errorf("Content-Type %q, want a problem document", ct)
				}
				if got := testutil.ToFloat64(h.metric(OutcomeRequestTooLarge)); got != 1 {
					t.Errorf("request_too_large counter = %v, want 1", got)
				}
				if logs := h.logText(); !strings.Contains(logs, `"outcome":"request_too_large"`) || !strings.Contains(logs, `"request_id":"`) {
					t.Errorf("no negotiate log line with the outcome and a request id:\n%s", logs)
				}
				return
			}
			if got := claimsOf(t, string(body))["asrs.s.uid"]; got != "alice" {
				t.Errorf("asrs.s.uid = %v, want alice", got)
			}
			app.mu.Lock()
			defer app.mu.Unlock()
			if len(app.body) != 1 || app.body[0] != tc.wantBody {
				t.Fatalf("the app received %q, want %q", app.body, tc.wantBody)
			}
			// Read in full, the body reaches the app with its length.
			if app.length[0] != int64(len(tc.wantBody)) || app.chunked[0] {
				t.Errorf("the app saw Content-Length %d, chunked %v; want %d, not chunked", app.length[0], app.chunked[0], len(tc.wantBody))
			}
		})
	}
}

// TestSlowNegotiateBodyIsCutOff sends a negotiate whose body trickles in
// more slowly than the bound allows: the sidecar must end it at the bound,
// before it reaches the app.
func TestSlowNegotiateBodyIsCutOff(t *testing.T) {
	const bound = 300 * time.Millisecond
	app := &echoNegotiate{}
	h := newLimitedHarness(t, app.serve, 0, bound, nil)
	conn, err := net.Dial("tcp", strings.TrimPrefix(h.front.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	start := time.Now()
	fmt.Fprintf(conn, "POST /api/negotiate HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Length: 100\r\n\r\n", h.mint(t, nil))
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	go func() {
		// One byte every 100 ms: the 100 bytes would take ten seconds.
		for ctx.Err() == nil {
			if _, err := conn.Write([]byte("x")); err != nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	}()
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	elapsed := time.Since(start)
	stop()
	// The sidecar answers 408 and closes; a byte still in flight may turn
	// the close into a reset that the answer does not survive.
	if err == nil {
		if resp.StatusCode != http.StatusRequestTimeout || !resp.Close {
			t.Errorf("status %d, close %v; want 408 and the connection closed", resp.StatusCode, resp.Close)
		}
	} else if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) && !strings.Contains(err.Error(), "reset") {
		t.Fatalf("reading the answer: %v", err)
	}
	if elapsed < bound || elapsed > bound+2*time.Second {
		t.Errorf("cut off after %s, want soon after %s", elapsed, bound)
	}
	if app.requests.Load() != 0 {
		t.Error("the app saw the request")
	}
	if got := testutil.ToFloat64(h.metric(OutcomeRequestTimeout)); got != 1 {
		t.Errorf("request_timeout counter = %v, want 1", got)
	}
}

// TestBodyBoundEndsWithTheBody checks that the bound covers the caller's
// body alone: an app that takes longer than it to answer is still heard,
// and a keep-alive connection serves later requests once the bound has
// passed.
func TestBodyBoundEndsWithTheBody(t *testing.T) {
	const bound = 200 * time.Millisecond
	h := newLimitedHarness(t, func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		if r.URL.Query().Has("slow") {
			time.Sleep(2 * bound)
		}
		io.WriteString(w, negotiateBody(accessKey))
	}, 0, bound, func(c *Config) { c.NegotiateTimeout = 5 * time.Second })
	tok := h.mint(t, nil)
	client := h.front.Client()
	reused := []bool{}
	post := func(query string) {
		t.Helper()
		trace := &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) { reused = append(reused, i.Reused) }}
		req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), "POST", h.front.URL+"/api/negotiate"+query, strings.NewReader("{}"))
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("negotiate%s: status %d: %s", query, resp.StatusCode, body)
		}
	}
	post("?slow")
	time.Sleep(2 * bound)
	post("")
	if len(reused) != 2 || !reused[1] {
		t.Errorf("connection reused: %v; want the second request on the first's connection", reused)
	}
}

// TestOtherRoutesStreamUploads checks that the bound is for negotiates only:
// a large upload to another route, streamed for longer than the bound, goes
// through whole.
func TestOtherRoutesStreamUploads(t *testing.T) {
	const bound = 100 * time.Millisecond
	h := newLimitedHarness(t, func(w http.ResponseWriter, r *http.Request) {
		n, err := io.Copy(io.Discard, r.Body)
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		fmt.Fprintf(w, "%d %v", n, r.ContentLength)
	}, 1024, bound, nil)
	const chunk, chunks = 1 << 20, 8
	pr, pw := io.Pipe()
	go func() {
		buf := make([]byte, chunk)
		rand.Read(buf)
		for range chunks {
			time.Sleep(bound / 2) // 400 ms in all, four times the bound
			if _, err := pw.Write(buf); err != nil {
				return
			}
		}
		pw.Close()
	}()
	start := time.Now()
	resp, err := h.front.Client().Post(h.front.URL+"/api/upload", "application/octet-stream", pr)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if want := strconv.Itoa(chunk*chunks) + " -1"; resp.StatusCode != 200 || string(body) != want {
		t.Fatalf("status %d, app read %q; want 200 and %q (all of it, streamed)", resp.StatusCode, body, want)
	}
	if elapsed := time.Since(start); elapsed < 4*bound {
		t.Errorf("the upload took %s; the test means it to outlast the bound several times", elapsed)
	}
}

// acceptAll accepts from ln until it fails, handing over each connection.
func acceptAll(ln net.Listener) <-chan net.Conn {
	out := make(chan net.Conn, 10)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				close(out)
				return
			}
			out <- c
		}
	}()
	return out
}

func TestLimitListener(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var fullCalls atomic.Int32
	ln := LimitListener(inner, 2, func() { fullCalls.Add(1) })
	accepted := acceptAll(ln)
	dial := func() net.Conn {
		t.Helper()
		c, err := net.Dial("tcp", inner.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	next := func(wait time.Duration) net.Conn {
		select {
		case c := <-accepted:
			return c
		case <-time.After(wait):
			return nil
		}
	}

	for range 3 {
		dial()
	}
	first, second := next(time.Second), next(time.Second)
	if first == nil || second == nil {
		t.Fatal("the first two connections were not accepted")
	}
	if c := next(300 * time.Millisecond); c != nil {
		t.Fatal("a third connection was accepted while two were open")
	}
	if fullCalls.Load() == 0 {
		t.Error("full was not called while Accept waited")
	}

	// Closing a connection twice frees one slot, not two.
	first.Close()
	first.Close()
	third := next(time.Second)
	if third == nil {
		t.Fatal("the third connection was not accepted after one closed")
	}
	dial()
	if c := next(300 * time.Millisecond); c != nil {
		t.Fatal("a fourth connection was accepted while two were open: a double close freed two slots")
	}

	// Closing the listener ends a waiting Accept.
	ln.Close()
	select {
	case _, open := <-accepted:
		if open {
			t.Error("a connection was accepted after Close")
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Accept still waits after Close")
	}
	second.Close()
	third.Close()
}

// TestAnonymousBodyIsNeverRead sends negotiates without a valid token whose
// bodies trickle, or wait for a 100 Continue: each is refused at once, from
// its headers, without the body being read or the connection held.
func TestAnonymousBodyIsNeverRead(t *testing.T) {
	app := &echoNegotiate{}
	h := newLimitedHarness(t, app.serve, 0, time.Minute, nil)
	for _, tc := range []struct {
		name, header string
	}{
		{"no token, trickled body", "Content-Length: 1000\r\n"},
		{"bad token, trickled body", "Authorization: Bearer not.a.token\r\nContent-Length: 1000\r\n"},
		{"no token, waiting for 100 Continue", "Content-Length: 10\r\nExpect: 100-continue\r\n"},
		{"no token, chunked", "Transfer-Encoding: chunked\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn, err := net.Dial("tcp", strings.TrimPrefix(h.front.URL, "http://"))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(10 * time.Second))
			fmt.Fprintf(conn, "POST /api/negotiate HTTP/1.1\r\nHost: x\r\n%s\r\n", tc.header)
			if !strings.Contains(tc.header, "Expect") {
				conn.Write([]byte("x")) // the first of many bytes that will not come
			}
			start := time.Now()
			br := bufio.NewReader(conn)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusUnauthorized || !resp.Close {
				t.Errorf("status %d, close %v; want 401 and the connection closed", resp.StatusCode, resp.Close)
			}
			// The server closes the connection after the answer instead of
			// waiting for the rest of the body.
			if _, err := br.ReadByte(); err == nil {
				t.Error("more data after the answer")
			}
			if waited := time.Since(start); waited > 5*time.Second {
				t.Errorf("the connection was held %s after the answer", waited)
			}
		})
	}
	if app.requests.Load() != 0 {
		t.Error("the app saw an unauthenticated request")
	}
}
