package proxy

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// FuzzExchange gives the negotiate's exchange whatever an app might answer,
// then closes the connection. It must end without waiting for the timeout,
// return an answer or an error, never a body over the limit, and keep the
// connection only after an answer read to its end.
func FuzzExchange(f *testing.F) {
	body := negotiateBody(accessKey)
	for _, s := range []string{
		answer(""),
		answer("Connection: close\r\n"),
		"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\n\r\n" + answer(""),
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-T: 1\r\n\r\n",
		"HTTP/1.0 200 OK\r\n\r\n" + body,
		"HTTP/1.1 101 Switching Protocols\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 2000\r\n\r\n" + body,
		"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\nhello",
		"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 3\r\n\r\nabc",
		answer("") + "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
		"",
	} {
		f.Add(s, "POST")
	}
	f.Add(answer(""), "HEAD")
	f.Fuzz(func(t *testing.T, reply, method string) {
		if method != "HEAD" {
			method = "POST"
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		done := make(chan struct{})
		defer func() { <-done }()
		tr := NewTransport(1)
		tr.conns.dial = func(context.Context, string, string) (net.Conn, error) {
			ours, app := net.Pipe()
			go func() {
				defer close(done)
				defer app.Close()
				if _, err := http.ReadRequest(bufio.NewReader(app)); err != nil {
					return
				}
				app.Write([]byte(reply))
			}()
			return ours, nil
		}
		req, _ := http.NewRequestWithContext(ctx, method, "http://app/api/negotiate", nil)
		resp, err := tr.exchange(req)
		if err == nil {
			var b []byte
			b, err = readBody(resp, 1024)
			if err == nil && len(b) > 1024 {
				t.Fatalf("a body of %d bytes, over the limit", len(b))
			}
		}
		if errors.Is(err, context.DeadlineExceeded) || ctx.Err() != nil {
			t.Fatalf("the exchange waited for the timeout: %v", err)
		}
		if c := tr.conns.pop(); c != nil {
			// Kept: the answer must have ended where its framing says
			// (a body the rewrite cannot use may still end cleanly).
			c.Close()
			if !framed(reply, req) {
				t.Fatalf("a connection was kept after an answer that did not end cleanly (%v)", err)
			}
		}
	})
}

// framed reports whether net/http reads reply as a whole answer to req that
// leaves the connection open, interim answers included.
func framed(reply string, req *http.Request) bool {
	br := bufio.NewReader(strings.NewReader(reply))
	for range 6 { // five interim answers, then the answer
		resp, err := http.ReadResponse(br, req)
		if err != nil || resp.StatusCode == http.StatusSwitchingProtocols {
			return false
		}
		if resp.StatusCode >= 100 && resp.StatusCode < 200 {
			continue
		}
		_, err = io.Copy(io.Discard, resp.Body)
		return err == nil && !resp.Close
	}
	return false
}
