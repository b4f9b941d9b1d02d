package proxy

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

// When the second try fails too, the caller gets a clean 502, not a
// connection cut by a panic in the handler.
func TestARetryThatFailsAgainIsA502(t *testing.T) {
	app := newRawApp(t, func(a *rawApp, n int, c net.Conn, br *bufio.Reader) {
		a.read(br)
		if n == 0 {
			io.WriteString(c, answer(""))
			a.read(br)
		}
	})
	h := newHarness(t, nil, withUpstream(app.url))
	h.wantNegotiated(t, `{"first":1}`)
	time.Sleep(50 * time.Millisecond)
	status, body, err := h.negotiateStatus(t, `{"second":2}`)
	if err != nil {
		t.Fatalf("the sidecar cut the connection instead of answering 502 (a panic in the handler?): %v", err)
	}
	if status != http.StatusBadGateway {
		t.Fatalf("status %d, want 502: %s", status, body)
	}
}

// ReadResponse takes any three digits as a status, 000 to 099 included, and
// WriteHeader panics under 100: without a check the caller's connection
// would be cut, with nothing logged or counted. Garbage from the app gives a
// clean 502.
func TestAStatusOutsideHTTPsIsA502(t *testing.T) {
	for _, code := range []string{"099", "000", "600", "999"} {
		for _, path := range []string{"/api/negotiate", "/api/other"} {
			t.Run(code+path, func(t *testing.T) {
				app := newRawApp(t, func(a *rawApp, n int, c net.Conn, br *bufio.Reader) {
					if a.read(br) {
						io.WriteString(c, "HTTP/1.1 "+code+" Odd\r\nContent-Length: 2\r\n\r\n{}")
					}
				})
				h := newHarness(t, nil, withUpstream(app.url))
				req, _ := http.NewRequest("POST", h.front.URL+path, nil)
				req.Header.Set("Authorization", "Bearer "+h.mint(t, nil))
				resp, err := h.front.Client().Do(req)
				if err != nil {
					t.Fatalf("the sidecar cut the connection instead of answering 502 (a panic in the handler?): %v", err)
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusBadGateway {
					t.Fatalf("status %d, want 502", resp.StatusCode)
				}
			})
		}
	}
}

// A header http.Transport would refuse to send is refused by the exchange
// too, before anything reaches the app. (The sidecar's own identity headers
// are made safe before this: a claim with a control character is not
// used.)
func TestAnInvalidHeaderIsRefusedAsHTTPTransportRefusesIt(t *testing.T) {
	app := newRawApp(t, keepAnswering)
	tr := NewTransport(0)
	for _, h := range []http.Header{
		{"X-Name": {"Mallory\x01"}},
		{"X-Name": {"line\r\nX-Injected: 1"}},
		{"X Name": {"v"}},
	} {
		for name, send := range map[string]func(*http.Request) (*http.Response, error){
			"exchange":       tr.exchange,
			"http.Transport": tr.RoundTrip,
		} {
			req, _ := http.NewRequest("POST", app.url.String()+"/api/negotiate", nil)
			req.Header = h
			if resp, err := send(req); err == nil {
				resp.Body.Close()
				t.Errorf("%s sent %q", name, h)
			}
		}
	}
	if _, requests := app.counts(); requests != 0 {
		t.Errorf("the app saw %d requests, want none", requests)
	}
}
