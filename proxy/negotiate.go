package proxy

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httputil"
	"os"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/negotiate-sidecar/negotiate-sidecar/auth"
	"github.com/negotiate-sidecar/negotiate-sidecar/rewrite"
)

// Outcomes of a negotiate request, as logged and counted.
const (
	OutcomeRewritten           = "rewritten"            // 2xx from upstream, token rewritten
	OutcomePreflight           = "preflight"            // CORS preflight, forwarded without authentication
	OutcomeUnauthenticated     = "unauthenticated"      // 401, never forwarded
	OutcomeNotReady            = "not_ready"            // 503, no verification key loaded yet, or no key of the sidecar's own for a Microsoft Entra ID endpoint
	OutcomeUpstreamStatus      = "upstream_status"      // non-2xx from upstream without a token, passed through
	OutcomeRewriteFailed       = "rewrite_failed"       // 502, the upstream answer could not be rewritten or held a token it must not
	OutcomeUpstreamUnreachable = "upstream_unreachable" // 502, no answer from upstream
	OutcomeUpstreamTimeout     = "upstream_timeout"     // 504, the app took longer than NegotiateTimeout
	OutcomeClientGone          = "client_gone"          // the caller went away first
	OutcomeRequestTooLarge     = "request_too_large"    // 413, the caller's body is larger than Config.MaxRequestBytes
	OutcomeRequestTimeout      = "request_timeout"      // 408, the caller's body took longer than Config.RequestTimeout
)

// Reasons of the proxy's own, beside those of auth and rewrite.
const (
	// ReasonTokenInStatus: a non-2xx answer carried a token. The rewrite
	// applies to successful answers only, so the token would have reached
	// the caller without the caller's id.
	ReasonTokenInStatus = "token_in_non_2xx"
	// ReasonTokenInPreflight: the app answered a CORS preflight, which
	// carries no credentials, with a token. It is dropped.
	ReasonTokenInPreflight = "token_in_preflight"
	// ReasonForeignToken: a successful answer, once rewritten, still held a
	// token that does not name the caller, in a header or a field the
	// rewrite does not know.
	ReasonForeignToken = "foreign_token"
	// ReasonTooLarge: the app's answer exceeded Config.MaxBodyBytes.
	ReasonTooLarge = "too_large"
	// ReasonUnreadable: the app's answer could not be read or decoded.
	ReasonUnreadable = "unreadable"
)

// Outcomes returns every outcome a negotiate is logged and counted with.
func Outcomes() []string {
	return []string{OutcomeRewritten, OutcomePreflight, OutcomeUnauthenticated, OutcomeNotReady, OutcomeUpstreamStatus,
		OutcomeRewriteFailed, OutcomeUpstreamUnreachable, OutcomeUpstreamTimeout, OutcomeClientGone,
		OutcomeRequestTooLarge, OutcomeRequestTimeout}
}

// Reasons returns the proxy's own reasons, beside those of auth and rewrite.
func Reasons() []string {
	return []string{ReasonTokenInStatus, ReasonTokenInPreflight, ReasonForeignToken, ReasonTooLarge, ReasonUnreadable}
}

// outcome is what became of one negotiate request: the one value that its
// log line and metrics are made from.
type outcome struct {
	name     string
	reason   string
	err      error
	user     string
	provider string
}

// serveNegotiate handles a negotiate route and logs and counts the outcome.
func (h *Handler) serveNegotiate(w http.ResponseWriter, r *http.Request) {
	start := h.cfg.Now()
	rec := &statusRecorder{ResponseWriter: w}
	o := h.negotiate(rec, r)
	if o.name == "" {
		o.name = OutcomeClientGone
	}
	h.cfg.Metrics.negotiate(o.name)
	level := zap.InfoLevel
	switch o.name {
	case OutcomeRewriteFailed, OutcomeUpstreamUnreachable, OutcomeUpstreamTimeout:
		level = zap.WarnLevel
	case OutcomePreflight:
		if o.reason != "" {
			level = zap.WarnLevel
		}
	}
	ce := h.log.Check(level, "negotiate")
	if ce == nil {
		return
	}
	// Room for every field, so that the slice is made once.
	fields := make([]zap.Field, 0, 10)
	fields = append(fields,
		zap.String("request_id", r.Header.Get(headerRequestID)),
		zap.String("outcome", o.name),
		zap.Int("status", rec.status()),
		zap.String("method", r.Method),
		zap.String("path", r.URL.Path),
		zap.Duration("latency", h.cfg.Now().Sub(start)),
	)
	if o.user != "" {
		fields = append(fields, zap.String("user", o.user), zap.String("provider", o.provider))
	}
	if o.reason != "" {
		fields = append(fields, zap.String("reason", o.reason))
	}
	if o.err != nil {
		fields = append(fields, zap.Error(o.err))
	}
	ce.Write(fields...)
}

