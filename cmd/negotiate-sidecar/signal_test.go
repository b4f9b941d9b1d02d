package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestSIGTERMDrainsInFlightRequests runs the real binary, sends SIGTERM while
// requests are in flight, and checks the order the README promises:
// readiness turns 503 first, every in-flight request completes, and the
// process exits 0 within the shutdown timeout.
func TestSIGTERMDrainsInFlightRequests(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := filepath.Join(t.TempDir(), "negotiate-sidecar")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}

	idp := newTestIDP(t)
	const inFlight = 8
	arrived := make(chan struct{}, inFlight)
	release := make(chan struct{})
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/api/negotiate":
			arrived <- struct{}{}
			<-release
			fmt.Fprintf(w, `{"url":"https://unit.service.signalr.net/client/?hub=chat","accessToken":%q}`, signalRToken("https://unit.service.signalr.net/client/?hub=chat"))
		default:
			io.WriteString(w, "ok")
		}
	}))
	defer app.Close()

	cmd := exec.Command(bin, "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0",
		"--upstream", app.URL, "--issuer", idp.URL, "--audience", "api://app", "--shutdown-timeout", "20s")
	cmd.Env = []string{"AzureSignalRConnectionString=Endpoint=https://unit.service.signalr.net;AccessKey=" + testAccessKey}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	var logs syncBuffer
	addrs := make(chan [2]string, 1)
	go func() {
		var proxyAddr, adminAddr string
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			logs.Write(append(sc.Bytes(), '\n'))
			var line struct{ Msg, Listener, Addr string }
			if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == "listening" {
				if line.Listener == "proxy" {
					proxyAddr = line.Addr
				} else {
					adminAddr = line.Addr
				}
				if proxyAddr != "" && adminAddr != "" {
					addrs <- [2]string{proxyAddr, adminAddr}
				}
			}
		}
		exited <- cmd.Wait()
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
	})
	var a [2]string
	select {
	case a = <-addrs:
	case <-time.After(20 * time.Second):
		t.Fatalf("the sidecar did not start:\n%s", logs.String())
	}
	proxyURL, adminURL := "http://"+a[0], "http://"+a[1]
	waitStatus(t, adminURL+"/readyz", 200)

	token := idp.mint(t, "drained-user")
	var wg sync.WaitGroup
	results := make(chan int, inFlight)
	for range inFlight {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest("POST", proxyURL+"/api/negotiate", nil)
			req.Header.Set("Authorization", "Bearer "+token)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				results <- -1
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			results <- resp.StatusCode
		}()
	}
	for range inFlight {
		<-arrived
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// Readiness turns 503 while the requests are still held by the app.
	waitStatus(t, adminURL+"/readyz", 503)
	close(release)
	wg.Wait()
	close(results)
	for code := range results {
		if code != 200 {
			t.Errorf("an in-flight request ended with %d, want 200", code)
		}
	}
	select {
	case err := <-exited:
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("exit status %d, want 0:\n%s", ee.ExitCode(), logs.String())
		} else if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("the process did not exit within the shutdown timeout:\n%s", logs.String())
	}
	if !strings.Contains(logs.String(), `"msg":"stopped"`) {
		t.Errorf("no orderly stop logged:\n%s", logs.String())
	}
}
