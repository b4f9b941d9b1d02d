package proxy

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// echoAnswer is a negotiate answer that names the request it answers.
func echoAnswer(echo, extra string) string {
	return answer("X-Echo: " + echo + "\r\n" + extra)
}

// Many callers at once, each with its own identity, against an app that
// misbehaves in framed, detectable ways chosen by the request: every caller
// gets either its own answer with its own id, or a clean 502. Never another
// request's answer, never a cut connection.
func TestManyNegotiatesAgainstAMisbehavingApp(t *testing.T) {
	var mu sync.Mutex
	seen := map[string]int{}
	app := newRawApp(t, func(a *rawApp, n int, c net.Conn, br *bufio.Reader) {
		for {
			r, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			var in struct {
				N    int
				Mode string
			}
			json.NewDecoder(r.Body).Decode(&in)
			io.Copy(io.Discard, r.Body)
			echo := fmt.Sprint(in.N)
			mu.Lock()
			seen[echo]++
			first := seen[echo] == 1
			mu.Unlock()
			var err2 error
			switch in.Mode {
			case "twice": // a second answer, in the same write
				_, err2 = io.WriteString(c, echoAnswer(echo, "")+echoAnswer("stale-"+echo, ""))
			case "close":
				io.WriteString(c, echoAnswer(echo, "Connection: close\r\n"))
				return
			case "extra": // bytes after the body
				_, err2 = io.WriteString(c, echoAnswer(echo, "")+"junk")
			case "cut":
				s := echoAnswer(echo, "")
				io.WriteString(c, s[:len(s)-20])
				return
			case "drop": // the first time: closed without a word
				if first {
					return
				}
				_, err2 = io.WriteString(c, echoAnswer(echo, ""))
			case "idleclose":
				io.WriteString(c, echoAnswer(echo, ""))
				time.Sleep(time.Millisecond)
				return
			case "interim":
				_, err2 = io.WriteString(c, "HTTP/1.1 100 Continue\r\n\r\n"+echoAnswer(echo, ""))
			case "chunked":
				body := negotiateBody(accessKey)
				_, err2 = io.WriteString(c, "HTTP/1.1 200 OK\r\nX-Echo: "+echo+"\r\nTransfer-Encoding: chunked\r\n\r\n"+
					fmt.Sprintf("%x\r\n%s\r\n0\r\n\r\n", len(body), body))
			case "slowbody":
				s := echoAnswer(echo, "")
				i := strings.Index(s, "\r\n\r\n") + 4
				io.WriteString(c, s[:i])
				time.Sleep(2 * time.Millisecond)
				_, err2 = io.WriteString(c, s[i:])
			default:
				_, err2 = io.WriteString(c, echoAnswer(echo, ""))
			}
			if err2 != nil {
				return
			}
		}
	})
	h := newHarness(t, nil, func(c *Config) {
		c.Upstream = app.url
		c.Transport = NewTransport(8)
		c.NegotiateTimeout = 5 * time.Second
	})
	modes := []string{"ok", "twice", "close", "extra", "cut", "drop", "idleclose", "interim", "chunked", "slowbody", "ok", "ok"}
	const workers, each = 24, 40
	var wg sync.WaitGroup
	errs := make(chan string, workers*each)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			user := fmt.Sprintf("user%d", w)
			tok := h.mint(t, jwt.MapClaims{"sub": user})
			for i := range each {
				n := w*1000 + i
				mode := modes[(w+i)%len(modes)]
				req, _ := http.NewRequest("POST", h.front.URL+"/api/negotiate", strings.NewReader(fmt.Sprintf(`{"n":%d,"mode":%q}`, n, mode)))
				req.Header.Set("Authorization", "Bearer "+tok)
				resp, err := h.front.Client().Do(req)
				if err != nil {
					errs <- fmt.Sprintf("%s: no answer: %v", mode, err)
					continue
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				switch resp.StatusCode {
				case 200:
					if got := resp.Header.Get("X-Echo"); got != fmt.Sprint(n) {
						errs <- fmt.Sprintf("%s: request %d got the answer to %q", mode, n, got)
					}
					var body struct{ AccessToken string }
					json.Unmarshal(b, &body)
					tk, _, err := jwt.NewParser().ParseUnverified(body.AccessToken, jwt.MapClaims{})
					if err != nil || tk.Claims.(jwt.MapClaims)["asrs.s.uid"] != user {
						errs <- fmt.Sprintf("%s: %s got a token for someone else: %v", mode, user, err)
					}
				case 502:
				default:
					errs <- fmt.Sprintf("%s: status %d: %s", mode, resp.StatusCode, b)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}
