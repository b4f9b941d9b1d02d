package proxy

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// rawApp is an app that speaks HTTP/1.1 by hand, to answer as an http.Server
// never would. serve runs for each connection the proxy opens, numbered from
// 0, with the connection's reader; it returns when it is done with it, and
// the connection is then closed.
type rawApp struct {
	ln       net.Listener
	url      *url.URL
	mu       sync.Mutex
	conns    int
	open     []net.Conn
	requests []string // each request's head and body as it arrived
	wg       sync.WaitGroup
}

func newRawApp(t *testing.T, serve func(a *rawApp, n int, c net.Conn, br *bufio.Reader)) *rawApp {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := &rawApp{ln: ln}
	a.url, _ = url.Parse("http://" + ln.Addr().String())
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			a.mu.Lock()
			n := a.conns
			a.conns++
			a.open = append(a.open, c)
			a.mu.Unlock()
			a.wg.Add(1)
			go func() {
				defer a.wg.Done()
				defer c.Close()
				serve(a, n, c, bufio.NewReader(c))
			}()
		}
	}()
	t.Cleanup(func() {
		// The sidecar keeps connections idle: close them from this end.
		ln.Close()
		a.mu.Lock()
		for _, c := range a.open {
			c.Close()
		}
		a.mu.Unlock()
		a.wg.Wait()
	})
	return a
}

// read reads one request and records it; false when the connection ended.
func (a *rawApp) read(br *bufio.Reader) bool {
	r, err := http.ReadRequest(br)
	if err != nil {
		return false
	}
	body, _ := io.ReadAll(r.Body)
	var head bytes.Buffer
	r.Header.Write(&head)
	a.mu.Lock()
	a.requests = append(a.requests, r.Method+" "+r.RequestURI+"\n"+head.String()+"\n"+string(body))
	a.mu.Unlock()
	return true
}

func (a *rawApp) counts() (conns, requests int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.conns, len(a.requests)
}

// answer is a negotiate answer an app would give, with extra header lines.
func answer(extra string) string {
	body := negotiateBody(accessKey)
	return fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n%sContent-Length: %d\r\n\r\n%s", extra, len(body), body)
}

// keepAnswering answers every request on the connection.
func keepAnswering(a *rawApp, _ int, c net.Conn, br *bufio.Reader) {
	for a.read(br) {
		if _, err := io.WriteString(c, answer("")); err != nil {
			return
		}
	}
}

// negotiate sends a negotiate with body through h and returns the status and
// the body.
func (h *harness) negotiate(t *testing.T, body string) (int, string) {
	t.Helper()
	status, got, err := h.negotiateStatus(t, body)
	if err != nil {
		t.Fatal(err)
	}
	return status, got
}

