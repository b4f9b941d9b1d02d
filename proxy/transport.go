package proxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sync"
	"time"

	"golang.org/x/net/http/httpguts"
)

// DefaultMaxIdleConns is how many idle connections to the app NewTransport
// keeps when it is given no number.
const DefaultMaxIdleConns = 100

// idleConnTimeout is how long an idle connection to the app is kept.
const idleConnTimeout = 90 * time.Second

// maxResponseHeaderBytes bounds the head of a negotiate answer read by
// Transport's own exchange, as http.Server's DefaultMaxHeaderBytes bounds a
// request's: an app that sent headers without end must not fill our memory.
const maxResponseHeaderBytes = 1 << 20

// Transport carries requests to the app. Every route goes through its
// http.Transport, except the negotiate to an app served over plain HTTP (as
// an app in the same pod is), which the handler exchanges on a connection of
// Transport's own, in its own goroutine.
//
// Why: http.Transport reads and writes each connection in two goroutines of
// its own and hands every request and answer between them and the caller.
// For the negotiate, whose answer is read whole before anything is written
// back, those handoffs were the largest cost the sidecar could still shed:
// about 9 µs of each round trip, measured, and more CPU than a negotiate's
// own checks and rewrite. A pass-through streams, and keeps http.Transport.
type Transport struct {
	http  *http.Transport
	conns connPool
}

// NewTransport returns the default upstream transport. The upstream runs in
// the same pod, so the dial timeout is short: a caller learns within about
// two seconds that the app is down, instead of hanging.
//
// maxIdle is how many idle connections to the app it keeps for each of its
// two ways, the pass-through and the negotiate (DefaultMaxIdleConns when not
// positive); give it the most requests the proxy carries at once. With
// fewer, every request beyond them at a peak dials the app and closes its
// connection after one use: at 256 requests at once and 100 kept, that was
// some 950 new connections a second, the cost of a dial each, and each closed
// one left in TIME_WAIT for a minute, tens of thousands of sockets against
// the pod's local ports. Idle connections close after 90 seconds, so a peak's
// connections do not stay for long.
func NewTransport(maxIdle int) *Transport {
	if maxIdle <= 0 {
		maxIdle = DefaultMaxIdleConns
	}
	dialer := &net.Dialer{Timeout: 2 * time.Second, KeepAlive: 30 * time.Second}
	return &Transport{
		http: &http.Transport{
			DialContext:           dialer.DialContext,
			MaxIdleConns:          maxIdle,
			MaxIdleConnsPerHost:   maxIdle,
			IdleConnTimeout:       idleConnTimeout,
			TLSHandshakeTimeout:   5 * time.Second,
			ExpectContinueTimeout: time.Second,
		},
		conns: connPool{dial: dialer.DialContext, maxIdle: maxIdle, idleTimeout: idleConnTimeout},
	}
}

// RoundTrip sends a request through the http.Transport.
func (t *Transport) RoundTrip(r *http.Request) (*http.Response, error) {
	return t.http.RoundTrip(r)
}

// CloseIdleConnections closes the connections to the app that carry nothing.
func (t *Transport) CloseIdleConnections() {
	t.http.CloseIdleConnections()
	t.conns.closeIdle()
}

// exchange sends r, an HTTP/1.1 request to a plain-http app whose body, if
// any, is in memory, and returns the answer as RoundTrip would. Closing the
// answer's body gives the connection back for another exchange when the body
// was read to its end, and closes it otherwise: it never reads on, so an
// answer over the caller's limit costs no more than the limit. The exchange
// honours r's context: when the context ends, any read or write stops and
// the error wraps the context's.
//
// A connection that was idle in the pool may have been closed by the app
// (Node.js closes them after 5 seconds) just as it was taken. When such a
// connection fails before a byte of the answer arrived, the request is sent
// once more on a new connection, as http.Transport does. That holds for a
// negotiate's POST too: the app closed without answering, and a negotiate
// only hands out a connection's URL and token.
func (t *Transport) exchange(r *http.Request) (*http.Response, error) {
	if err := checkHeader(r.Header); err != nil {
		return nil, err
	}
	ctx := r.Context()
	addr := hostPort(r.URL)
	c, err := t.conns.get(ctx, addr)
	if err != nil {
		return nil, err
	}
	resp, err := c.roundTrip(ctx, r)
	if err != nil && c.reused && c.nread == 0 && ctx.Err() == nil && (r.Body == nil || r.GetBody != nil) {
		if r.Body != nil {
			if r.Body, err = r.GetBody(); err != nil {
				return nil, fmt.Errorf("sending the request again: %w", err)
			}
		}
		nc, err := t.conns.dial(ctx, "tcp", addr)
		if err != nil {
			return nil, dialFailed(ctx, err)
		}
		return t.conns.newConn(nc, addr).roundTrip(ctx, r)
	}
	return resp, err
}

