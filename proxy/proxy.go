package proxy

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sync"
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

// Rewriter rewrites a negotiate response body for a verified user id, and
// finds tokens that do not name one. *rewrite.Rewriter implements it; a new
// token format slots in there.
type Rewriter interface {
	// RewriteContext may ask the service for a token (Web PubSub with
	// Microsoft Entra ID); ctx bounds that request.
	RewriteContext(ctx context.Context, body []byte, caller rewrite.Caller) ([]byte, error)
	// ForeignToken reports whether text holds a token that does not name
	// userID (any token, when userID is empty).
	ForeignToken(text []byte, userID string) bool
}

// claimsReader is what a Rewriter implements when it can say whether it
// reads rewrite.Caller.Claims. A cached caller's claims are decoded for each
// request that asks for them, so they are left out where they are not read;
// a Rewriter without the method is given them always.
type claimsReader interface {
	ReadsCallerClaims() bool
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
	// MaxRequestBytes bounds the body a caller sends with a negotiate; a
	// larger one is refused with 413. Default DefaultMaxRequestBytes. Other
	// routes are not bounded: they may stream uploads of any size.
	MaxRequestBytes int64
	// RequestTimeout bounds how long an authenticated caller may take to
	// send a negotiate's body, from when its headers have been read; past
	// it the caller gets 408. Default NegotiateTimeout.
	RequestTimeout time.Duration
	// Transport carries requests to the upstream. Default: NewTransport(0).
	// A *Transport carries a negotiate to a plain-HTTP upstream on
	// connections of its own (see Transport); any other RoundTripper
	// carries every request.
	Transport http.RoundTripper
	// Logger receives one line per negotiate request and upstream errors.
	// Tokens, keys and the Authorization header are never logged. Default: no logs.
	Logger *zap.Logger
	// Metrics, if set, records negotiate outcomes and upstream latency.
	Metrics *Metrics
	// Now returns the current time; default time.Now.
	Now func() time.Time
}

// CheckUpstream requires an absolute http or https URL, as Config.Upstream.
func CheckUpstream(u *url.URL) error {
	if u == nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return errors.New("must be an absolute http or https URL, such as http://127.0.0.1:80")
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		// The proxy would not send them, and the URL is logged and shown
		// by check: a password in it would end up in both.
		return errors.New("must have no user, password, query or fragment: give the app's address only, such as http://127.0.0.1:80")
	}
	return nil
}

// Handler is the proxy's http.Handler.
type Handler struct {
	cfg   Config
	log   *zap.Logger
	proxy *httputil.ReverseProxy
	// callerClaims: the Rewriter reads rewrite.Caller.Claims.
	callerClaims bool
}

// New checks cfg and returns the handler.
func New(cfg Config) (*Handler, error) {
	if err := CheckUpstream(cfg.Upstream); err != nil {
		return nil, fmt.Errorf("proxy: the upstream %w", err)
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
	if cfg.MaxRequestBytes <= 0 {
		cfg.MaxRequestBytes = DefaultMaxRequestBytes
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = cfg.NegotiateTimeout
	}
	if cfg.Transport == nil {
		cfg.Transport = NewTransport(0)
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	h := &Handler{cfg: cfg, log: cfg.Logger, callerClaims: true}
	if cr, ok := cfg.Rewriter.(claimsReader); ok {
		h.callerClaims = cr.ReadsCallerClaims()
	}
	h.proxy = &httputil.ReverseProxy{
		Rewrite:   h.rewriteRequest,
		Transport: &timedTransport{next: cfg.Transport, metrics: cfg.Metrics, now: cfg.Now},
		ModifyResponse: func(resp *http.Response) error {
			// The caller already has our request id; one from the app would
			// be a second, conflicting value.
			resp.Header.Del(headerRequestID)
			return checkStatus(resp)
		},
		ErrorHandler: h.proxyError,
		ErrorLog:     zap.NewStdLog(cfg.Logger.Named("reverseproxy")),
		BufferPool:   &bufferPool{},
	}
	return h, nil
}

// rewriteRequest points a request at the upstream. Both the pass-through and
// the negotiate round trip use it.
func (h *Handler) rewriteRequest(pr *httputil.ProxyRequest) {
	pr.SetURL(h.cfg.Upstream)
	// The app builds URLs and checks routes against the host the client
	// asked for, as it would without us in front.
	pr.Out.Host = pr.In.Host
	// Keep the chain from any proxy in front of us, then add ourselves.
	pr.Out.Header["X-Forwarded-For"] = pr.In.Header["X-Forwarded-For"]
	pr.SetXForwarded()
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.cfg.Metrics.inFlightAdd(1)
	defer h.cfg.Metrics.inFlightAdd(-1)
	if r.Method == "PRI" {
		// The HTTP/2 connection preface, sent as if it were a request: no
		// app behind us should be handed it.
		writeProblem(w, r, http.StatusHTTPVersionNotSupported, "HTTP version not supported", "Speak HTTP/1.1 to this port.")
		return
	}
	negotiate := h.cfg.Negotiate.Match(r.URL.Path)
	stripIdentity(r.Header)
	protectConnection(r.Header)
	restrictUpgrade(r.Header, !negotiate)
	ensureRequestID(w, r)
	if negotiate {
		h.serveNegotiate(w, r)
		return
	}
	// Other routes are the app's business: pass them on, with a verified
	// identity when the caller brought a valid token.
	if len(r.Header.Values("Authorization")) > 0 {
		if id, err := h.cfg.Authenticator.Authenticate(r.Header.Values("Authorization")); err == nil {
			setIdentity(r.Header, id)
		} else if ce := h.log.Check(zap.DebugLevel, "token on a non-negotiate route not accepted; forwarding without identity"); ce != nil {
			ce.Write(zap.String("path", r.URL.Path), zap.Error(err))
		}
	}
	h.proxy.ServeHTTP(w, r)
}

// proxyError answers when a pass-through request gets no answer from the
// upstream. The detail goes to the log, not the caller.
func (h *Handler) proxyError(w http.ResponseWriter, r *http.Request, err error) {
	if r.Context().Err() != nil {
		// The caller is gone; nobody reads an answer.
		w.WriteHeader(499)
		return
	}
	h.log.Warn("upstream request failed", zap.String("method", r.Method), zap.String("path", r.URL.Path), zap.Error(err))
	writeProblem(w, r, http.StatusBadGateway, "Bad gateway", "The app did not answer.")
}

// checkStatus refuses an answer whose status is not HTTP's: net/http reads
// any three digits, and writing one under 100 back to the caller panics.
func checkStatus(resp *http.Response) error {
	if resp.StatusCode < 100 || resp.StatusCode > 599 {
		return fmt.Errorf("the app answered with status %d, outside 100 to 599", resp.StatusCode)
	}
	return nil
}

// timedTransport observes the upstream latency of pass-through requests, up
// to the response headers.
type timedTransport struct {
	next    http.RoundTripper
	metrics *Metrics
	now     func() time.Time
}

func (t *timedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	start := t.now()
	resp, err := t.next.RoundTrip(req)
	t.metrics.upstream("other", err, t.now().Sub(start))
	return resp, err
}

// bufferPool lends ReverseProxy its copy buffers, which it would otherwise
// allocate, 32 KiB each, for every request.
type bufferPool struct{ pool sync.Pool }

func (p *bufferPool) Get() []byte {
	if b, ok := p.pool.Get().(*[]byte); ok {
		return *b
	}
	return make([]byte, 32<<10)
}

func (p *bufferPool) Put(b []byte) { p.pool.Put(&b) }