// negotiateStatus is negotiate, with the error when the sidecar dropped the
// connection without an answer (as http.Server does after a handler
// panicked).
func (h *harness) negotiateStatus(t *testing.T, body string) (int, string, error) {
	t.Helper()
	req, err := http.NewRequest("POST", h.front.URL+"/api/negotiate", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+h.mint(t, nil))
	resp, err := h.front.Client().Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// wantNegotiated sends a negotiate and requires it rewritten for the caller.
func (h *harness) wantNegotiated(t *testing.T, body string) {
	t.Helper()
	status, got := h.negotiate(t, body)
	wantRewritten(t, status, got)
}

func wantRewritten(t *testing.T, status int, body string) {
	t.Helper()
	if status != 200 {
		t.Fatalf("status %d, want 200: %s", status, body)
	}
	if got := claimsOf(t, body)["asrs.s.uid"]; got != "alice" {
		t.Fatalf("asrs.s.uid = %v, want alice", got)
	}
}

func withUpstream(u *url.URL) func(*Config) {
	return func(c *Config) { c.Upstream = u }
}

func TestNegotiatesShareAConnectionToTheApp(t *testing.T) {
	app := newRawApp(t, keepAnswering)
	h := newHarness(t, nil, withUpstream(app.url))
	for range 5 {
		h.wantNegotiated(t, "")
	}
	if conns, requests := app.counts(); conns != 1 || requests != 5 {
		t.Errorf("the app saw %d connections for %d requests, want 1 for 5", conns, requests)
	}
}

// The app may close a connection the sidecar keeps idle, as Node.js does
// after 5 seconds. A negotiate must never fail for it.
func TestAConnectionTheAppClosedIsNotReused(t *testing.T) {
	tests := []struct {
		name string
		// serve answers the first request on connection 0, then does
		// something to end the connection.
		serve             func(a *rawApp, c net.Conn, br *bufio.Reader)
		wantConns, wantRq int
	}{
		{"closed while idle", func(a *rawApp, c net.Conn, br *bufio.Reader) {
			a.read(br)
			io.WriteString(c, answer(""))
		}, 2, 2},
		{"a 408 sent while idle, then closed", func(a *rawApp, c net.Conn, br *bufio.Reader) {
			a.read(br)
			io.WriteString(c, answer(""))
			io.WriteString(c, "HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
			time.Sleep(200 * time.Millisecond) // kept open: the sidecar sees the bytes, not the end
		}, 2, 2},
		// The app closes just as the next request goes out: it reads it
		// and closes without a word. The request goes once more, on a new
		// connection, body and all.
		{"closed as the request arrived", func(a *rawApp, c net.Conn, br *bufio.Reader) {
			a.read(br)
			io.WriteString(c, answer(""))
			a.read(br)
		}, 2, 3},
	}
	for _, tt := range tests {
		// With a body, the second try must send it again; without one,
		// there is none to send.
		for _, body := range []string{`{"second":2}`, ""} {
			t.Run(fmt.Sprintf("%s, body %q", tt.name, body), func(t *testing.T) {
				app := newRawApp(t, func(a *rawApp, n int, c net.Conn, br *bufio.Reader) {
					if n == 0 {
						tt.serve(a, c, br)
						return
					}
					keepAnswering(a, n, c, br)
				})
				h := newHarness(t, nil, withUpstream(app.url))
				h.wantNegotiated(t, `{"first":1}`)
				time.Sleep(50 * time.Millisecond) // the app's close reaches us
				h.wantNegotiated(t, body)
				conns, requests := app.counts()
				if conns != tt.wantConns || requests != tt.wantRq {
					t.Errorf("the app saw %d connections and %d requests, want %d and %d", conns, requests, tt.wantConns, tt.wantRq)
				}
				app.mu.Lock()
				defer app.mu.Unlock()
				if last := app.requests[len(app.requests)-1]; !strings.HasSuffix(last, "\n\n"+body) {
					t.Errorf("the request the app answered last ends %q, want the second body", last[max(0, len(last)-40):])
				}
			})
		}
	}
}

// Only a connection that was idle in the pool earns a second try, and only
// one: a new connection that fails says the app is in trouble.
func TestAFailedNegotiateIsTriedAgainOnceAtMost(t *testing.T) {
	tests := []struct {
		name   string
		warmup bool // one negotiate first, which leaves an idle connection
		want   int  // requests the app sees for the failing negotiate
	}{
		{"new connection", false, 1},
		{"idle connection", true, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			app := newRawApp(t, func(a *rawApp, n int, c net.Conn, br *bufio.Reader) {
				a.read(br)
				if n == 0 && tt.warmup {
					io.WriteString(c, answer(""))
					a.read(br)
				}
			})
			h := newHarness(t, nil, withUpstream(app.url))
			before := 0
			if tt.warmup {
				// The first answer is the app's only one.
				h.wantNegotiated(t, "")
				before = 1
			}
			status, body := h.negotiate(t, "")
			if status != http.StatusBadGateway {
				t.Fatalf("status %d, want 502: %s", status, body)
			}
			if _, requests := app.counts(); requests-before != tt.want {
				t.Errorf("the app saw the failing negotiate %d times, want %d", requests-before, tt.want)
			}
			if got := testutil.ToFloat64(h.metric(OutcomeUpstreamUnreachable)); got != 1 {
				t.Errorf("upstream_unreachable = %v, want 1", got)
			}
		})
	}
}

func TestAnswersTheExchangeReads(t *testing.T) {
	body := negotiateBody(accessKey)
	tests := []struct {
		name  string
		reply string // what the app writes after reading the request
		want  int
		log   string // in the log, for a refusal
	}{
		{"interim answers before the real one", "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a.js>\r\n\r\n" + answer(""), 200, ""},
		{"chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + fmt.Sprintf("%x\r\n%s\r\n0\r\n\r\n", len(body), body), 200, ""},
		{"chunked with a trailer", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-T\r\n\r\n" + fmt.Sprintf("%x\r\n%s\r\n0\r\nX-T: 1\r\n\r\n", len(body), body), 200, ""},
		{"HTTP/1.0, ended by the close", "HTTP/1.0 200 OK\r\n\r\n" + body, 200, ""},
		{"five interim answers", strings.Repeat("HTTP/1.1 100 Continue\r\n\r\n", 5) + answer(""), 200, ""},
		{"six interim answers", strings.Repeat("HTTP/1.1 100 Continue\r\n\r\n", 6) + answer(""), 502, "unexpected 100 Continue"},
		{"a protocol switch", "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n", 502, "unexpected 101 Switching Protocols"},
		{"not HTTP", "SSH-2.0-OpenSSH_9.6\r\n\r\n", 502, "malformed HTTP"},
		{"a body cut short", "HTTP/1.1 200 OK\r\nContent-Length: 900\r\n\r\n" + body[:100], 502, "unexpected EOF"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			app := newRawApp(t, func(a *rawApp, n int, c net.Conn, br *bufio.Reader) {
				if a.read(br) {
					io.WriteString(c, tt.reply)
				}
			})
			h := newHarness(t, nil, withUpstream(app.url))
			status, got := h.negotiate(t, "")
			if tt.want == 200 {
				wantRewritten(t, status, got)
				return
			}
			if status != tt.want {
				t.Fatalf("status %d, want %d: %s", status, tt.want, got)
			}
			if !strings.Contains(h.logText(), tt.log) {
				t.Errorf("the log lacks %q: %s", tt.log, h.logText())
			}
		})
	}
}

// An app that sends a head without end, or a body over the limit without
// end, costs the sidecar a bounded read and the connection, not its memory
// or the negotiate timeout.
func TestEndlessAnswersAreCutOff(t *testing.T) {
	tests := []struct {
		name  string
		start string
		more  string
		log   string
	}{
		{"head", "HTTP/1.1 200 OK\r\n", "X-Padding: " + strings.Repeat("a", 1000) + "\r\n", "the answer's head is over 1048576 bytes"},
		{"body", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", "400\r\n" + strings.Repeat("a", 1024) + "\r\n", "larger than 65536 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			app := newRawApp(t, func(a *rawApp, n int, c net.Conn, br *bufio.Reader) {
				if !a.read(br) {
					return
				}
				io.WriteString(c, tt.start)
				for {
					// Until the sidecar closes the connection.
					if _, err := io.WriteString(c, tt.more); err != nil {
						return
					}
				}
			})
			h := newHarness(t, nil, func(c *Config) {
				c.Upstream = app.url
				c.NegotiateTimeout = time.Minute // the cut-off, not the timeout, must end it
			})
			status, body := h.negotiate(t, "")
			if status != http.StatusBadGateway {
				t.Fatalf("status %d, want 502: %s", status, body)
			}
			if !strings.Contains(h.logText(), tt.log) {
				t.Errorf("the log lacks %q: %s", tt.log, h.logText())
			}
		})
	}
}

// A connection is kept for the next negotiate only after an answer read to
// its end that did not ask for the connection to close.
func TestWhichConnectionsAreKept(t *testing.T) {
	big := `{"accessToken":"` + strings.Repeat("a", DefaultMaxBodyBytes) + `"}`
	tests := []struct {
		name  string
		reply string
		kept  bool
	}{
		{"a plain answer", answer(""), true},
		{"Connection: close", answer("Connection: close\r\n"), false},
		{"an answer over the limit", fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(big), big), false},
		{"an app error", "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 4\r\n\r\nboom", true},
		{"bytes after the answer", answer("") + "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			app := newRawApp(t, func(a *rawApp, n int, c net.Conn, br *bufio.Reader) {
				reply := tt.reply
				if n > 0 {
					reply = answer("")
				}
				for a.read(br) {
					io.WriteString(c, reply)
					reply = answer("")
				}
			})
			h := newHarness(t, nil, withUpstream(app.url))
			h.negotiate(t, "")
			h.wantNegotiated(t, "")
			want := 2
			if tt.kept {
				want = 1
			}
			if conns, _ := app.counts(); conns != want {
				t.Errorf("the app saw %d connections, want %d", conns, want)
			}
		})
	}
}

