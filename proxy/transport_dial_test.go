//go:build linux

package proxy

import (
	"net"
	"net/http"
	"net/url"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// blackhole returns the URL of a local port whose accept queue is full, so
// that a new connection's handshake is never answered and the dial waits
// for its deadline, as a dial to an app whose node is gone does.
func blackhole(t *testing.T) *url.URL {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Skip(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Skip(err)
	}
	if err := syscall.Listen(fd, 0); err != nil {
		t.Skip(err)
	}
	sa, _ := syscall.Getsockname(fd)
	addr := "127.0.0.1:" + strconv.Itoa(sa.(*syscall.SockaddrInet4).Port)
	// Fill the queue; the kernel then drops further handshakes.
	for range 4 {
		c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond)
		if err != nil {
			break
		}
		t.Cleanup(func() { c.Close() })
	}
	if c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond); err == nil {
		c.Close()
		t.Skip("the kernel accepted a handshake beyond the queue")
	}
	u, _ := url.Parse("http://" + addr)
	return u
}

// A negotiate whose time runs out while the sidecar is still dialling the
// app timed out: 504, as when it runs out while the app answers. The dialer
// stops at the context's deadline by its own clock and may report "i/o
// timeout" before the context itself says it is done.
func TestATimeoutDuringTheDialIsA504(t *testing.T) {
	u := blackhole(t)
	h := newHarness(t, nil, func(c *Config) {
		c.Upstream = u
		c.NegotiateTimeout = 20 * time.Millisecond
	})
	counts := map[int]int{}
	for range 40 {
		status, _, err := h.negotiateStatus(t, "")
		if err != nil {
			t.Fatal(err)
		}
		counts[status]++
	}
	if counts[http.StatusGatewayTimeout] != 40 {
		t.Errorf("40 negotiates that ran out of time dialing got %v, want 504 every time", counts)
	}
}
