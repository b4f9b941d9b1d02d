package proxy

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"go.uber.org/zap"
)

// DefaultMaxRequestBytes is the default RequestLimits.MaxBytes. The SignalR
// and Web PubSub clients send a negotiate with no body at all; a negotiate
// function that takes one takes a few fields of JSON.
const DefaultMaxRequestBytes = 64 << 10

// Outcomes of a negotiate refused before it is authenticated, because of
// what the caller sent.
const (
	OutcomeRequestTooLarge = "request_too_large" // 413, the body is larger than RequestLimits.MaxBytes
	OutcomeRequestTimeout  = "request_timeout"   // 408, the body took longer than RequestLimits.Timeout
)

// RequestLimits bounds the body a caller sends on a negotiate route. Other
// routes are left alone: they may stream uploads of any size and pace.
type RequestLimits struct {
	// Negotiate tells negotiate routes from the rest; give it the
	// Config.Negotiate of the handler behind. Default: paths whose last
	// segment is "negotiate".
	Negotiate *Matcher
	// Timeout bounds how long the caller may take to send a negotiate's
	// body, from when the request's headers have been read. Default
	// DefaultNegotiateTimeout.
	Timeout time.Duration
	// MaxBytes bounds a negotiate's body. Default DefaultMaxRequestBytes.
	MaxBytes int64
	// Logger receives one line per refused negotiate, in the shape of the
	// handler's own. Default: no logs.
	Logger *zap.Logger
	// Metrics, if set, counts refusals as negotiate outcomes.
	Metrics *Metrics
}

// LimitRequests returns a handler that reads a negotiate's body in full,
// within l.Timeout and l.MaxBytes, before handing the request to next. A
// caller that sends a larger body gets 413, one that sends it too slowly
// 408; neither reaches next. Without it a caller could hold a connection,
// and the negotiate behind it, for as long as it pleased by trickling a
// body, since the server bounds only how long headers may take.
//
// The time limit is a read deadline on the connection, which the server
// sets afresh when it reads the next request, so a keep-alive connection
// is not cut off later. Reading the body first also hands the app a
// complete body with a Content-Length, never a trickle.
func LimitRequests(next http.Handler, l RequestLimits) http.Handler {
	if l.Negotiate == nil {
		l.Negotiate = &Matcher{}
	}
	if l.Timeout <= 0 {
		l.Timeout = DefaultNegotiateTimeout
	}
	if l.MaxBytes <= 0 {
		l.MaxBytes = DefaultMaxRequestBytes
	}
	if l.Logger == nil {
		l.Logger = zap.NewNop()
	}
	return &limitedHandler{next: next, l: l}
}

type limitedHandler struct {
	next http.Handler
	l    RequestLimits
}

func (h *limitedHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// The server gives a request without a body http.NoBody: nothing to wait for.
	if r.Body == nil || r.Body == http.NoBody || !h.l.Negotiate.Match(r.URL.Path) {
		h.next.ServeHTTP(w, r)
		return
	}
	start := time.Now()
	if r.ContentLength > h.l.MaxBytes {
		h.refuse(w, r, start, OutcomeRequestTooLarge, nil)
		return
	}
	rc := http.NewResponseController(w)
	// Without deadline support (a wrapped writer that does not unwrap) the
	// size bound still holds.
	deadline := rc.SetReadDeadline(start.Add(h.l.Timeout)) == nil
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, h.l.MaxBytes))
	if deadline {
		// The rest of the request is the app's time, bounded by the
		// handler's own NegotiateTimeout; a deadline left in place would
		// end the server's watch for the caller going away, and with it
		// the request. net/http clears it too when that watch starts, at
		// the end of the body, but that is its own business.
		_ = rc.SetReadDeadline(time.Time{})
	}
	if err != nil {
		var tooLarge *http.MaxBytesError
		switch {
		case errors.As(err, &tooLarge):
			h.refuse(w, r, start, OutcomeRequestTooLarge, err)
		case errors.Is(err, os.ErrDeadlineExceeded):
			h.refuse(w, r, start, OutcomeRequestTimeout, err)
		default:
			// The caller went away mid-body; nobody reads an answer.
			h.log(r, start, OutcomeClientGone, 499, err)
		}
		return
	}
	r.Body = http.NoBody
	if len(body) > 0 {
		r.Body = io.NopCloser(bytes.NewReader(body))
	}
	r.ContentLength = int64(len(body))
	r.TransferEncoding = nil
	// The caller has sent its body; the app must not wait for a go-ahead.
	r.Header.Del("Expect")
	h.next.ServeHTTP(w, r)
}

