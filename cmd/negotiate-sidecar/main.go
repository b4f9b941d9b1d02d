// Command negotiate-sidecar is a reverse proxy that gives Azure SignalR Service
// connections a verified user id: it authenticates the caller's JWT and
// re-signs the negotiate token with the caller's id in it.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

// version is set at build time with -ldflags "-X main.version=...", as the
// Dockerfile does; see binaryVersion.
var version = "dev"

// shutdownSignals start an orderly shutdown. A second one during the
// shutdown delay cuts the delay short.
func shutdownSignals() []os.Signal { return []os.Signal{os.Interrupt, syscall.SIGTERM} }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), shutdownSignals()...)
	err := run(ctx, os.Args[1:], os.Environ(), os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "negotiate-sidecar:", err)
		os.Exit(1)
	}
}
