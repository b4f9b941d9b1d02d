package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/negotiate-sidecar/negotiate-sidecar/auth"
	"github.com/negotiate-sidecar/negotiate-sidecar/proxy"
)

// TestReadinessFollowsMaxStaleness checks that keys kept through an identity
// provider outage keep the sidecar ready only for as long as configured.
func TestReadinessFollowsMaxStaleness(t *testing.T) {
	idp := newTestIDP(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	d := deps{
		log:       zap.NewNop(),
		transport: proxy.NewTransport(),
		pool:      newKeyPool(ctx, zap.NewNop(), &http.Client{Timeout: 5 * time.Second}, func(string, error) {}),
	}
	leeway := time.Duration(0)
	for _, tt := range []struct {
		name      string
		staleness time.Duration
		after     time.Duration
		wantErr   string
	}{
		{"fresh keys", 24 * time.Hour, time.Minute, ""},
		{"stale keys, no limit", 0, 1000 * time.Hour, ""},
		{"stale keys past the limit", 24 * time.Hour, 25 * time.Hour, "last fetched more than 24h0m0s ago"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := defaultSettings()
			s.Upstream = "http://127.0.0.1:1"
			s.Providers = []providerSettings{{Name: "p", Issuer: idp.URL, Audiences: []string{"a"}, Leeway: &leeway, MaxStaleness: tt.staleness}}
			s.SignalR.ConnectionStrings = []string{"Endpoint=https://x.service.signalr.net;AccessKey=" + testAccessKey}
			if errs := s.validate(); len(errs) > 0 {
				t.Fatal(errs)
			}
			rt, err := buildRuntime(s, environment{}, d)
			if err != nil {
				t.Fatal(err)
			}
			eventuallyReady(t, rt)
			err = rt.ready(time.Now().Add(tt.after))
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Errorf("ready() = %v, want %q", err, tt.wantErr)
			}
		})
	}
}

func eventuallyReady(t *testing.T, rt *runtime) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for rt.ready(time.Now()) != nil {
		if time.Now().After(deadline) {
			t.Fatalf("never ready: %v", rt.ready(time.Now()))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestKeyPoolSeparatesInsecureHTTP: a reload that withdraws insecure_http
// must not keep the key set that fetched over plain http.
func TestKeyPoolSeparatesInsecureHTTP(t *testing.T) {
	jwks, err := os.ReadFile("testdata/jwks.json")
	if err != nil {
		t.Fatal(err)
	}
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
	pool := newKeyPool(ctx, zap.NewNop(), client, func(string, error) {})

	ps := providerSettings{Name: "p", Issuer: srv.URL, RefreshInterval: time.Hour, InsecureHTTP: true}
	allowed, _, err := pool.get(ps)
	if err != nil {
		t.Fatal(err)
	}
	if err := allowed.Refresh(ctx); err != nil {
		t.Fatalf("with insecure_http: %v", err)
	}
	ps.InsecureHTTP = false
	withdrawn, _, err := pool.get(ps)
	if err != nil {
		t.Fatal(err)
	}
	if withdrawn == allowed {
		t.Fatal("the key set allowed plain http is kept after insecure_http was withdrawn")
	}
	if err := withdrawn.Refresh(ctx); !errors.Is(err, auth.ErrInsecureHTTP) {
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
	pool := newKeyPool(context.Background(), zap.NewNop(), &http.Client{Timeout: 5 * time.Second}, func(string, error) {
		time.Sleep(200 * time.Millisecond) // a slow last report, as a metric or a log line may be
		reported.Add(1)
	})
	for _, name := range []string{"retired", "kept"} {
		if _, _, err := pool.get(providerSettings{Name: name, Issuer: idp.URL + "/" + name, RefreshInterval: time.Minute}); err != nil {
			t.Fatal(err)
		}
		<-arrived
	}
	_, keptID, _ := pool.get(providerSettings{Name: "kept", Issuer: idp.URL + "/kept", RefreshInterval: time.Minute})
	pool.retain(map[string]bool{keptID: true})

	closed := make(chan struct{})
	go func() { pool.close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("close did not return")
	}
	if got := reported.Load(); got != 2 {
		t.Errorf("close returned with %d of 2 refreshes ended", got)
	}
	if _, _, err := pool.get(providerSettings{Name: "late", Issuer: idp.URL + "/late"}); err == nil {
		t.Error("get after close started a key set")
	}
}
