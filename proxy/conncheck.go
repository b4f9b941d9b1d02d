//go:build linux || darwin || freebsd || netbsd || openbsd

package proxy

import (
	"errors"
	"net"
	"syscall"
)

// open reports whether the app has left c open and silent while it was idle:
// a look at the socket, without waiting and without taking anything from
// it, finds neither the end of the stream nor bytes nobody asked for (such
// as a 408 sent before closing). It costs one system call and spares a
// negotiate most of the retries after an app closed an idle connection.
func open(c net.Conn) bool {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return true // not a socket we can look at; a retry covers it
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	alive := false
	var buf [1]byte
	err = rc.Read(func(fd uintptr) bool {
		// Nothing to read is what we hope for; no error means the end
		// of the stream (0 bytes) or bytes.
		_, _, err := syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		alive = errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EWOULDBLOCK)
		return true // done either way: never wait for the socket
	})
	return err == nil && alive
}