// When the negotiate timeout ends an exchange, the connection goes with it:
// an answer arriving later must not be read as the next negotiate's.
func TestATimedOutConnectionIsClosed(t *testing.T) {
	release := make(chan struct{})
	closed := make(chan struct{})
	app := newRawApp(t, func(a *rawApp, n int, c net.Conn, br *bufio.Reader) {
		if n > 0 {
			keepAnswering(a, n, c, br)
			return
		}
		a.read(br)
		if _, err := br.ReadByte(); err == io.EOF {
			close(closed)
		}
		<-release
	})
	defer close(release)
	h := newHarness(t, nil, func(c *Config) {
		c.Upstream = app.url
		c.NegotiateTimeout = 100 * time.Millisecond
	})
	if status, body := h.negotiate(t, ""); status != http.StatusGatewayTimeout {
		t.Fatalf("status %d, want 504: %s", status, body)
	}
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("the timed-out connection was left open")
	}
	h.wantNegotiated(t, "")
}

// The exchange must put on the wire what http.Transport would, byte for
// byte, so that the app cannot tell the two apart.
func TestTheExchangeSendsWhatHTTPTransportSends(t *testing.T) {
	app := newRawApp(t, keepAnswering)
	exp := time.Now().Add(time.Minute).Unix()
	send := func(rt http.RoundTripper, body string) string {
		h := newHarness(t, nil, func(c *Config) {
			c.Upstream = app.url
			c.Transport = rt
		})
		req, _ := http.NewRequest("POST", h.front.URL+"/api/negotiate?negotiateVersion=1", strings.NewReader(body))
		req.Host = "app.example" // the front's port differs between the two
		req.Header.Set("Authorization", "Bearer "+h.mint(t, jwt.MapClaims{"exp": exp}))
		req.Header.Set("X-Request-Id", "0123456789abcdef")
		req.Header.Set("User-Agent", "Microsoft SignalR/8.0 (8.0.7; Unknown OS; Browser; Unknown Runtime Version)")
		req.Header.Set("X-Requested-With", "XMLHttpRequest")
		resp, err := h.front.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		app.mu.Lock()
		defer app.mu.Unlock()
		// The token's ES256 signature differs each time it is made.
		sent := app.requests[len(app.requests)-1]
		i := strings.Index(sent, "Authorization: Bearer ")
		j := strings.Index(sent[i:], "\n")
		return sent[:i] + sent[i+j:]
	}
	for _, body := range []string{"", `{"a":1}`} {
		viaTransport := send(onlyRoundTrip{NewTransport(0)}, body)
		viaExchange := send(NewTransport(0), body)
		if viaExchange != viaTransport {
			t.Errorf("with body %q the exchange sent\n%s\nhttp.Transport sent\n%s", body, viaExchange, viaTransport)
		}
	}
}

