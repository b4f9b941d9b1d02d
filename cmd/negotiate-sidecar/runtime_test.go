package main

import (
	"context"
	"net/http"
	"strings"
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
		transport: proxy.NewTransport(0),
		pool:      auth.NewKeyPool(ctx, zap.NewNop(), &http.Client{Timeout: 5 * time.Second}, func(string, error) {}),
	}
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
			s, err := loadSettings([]string{"--upstream", "http://127.0.0.1:1", "--issuer", idp.URL, "--audience", "a", "--leeway", "0s",
				"--max-staleness", tt.staleness.String(), "--connection-string", "Endpoint=https://x.service.signalr.net;AccessKey=" + testAccessKey}, environment{}, false)
			if err != nil {
				t.Fatal(err)
			}
			rt, err := buildInstance(s, environment{}, d)
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

func eventuallyReady(t *testing.T, rt *instance) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for rt.ready(time.Now()) != nil {
		if time.Now().After(deadline) {
			t.Fatalf("never ready: %v", rt.ready(time.Now()))
		}
		time.Sleep(10 * time.Millisecond)
	}
}
