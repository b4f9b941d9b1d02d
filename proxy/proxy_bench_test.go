package proxy

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"go.uber.org/zap"
)

// BenchmarkNegotiate measures a whole negotiate through the proxy on
// loopback: ES256 verification of the caller, the upstream round trip, and
// the rewrite. Compare with BenchmarkPassThrough for the proxy hop alone.
func BenchmarkNegotiate(b *testing.B) {
	body := negotiateBody(accessKey)
	h := newHarness(b, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, body) }, nil)
	benchRequests(b, h, "/api/negotiate", h.mint(b, nil))
}

// BenchmarkPassThrough measures a request to a route that is only proxied.
func BenchmarkPassThrough(b *testing.B) {
	h := newHarness(b, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, `{"ok":true}`) }, nil)
	benchRequests(b, h, "/api/other", "")
}

func benchRequests(b *testing.B, h *harness, path, token string) {
	client := h.front.Client()
	b.ReportAllocs()
	for b.Loop() {
		req, _ := http.NewRequest("POST", h.front.URL+path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			b.Fatalf("status %d", resp.StatusCode)
		}
	}
}

// BenchmarkNegotiateParallel measures negotiates from many callers at once,
// as a burst of reconnecting clients produces them: throughput, where the
// cost of each request's CPU shows. The trip to the app is taken by
// Transport's own exchange, as the sidecar takes it, and by http.Transport,
// for the difference.
func BenchmarkNegotiateParallel(b *testing.B) {
	body := negotiateBody(accessKey)
	for _, way := range []struct {
		name string
		rt   http.RoundTripper
	}{
		{"exchange", NewTransport(0)},
		{"http.Transport", onlyRoundTrip{NewTransport(0)}},
	} {
		b.Run(way.name, func(b *testing.B) {
			h := newHarness(b, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, body) }, func(c *Config) { c.Transport = way.rt })
			token := h.mint(b, nil)
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
			b.ReportAllocs()
			b.SetParallelism(8) // 16 callers on 2 cores: the proxy, not the wait, is measured
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					req, _ := http.NewRequest("POST", h.front.URL+"/api/negotiate", nil)
					req.Header.Set("Authorization", "Bearer "+token)
					resp, err := client.Do(req)
					if err != nil {
						b.Error(err)
						return
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != 200 {
						b.Errorf("status %d", resp.StatusCode)
						return
					}
				}
			})
		})
	}
}

// canned is an upstream that answers every request with the same response
// in memory, so that a benchmark counts the handler's own work alone.
type canned struct{ body string }

func (c canned) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Body != nil {
		r.Body.Close()
	}
	return &http.Response{
		StatusCode:    200,
		Header:        http.Header{"Content-Type": {"text/plain;charset=UTF-8"}},
		Body:          io.NopCloser(strings.NewReader(c.body)),
		ContentLength: int64(len(c.body)),
		Request:       r,
	}, nil
}

// BenchmarkNegotiateHandler measures the handler alone on a negotiate: no
// sockets, the upstream answered from memory. Its allocations are the
// sidecar's own per negotiate.
func BenchmarkNegotiateHandler(b *testing.B) {
	h := newHarness(b, nil, func(c *Config) {
		c.Transport = canned{negotiateBody(accessKey)}
		c.Logger = zap.NewNop()
	})
	benchHandler(b, h, "/api/negotiate", h.mint(b, nil))
}

// BenchmarkPassThroughHandler measures the handler alone on another route
// with a bearer token.
func BenchmarkPassThroughHandler(b *testing.B) {
	h := newHarness(b, nil, func(c *Config) {
		c.Transport = canned{`{"ok":true}`}
		c.Logger = zap.NewNop()
	})
	benchHandler(b, h, "/api/other", h.mint(b, nil))
}

func benchHandler(b *testing.B, h *harness, path, token string) {
	handler := h.front.Config.Handler
	b.ReportAllocs()
	for b.Loop() {
		req := httptest.NewRequest("POST", path, nil)
		req.Header.Set("Authorization", "Bearer "+token)
		w := httptest.NewRecorder()
		handler.ServeHTTP(w, req)
		if w.Code != 200 {
			b.Fatalf("status %d: %s", w.Code, w.Body)
		}
	}
}