// checkHeader refuses what http.Transport refuses to send: a header whose
// name or value is not valid HTTP, which Request.Write would send with its
// newlines made spaces. The identity headers are made safe before this (a
// claim with a control character is not used); the check keeps the two ways
// to the app alike whatever a later change sets.
func checkHeader(h http.Header) error {
	for k, vv := range h {
		if !httpguts.ValidHeaderFieldName(k) {
			return fmt.Errorf("invalid header field name %q", k)
		}
		for _, v := range vv {
			if !httpguts.ValidHeaderFieldValue(v) {
				return fmt.Errorf("invalid header field value for %q", k)
			}
		}
	}
	return nil
}

// dialFailed is err, joined with the context's cause when the dial ran into
// the context's deadline: the dialer keeps that deadline by its own clock
// and may give up a moment before the context is done, and a caller told
// "i/o timeout" would not know that its time ran out (504, not 502).
func dialFailed(ctx context.Context, err error) error {
	if deadline, ok := ctx.Deadline(); ok && !time.Now().Before(deadline) {
		<-ctx.Done()
		return errors.Join(context.Cause(ctx), err)
	}
	return err
}

// hostPort is the address to dial for u, with the scheme's port when u
// names none, as http.Transport dials.
func hostPort(u *url.URL) string {
	port := u.Port()
	if port == "" {
		port = "80"
		if u.Scheme == "https" {
			port = "443"
		}
	}
	return net.JoinHostPort(u.Hostname(), port)
}

// roundTrip sends r on c and reads the answer's head, within ctx. On
// failure c is closed; otherwise the answer's body owns it.
func (c *appConn) roundTrip(ctx context.Context, r *http.Request) (*http.Response, error) {
	// Ending the context ends any read or write in progress at once.
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Unix(1, 0)) })
	resp, err := c.writeAndReadHead(r)
	if err != nil {
		if !stop() {
			err = errors.Join(context.Cause(ctx), err)
		}
		c.close()
		return nil, err
	}
	resp.Body = &exchangeBody{src: resp.Body, c: c, stop: stop, keep: !resp.Close && !r.Close}
	return resp, nil
}

// writeAndReadHead writes r on c and reads the answer's head.
func (c *appConn) writeAndReadHead(r *http.Request) (*http.Response, error) {
	bw := c.pool.writer(c.Conn)
	err := r.Write(bw)
	if err == nil {
		err = bw.Flush()
	}
	c.pool.putWriter(bw)
	if err != nil {
		return nil, fmt.Errorf("writing the request: %w", err)
	}
	c.br = c.pool.reader(c)
	c.readLimit = maxResponseHeaderBytes
	defer func() { c.readLimit = -1 }()
	for interim := 0; ; interim++ {
		resp, err := http.ReadResponse(c.br, r)
		if err != nil {
			if c.readLimit == 0 {
				err = fmt.Errorf("the answer's head is over %d bytes", maxResponseHeaderBytes)
			}
			return nil, fmt.Errorf("reading the answer: %w", err)
		}
		// 1xx answers come before the real one, five at most, as
		// http.Transport allows; 101 would hand the connection over to
		// another protocol, which a negotiate never asks for.
		if resp.StatusCode >= 200 || resp.StatusCode < 100 {
			return resp, nil
		}
		if resp.StatusCode == http.StatusSwitchingProtocols || interim == 5 {
			return nil, fmt.Errorf("reading the answer: unexpected %d %s", resp.StatusCode, http.StatusText(resp.StatusCode))
		}
	}
}

// exchangeBody is the body of an answer read by exchange.
type exchangeBody struct {
	src  io.Reader // never closed: closing an http body reads the rest of it
	c    *appConn  // nil once closed
	stop func() bool
	keep bool // neither side asked to close the connection
	eof  bool
}

func (b *exchangeBody) Read(p []byte) (int, error) {
	if b.c == nil {
		// The reader under src may serve another exchange by now.
		return 0, errors.New("read on a closed answer body")
	}
	n, err := b.src.Read(p)
	if err == io.EOF {
		b.eof = true
	}
	return n, err
}

// Close gives the connection back when the body was read to its end and
// closes it otherwise.
func (b *exchangeBody) Close() error {
	if b.c == nil {
		return nil
	}
	// A false stop means the context ended and the connection's deadline
	// is, or is about to be, in the past.
	// Bytes after the answer were sent for no request: the connection
	// cannot be trusted to carry the next answer.
	if b.stop() && b.eof && b.keep && b.c.br.Buffered() == 0 {
		b.c.pool.put(b.c)
	} else {
		b.c.close()
	}
	b.c = nil
	return nil
}