// onlyRoundTrip hides a Transport's exchange: requests take http.Transport.
type onlyRoundTrip struct{ http.RoundTripper }

// An app served over TLS gets its negotiates through http.Transport.
func TestNegotiateToAnAppOverTLS(t *testing.T) {
	app := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, negotiateBody(accessKey))
	}))
	defer app.Close()
	u, _ := url.Parse(app.URL)
	rt := NewTransport(0)
	rt.http.TLSClientConfig = &tls.Config{RootCAs: app.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs}
	h := newHarness(t, nil, func(c *Config) {
		c.Upstream = u
		c.Transport = rt
	})
	h.wantNegotiated(t, "")
}

func TestHostPort(t *testing.T) {
	for in, want := range map[string]string{
		"http://127.0.0.1:7071": "127.0.0.1:7071",
		"http://app":            "app:80",
		"https://app":           "app:443",
		"http://[::1]:8080":     "[::1]:8080",
		"http://[::1]":          "[::1]:80",
	} {
		u, _ := url.Parse(in)
		if got := hostPort(u); got != want {
			t.Errorf("hostPort(%s) = %s, want %s", in, got, want)
		}
	}
}

// The pool closes what it cannot keep: connections beyond its size, and
// those idle for longer than its timeout, even with no request to notice.
func TestThePoolClosesWhatItCannotKeep(t *testing.T) {
	app := newRawApp(t, func(a *rawApp, n int, c net.Conn, br *bufio.Reader) {
		io.Copy(io.Discard, br) // until the pool closes it
	})
	dialer := &net.Dialer{}
	p := &connPool{dial: dialer.DialContext, maxIdle: 2, idleTimeout: 100 * time.Millisecond}
	var conns []*appConn
	for range 3 {
		c, err := p.get(t.Context(), app.url.Host)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	for _, c := range conns {
		p.put(c)
	}
	isClosed := func(c *appConn) bool {
		_, err := c.Conn.Write([]byte("x"))
		return err != nil
	}
	if !isClosed(conns[2]) || isClosed(conns[0]) || isClosed(conns[1]) {
		t.Fatal("the pool of two kept a third connection, or closed one of its two")
	}
	deadline := time.Now().Add(5 * time.Second)
	for !isClosed(conns[0]) || !isClosed(conns[1]) {
		if time.Now().After(deadline) {
			t.Fatal("idle connections outlived the idle timeout")
		}
		time.Sleep(20 * time.Millisecond)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.idle) != 0 || p.sweep != nil {
		t.Errorf("after the sweep: %d idle, sweep armed %v", len(p.idle), p.sweep != nil)
	}
}

// A reload of the configuration may point the sidecar at another address
// while the Transport, and its idle connections, stay.
func TestAConnectionServesOnlyItsAddress(t *testing.T) {
	before := newRawApp(t, keepAnswering)
	after := newRawApp(t, keepAnswering)
	shared := NewTransport(0)
	for _, app := range []*rawApp{before, after} {
		h := newHarness(t, nil, func(c *Config) {
			c.Upstream = app.url
			c.Transport = shared
		})
		h.wantNegotiated(t, "")
		if conns, requests := app.counts(); conns != 1 || requests != 1 {
			t.Errorf("%s saw %d connections and %d requests, want 1 and 1", app.url.Host, conns, requests)
		}
	}
}
