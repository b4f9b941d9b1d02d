//go:build !(linux || darwin || freebsd || netbsd || openbsd)

package proxy

import "net"

// open cannot look at the socket here; the retry after a connection the app
// closed while it was idle covers what it would have caught.
func open(net.Conn) bool { return true }