// connPool keeps idle connections to the app, the most recently used first.
type connPool struct {
	dial        func(ctx context.Context, network, addr string) (net.Conn, error)
	maxIdle     int
	idleTimeout time.Duration

	mu    sync.Mutex
	idle  []*appConn // by the time they went idle, oldest first
	sweep *time.Timer

	// Buffers are lent for an exchange only: an idle connection holds
	// none, which at hundreds of connections is megabytes.
	readers, writers sync.Pool
}

// appConn is a connection to the app.
type appConn struct {
	net.Conn
	pool      *connPool
	addr      string        // dialled
	br        *bufio.Reader // during an exchange
	reused    bool
	idleSince time.Time
	nread     int64 // bytes read in this exchange
	readLimit int64 // bytes the exchange may still read; < 0 for no limit
}

// Read counts what is read and stops at readLimit.
func (c *appConn) Read(p []byte) (int, error) {
	if c.readLimit == 0 {
		return 0, errors.New("read limit reached")
	}
	if c.readLimit > 0 && int64(len(p)) > c.readLimit {
		p = p[:c.readLimit]
	}
	n, err := c.Conn.Read(p)
	c.nread += int64(n)
	if c.readLimit > 0 {
		c.readLimit -= int64(n)
	}
	return n, err
}

func (p *connPool) reader(c *appConn) *bufio.Reader {
	if br, ok := p.readers.Get().(*bufio.Reader); ok {
		br.Reset(c)
		return br
	}
	return bufio.NewReader(c)
}

func (p *connPool) writer(w io.Writer) *bufio.Writer {
	if bw, ok := p.writers.Get().(*bufio.Writer); ok {
		bw.Reset(w)
		return bw
	}
	return bufio.NewWriter(w)
}

func (p *connPool) putWriter(bw *bufio.Writer) {
	bw.Reset(nil)
	p.writers.Put(bw)
}

// idle gives back c's reader, which holds nothing more, before c goes idle.
func (c *appConn) idle() {
	if c.br != nil {
		c.br.Reset(nil)
		c.pool.readers.Put(c.br)
		c.br = nil
	}
}

// close closes c and gives back its reader.
func (c *appConn) close() {
	c.Conn.Close()
	c.idle()
}

// get returns an idle connection the app has not closed, or a new one.
func (p *connPool) get(ctx context.Context, addr string) (*appConn, error) {
	for {
		c := p.pop()
		if c == nil {
			break
		}
		// The app's address changes with a reload of the configuration;
		// the pool outlives it. The look at the socket is a system call,
		// made outside the lock.
		if c.addr == addr && time.Since(c.idleSince) < p.idleTimeout && open(c.Conn) {
			c.reused, c.nread = true, 0
			return c, nil
		}
		c.close()
	}
	nc, err := p.dial(ctx, "tcp", addr)
	if err != nil {
		return nil, dialFailed(ctx, err)
	}
	return p.newConn(nc, addr), nil
}

func (p *connPool) newConn(nc net.Conn, addr string) *appConn {
	return &appConn{Conn: nc, pool: p, addr: addr, readLimit: -1}
}

// pop takes the most recently used idle connection, nil when there is none.
func (p *connPool) pop() *appConn {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := len(p.idle)
	if n == 0 {
		return nil
	}
	c := p.idle[n-1]
	p.idle[n-1] = nil
	p.idle = p.idle[:n-1]
	return c
}

// put keeps c for the next exchange, or closes it when the pool is full.
func (p *connPool) put(c *appConn) {
	c.idle()
	c.idleSince = time.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.idle) >= p.maxIdle {
		c.Close()
		return
	}
	p.idle = append(p.idle, c)
	if p.sweep == nil {
		p.sweep = time.AfterFunc(p.idleTimeout, p.closeExpired)
	}
}

// closeExpired closes the connections idle for longer than idleTimeout and
// sets itself to run again when the next one will be.
func (p *connPool) closeExpired() {
	now := time.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for n < len(p.idle) && now.Sub(p.idle[n].idleSince) >= p.idleTimeout {
		p.idle[n].Close()
		n++
	}
	p.idle = append(p.idle[:0], p.idle[n:]...)
	clear(p.idle[len(p.idle):cap(p.idle)])
	if len(p.idle) == 0 {
		p.sweep = nil
		return
	}
	p.sweep.Reset(p.idle[0].idleSince.Add(p.idleTimeout).Sub(now))
}

// closeIdle closes every idle connection.
func (p *connPool) closeIdle() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.idle {
		c.Close()
	}
	clear(p.idle)
	p.idle = p.idle[:0]
}