// negotiate authenticates the caller, sends the request to the app, reads its
// bounded answer, rewrites the token for the caller and writes the result. No
// byte of the app's answer reaches the caller before it has been judged.
func (h *Handler) negotiate(w http.ResponseWriter, r *http.Request) outcome {
	if isPreflight(r) {
		return h.preflight(w, r)
	}
	id, err := h.cfg.Authenticator.Authenticate(r.Header.Values("Authorization"))
	if err != nil {
		return h.refuse(w, r, err)
	}
	h.cfg.Metrics.authn(id.Provider, "")
	setIdentity(r.Header, id)
	o := outcome{user: id.UserID, provider: id.Provider}
	if name, err := h.readRequestBody(w, r); err != nil {
		o.name, o.err = name, err
		return o
	}

	// One deadline for the app's answer and, when the rewrite asks the
	// service for a token, for that request too: the caller waits for both.
	ctx, cancel := context.WithTimeout(r.Context(), h.cfg.NegotiateTimeout)
	defer cancel()
	resp, body, o2 := h.roundTrip(ctx, w, r)
	if o2.name != "" {
		o2.user, o2.provider = o.user, o.provider
		return o2
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return h.passStatus(w, r, resp, body, o)
	}
	caller := rewrite.Caller{UserID: id.UserID, Expiry: id.Expiry}
	if h.callerClaims {
		caller.Claims = id.Claims()
	}
	out, err := h.cfg.Rewriter.RewriteContext(ctx, body, caller)
	if err != nil {
		return rewriteFailed(w, r, err, o)
	}
	// The body changed: validators for the old one would be lies.
	for _, name := range [...]string{"Content-Encoding", "Etag", "Content-Md5", "Last-Modified"} {
		resp.Header.Del(name)
	}
	if h.foreignToken(resp.Header, out, id.UserID) {
		o.name, o.reason = OutcomeRewriteFailed, ReasonForeignToken
		o.err = errors.New("the app's answer carries a token outside the fields the rewrite knows (another field, a header)")
		writeProblem(w, r, http.StatusBadGateway, "Bad gateway", "The app's negotiate response could not be verified and rewritten.")
		return o
	}
	header := w.Header()
	copyHeader(header, resp.Header)
	// A token naming a user must never be served to someone else from a cache.
	header.Set("Cache-Control", "no-store")
	header.Set("Content-Length", strconv.Itoa(len(out)))
	w.WriteHeader(resp.StatusCode)
	_, _ = w.Write(out)
	o.name = OutcomeRewritten
	return o
}

