package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/negotiate-sidecar/negotiate-sidecar/auth"
	"github.com/negotiate-sidecar/negotiate-sidecar/cmd/internal/cli"
	"github.com/negotiate-sidecar/negotiate-sidecar/proxy"
	"github.com/negotiate-sidecar/negotiate-sidecar/rewrite/entra"
)

// run is the whole program; main only adds signals and the exit status.
// environ is the process environment as os.Environ gives it.
func run(ctx context.Context, args, environ []string, stdout, stderr io.Writer) error {
	env := newEnvironment(environ)
	if len(args) > 0 {
		switch args[0] {
		case "demo":
			return runDemo(ctx, args[1:], stdout, stderr)
		case "version", "--version", "-version":
			return runVersion(args[1:], stdout)
		case "check":
			return runCheck(ctx, args[1:], env, stdout, stderr)
		}
	}
	s, err := loadSettings(args, env, false)
	if errors.Is(err, cli.ErrHelp) {
		command(false).Help(stdout)
		return nil
	}
	var ue *cli.UsageError
	if errors.As(err, &ue) {
		return err
	}
	if err != nil {
		return fmt.Errorf("configuration:\n%w", indent(err))
	}
	level := zap.NewAtomicLevelAt(levelOf(s.LogLevel))
	// One line per negotiate is one write to stderr, a system call each;
	// buffered, the lines of a busy second go out together. A line waits at
	// most logFlushInterval, and Stop writes out the rest on the way out.
	// A flush hands the lines to the system without forcing them to disk:
	// stderr is a pipe in a container, and on a file an fsync every
	// interval would cost a disk write for nothing a log needs.
	out := &zapcore.BufferedWriteSyncer{WS: zapcore.AddSync(struct{ io.Writer }{stderr}), Size: 64 << 10, FlushInterval: logFlushInterval}
	defer func() { _ = out.Stop() }()
	log := newLogger(level, s.LogFormat, out)
	sc, err := start(ctx, s, env, args, log, level)
	if err != nil {
		return err
	}
	sc.hurry = notifyShutdownSignals
	return sc.wait()
}

// runVersion prints the binary's version.
func runVersion(args []string, stdout io.Writer) error {
	c := &cli.Command[struct{}]{Name: "negotiate-sidecar version", Usage: "Usage: negotiate-sidecar version\n\nPrints the version of this binary."}
	if _, _, err := c.Load(args, nil); errors.Is(err, cli.ErrHelp) {
		c.Help(stdout)
		return nil
	} else if err != nil {
		return err
	}
	fmt.Fprintln(stdout, "negotiate-sidecar", binaryVersion())
	return nil
}

// binaryVersion is the version set at build time, else the module version
// the go command recorded (go install ...@v1.2.3), else "dev".
func binaryVersion() string {
	info, ok := debug.ReadBuildInfo()
	return versionOf(version, info, ok)
}

func versionOf(ldflags string, info *debug.BuildInfo, ok bool) string {
	if ldflags != "dev" && ldflags != "" {
		return ldflags
	}
	if ok && info.Main.Version != "" && info.Main.Version != "(devel)" {
		return info.Main.Version
	}
	return "dev"
}

// notifyShutdownSignals relays the shutdown signals that arrive from now on.
func notifyShutdownSignals() (<-chan os.Signal, func()) {
	c := make(chan os.Signal, 1)
	signal.Notify(c, shutdownSignals()...)
	return c, func() { signal.Stop(c) }
}

// indent puts each joined error on its own indented line.
func indent(err error) error {
	lines := strings.Split(err.Error(), "\n")
	return errors.New("  " + strings.Join(lines, "\n  "))
}

