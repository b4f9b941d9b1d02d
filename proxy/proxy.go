package proxy

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/negotiate-sidecar/negotiate-sidecar/auth"
	"github.com/negotiate-sidecar/negotiate-sidecar/rewrite"
)

// DefaultMaxBodyBytes bounds a negotiate response body. Real ones are well
// under 2 KiB, since the token inside must stay under 4096 characters.
const DefaultMaxBodyBytes = 64 << 10

// DefaultNegotiateTimeout is the default Config.NegotiateTimeout.
const DefaultNegotiateTimeout = 30 * time.Second

// Authenticator verifies the Authorization header values of a request.
// *auth.Authenticator implements it.
type Authenticator interface {
	Authenticate(authorization []string) (auth.Identity, error)
}

// Rewriter rewrites a negotiate response body for a verified user id.
// *rewrite.Rewriter implements it; a new token format slots in there.
type Rewriter interface {
	Rewrite(body []byte, caller rewrite.Caller) ([]byte, error)
}

// Config configures the proxy handler.
type Config struct {
	// Upstream is the app's base URL, such as http://127.0.0.1:80. Required.
	Upstream *url.URL
	// Authenticator verifies callers. Required.
	Authenticator Authenticator
	// Rewriter rewrites negotiate bodies. Required.
	Rewriter Rewriter
	// Negotiate tells negotiate routes from the rest. Default: paths whose
	// last segment is "negotiate".
	Negotiate *Matcher
	// MaxBodyBytes bounds a negotiate response body; a larger one is refused
	// with 502. Default DefaultMaxBodyBytes.
	MaxBodyBytes int64
	// NegotiateTimeout bounds how long the app may take to answer a
	// negotiate, body included; past it the caller gets 504. Negotiate is a
	// quick function, and a hung app should not hold callers until their own
	// timeouts. Default DefaultNegotiateTimeout. Other routes have no bound:
	// they may stream.
	NegotiateTimeout time.Duration
	// Transport carries requests to the upstream. Default: NewTransport().
	Transport http.RoundTripper
	// Logger receives one line per negotiate request and upstream errors.
	// Tokens, keys and the Authorization header are never logged. Default: no logs.
	Logger *zap.Logger
	// Metrics, if set, records negotiate outcomes and upstream latency.
	Metrics *Metrics
	// Now returns the current time; default time.Now.
	Now func() time.Time
}