// foreignToken reports whether the answer about to go out holds, in a header
// value or its body, a token that does not name userID (any token at all when
// userID is empty). It is the promise kept at the last moment: wherever the
// app put a token, the caller gets it only with the caller's own id in it.
func (h *Handler) foreignToken(header http.Header, body []byte, userID string) bool {
	for _, vv := range header {
		for _, v := range vv {
			// A token has two dots, unless escapes hide them: most header
			// values (dates, types, lengths) are passed over unconverted.
			if (strings.Count(v, ".") >= 2 || strings.ContainsAny(v, `%\`)) && h.cfg.Rewriter.ForeignToken([]byte(v), userID) {
				return true
			}
		}
	}
	return h.cfg.Rewriter.ForeignToken(body, userID)
}

// refuse answers a negotiate whose token was refused: 401, or 503 while the
// provider's keys are not loaded. The body is never read.
func (h *Handler) refuse(w http.ResponseWriter, r *http.Request, err error) outcome {
	h.leaveBodyUnread(w, r)
	var ae *auth.Error
	if !errors.As(err, &ae) {
		ae = &auth.Error{Reason: auth.ReasonMalformed, Err: err}
	}
	h.cfg.Metrics.authn(ae.Provider, string(ae.Reason))
	o := outcome{name: OutcomeUnauthenticated, reason: string(ae.Reason), err: err}
	if ae.Reason == auth.ReasonNoKeys {
		o.name = OutcomeNotReady
		w.Header().Set("Retry-After", "5")
		writeProblem(w, r, http.StatusServiceUnavailable, "Not ready", "The identity provider's keys are not loaded yet. Try again shortly.")
		return o
	}
	writeUnauthorized(w, r, ae.Reason)
	return o
}

// readRequestBody reads an authenticated negotiate's body in full, within
// Config.RequestTimeout and Config.MaxRequestBytes, so that the app gets a
// complete body with its length, never a trickle. It is read only once the
// caller is authenticated: an anonymous client cannot hold a connection by
// trickling a body, and gets no 100 Continue. On failure it has answered
// (413 or 408, or nothing to a caller gone) and returns the outcome.
func (h *Handler) readRequestBody(w http.ResponseWriter, r *http.Request) (string, error) {
	if r.Body == nil || r.Body == http.NoBody {
		return "", nil
	}
	if r.ContentLength > h.cfg.MaxRequestBytes {
		h.leaveBodyUnread(w, r)
		writeProblem(w, r, http.StatusRequestEntityTooLarge, "Content too large", "The negotiate request body is too large.")
		return OutcomeRequestTooLarge, fmt.Errorf("Content-Length %d is over the limit of %d bytes", r.ContentLength, h.cfg.MaxRequestBytes)
	}
	rc := http.NewResponseController(w)
	// Without deadline support (a wrapped writer that does not unwrap) the
	// size bound still holds.
	deadline := rc.SetReadDeadline(time.Now().Add(h.cfg.RequestTimeout)) == nil
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, h.cfg.MaxRequestBytes))
	if deadline {
		// The rest of the request is the app's time, bounded by the
		// NegotiateTimeout; a deadline left in place would also end the
		// server's watch for the caller going away.
		_ = rc.SetReadDeadline(time.Time{})
	}
	if err != nil {
		var tooLarge *http.MaxBytesError
		switch {
		case errors.As(err, &tooLarge):
			h.leaveBodyUnread(w, r)
			writeProblem(w, r, http.StatusRequestEntityTooLarge, "Content too large", "The negotiate request body is too large.")
			return OutcomeRequestTooLarge, err
		case errors.Is(err, os.ErrDeadlineExceeded):
			w.Header().Set("Connection", "close")
			writeProblem(w, r, http.StatusRequestTimeout, "Request timeout", "The negotiate request body was not sent in time.")
			return OutcomeRequestTimeout, err
		}
		w.WriteHeader(499) // the caller went away mid-body; logged only
		return OutcomeClientGone, err
	}
	r.Body = http.NoBody
	if len(body) > 0 {
		r.Body = io.NopCloser(bytes.NewReader(body))
		// For a second try on a new connection when the app closed the
		// first one unanswered.
		r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	}
	r.ContentLength = int64(len(body))
	r.TransferEncoding = nil
	// The caller has sent its body; the app must not wait for a go-ahead.
	r.Header.Del("Expect")
	return "", nil
}

// leaveBodyUnread prepares an answer given without reading the caller's body:
// the connection closes after it, at once, rather than after the server has
// waited for the rest of the body to discard it, which a client could send
// as slowly as it liked.
func (h *Handler) leaveBodyUnread(w http.ResponseWriter, r *http.Request) {
	if r.Body == nil || r.Body == http.NoBody {
		return
	}
	w.Header().Set("Connection", "close")
	_ = http.NewResponseController(w).SetReadDeadline(time.Now())
}

// rewriteFailed answers a negotiate whose answer could not be rewritten.
func rewriteFailed(w http.ResponseWriter, r *http.Request, err error, o outcome) outcome {
	o.err = err
	var re *rewrite.Error
	if errors.As(err, &re) {
		o.reason = string(re.Reason)
		if re.Reason == rewrite.ReasonCallerExpired {
			// The caller's token expired while the app answered (it was
			// within the leeway when checked): the caller must get a new
			// one, as for any expired token.
			o.name = OutcomeUnauthenticated
			writeUnauthorized(w, r, auth.ReasonExpired)
			return o
		}
		if re.Reason == rewrite.ReasonNoKey {
			// The sidecar has no key of its own for a Microsoft Entra ID
			// endpoint yet: like keys of the identity provider not yet
			// loaded, a wait the client can sit out.
			o.name = OutcomeNotReady
			w.Header().Set("Retry-After", "5")
			writeProblem(w, r, http.StatusServiceUnavailable, "Not ready", "The sidecar holds no key for the service yet. Try again shortly.")
			return o
		}
	}
	o.name = OutcomeRewriteFailed
	writeProblem(w, r, http.StatusBadGateway, "Bad gateway", "The app's negotiate response could not be verified and rewritten.")
	return o
}

// isPreflight reports whether r is a CORS preflight: OPTIONS with Origin and
// Access-Control-Request-Method. Browsers send it without credentials, so it
// cannot be authenticated; any other OPTIONS request can, and must be.
func isPreflight(r *http.Request) bool {
	return r.Method == http.MethodOptions && r.Header.Get("Origin") != "" && r.Header.Get("Access-Control-Request-Method") != ""
}

// preflight forwards a CORS preflight without authentication, so that the
// app's CORS answer reaches the browser. The caller is anonymous, so the
// answer must not carry a token: a function that answers every method would
// otherwise hand anyone an unrewritten one. Only the status and the CORS
// headers, which are what a preflight is for, go back.
func (h *Handler) preflight(w http.ResponseWriter, r *http.Request) outcome {
	// Credentials on a preflight are not checked, so they must not travel
	// as if they had been; nor does a body, which a preflight never has.
	r.Header.Del("Authorization")
	h.leaveBodyUnread(w, r)
	r.Body, r.ContentLength, r.TransferEncoding = http.NoBody, 0, nil
	ctx, cancel := context.WithTimeout(r.Context(), h.cfg.NegotiateTimeout)
	defer cancel()
	resp, body, o := h.roundTrip(ctx, w, r)
	if o.name != "" {
		return o
	}
	o = outcome{name: OutcomePreflight}
	// A browser reads only the status and the CORS headers of a preflight's
	// answer, so only those go back, and never a body.
	header := w.Header()
	for name, vv := range resp.Header {
		if !strings.HasPrefix(name, "Access-Control-") && name != "Vary" {
			continue
		}
		if h.foreignToken(http.Header{name: vv}, nil, "") {
			o.reason = ReasonTokenInPreflight
			continue
		}
		header[name] = vv
	}
	if o.reason == "" && h.cfg.Rewriter.ForeignToken(body, "") {
		o.reason = ReasonTokenInPreflight
	}
	if o.reason != "" {
		o.err = errors.New("the app answered a CORS preflight with a token; it was dropped")
	}
	header.Set("Content-Length", "0")
	w.WriteHeader(resp.StatusCode)
	return o
}

// passStatus passes the app's own non-2xx answers (its 401 from its own
// checks, a 500) through as they are, unless they hold a token: the rewrite
// applies to successful answers only, and a token in any other would reach
// the caller without the caller's id in it.
func (h *Handler) passStatus(w http.ResponseWriter, r *http.Request, resp *http.Response, body []byte, o outcome) outcome {
	if h.foreignToken(resp.Header, body, "") {
		o.name = OutcomeRewriteFailed
		o.reason = ReasonTokenInStatus
		o.err = fmt.Errorf("the app answered %d with a token in it", resp.StatusCode)
		writeProblem(w, r, http.StatusBadGateway, "Bad gateway", "The app's negotiate response could not be verified and rewritten.")
		return o
	}
	header := w.Header()
	copyHeader(header, resp.Header)
	header.Del("Content-Encoding")
	header.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(resp.StatusCode)
	_, _ = w.Write(body)
	o.name = OutcomeUpstreamStatus
	return o
}

// roundTrip sends r to the app within ctx, the negotiate's deadline, and
// reads the whole answer, bounded. When it fails it has answered the caller
// already and returns the outcome; otherwise the outcome's name is empty.
func (h *Handler) roundTrip(ctx context.Context, w http.ResponseWriter, r *http.Request) (*http.Response, []byte, outcome) {
	// A shallow copy with its own URL and headers, the only parts changed
	// below, as Request.Clone would make them; the headers with room for
	// those added, so that the map is not grown (and copied) again.
	out := r.WithContext(ctx)
	u := *r.URL
	out.URL = &u
	out.Header = cloneHeader(r.Header, 4)
	out.RequestURI = ""
	out.Close = false
	removeHopByHop(out.Header)
	h.rewriteRequest(&httputil.ProxyRequest{In: r, Out: out})
	// We must read this body: ask for it uncompressed.
	out.Header.Set("Accept-Encoding", "identity")
	if r.ContentLength == 0 {
		out.Body = nil // as ReverseProxy does: no body, and no retry trouble
	}

	start := h.cfg.Now()
	var resp *http.Response
	var err error
	if t, ok := h.cfg.Transport.(*Transport); ok && out.URL.Scheme == "http" {
		resp, err = t.exchange(out)
	} else {
		resp, err = h.cfg.Transport.RoundTrip(out)
	}
	h.cfg.Metrics.upstream("negotiate", err, h.cfg.Now().Sub(start))
	if err != nil {
		return nil, nil, h.upstreamFailed(w, r, ctx, err, OutcomeUpstreamUnreachable, "")
	}
	if err := checkStatus(resp); err != nil {
		resp.Body.Close()
		return nil, nil, h.upstreamFailed(w, r, ctx, err, OutcomeRewriteFailed, ReasonUnreadable)
	}
	body, err := readBody(resp, h.cfg.MaxBodyBytes)
	if err != nil {
		reason := ReasonUnreadable
		if errors.Is(err, errTooLarge) {
			reason = ReasonTooLarge
		}
		return nil, nil, h.upstreamFailed(w, r, ctx, err, OutcomeRewriteFailed, reason)
	}
	removeHopByHop(resp.Header)
	// The caller already has our request id; one from the app would be a
	// second, conflicting value.
	resp.Header.Del(headerRequestID)
	return resp, body, outcome{}
}

// upstreamFailed answers a round trip that failed: 504 when the negotiate
// timeout ran out, nothing when the caller went away, otherwise 502 with the
// given outcome. The detail goes to the log, not the caller.
func (h *Handler) upstreamFailed(w http.ResponseWriter, r *http.Request, ctx context.Context, err error, name, reason string) outcome {
	switch {
	case r.Context().Err() != nil:
		w.WriteHeader(499) // logged only; the connection is closed
		return outcome{name: OutcomeClientGone, err: err}
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		writeProblem(w, r, http.StatusGatewayTimeout, "Gateway timeout", "The app did not answer the negotiate in time.")
		return outcome{name: OutcomeUpstreamTimeout, err: err}
	case name == OutcomeRewriteFailed:
		writeProblem(w, r, http.StatusBadGateway, "Bad gateway", "The app's negotiate response could not be verified and rewritten.")
	default:
		writeProblem(w, r, http.StatusBadGateway, "Bad gateway", "The app did not answer.")
	}
	return outcome{name: name, reason: reason, err: err}
}

// cloneHeader is http.Header.Clone with room for extra more names.
func cloneHeader(h http.Header, extra int) http.Header {
	n := 0
	for _, vv := range h {
		n += len(vv)
	}
	values := make([]string, n) // one array for all values, as Clone does
	out := make(http.Header, len(h)+extra)
	for k, vv := range h {
		if vv == nil {
			out[k] = nil
			continue
		}
		n := copy(values, vv)
		out[k] = values[:n:n]
		values = values[n:]
	}
	return out
}

// copyHeader adds every header of src to dst.
func copyHeader(dst, src http.Header) {
	for k, vv := range src {
		dst[k] = append(dst[k], vv...)
	}
}

var errTooLarge = errors.New("answer too large")

// readBody reads a response body of at most limit bytes, decoding gzip. We ask
// for an uncompressed body, but an upstream may compress anyway.
func readBody(resp *http.Response, limit int64) ([]byte, error) {
	defer resp.Body.Close()
	var r io.Reader = resp.Body
	if len(resp.Header.Values("Content-Encoding")) > 1 {
		// Two codings, of which a client may undo either: what the body
		// holds could not be judged.
		return nil, errors.New("reading negotiate body: more than one Content-Encoding")
	}
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
	// Read straight into a buffer of the announced size when there is one,
	// rather than growing one from 512 bytes.
	size := int64(512)
	if resp.ContentLength > 0 && r == resp.Body {
		size = min(resp.ContentLength, limit) + 1
	}
	body, err := readAll(io.LimitReader(r, limit+1), int(size))
	if err != nil {
		return nil, fmt.Errorf("reading negotiate body: %w", err)
	}
	if int64(len(body)) > limit {
		return nil, fmt.Errorf("reading negotiate body: larger than %d bytes: %w", limit, errTooLarge)
	}
	return body, nil
}

// statusRecorder remembers the status written, for the log line.
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

// readAll is io.ReadAll starting from a buffer of the given capacity, so
// that a body of known size is read with one allocation.
func readAll(r io.Reader, capacity int) ([]byte, error) {
	b := make([]byte, 0, capacity)
	for {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		n, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err == io.EOF {
			return b, nil
		}
		if err != nil {
			return b, err
		}
	}
}