// sidecar is a started proxy and admin server.
type sidecar struct {
	log       *zap.Logger
	cur       *current
	pool      *auth.KeyPool
	entra     *entra.Pool
	proxyAddr net.Addr
	adminAddr net.Addr
	proxyLn   net.Listener
	adminLn   net.Listener
	proxySrv  *http.Server
	adminSrv  *http.Server
	draining  atomic.Bool
	errc      chan error // a server that stopped serving on its own
	ctx       context.Context
	cancelBG  context.CancelFunc
	running   sync.WaitGroup // the servers' and the reloader's goroutines
	delay     time.Duration
	timeout   time.Duration
	// hurry, if set, is called when shutdown begins; a signal on the
	// channel it returns cuts the shutdown delay short. The function it
	// also returns stops the relaying.
	hurry func() (<-chan os.Signal, func())

	keepAliveMu sync.Mutex   // orders shedIdle and the shutdown's turning keep-alives off
	lastFullLog atomic.Int64 // when the connection limit was last logged, in Unix nanoseconds
}

// start builds the sidecar from s, opens both listeners and serves until ctx
// ends. Call wait for the result. args and env are kept to re-read the
// configuration when a watched file changes.
func start(ctx context.Context, s settings, env environment, args []string, log *zap.Logger, level zap.AtomicLevel) (*sidecar, error) {
	// Background work (key refreshes, reloads) runs on a context that ends
	// only after the servers have drained, not with the first signal.
	bg, cancelBG := context.WithCancel(context.WithoutCancel(ctx))
	ok := false

	reg := prometheus.NewRegistry()
	cur := &current{}
	cache := auth.NewCache(s.TokenCacheSize)
	m := newSidecarMetrics(reg, cur, cache, time.Now)
	d := deps{
		cache:   cache,
		log:     log,
		metrics: proxy.NewMetrics(reg),
		// One idle connection to the app for each client connection:
		// HTTP/1.1 carries one request at a time, so no peak dials again.
		transport: proxy.NewTransport(s.MaxConnections),
		pool:      auth.NewKeyPool(bg, log, &http.Client{Timeout: 10 * time.Second}, m.keyFetch),
		entra:     entra.NewPool(bg, log, &http.Client{Timeout: 30 * time.Second}, entraOptions(env), m.entraKeyFetch),
	}
	defer func() {
		if !ok {
			d.entra.Close()
			d.pool.Close()
			cancelBG()
		}
	}()
	rt, err := buildInstance(s, env, d)
	if err != nil {
		return nil, fmt.Errorf("configuration:\n%w", indent(err))
	}
	cur.p.Store(rt)

	proxyLn, adminLn, err := listen(s)
	if err != nil {
		return nil, err
	}

	sc := &sidecar{
		log:       log,
		cur:       cur,
		pool:      d.pool,
		entra:     d.entra,
		proxyAddr: proxyLn.Addr(),
		adminAddr: adminLn.Addr(),
		adminLn:   adminLn,
		errc:      make(chan error, 2),
		ctx:       ctx,
		cancelBG:  cancelBG,
		delay:     s.ShutdownDelay,
		timeout:   s.ShutdownTimeout,
	}
	sc.proxyLn = proxy.LimitListener(proxyLn, s.MaxConnections, func() { sc.shedIdle(s.MaxConnections) })
	sc.newServers(bg, reg)

	rl := &reloader{args: args, env: env, deps: d, cur: cur, level: level, every: s.ReloadInterval,
		seen: fingerprint(command(false).Watched(&s)), onDone: m.reload, settle: 10 * time.Second}
	sc.running.Add(3)
	go func() { defer sc.running.Done(); rl.run(bg) }()
	go sc.serve(sc.proxySrv, sc.proxyLn, "proxy")
	go sc.serve(sc.adminSrv, sc.adminLn, "admin")
	logStarted(log, s, rt)
	ok = true
	return sc, nil
}

// listen opens the proxy's and the admin server's listeners.
func listen(s settings) (proxyLn, adminLn net.Listener, err error) {
	if proxyLn, err = net.Listen("tcp", s.Listen); err != nil {
		return nil, nil, fmt.Errorf("listen: %w", err)
	}
	if adminLn, err = net.Listen("tcp", s.AdminListen); err != nil {
		proxyLn.Close()
		return nil, nil, fmt.Errorf("admin listen: %w", err)
	}
	return proxyLn, adminLn, nil
}

