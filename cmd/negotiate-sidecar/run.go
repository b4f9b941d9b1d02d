package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/negotiate-sidecar/negotiate-sidecar/auth"
	"github.com/negotiate-sidecar/negotiate-sidecar/proxy"
)

// run is the whole program; main only adds signals and the exit status.
// environ is the process environment as os.Environ gives it.
func run(ctx context.Context, args, environ []string, stdout, stderr io.Writer) error {
	env := newEnvironment(environ)
	if len(args) > 0 {
		switch args[0] {
		case "demo":
			return runDemo(ctx, args[1:], stdout, stderr)
		case "version":
			fmt.Fprintln(stdout, "negotiate-sidecar", version)
			return nil
		case "check":
			return runCheck(ctx, args[1:], env, stdout, stderr)
		}
	}
	s, _, err := loadSettings(args, env, false, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	var ue usageError
	if errors.As(err, &ue) {
		return err
	}
	if err != nil {
		return fmt.Errorf("configuration:\n%w", indent(err))
	}
	level := zap.NewAtomicLevelAt(levelOf(s.LogLevel))
	log := newLogger(level, s.LogFormat, stderr)
	defer func() { _ = log.Sync() }()
	sc, err := start(ctx, s, env, args, log, level)
	if err != nil {
		return err
	}
	return sc.wait()
}

// indent puts each joined error on its own indented line.
func indent(err error) error {
	lines := strings.Split(err.Error(), "\n")
	return errors.New("  " + strings.Join(lines, "\n  "))
}

// sidecar is a started proxy and admin server.
type sidecar struct {
	log        *zap.Logger
	cur        *current
	proxyAddr  net.Addr
	adminAddr  net.Addr
	proxySrv   *http.Server
	adminSrv   *http.Server
	draining   atomic.Bool
	errc       chan error
	ctx        context.Context
	cancelBG   context.CancelFunc
	shutdownIn time.Duration
}

// start builds the sidecar from s, opens both listeners and serves until ctx
// ends. Call wait for the result. args and env are kept to re-read the
// configuration when a watched file changes.
func start(ctx context.Context, s settings, env environment, args []string, log *zap.Logger, level zap.AtomicLevel) (*sidecar, error) {
	// Background work (key refreshes, reloads) runs on a context that ends
	// only after the servers have drained, not with the first signal.
	bg, cancelBG := context.WithCancel(context.WithoutCancel(ctx))
	ok := false
	defer func() {
		if !ok {
			cancelBG()
		}
	}()

	reg := prometheus.NewRegistry()
	cur := &current{}
	cache := auth.NewCache(s.TokenCacheSize)
	m := newSidecarMetrics(reg, cur, cache, time.Now)
	d := deps{
		cache:     cache,
		log:       log,
		metrics:   proxy.NewMetrics(reg),
		transport: proxy.NewTransport(),
		pool:      newKeyPool(bg, log, &http.Client{Timeout: 10 * time.Second}, m.keyFetch),
	}
	rt, err := buildRuntime(s, env, d)
	if err != nil {
		return nil, fmt.Errorf("configuration:\n%w", indent(err))
	}
	cur.p.Store(rt)

	proxyLn, err := net.Listen("tcp", s.Listen)
	if err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	adminLn, err := net.Listen("tcp", s.AdminListen)
	if err != nil {
		proxyLn.Close()
		return nil, fmt.Errorf("admin listen: %w", err)
	}

	sc := &sidecar{
		log:        log,
		cur:        cur,
		proxyAddr:  proxyLn.Addr(),
		adminAddr:  adminLn.Addr(),
		errc:       make(chan error, 2),
		ctx:        ctx,
		cancelBG:   cancelBG,
		shutdownIn: s.ShutdownTimeout,
	}
	ready := func() error {
		if sc.draining.Load() {
			return errors.New("shutting down")
		}
		return cur.load().ready(time.Now())
	}
	sc.proxySrv = &http.Server{
		Handler:           cur,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          zap.NewStdLog(log.Named("http")),
		BaseContext:       func(net.Listener) context.Context { return bg },
	}
	sc.adminSrv = &http.Server{
		Handler:           adminHandler(reg, ready),
		ReadHeaderTimeout: 5 * time.Second,
		ErrorLog:          zap.NewStdLog(log.Named("admin")),
	}

	rl := &reloader{args: args, env: env, deps: d, cur: cur, level: level, every: s.ReloadInterval,
		seen: fingerprint(watched(s)), onDone: m.reload, settle: 10 * time.Second}
	go rl.run(bg)
	go sc.serve(sc.proxySrv, proxyLn, "proxy")
	go sc.serve(sc.adminSrv, adminLn, "admin")
	log.Info("started",
		zap.String("version", version),
		zap.String("upstream", s.Upstream),
		zap.String("service", s.Service),
		zap.Strings("providers", rt.authn.Providers()),
		zap.Strings("endpoints", endpointSummary(rt.endpoints)),
		zap.String("config", s.configFile),
	)
	ok = true
	return sc, nil
}

// endpointSummary describes endpoints for logs: hosts and key sources, never keys.
func endpointSummary(es []endpoint) []string {
	var out []string
	for _, e := range es {
		out = append(out, fmt.Sprintf("%s (%d key(s) from %s)", strings.Join(e.hosts, ","), len(e.keys), strings.Join(e.sources, ", ")))
	}
	return out
}

func (sc *sidecar) serve(srv *http.Server, ln net.Listener, name string) {
	sc.log.Info("listening", zap.String("listener", name), zap.String("addr", ln.Addr().String()))
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		sc.errc <- fmt.Errorf("%s server: %w", name, err)
	}
}

// wait serves until the start context ends, then shuts down in order:
// readiness turns 503 so that no new traffic is sent, in-flight requests
// finish within the shutdown timeout, and the admin server goes last so
// probes keep answering while the proxy drains.
func (sc *sidecar) wait() error {
	defer sc.cancelBG()
	select {
	case err := <-sc.errc:
		return err
	case <-sc.ctx.Done():
	}
	sc.draining.Store(true)
	sc.log.Info("shutting down: readiness is now 503, draining in-flight requests", zap.Duration("timeout", sc.shutdownIn))
	ctx, cancel := context.WithTimeout(context.Background(), sc.shutdownIn)
	defer cancel()
	err := sc.proxySrv.Shutdown(ctx)
	if err != nil {
		sc.log.Warn("in-flight requests did not finish in time", zap.Error(err))
		_ = sc.proxySrv.Close()
	}
	_ = sc.adminSrv.Shutdown(ctx)
	sc.log.Info("stopped")
	if err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	return nil
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
	return zapcore.InfoLevel, fmt.Errorf("log level %q: choose debug, info, warn or error", s)
}

// levelOf is the zap level for a validated level name.
func levelOf(name string) zapcore.Level {
	l, _ := parseLevel(name)
	return l
}

func newLogger(level zap.AtomicLevel, format string, w io.Writer) *zap.Logger {
	encCfg := zap.NewProductionEncoderConfig()
	encCfg.EncodeTime = zapcore.ISO8601TimeEncoder
	enc := zapcore.NewJSONEncoder(encCfg)
	if format == "console" {
		enc = zapcore.NewConsoleEncoder(zap.NewDevelopmentEncoderConfig())
	}
	return zap.New(zapcore.NewCore(enc, zapcore.Lock(zapcore.AddSync(w)), level))
}
