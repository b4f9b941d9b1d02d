package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/negotiate-sidecar/negotiate-sidecar/auth"
	"github.com/negotiate-sidecar/negotiate-sidecar/proxy"
	"github.com/negotiate-sidecar/negotiate-sidecar/rewrite"
)

// run is the whole program; main only adds signals and the exit status.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) > 0 {
		switch args[0] {
		case "demo":
			return runDemo(ctx, args[1:], stdout, stderr)
		case "version":
			fmt.Fprintln(stdout, "negotiate-sidecar", version)
			return nil
		}
	}
	cfg, err := parseConfig(args, getenv, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("configuration:\n%w", indent(err))
	}
	log, err := newLogger(cfg.logLevel, cfg.logFormat, stderr)
	if err != nil {
		return err
	}
	defer func() { _ = log.Sync() }()
	s, err := start(ctx, cfg, log)
	if err != nil {
		return err
	}
	return s.wait()
}

// indent puts each joined error on its own indented line.
func indent(err error) error {
	lines := strings.Split(err.Error(), "\n")
	return errors.New("  " + strings.Join(lines, "\n  "))
}

// sidecar is a started proxy and admin server.
type sidecar struct {
	log        *zap.Logger
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

// start builds the sidecar from cfg, opens both listeners and serves until
// ctx ends. Call wait for the result.
func start(ctx context.Context, cfg config, log *zap.Logger) (*sidecar, error) {
	upstream, err := url.Parse(cfg.upstream)
	if err != nil {
		return nil, fmt.Errorf("--upstream: %w", err)
	}
	cs, err := rewrite.ParseConnectionString(cfg.connectionString)
	if err != nil {
		return nil, err // the parser's messages never contain the key
	}
	if cs.AccessKey == "" {
		return nil, fmt.Errorf("connection string: AuthType=%s (Microsoft Entra ID) has no AccessKey; the sidecar signs tokens with an access key, so use a connection string with AccessKey", cs.AuthType)
	}
	rw, err := rewrite.New(rewrite.SignalR, []rewrite.Key{{Hosts: cs.Hosts(), Secret: []byte(cs.AccessKey)}}, rewrite.Options{})
	if err != nil {
		return nil, err
	}
	matcher, err := proxy.NewMatcher(cfg.negotiatePaths)
	if err != nil {
		return nil, fmt.Errorf("--negotiate-path: %w", err)
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	jwksRefreshes := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "negotiate_sidecar_jwks_refresh_total",
		Help: "Fetches of the identity provider's keys (discovery and JWKS) by result (success or failure).",
	}, []string{"result"})
	reg.MustRegister(jwksRefreshes)
	for _, r := range []string{"success", "failure"} {
		jwksRefreshes.WithLabelValues(r)
	}

	var static []byte
	if cfg.jwksFile != "" {
		if static, err = os.ReadFile(cfg.jwksFile); err != nil {
			return nil, fmt.Errorf("--jwks-file: %w", err)
		}
	}
	ksCfg := auth.KeySetConfig{
		JWKSURLs: cfg.jwksURLs,
		Static:   static,
		Client:   &http.Client{Timeout: 10 * time.Second},
		Logger:   log.Named("jwks"),
		OnRefresh: func(err error) {
			if err != nil {
				jwksRefreshes.WithLabelValues("failure").Inc()
				return
			}
			jwksRefreshes.WithLabelValues("success").Inc()
		},
	}
	if len(cfg.jwksURLs) == 0 && len(static) == 0 {
		ksCfg.Issuer = cfg.issuer // discover the JWKS
	}
	keys, err := auth.NewKeySet(ksCfg)
	if err != nil {
		return nil, err
	}
	authn, err := auth.New(auth.Config{Providers: []auth.Provider{{
		Issuer:     cfg.issuer,
		Audiences:  cfg.audiences,
		Algorithms: cfg.algorithms,
		Leeway:     cfg.leeway,
		UserClaim:  cfg.userClaim,
		Keys:       keys.Keyfunc,
		Loaded:     keys.Loaded,
	}}})
	if err != nil {
		return nil, fmt.Errorf("configuration:\n%w", indent(err))
	}
	handler, err := proxy.New(proxy.Config{
		Upstream:      upstream,
		Authenticator: authn,
		Rewriter:      rw,
		Negotiate:     matcher,
		Logger:        log.Named("proxy"),
		Metrics:       proxy.NewMetrics(reg),
	})
	if err != nil {
		return nil, err
	}

	proxyLn, err := net.Listen("tcp", cfg.listen)
	if err != nil {
		return nil, fmt.Errorf("--listen: %w", err)
	}
	adminLn, err := net.Listen("tcp", cfg.adminListen)
	if err != nil {
		proxyLn.Close()
		return nil, fmt.Errorf("--admin-listen: %w", err)
	}

	bg, cancelBG := context.WithCancel(context.WithoutCancel(ctx))
	s := &sidecar{
		log:        log,
		proxyAddr:  proxyLn.Addr(),
		adminAddr:  adminLn.Addr(),
		errc:       make(chan error, 2),
		ctx:        ctx,
		cancelBG:   cancelBG,
		shutdownIn: cfg.shutdownTimeout,
	}
	ready := func() error {
		switch {
		case s.draining.Load():
			return errors.New("shutting down")
		case !keys.Loaded():
			return errors.New("no identity provider key loaded yet")
		}
		return nil
	}
	s.proxySrv = &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          zap.NewStdLog(log.Named("http")),
		BaseContext:       func(net.Listener) context.Context { return bg },
	}
	s.adminSrv = &http.Server{
		Handler:           adminHandler(reg, ready),
		ReadHeaderTimeout: 5 * time.Second,
		ErrorLog:          zap.NewStdLog(log.Named("admin")),
	}

	// Keys are refreshed on a context that outlives each request, and ends
	// only after the servers have drained.
	go keys.Run(bg)
	go s.serve(s.proxySrv, proxyLn, "proxy")
	go s.serve(s.adminSrv, adminLn, "admin")
	log.Info("started",
		zap.String("version", version),
		zap.String("upstream", upstream.Redacted()),
		zap.String("issuer", cfg.issuer),
		zap.Strings("audiences", cfg.audiences),
		zap.Strings("signalr_hosts", cs.Hosts()),
	)
	return s, nil
}

