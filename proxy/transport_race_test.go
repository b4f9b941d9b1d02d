package proxy

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// Timeouts that end just as the answer arrives, on connections shared with
// negotiates that have all the time they need: a timed-out exchange must
// never leave a deadline, a stale answer or a buffer behind on a connection
// the pool hands out again. The patient negotiates must each be answered on
// their first try, with their own answer.
func TestTimeoutsRacingThePool(t *testing.T) {
	var mu sync.Mutex
	seen := map[string]int{}
	app := newRawApp(t, func(a *rawApp, n int, c net.Conn, br *bufio.Reader) {
		for {
			r, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			var in struct{ N string }
			json.NewDecoder(r.Body).Decode(&in)
			io.Copy(io.Discard, r.Body)
			mu.Lock()
			seen[in.N]++
			mu.Unlock()
			if strings.HasPrefix(in.N, "hasty") {
				time.Sleep(time.Duration(rand.IntN(1500)) * time.Microsecond)
			}
			if _, err := io.WriteString(c, echoAnswer(in.N, "")); err != nil {
				return
			}
		}
	})
	tr := NewTransport(4)
	hasty := newHarness(t, nil, func(c *Config) {
		c.Upstream = app.url
		c.Transport = tr
		c.NegotiateTimeout = 700 * time.Microsecond
	})
	patient := newHarness(t, nil, func(c *Config) {
		c.Upstream = app.url
		c.Transport = tr
	})
	send := func(h *harness, n string) (int, string) {
		req, _ := http.NewRequest("POST", h.front.URL+"/api/negotiate", strings.NewReader(fmt.Sprintf(`{"n":%q}`, n)))
		req.Header.Set("Authorization", "Bearer "+h.mint(t, nil))
		resp, err := h.front.Client().Do(req)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		io.Copy(io.Discard, resp.Body)
		return resp.StatusCode, resp.Header.Get("X-Echo")
	}
	var wg sync.WaitGroup
	statuses := map[int]int{}
	var bad []string
	var badMu sync.Mutex
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 60 {
				if (w+i)%2 == 0 {
					n := fmt.Sprintf("hasty-%d-%d", w, i)
					status, echo := send(hasty, n)
					badMu.Lock()
					statuses[status]++
					badMu.Unlock()
					if status == 200 && echo != n || status != 200 && status != 504 && status != 502 {
						badMu.Lock()
						bad = append(bad, fmt.Sprintf("%s: %d %q", n, status, echo))
						badMu.Unlock()
					}
					continue
				}
				n := fmt.Sprintf("patient-%d-%d", w, i)
				status, echo := send(patient, n)
				mu.Lock()
				tries := seen[n]
				mu.Unlock()
				if status != 200 || echo != n || tries != 1 {
					badMu.Lock()
					bad = append(bad, fmt.Sprintf("%s: %d %q after %d tries", n, status, echo, tries))
					badMu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	t.Logf("hasty negotiates by status: %v", statuses)
	if testing.Verbose() {
		for _, l := range strings.Split(hasty.logText(), "\n") {
			if strings.Contains(l, `"status":502`) {
				t.Log(l)
				break
			}
		}
	}
	for _, b := range bad {
		t.Error(b)
	}
}
