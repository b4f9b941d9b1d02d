// Command negotiate-sidecar is a reverse proxy that gives Azure SignalR Service
// connections a verified user id: it authenticates the caller's JWT and
// re-signs the negotiate token with the caller's id in it.
package main

import (
	"context"
	"fmt"
	"log"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
)

// version is set at build time with -ldflags "-X main.version=...", as the
// Dockerfile does; see binaryVersion.
var version = "dev"

// shutdownSignals start an orderly shutdown. A second one during the
// shutdown delay cuts the delay short.
func shutdownSignals() []os.Signal { return []os.Signal{os.Interrupt, syscall.SIGTERM} }

func main() {
	// The standard library logs a few things through the log package, out
	// of the sidecar's reach: the HTTP client, for one, quotes the first
	// bytes of an unexpected answer from the app, which may hold a token.
	log.SetFlags(log.LstdFlags | log.LUTC)
	log.SetOutput(redactingWriter{os.Stderr})
	if limit := memoryLimit(os.Getenv, "/sys/fs/cgroup"); limit > 0 {
		debug.SetMemoryLimit(limit)
	}
	ctx, stop := signal.NotifyContext(context.Background(), shutdownSignals()...)
	err := run(ctx, os.Args[1:], os.Environ(), os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "negotiate-sidecar:", err)
		os.Exit(1)
	}
}
