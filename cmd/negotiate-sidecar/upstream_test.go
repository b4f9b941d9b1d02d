package main

import (
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestAPeakKeepsItsConnectionsToTheApp: with the default settings, two
// peaks of 150 requests at once reach the app over the same 150
// connections. A proxy that kept fewer idle connections would close the
// rest after each request and dial again at the next peak, leaving a socket
// in TIME_WAIT for every request beyond them (enough, at a few thousand
// requests a second, to run out of local ports).
func TestAPeakKeepsItsConnectionsToTheApp(t *testing.T) {
	const peak = 150
	idp := newTestIDP(t)
	var dials atomic.Int64
	var mu sync.Mutex
	arrived, all := 0, make(chan struct{})
	app := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Answer only once the whole peak is in (or after a while, should a
		// request go missing): every request holds its own connection at
		// the same time.
		mu.Lock()
		if arrived++; arrived == peak {
			close(all)
		}
		wait := all
		mu.Unlock()
		select {
		case <-wait:
		case <-time.After(10 * time.Second):
		}
		w.Write([]byte("ok"))
	}))
	app.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			dials.Add(1)
		}
	}
	app.Start()
	defer app.Close()

	cs := "Endpoint=https://unit.service.signalr.net;AccessKey=" + testAccessKey + ";Version=1.0;"
	r := startRun(t, map[string]string{"AzureSignalRConnectionString": cs}, "--upstream", app.URL, "--issuer", idp.URL, "--audience", "api://app")
	waitStatus(t, r.admin+"/readyz", 200)
	tok := idp.mint(t, "user-1")
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: peak}, Timeout: 20 * time.Second}
	defer client.CloseIdleConnections()

	for round := 1; round <= 2; round++ {
		mu.Lock()
		arrived, all = 0, make(chan struct{})
		mu.Unlock()
		var done sync.WaitGroup
		codes := make(chan int, peak)
		for range peak {
			done.Add(1)
			go func() {
				defer done.Done()
				req, _ := http.NewRequest("GET", r.proxy+"/api/items", nil)
				req.Header.Set("Authorization", "Bearer "+tok)
				resp, err := client.Do(req)
				if err != nil {
					t.Error(err)
					return
				}
				resp.Body.Close()
				codes <- resp.StatusCode
			}()
		}
		done.Wait()
		close(codes)
		for c := range codes {
			if c != http.StatusOK {
				t.Fatalf("round %d: status %d", round, c)
			}
		}
		if n := dials.Load(); n != peak {
			t.Fatalf("after round %d the app saw %d connections, want %d", round, n, peak)
		}
	}
}