// newServers makes the proxy server, whose requests run on bg, and the admin
// server of reg's metrics and the probes.
func (sc *sidecar) newServers(bg context.Context, reg *prometheus.Registry) {
	ready := func() error {
		if sc.draining.Load() {
			return errors.New("shutting down")
		}
		return sc.cur.load().ready(time.Now())
	}
	sc.proxySrv = &http.Server{
		Handler:           sc.cur,
		ReadHeaderTimeout: 10 * time.Second,
		// No ReadTimeout or WriteTimeout: other routes may stream for as
		// long as they like. Negotiate bodies are bounded per request.
		IdleTimeout:    2 * time.Minute,
		MaxHeaderBytes: 64 << 10,
		ErrorLog:       zap.NewStdLog(sc.log.Named("http")),
		BaseContext:    func(net.Listener) context.Context { return bg },
	}
	// Probes and scrapes are short requests with short answers.
	sc.adminSrv = &http.Server{
		Handler:           adminHandler(reg, ready),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       time.Minute,
		ErrorLog:          zap.NewStdLog(sc.log.Named("admin")),
	}
}

// logStarted says what the sidecar started with: never a key or a token.
func logStarted(log *zap.Logger, s settings, rt *instance) {
	fields := []zap.Field{
		zap.String("version", binaryVersion()),
		zap.String("upstream", s.Upstream),
		zap.String("service", s.Service),
		zap.Strings("providers", rt.authn.Providers()),
		zap.Strings("endpoints", endpointSummary(rt.endpoints)),
		zap.String("config", s.configFile),
		zap.Int("max_connections", s.MaxConnections),
	}
	// The Go runtime's soft memory limit, from GOMEMLIMIT or from the
	// container's limit (see memoryLimit), when there is one.
	if limit := debug.SetMemoryLimit(-1); limit < math.MaxInt64 {
		fields = append(fields, zap.Int64("memory_limit_bytes", limit))
	}
	log.Info("started", fields...)
}

func (sc *sidecar) serve(srv *http.Server, ln net.Listener, name string) {
	defer sc.running.Done()
	sc.log.Info("listening", zap.String("listener", name), zap.String("addr", ln.Addr().String()))
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		sc.errc <- fmt.Errorf("%s server: %w", name, err)
	}
}

// shedIdle closes the proxy's idle keep-alive connections, to make room
// when all max connections are taken. Turning keep-alives off is the
// server's one way to do that; they are turned on again at once, unless
// shutdown has turned them off for good.
func (sc *sidecar) shedIdle(max int) {
	sc.keepAliveMu.Lock()
	sc.proxySrv.SetKeepAlivesEnabled(false)
	if !sc.draining.Load() {
		sc.proxySrv.SetKeepAlivesEnabled(true)
	}
	sc.keepAliveMu.Unlock()
	// While the limit holds this is called several times a second; once a
	// minute in the log says enough.
	now := time.Now().UnixNano()
	if last := sc.lastFullLog.Load(); now-last > int64(time.Minute) && sc.lastFullLog.CompareAndSwap(last, now) {
		sc.log.Warn("connection limit reached: idle connections closed, new connections wait for one to close", zap.Int("max_connections", max))
	}
}

// wait serves until the start context ends or a server fails, then shuts
// down in order:
//
//  1. readiness turns 503, so that Kubernetes takes the pod out of its
//     Services' endpoints;
//  2. for the shutdown delay, while that news reaches every node, the
//     proxy keeps accepting and serving, but closes each connection after
//     its response, so that clients reconnect to pods that stay;
//  3. the proxy stops accepting, and in-flight requests finish within the
//     shutdown timeout;
//  4. the admin server stops last, so that probes answer until then, and
//     the background work (key refreshes, reloads) ends.
//
// A server that fails skips the delay and stops the other one too; wait
// then returns its error, and so does a drain that ran out of time.
func (sc *sidecar) wait() error {
	var failed error
	select {
	case failed = <-sc.errc:
		sc.beginShutdown()
		sc.log.Error("a server failed; stopping", zap.Error(failed))
	case <-sc.ctx.Done():
		sc.beginShutdown()
		failed = sc.hold()
	}
	err := sc.drain()
	sc.cancelBG()
	sc.running.Wait()
	sc.pool.Close()
	sc.entra.Close()
	sc.log.Info("stopped")
	return errors.Join(failed, err)
}

