package auth

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
)

// TestKeyPoolSeparatesInsecureHTTP: a reload that withdraws insecure_http
// must not keep the key set that fetched over plain http.
func TestKeyPoolSeparatesInsecureHTTP(t *testing.T) {
	jwks := jwksJSON(newECKey(t, "k1"))
	var srv *httptest.Server
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/keys" {
			w.Write(jwks)
			return
		}
		// The issuer is on loopback; the keys it names are elsewhere.
		fmt.Fprintf(w, `{"issuer":%q,"jwks_uri":"http://keys.example.test/keys"}`, srv.URL)
	}))
	defer srv.Close()
	// Every request goes to srv, whatever host it names.
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, srv.Listener.Addr().String())
		},
	}}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pool := NewKeyPool(ctx, zap.NewNop(), client, func(string, error) {})

	cfg := KeySetConfig{Issuer: srv.URL, RefreshInterval: time.Hour, InsecureHTTP: true}
	allowed, _, err := pool.Get("p", cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := allowed.Refresh(ctx); err != nil {
		t.Fatalf("with insecure_http: %v", err)
	}
	cfg.InsecureHTTP = false
	withdrawn, _, err := pool.Get("p", cfg)
	if err != nil {
		t.Fatal(err)
	}
	if withdrawn == allowed {
		t.Fatal("the key set allowed plain http is kept after insecure_http was withdrawn")
	}
	if err := withdrawn.Refresh(ctx); !errors.Is(err, ErrInsecureHTTP) {
		t.Fatalf("without insecure_http: %v, want the jwks_uri refused", err)
	}
}

// TestKeyPoolCloseWaitsForRefreshes stops a pool while two refreshes are in
// flight, one of a key set a reload retired: close must return only once
// both have ended, down to their last report.
func TestKeyPoolCloseWaitsForRefreshes(t *testing.T) {
	arrived := make(chan struct{}, 2)
	// An identity provider that never answers, so that each refresh is in
	// flight until it is cancelled.
	idp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		<-r.Context().Done()
	}))
	defer idp.Close()
	var reported atomic.Int32
	pool := NewKeyPool(context.Background(), zap.NewNop(), &http.Client{Timeout: 5 * time.Second}, func(string, error) {
		time.Sleep(200 * time.Millisecond) // a slow last report, as a metric or a log line may be
		reported.Add(1)
	})
	for _, name := range []string{"retired", "kept"} {
		if _, _, err := pool.Get(name, KeySetConfig{Issuer: idp.URL + "/" + name, RefreshInterval: time.Minute}); err != nil {
			t.Fatal(err)
		}
		<-arrived
	}
	_, keptID, _ := pool.Get("kept", KeySetConfig{Issuer: idp.URL + "/kept", RefreshInterval: time.Minute})
	pool.Retain(map[string]bool{keptID: true})

	closed := make(chan struct{})
	go func() { pool.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("close did not return")
	}
	if got := reported.Load(); got != 2 {
		t.Errorf("close returned with %d of 2 refreshes ended", got)
	}
	if _, _, err := pool.Get("late", KeySetConfig{Issuer: idp.URL + "/late"}); err == nil {
		t.Error("get after close started a key set")
	}
}