// refuse answers a negotiate whose body broke a limit, and closes the
// connection: what is left of the body is not worth reading.
func (h *limitedHandler) refuse(w http.ResponseWriter, r *http.Request, start time.Time, outcome string, err error) {
	ensureRequestID(w, r)
	w.Header().Set("Connection", "close")
	status := http.StatusRequestEntityTooLarge
	title, detail := "Content too large", "The negotiate request body is too large."
	if outcome == OutcomeRequestTimeout {
		status = http.StatusRequestTimeout
		title, detail = "Request timeout", "The negotiate request body was not sent in time."
	}
	writeProblem(w, r, status, title, detail)
	h.log(r, start, outcome, status, err)
}

func (h *limitedHandler) log(r *http.Request, start time.Time, outcome string, status int, err error) {
	h.l.Metrics.negotiate(outcome)
	fields := []zap.Field{
		zap.String("request_id", r.Header.Get(headerRequestID)),
		zap.String("outcome", outcome),
		zap.Int("status", status),
		zap.String("method", r.Method),
		zap.String("path", r.URL.Path),
		zap.Duration("latency", time.Since(start)),
	}
	if err != nil {
		fields = append(fields, zap.Error(err))
	}
	h.l.Logger.Info("negotiate", fields...)
}

// LimitListener returns a listener that keeps at most n of the connections
// it accepted open at once. With n open, Accept waits until one closes;
// meanwhile new connections queue in the kernel's backlog. So that idle
// keep-alive connections cannot keep everyone else out, full is called
// while Accept waits, at once and then every shedInterval: a server passes
// a function that closes its idle connections.
func LimitListener(ln net.Listener, n int, full func()) net.Listener {
	if full == nil {
		full = func() {}
	}
	return &limitListener{Listener: ln, slots: make(chan struct{}, n), done: make(chan struct{}), full: full}
}

// shedInterval is how often a full listener asks again for idle
// connections to be closed: a connection that was busy when it last asked
// may be idle by now.
const shedInterval = 250 * time.Millisecond

type limitListener struct {
	net.Listener
	slots     chan struct{} // one token per open connection
	done      chan struct{} // closed by Close
	closeOnce sync.Once
	full      func()
}

func (l *limitListener) Accept() (net.Conn, error) {
	if err := l.acquire(); err != nil {
		return nil, err
	}
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.slots
		return nil, err
	}
	return &limitConn{Conn: c, release: func() { <-l.slots }}, nil
}

// acquire takes a slot, waiting for one if all are taken.
func (l *limitListener) acquire() error {
	select {
	case <-l.done:
		return net.ErrClosed
	case l.slots <- struct{}{}:
		return nil
	default:
	}
	l.full()
	t := time.NewTicker(shedInterval)
	defer t.Stop()
	for {
		select {
		case <-l.done:
			return net.ErrClosed
		case l.slots <- struct{}{}:
			return nil
		case <-t.C:
			l.full()
		}
	}
}

func (l *limitListener) Close() error {
	l.closeOnce.Do(func() { close(l.done) })
	return l.Listener.Close()
}

// limitConn gives its slot back when it is closed, once however often it is
// closed: the server, a hijacker and the shedding may all close it.
type limitConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}
