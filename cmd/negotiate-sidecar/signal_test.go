package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// binary is the sidecar's real binary, started on loopback.
type binary struct {
	cmd          *exec.Cmd
	proxy, admin string // base URLs
	logs         *syncBuffer
	exited       chan error
}

// startBinary builds the sidecar and runs it with args plus loopback
// listeners on port 0, and waits until both listeners are up.
func startBinary(t *testing.T, env []string, args ...string) *binary {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "negotiate-sidecar")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	b := &binary{logs: &syncBuffer{}, exited: make(chan error, 1)}
	b.cmd = exec.Command(bin, append([]string{"--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"}, args...)...)
	b.cmd.Env = env
	stderr, err := b.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := b.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	addrs := make(chan [2]string, 1)
	go func() {
		var proxyAddr, adminAddr string
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			b.logs.Write(append(sc.Bytes(), '\n'))
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
		b.exited <- b.cmd.Wait()
	}()
	t.Cleanup(func() {
		_ = b.cmd.Process.Kill()
	})
	select {
	case a := <-addrs:
		b.proxy, b.admin = "http://"+a[0], "http://"+a[1]
	case <-time.After(20 * time.Second):
		t.Fatalf("the sidecar did not start:\n%s", b.logs.String())
	}
	return b
}

func (b *binary) signal(t *testing.T) {
	t.Helper()
	if err := b.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
}

// waitLog waits until the log has a line with msg.
func (b *binary) waitLog(t *testing.T, msg string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !strings.Contains(b.logs.String(), `"msg":"`+msg+`"`) {
		if time.Now().After(deadline) {
			t.Fatalf("no %q in the log within %s:\n%s", msg, within, b.logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitExit requires the process to exit 0 within d.
func (b *binary) waitExit(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case err := <-b.exited:
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("exit status %d, want 0:\n%s", ee.ExitCode(), b.logs.String())
		} else if err != nil {
			t.Fatal(err)
		}
	case <-time.After(d):
		t.Fatalf("the process did not exit within %s:\n%s", d, b.logs.String())
	}
	if !strings.Contains(b.logs.String(), `"msg":"stopped"`) {
		t.Errorf("no orderly stop logged:\n%s", b.logs.String())
	}
}

// TestSIGTERMDrainsInFlightRequests runs the real binary, sends SIGTERM while
// requests are in flight, and checks the order the README promises:
// readiness turns 503 at once; for the shutdown delay the sidecar still
// accepts and serves new connections; then it stops accepting, every
// in-flight request completes, and the process exits 0.
func TestSIGTERMDrainsInFlightRequests(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	idp := newTestIDP(t)
	const inFlight = 8
	const delay = 3 * time.Second
	arrived := make(chan struct{}, inFlight)
	release := make(chan struct{})
	var negotiates atomic.Int32
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/api/negotiate":
			// The first ones are held until the test lets them go; later
			// ones are answered at once.
			if negotiates.Add(1) <= inFlight {
				arrived <- struct{}{}
				<-release
			}
			fmt.Fprintf(w, `{"url":"https://unit.service.signalr.net/client/?hub=chat","accessToken":%q}`, signalRToken("https://unit.service.signalr.net/client/?hub=chat"))
		default:
			io.WriteString(w, "ok")
		}
	}))
	defer app.Close()
	// Deferred after app.Close, so run before it: a test that fails early
	// must not leave the app waiting on held requests.
	var releaseOnce sync.Once
	releaseAll := func() { releaseOnce.Do(func() { close(release) }) }
	defer releaseAll()

	b := startBinary(t, []string{"AzureSignalRConnectionString=Endpoint=https://unit.service.signalr.net;AccessKey=" + testAccessKey},
		"--upstream", app.URL, "--issuer", idp.URL, "--audience", "api://app", "--shutdown-delay", delay.String(), "--shutdown-timeout", "20s")
	waitStatus(t, b.admin+"/readyz", 200)

	token := idp.mint(t, "drained-user")
	post := func(client *http.Client) (*http.Response, error) {
		req, _ := http.NewRequest("POST", b.proxy+"/api/negotiate", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := client.Do(req)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		return resp, err
	}
	var wg sync.WaitGroup
	results := make(chan int, inFlight)
	for range inFlight {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := post(http.DefaultClient)
			if err != nil {
				results <- -1
				return
			}
			results <- resp.StatusCode
		}()
	}
	for range inFlight {
		<-arrived
	}

	b.signal(t)
	signalled := time.Now()
	// Readiness turns 503 while the requests are still held by the app.
	waitStatus(t, b.admin+"/readyz", 503)

	// During the delay a new connection is still served, and closed after
	// its response so that the client reconnects elsewhere.
	fresh := &http.Client{Transport: &http.Transport{}, Timeout: 10 * time.Second}
	resp, err := post(fresh)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("a new connection during the shutdown delay: %v, %v; want 200", resp, err)
	}
	if !resp.Close {
		t.Error("the response during the shutdown delay keeps the connection open")
	}
	if strings.Contains(b.logs.String(), "no longer accepting") {
		t.Fatalf("the delay was over before the test could use it:\n%s", b.logs.String())
	}

	// After the delay, no new connection is accepted while the in-flight
	// requests drain, and probes still answer.
	b.waitLog(t, "no longer accepting connections; draining in-flight requests", delay+5*time.Second)
	if elapsed := time.Since(signalled); elapsed < delay-100*time.Millisecond {
		t.Errorf("stopped accepting %s after SIGTERM, before the %s delay", elapsed, delay)
	}
	if c, err := net.DialTimeout("tcp", strings.TrimPrefix(b.proxy, "http://"), time.Second); err == nil {
		c.Close()
		t.Error("the proxy still accepts connections after the shutdown delay")
	}
	if code, _ := get(t, b.admin+"/readyz"); code != 503 {
		t.Errorf("readiness during the drain = %d, want 503", code)
	}

	releaseAll()
	wg.Wait()
	close(results)
	for code := range results {
		if code != 200 {
			t.Errorf("an in-flight request ended with %d, want 200", code)
		}
	}
	b.waitExit(t, 20*time.Second)
}

// TestSecondSignalCutsTheDelayShort: a second SIGTERM during a long
// shutdown delay ends the delay, and the sidecar drains and exits 0.
func TestSecondSignalCutsTheDelayShort(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	idp := newTestIDP(t)
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	defer app.Close()
	b := startBinary(t, []string{"AzureSignalRConnectionString=Endpoint=https://unit.service.signalr.net;AccessKey=" + testAccessKey},
		"--upstream", app.URL, "--issuer", idp.URL, "--audience", "api://app", "--shutdown-delay", "10m")
	waitStatus(t, b.admin+"/readyz", 200)
	b.signal(t)
	waitStatus(t, b.admin+"/readyz", 503)
	if code, _ := get(t, b.proxy+"/api/other"); code != 200 {
		t.Errorf("during the delay the proxy answered %d, want 200", code)
	}
	b.signal(t)
	b.waitExit(t, 15*time.Second)
	if !strings.Contains(b.logs.String(), `"msg":"shutdown delay cut short by a second signal"`) {
		t.Errorf("the cut was not logged:\n%s", b.logs.String())
	}
}
