package proxy

import (
	"net"
	"sync"
	"time"
)

// DefaultMaxRequestBytes is the default Config.MaxRequestBytes. The SignalR
// and Web PubSub clients send a negotiate with no body at all; a negotiate
// function that takes one takes a few fields of JSON.
const DefaultMaxRequestBytes = 64 << 10

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