func (s *sidecar) serve(srv *http.Server, ln net.Listener, name string) {
	s.log.Info("listening", zap.String("listener", name), zap.String("addr", ln.Addr().String()))
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		s.errc <- fmt.Errorf("%s server: %w", name, err)
	}
}

// wait serves until the start context ends, then shuts down in order:
// readiness turns 503 so that no new traffic is sent, in-flight requests
// finish within the shutdown timeout, and the admin server goes last so
// probes keep answering while the proxy drains.
func (s *sidecar) wait() error {
	defer s.cancelBG()
	select {
	case err := <-s.errc:
		return err
	case <-s.ctx.Done():
	}
	s.draining.Store(true)
	s.log.Info("shutting down: readiness is now 503, draining in-flight requests", zap.Duration("timeout", s.shutdownIn))
	ctx, cancel := context.WithTimeout(context.Background(), s.shutdownIn)
	defer cancel()
	err := s.proxySrv.Shutdown(ctx)
	if err != nil {
		s.log.Warn("in-flight requests did not finish in time", zap.Error(err))
		_ = s.proxySrv.Close()
	}
	_ = s.adminSrv.Shutdown(ctx)
	s.log.Info("stopped")
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
	var l zapcore.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return l, fmt.Errorf("--log-level %q: choose debug, info, warn or error", s)
	}
	return l, nil
}

func newLogger(level, format string, w io.Writer) (*zap.Logger, error) {
	l, err := parseLevel(level)
	if err != nil {
		return nil, err
	}
	encCfg := zap.NewProductionEncoderConfig()
	encCfg.EncodeTime = zapcore.ISO8601TimeEncoder
	enc := zapcore.NewJSONEncoder(encCfg)
	if format == "console" {
		encCfg = zap.NewDevelopmentEncoderConfig()
		enc = zapcore.NewConsoleEncoder(encCfg)
	}
	return zap.New(zapcore.NewCore(enc, zapcore.Lock(zapcore.AddSync(w)), l)), nil
}