// beginShutdown turns readiness to 503 and keep-alives off.
func (sc *sidecar) beginShutdown() {
	sc.keepAliveMu.Lock()
	defer sc.keepAliveMu.Unlock()
	sc.draining.Store(true)
	sc.proxySrv.SetKeepAlivesEnabled(false)
}

// hold serves on for the shutdown delay. A second signal cuts it short; a
// server failing ends it with the failure.
func (sc *sidecar) hold() error {
	sc.log.Info("shutting down: readiness is now 503; still accepting and serving for the shutdown delay",
		zap.Duration("delay", sc.delay), zap.Duration("timeout", sc.timeout))
	if sc.delay <= 0 {
		return nil
	}
	var again <-chan os.Signal
	if sc.hurry != nil {
		c, stop := sc.hurry()
		defer stop()
		again = c
	}
	t := time.NewTimer(sc.delay)
	defer t.Stop()
	select {
	case <-t.C:
		sc.log.Info("shutdown delay over")
	case s := <-again:
		sc.log.Info("shutdown delay cut short by a second signal", zap.String("signal", s.String()))
	case err := <-sc.errc:
		sc.log.Error("a server failed during the shutdown delay; stopping", zap.Error(err))
		return err
	}
	return nil
}

// drain stops both servers: the proxy within the shutdown timeout, then the
// admin server.
func (sc *sidecar) drain() error {
	sc.log.Info("no longer accepting connections; draining in-flight requests", zap.Duration("timeout", sc.timeout))
	ctx, cancel := context.WithTimeout(context.Background(), sc.timeout)
	defer cancel()
	err := sc.proxySrv.Shutdown(ctx)
	if err != nil {
		sc.log.Warn("in-flight requests did not finish in time; closing their connections", zap.Error(err))
		_ = sc.proxySrv.Close()
		err = fmt.Errorf("shutdown: %w", err)
	} else {
		sc.log.Info("in-flight requests finished")
	}
	// A probe or a scrape is over in moments.
	actx, acancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer acancel()
	if aerr := sc.adminSrv.Shutdown(actx); aerr != nil {
		_ = sc.adminSrv.Close()
	}
	return err
}

func adminHandler(reg *prometheus.Registry, ready func() error) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if err := ready(); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = io.WriteString(w, "not ready: "+err.Error()+"\n")
			return
		}
		_, _ = io.WriteString(w, "ready\n")
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	return mux
}

func parseLevel(s string) (zapcore.Level, error) {
	switch strings.ToLower(s) {
	case "debug":
		return zapcore.DebugLevel, nil
	case "info":
		return zapcore.InfoLevel, nil
	case "warn", "warning":
		return zapcore.WarnLevel, nil
	case "error":
		return zapcore.ErrorLevel, nil
	}
	return zapcore.InfoLevel, errors.New("choose debug, info, warn or error")
}

// levelOf is the zap level for a validated level name.
func levelOf(name string) zapcore.Level {
	l, _ := parseLevel(name)
	return l
}

// logFlushInterval bounds how long a log line waits in the buffer.
const logFlushInterval = 100 * time.Millisecond

func newLogger(level zap.AtomicLevel, format string, w io.Writer) *zap.Logger {
	encCfg := zap.NewProductionEncoderConfig()
	encCfg.EncodeTime = zapcore.ISO8601TimeEncoder
	enc := zapcore.NewJSONEncoder(encCfg)
	if format == "console" {
		enc = zapcore.NewConsoleEncoder(zap.NewDevelopmentEncoderConfig())
	}
	return zap.New(zapcore.NewCore(enc, zapcore.Lock(zapcore.AddSync(w)), level))
}