// NewTransport returns the default upstream transport. The upstream runs in
// the same pod, so the dial timeout is short: a caller learns within about
// two seconds that the app is down, instead of hanging.
func NewTransport() *http.Transport {
	return &http.Transport{
		DialContext:           (&net.Dialer{Timeout: 2 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:          100,
		MaxIdleConnsPerHost:   100,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   5 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
}

// Handler is the proxy's http.Handler.
type Handler struct {
	cfg   Config
	log   *zap.Logger
	proxy *httputil.ReverseProxy
}

// New checks cfg and returns the handler.
func New(cfg Config) (*Handler, error) {
	if cfg.Upstream == nil || cfg.Upstream.Host == "" || (cfg.Upstream.Scheme != "http" && cfg.Upstream.Scheme != "https") {
		return nil, errors.New("proxy: the upstream must be an absolute http or https URL")
	}
	if cfg.Authenticator == nil || cfg.Rewriter == nil {
		return nil, errors.New("proxy: an authenticator and a rewriter are required")
	}
	if cfg.Negotiate == nil {
		cfg.Negotiate = &Matcher{}
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if cfg.NegotiateTimeout <= 0 {
		cfg.NegotiateTimeout = DefaultNegotiateTimeout
	}
	if cfg.Transport == nil {
		cfg.Transport = NewTransport()
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	h := &Handler{cfg: cfg, log: cfg.Logger}
	upstream := cfg.Upstream
	h.proxy = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(upstream)
			// The app builds URLs and checks routes against the host the
			// client asked for, as it would without us in front.
			pr.Out.Host = pr.In.Host
			// Keep the chain from any proxy in front of us, then add ourselves.
			pr.Out.Header["X-Forwarded-For"] = pr.In.Header["X-Forwarded-For"]
			pr.SetXForwarded()
			if negotiateFrom(pr.In.Context()) != nil {
				// We must read this body: ask for it uncompressed.
				pr.Out.Header.Set("Accept-Encoding", "identity")
			}
		},
		Transport:      &timedTransport{next: cfg.Transport, metrics: cfg.Metrics, now: cfg.Now},
		ModifyResponse: h.modifyResponse,
		ErrorHandler:   h.proxyError,
		ErrorLog:       zap.NewStdLog(cfg.Logger.Named("reverseproxy")),
	}
	return h, nil
}

// negotiate carries a negotiate request's state between the handler and the
// reverse proxy's callbacks, which see only the request.
type negotiate struct {
	client   context.Context // the caller's own context, to tell its going away from our timeout
	caller   rewrite.Caller
	provider string
	outcome  string // set by the callbacks
	err      error
}

type negotiateKey struct{}

func negotiateFrom(ctx context.Context) *negotiate {
	n, _ := ctx.Value(negotiateKey{}).(*negotiate)
	return n
}

// Outcomes of a negotiate request, as logged and counted.
const (
	OutcomeRewritten           = "rewritten"            // 2xx from upstream, token rewritten
	OutcomePreflight           = "preflight"            // OPTIONS, forwarded without authentication
	OutcomeUnauthenticated     = "unauthenticated"      // 401, never forwarded
	OutcomeNotReady            = "not_ready"            // 503, no verification key loaded yet
	OutcomeUpstreamStatus      = "upstream_status"      // non-2xx from upstream, passed through
	OutcomeRewriteFailed       = "rewrite_failed"       // 502, the upstream body could not be rewritten
	OutcomeUpstreamUnreachable = "upstream_unreachable" // 502, no answer from upstream
	OutcomeUpstreamTimeout     = "upstream_timeout"     // 504, the app took longer than NegotiateTimeout
	OutcomeClientGone          = "client_gone"          // the caller went away first
)

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.cfg.Metrics.inFlightAdd(1)
	defer h.cfg.Metrics.inFlightAdd(-1)
	stripIdentity(r.Header)
	ensureRequestID(w, r)
	if !h.cfg.Negotiate.Match(r.URL.Path) {
		// Other routes are the app's business: pass them on, with a
		// verified identity when the caller brought a valid token.
		if len(r.Header.Values("Authorization")) > 0 {
			if id, err := h.cfg.Authenticator.Authenticate(r.Header.Values("Authorization")); err == nil {
				setIdentity(r.Header, id)
			} else if ce := h.log.Check(zap.DebugLevel, "token on a non-negotiate route not accepted; forwarding without identity"); ce != nil {
				ce.Write(zap.String("path", r.URL.Path), zap.Error(err))
			}
		}
		h.proxy.ServeHTTP(w, r)
		return
	}
	h.serveNegotiate(w, r)
}

func (h *Handler) serveNegotiate(w http.ResponseWriter, r *http.Request) {
	start := h.cfg.Now()
	rec := &statusRecorder{ResponseWriter: w}
	n := &negotiate{}
	var reason string
	defer func() {
		outcome := n.outcome
		if outcome == "" && r.Context().Err() != nil {
			outcome = OutcomeClientGone
		}
		h.cfg.Metrics.negotiate(outcome)
		fields := []zap.Field{
			zap.String("request_id", r.Header.Get(headerRequestID)),
			zap.String("outcome", outcome),
			zap.Int("status", rec.status()),
			zap.String("method", r.Method),
			zap.String("path", r.URL.Path),
			zap.Duration("latency", h.cfg.Now().Sub(start)),
		}
		if n.caller.UserID != "" {
			fields = append(fields, zap.String("user", n.caller.UserID), zap.String("provider", n.provider))
		}
		if reason != "" {
			fields = append(fields, zap.String("reason", reason))
		}
		if n.err != nil {
			fields = append(fields, zap.Error(n.err))
		}
		switch outcome {
		case OutcomeRewriteFailed, OutcomeUpstreamUnreachable, OutcomeUpstreamTimeout:
			h.log.Warn("negotiate", fields...)
		default:
			h.log.Info("negotiate", fields...)
		}
	}()

	if r.Method == http.MethodOptions {
		// CORS preflights carry no credentials by design.
		n.outcome = OutcomePreflight
		h.proxy.ServeHTTP(rec, r)
		return
	}

	id, err := h.cfg.Authenticator.Authenticate(r.Header.Values("Authorization"))
	if err != nil {
		n.err = err
		var ae *auth.Error
		if !errors.As(err, &ae) {
			ae = &auth.Error{Reason: auth.ReasonMalformed, Err: err}
		}
		reason = string(ae.Reason)
		h.cfg.Metrics.authn(ae.Provider, reason)
		if ae.Reason == auth.ReasonNoKeys {
			n.outcome = OutcomeNotReady
			rec.Header().Set("Retry-After", "5")
			writeProblem(rec, r, http.StatusServiceUnavailable, "Not ready", "The identity provider's keys are not loaded yet. Try again shortly.")
			return
		}
		n.outcome = OutcomeUnauthenticated
		writeUnauthorized(rec, r, ae.Reason)
		return
	}
	h.cfg.Metrics.authn(id.Provider, "")
	n.caller = rewrite.Caller{UserID: id.UserID, Claims: id.Claims, Expiry: id.Expiry}
	n.provider = id.Provider
	setIdentity(r.Header, id)
	n.client = r.Context()
	ctx, cancel := context.WithTimeout(context.WithValue(r.Context(), negotiateKey{}, n), h.cfg.NegotiateTimeout)
	defer cancel()
	h.proxy.ServeHTTP(rec, r.WithContext(ctx))
	var re *rewrite.Error
	if errors.As(n.err, &re) {
		reason = string(re.Reason)
	}
}

// modifyResponse rewrites successful negotiate responses. An error it returns
// goes to proxyError, which answers 502: the body never reaches the caller.
func (h *Handler) modifyResponse(resp *http.Response) error {
	// The caller already has our request id; one from the app would be a
	// second, conflicting value.
	resp.Header.Del(headerRequestID)
	n := negotiateFrom(resp.Request.Context())
	if n == nil || resp.Request.Method == http.MethodOptions {
		return nil
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		// The app's own errors (401 from its own checks, 500) go back as
		// they are: they carry no token to rewrite.
		n.outcome = OutcomeUpstreamStatus
		return nil
	}
	n.outcome = OutcomeRewriteFailed // until proven otherwise
	body, err := readBody(resp, h.cfg.MaxBodyBytes)
	if err != nil {
		n.err = err
		return err
	}
	out, err := h.cfg.Rewriter.Rewrite(body, n.caller)
	if err != nil {
		n.err = err
		return err
	}
	resp.Body = io.NopCloser(bytes.NewReader(out))
	resp.ContentLength = int64(len(out))
	resp.TransferEncoding = nil
	resp.Header.Set("Content-Length", strconv.Itoa(len(out)))
	resp.Header.Del("Content-Encoding")
	// The body changed: validators for the old one would be lies.
	resp.Header.Del("ETag")
	resp.Header.Del("Content-MD5")
	resp.Header.Del("Last-Modified")
	// A token naming a user must never be served to someone else from a cache.
	resp.Header.Set("Cache-Control", "no-store")
	n.outcome = OutcomeRewritten
	return nil
}

// readBody reads a response body of at most limit bytes, decoding gzip. We ask
// for an uncompressed body, but an upstream may compress anyway.
func readBody(resp *http.Response, limit int64) ([]byte, error) {
	defer resp.Body.Close()
	var r io.Reader = resp.Body
	switch enc := strings.ToLower(strings.TrimSpace(resp.Header.Get("Content-Encoding"))); enc {
	case "", "identity":
	case "gzip", "x-gzip":
		zr, err := gzip.NewReader(resp.Body)
		if err != nil {
			return nil, fmt.Errorf("reading negotiate body: gzip: %w", err)
		}
		defer zr.Close()
		r = zr
	default:
		return nil, fmt.Errorf("reading negotiate body: unsupported Content-Encoding %q", enc)
	}
	body, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, fmt.Errorf("reading negotiate body: %w", err)
	}
	if int64(len(body)) > limit {
		return nil, fmt.Errorf("reading negotiate body: larger than %d bytes", limit)
	}
	return body, nil
}

// proxyError answers when the upstream cannot be reached or its negotiate
// response cannot be rewritten. The detail goes to the log, not the caller.
func (h *Handler) proxyError(w http.ResponseWriter, r *http.Request, err error) {
	n := negotiateFrom(r.Context())
	if n != nil && n.client.Err() == nil && errors.Is(r.Context().Err(), context.DeadlineExceeded) {
		n.outcome = OutcomeUpstreamTimeout
		n.err = err
		writeProblem(w, r, http.StatusGatewayTimeout, "Gateway timeout", "The app did not answer the negotiate in time.")
		return
	}
	if r.Context().Err() != nil {
		// The caller is gone; nobody reads an answer.
		if n != nil && n.outcome == "" {
			n.outcome = OutcomeClientGone
		}
		w.WriteHeader(499) // logged only; the connection is closed
		return
	}
	var re *rewrite.Error
	if n != nil && errors.As(err, &re) && re.Reason == rewrite.ReasonCallerExpired {
		// The caller's token expired while the app answered (it was within
		// the leeway when checked): the caller must get a new one, as for
		// any expired token.
		n.outcome = OutcomeUnauthenticated
		writeUnauthorized(w, r, auth.ReasonExpired)
		return
	}
	if n != nil && n.outcome == OutcomeRewriteFailed {
		writeProblem(w, r, http.StatusBadGateway, "Bad gateway", "The app's negotiate response could not be verified and rewritten.")
		return
	}
	if n != nil {
		n.outcome = OutcomeUpstreamUnreachable
		n.err = err
	} else {
		h.log.Warn("upstream request failed", zap.String("method", r.Method), zap.String("path", r.URL.Path), zap.Error(err))
	}
	writeProblem(w, r, http.StatusBadGateway, "Bad gateway", "The app did not answer.")
}

// timedTransport observes upstream latency, up to the response headers.
type timedTransport struct {
	next    http.RoundTripper
	metrics *Metrics
	now     func() time.Time
}

func (t *timedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	start := t.now()
	resp, err := t.next.RoundTrip(req)
	route := "other"
	if negotiateFrom(req.Context()) != nil {
		route = "negotiate"
	}
	t.metrics.upstream(route, err, t.now().Sub(start))
	return resp, err
}

// statusRecorder remembers the status written, for the log line. It passes
// Flush and Hijack through (via Unwrap and http.ResponseController), so
// streaming and WebSocket upgrades keep working.
type statusRecorder struct {
	http.ResponseWriter
	code int
}

func (s *statusRecorder) WriteHeader(code int) {
	if s.code == 0 {
		s.code = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.code == 0 {
		s.code = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

func (s *statusRecorder) status() int {
	if s.code == 0 {
		return http.StatusOK
	}
	return s.code
}
