package auth

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
	"go.uber.org/zap"
)

// maxJWKSBytes bounds a JWKS or discovery document read from the network. Real
// key sets are a few kilobytes; the bound keeps a broken or hostile endpoint
// from filling memory.
const maxJWKSBytes = 1 << 20

// maxRedirects bounds the redirects followed by one fetch. Identity providers
// redirect once or twice at most (a moved tenant, a CDN); more is a loop or
// a detour worth refusing.
const maxRedirects = 5

// ErrInsecureHTTP is wrapped by the errors about a URL that would fetch keys
// over plain http from a host other than loopback, unless insecure HTTP was
// allowed. Anyone on the path could then replace the keys and sign tokens
// the sidecar accepts.
var ErrInsecureHTTP = errors.New("uses plain http to a host that is not loopback; use https, or set insecure_http: true (--insecure-http) for an identity provider inside the cluster")

// ErrRedirectDowngrade is wrapped by the error about a redirect from https
// to plain http, which is refused whatever InsecureHTTP says: the https URL
// was chosen to protect the keys, and a redirect must not undo that.
var ErrRedirectDowngrade = errors.New("redirects from https to plain http are refused; configure the https URL the keys are served from")

// Kinds of refresh failure, wrapped by the errors of KeySet.Refresh, so that
// a caller can explain a failure without reading its text.
var (
	// ErrDiscovery: OpenID Connect discovery failed; the JWKS location is
	// unknown.
	ErrDiscovery = errors.New("discovery failed")
	// ErrIssuerMismatch: the discovery document names another issuer.
	ErrIssuerMismatch = errors.New("the discovery document names another issuer")
	// ErrNotJWKS: a document that should be a JWKS is not one, or holds
	// no usable signature key.
	ErrNotJWKS = errors.New("not a JWKS with a usable signature key")
)

// StatusError is an answer other than 200 OK from an identity provider.
type StatusError struct {
	Code   int
	Status string // as in http.Response.Status
}

func (e *StatusError) Error() string { return "status " + e.Status }

// kindError marks an error with its kind, a sentinel above, without
// changing its message.
type kindError struct{ err, kind error }

func (e kindError) Error() string        { return e.err.Error() }
func (e kindError) Unwrap() error        { return e.err }
func (e kindError) Is(target error) bool { return target == e.kind }

// KeySetConfig configures a KeySet. Only one of the sources is needed; a static
// set and remote URLs may be combined.
type KeySetConfig struct {
	// Issuer is the identity provider's issuer URL. When JWKSURLs is empty,
	// the JWKS location is found by OpenID Connect discovery at
	// Issuer + "/.well-known/openid-configuration"; Issuer must then be an
	// absolute URL that CheckURL accepts.
	Issuer string

	// JWKSURLs are fetched and merged. A URL that fails keeps the keys it
	// last served, so that an outage at the identity provider does not lock
	// out callers whose tokens were issued with keys we already know.
	JWKSURLs []string

	// Static is a JWKS document (JSON) whose keys are always trusted, for
	// offline deployments and tests. It is parsed when the KeySet is created.
	Static []byte

	// Client fetches discovery documents and key sets. It must have a
	// timeout; NewKeySet refuses nil. The key set uses a copy whose
	// CheckRedirect follows at most 5 redirects, never from https to http,
	// and only to URLs that CheckURL accepts, before calling the client's own
	// CheckRedirect, if any.
	Client *http.Client

	// InsecureHTTP allows plain http to any host, for an identity provider
	// inside the cluster that serves no TLS. Without it, every URL fetched
	// (the issuer's for discovery, JWKSURLs, the discovered jwks_uri and
	// every redirect) must be https, or http to a loopback host. A redirect
	// from https to http is refused either way.
	InsecureHTTP bool

	// RefreshInterval is how often remote keys are fetched once loaded.
	// Default 15 minutes; each wait is jittered by up to a tenth so that many
	// replicas do not call the identity provider in step.
	RefreshInterval time.Duration

	// UnknownKIDInterval is the least time between two refreshes triggered by
	// a token whose kid is not in the set (a key rotation). Default 5 seconds.
	UnknownKIDInterval time.Duration

	// UnknownKIDWait bounds how long a request waits for such a refresh.
	// Default 1 second. The refresh itself goes on in the background on the
	// context given to Run, so a slow identity provider delays at most the
	// request that noticed the new key, and only by this much.
	UnknownKIDWait time.Duration

	// Logger receives refresh failures. The URLs are logged; key material never is.
	Logger *zap.Logger

	// OnRefresh, if set, is called after each remote refresh attempt with its
	// outcome, for metrics.
	OnRefresh func(err error)

	// Now returns the current time; default time.Now.
	Now func() time.Time
}

// KeySet holds the identity provider's verification keys and keeps them
// fresh. Its Keyfunc is what golang-jwt calls to find the key for a token.
//
// It fetches the keys itself and hands keyfunc only an in-memory store,
// rather than using jwkset's HTTP storage (jwkset.NewStorageFromHTTP),
// because that storage reads a response body without a size limit, lets an
// empty or unusable key set replace good keys, keeps its one refresh
// interval while it has no keys at all instead of retrying quickly, and
// knows nothing of OpenID Connect discovery.
type KeySet struct {
	cfg     KeySetConfig
	log     *zap.Logger
	store   *keyStore
	keyfunc keyfunc.Keyfunc
	static  []jwkset.JWK

	mu          sync.Mutex
	ctx         context.Context // from Run; refreshes started by requests use it
	inflight    chan struct{}   // closed when the running refresh ends
	lastUnkKID  time.Time
	jwksURLs    []string                // resolved, after discovery
	remote      map[string][]jwkset.JWK // last good keys of each URL
	lastSuccess time.Time               // end of the last refresh in which every source answered
	fingerprint [sha256.Size]byte       // of the published keys
	generation  atomic.Uint64           // counts changes of the published keys
}

// Check judges where the keys come from: at least one source; JWKS URLs, and
// the issuer when discovery finds the keys, that CheckURL accepts. A bad
// issuer is refused here rather than at every discovery attempt, which
// would leave a sidecar unready for ever. Every problem is reported.
func (cfg KeySetConfig) Check() error {
	if cfg.Issuer == "" && len(cfg.JWKSURLs) == 0 && len(cfg.Static) == 0 {
		return errors.New("give an issuer for discovery, a JWKS URL or a JWKS file")
	}
	var problems []error
	for _, u := range cfg.JWKSURLs {
		if err := CheckURL(u, cfg.InsecureHTTP); err != nil {
			problems = append(problems, fmt.Errorf("JWKS URL %q %w", DisplayURL(u), err))
		}
	}
	if cfg.Issuer != "" && len(cfg.JWKSURLs) == 0 {
		if err := CheckURL(cfg.Issuer, cfg.InsecureHTTP); err != nil {
			problems = append(problems, fmt.Errorf("issuer %q, from which OpenID Connect discovery finds the keys (no JWKS URL is given), %w", cfg.Issuer, err))
		}
	}
	return errors.Join(problems...)
}

// NewKeySet checks the configuration and loads the static keys. Remote keys
// are loaded by Run.
func NewKeySet(cfg KeySetConfig) (*KeySet, error) {
	if cfg.Client == nil {
		return nil, errors.New("key set: an HTTP client is required")
	}
	if err := cfg.Check(); err != nil {
		return nil, fmt.Errorf("key set: %w", err)
	}
	cfg.Client = guardRedirects(cfg.Client, cfg.InsecureHTTP)
	if cfg.RefreshInterval <= 0 {
		cfg.RefreshInterval = 15 * time.Minute
	}
	if cfg.UnknownKIDInterval <= 0 {
		cfg.UnknownKIDInterval = 5 * time.Second
	}
	if cfg.UnknownKIDWait <= 0 {
		cfg.UnknownKIDWait = time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	k := &KeySet{
		cfg:      cfg,
		log:      cfg.Logger,
		jwksURLs: cfg.JWKSURLs,
		remote:   make(map[string][]jwkset.JWK),
	}
	if len(cfg.Static) > 0 {
		keys, err := parseJWKS(cfg.Static)
		if err != nil {
			return nil, fmt.Errorf("key set: static JWKS: %w", err)
		}
		k.static = keys
	}
	k.store = &keyStore{MemoryJWKSet: jwkset.NewMemoryStorage(), set: k}
	if err := k.publish(); err != nil {
		return nil, err
	}
	kf, err := keyfunc.New(keyfunc.Options{Storage: k.store})
	if err != nil {
		return nil, fmt.Errorf("key set: %w", err)
	}
	k.keyfunc = kf
	return k, nil
}

// Keyfunc returns the verification key for a token, as jwt.Keyfunc.
func (k *KeySet) Keyfunc(t *jwt.Token) (any, error) {
	return k.keyfunc.Keyfunc(t)
}

// Remote reports whether keys are fetched from the network, as opposed to a
// static set only.
func (k *KeySet) Remote() bool {
	return len(k.cfg.JWKSURLs) > 0 || k.cfg.Issuer != ""
}

// Count returns the number of verification keys held.
func (k *KeySet) Count() int {
	keys, err := k.store.MemoryJWKSet.KeyReadAll(context.Background())
	if err != nil {
		return 0
	}
	return len(keys)
}

// LastSuccess returns when every remote source last answered with a usable
// key set; zero before the first such refresh.
func (k *KeySet) LastSuccess() time.Time {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.lastSuccess
}

// Loaded reports whether at least one verification key is available.
func (k *KeySet) Loaded() bool {
	keys, err := k.store.MemoryJWKSet.KeyReadAll(context.Background())
	return err == nil && len(keys) > 0
}

// Run fetches the remote keys and keeps them fresh until ctx ends. While no
// key is loaded it retries quickly (from 1 s, doubling up to 30 s), so that a
// sidecar started before its identity provider becomes ready soon after.
func (k *KeySet) Run(ctx context.Context) {
	k.mu.Lock()
	k.ctx = ctx
	k.mu.Unlock()
	if !k.Remote() {
		return // static keys only
	}
	backoff := time.Second
	for {
		<-k.refreshNow()
		wait := k.cfg.RefreshInterval
		if !k.remoteLoaded() {
			wait = backoff
			backoff = min(2*backoff, 30*time.Second)
		} else {
			backoff = time.Second
			wait -= time.Duration(rand.Int64N(int64(wait/10) + 1))
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// Refresh fetches every remote source once, now, and returns what went
// wrong. Run does this on its own; Refresh is for one-off checks.
func (k *KeySet) Refresh(ctx context.Context) error {
	if !k.Remote() {
		return nil
	}
	return k.refresh(ctx)
}

func (k *KeySet) remoteLoaded() bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, keys := range k.remote {
		if len(keys) > 0 {
			return true
		}
	}
	return false
}

// refreshNow starts a refresh unless one is running, and returns a channel
// closed when it ends. Concurrent callers share one refresh.
func (k *KeySet) refreshNow() <-chan struct{} {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.inflight != nil {
		return k.inflight
	}
	ch := make(chan struct{})
	k.inflight = ch
	ctx := k.ctx
	if ctx == nil {
		ctx = context.Background()
	}
	go func() {
		defer func() {
			k.mu.Lock()
			k.inflight = nil
			k.mu.Unlock()
			close(ch)
		}()
		err := k.refresh(ctx)
		if k.cfg.OnRefresh != nil {
			k.cfg.OnRefresh(err)
		}
		if err != nil && ctx.Err() == nil {
			k.log.Warn("refreshing identity provider keys failed; keeping the last good keys", zap.Error(err))
		}
	}()
	return ch
}

// refresh fetches every remote source once. Each source that answers with a
// usable key set replaces its own keys; one that fails keeps its last good
// keys. The error joins the failures.
func (k *KeySet) refresh(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	k.mu.Lock()
	urls := k.jwksURLs
	k.mu.Unlock()
	if len(urls) == 0 {
		u, err := k.discover(ctx)
		if err != nil {
			return err
		}
		urls = []string{u}
		k.mu.Lock()
		k.jwksURLs = urls
		k.mu.Unlock()
	}
	var errs []error
	for _, u := range urls {
		keys, err := k.fetchJWKS(ctx, u)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		k.mu.Lock()
		k.remote[u] = keys
		k.mu.Unlock()
	}
	if err := k.publish(); err != nil {
		errs = append(errs, err)
	}
	if len(errs) == 0 {
		k.mu.Lock()
		k.lastSuccess = k.cfg.Now()
		k.mu.Unlock()
	}
	return errors.Join(errs...)
}

// publish replaces the keys that tokens are checked against with the static
// keys plus each remote source's last good keys, and counts a new generation
// when they differ from the last published.
func (k *KeySet) publish() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	all := append([]jwkset.JWK(nil), k.static...)
	for _, keys := range k.remote {
		all = append(all, keys...)
	}
	// Bump first: a token verified against the old keys while they are
	// being replaced is then cached under the old generation, stale at once.
	fp := fingerprint(all)
	changed := fp != k.fingerprint
	if changed {
		k.generation.Add(1)
	}
	if err := k.store.MemoryJWKSet.KeyReplaceAll(context.Background(), all); err != nil {
		return fmt.Errorf("key set: storing keys: %w", err)
	}
	if changed {
		k.fingerprint = fp
		k.generation.Add(1)
	}
	return nil
}

// Generation returns a number that changes whenever the published keys
// change: a key added, rotated in or removed. Refreshes that bring the same
// keys leave it alone, so that caches keyed on it survive them.
func (k *KeySet) Generation() uint64 { return k.generation.Load() }

// fingerprint identifies a set of keys whatever their order.
func fingerprint(keys []jwkset.JWK) [sha256.Size]byte {
	docs := make([]string, 0, len(keys))
	for _, key := range keys {
		b, _ := json.Marshal(key.Marshal())
		docs = append(docs, string(b))
	}
	slices.Sort(docs)
	h := sha256.New()
	for _, d := range docs {
		h.Write([]byte(d))
		h.Write([]byte{0})
	}
	var fp [sha256.Size]byte
	h.Sum(fp[:0])
	return fp
}

// discover finds the JWKS URL in the issuer's OpenID Connect discovery
// document, and checks that the document names the same issuer, as OpenID
// Connect Discovery 1.0 section 4.3 requires, so that a misconfigured issuer
// URL is caught here rather than as a stream of rejected tokens.
func (k *KeySet) discover(ctx context.Context) (string, error) {
	u := strings.TrimSuffix(k.cfg.Issuer, "/") + "/.well-known/openid-configuration"
	body, err := k.get(ctx, u)
	if err != nil {
		return "", kindError{fmt.Errorf("discovery %s: %w", DisplayURL(u), err), ErrDiscovery}
	}
	var doc struct {
		Issuer  string `json:"issuer"`
		JWKSURI string `json:"jwks_uri"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		return "", kindError{fmt.Errorf("discovery %s: not a JSON document: %w", DisplayURL(u), err), ErrDiscovery}
	}
	if doc.Issuer != k.cfg.Issuer {
		err := fmt.Errorf("discovery %s: the document names issuer %q, not %q; the issuer must be exactly the iss value of your tokens", DisplayURL(u), doc.Issuer, k.cfg.Issuer)
		return "", kindError{kindError{err, ErrIssuerMismatch}, ErrDiscovery}
	}
	if err := CheckURL(doc.JWKSURI, k.cfg.InsecureHTTP); err != nil {
		return "", kindError{fmt.Errorf("discovery %s: jwks_uri %q %w", DisplayURL(u), DisplayURL(doc.JWKSURI), err), ErrDiscovery}
	}
	return doc.JWKSURI, nil
}

func (k *KeySet) fetchJWKS(ctx context.Context, u string) ([]jwkset.JWK, error) {
	body, err := k.get(ctx, u)
	if err != nil {
		return nil, fmt.Errorf("fetching JWKS %s: %w", DisplayURL(u), err)
	}
	keys, err := parseJWKS(body)
	if err != nil {
		return nil, fmt.Errorf("fetching JWKS %s: %w", DisplayURL(u), err)
	}
	return keys, nil
}

func (k *KeySet) get(ctx context.Context, u string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := k.cfg.Client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			ue.URL = DisplayURL(ue.URL) // the message names it again
		}
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, &StatusError{Code: resp.StatusCode, Status: resp.Status}
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKSBytes+1))
	if err != nil {
		return nil, err
	}
	if len(body) > maxJWKSBytes {
		return nil, fmt.Errorf("document larger than %d bytes", maxJWKSBytes)
	}
	return body, nil
}

// parseJWKS reads the public signature keys of a JWKS document. Keys for
// encryption and key types the JWT library cannot use are skipped; a set with
// no usable key is an error, so that an empty answer from a struggling
// identity provider never replaces good keys.
func parseJWKS(doc []byte) ([]jwkset.JWK, error) {
	if err := strictJSON(doc, true); err != nil {
		return nil, kindError{fmt.Errorf("not a JWKS document: %w", err), ErrNotJWKS}
	}
	var set jwkset.JWKSMarshal
	if err := json.Unmarshal(doc, &set); err != nil {
		return nil, kindError{fmt.Errorf("not a JWKS document: %w", err), ErrNotJWKS}
	}
	var keys []jwkset.JWK
	var skipped []error
	for i, m := range set.Keys {
		if m.USE == jwkset.UseEnc {
			continue
		}
		// Only public parts are read: a JWKS must never carry private keys,
		// and we have no use for them.
		jwk, err := jwkset.NewJWKFromMarshal(m, jwkset.JWKMarshalOptions{}, jwkset.JWKValidateOptions{})
		if err != nil {
			skipped = append(skipped, fmt.Errorf("key %d (kid %q): %w", i, m.KID, err))
			continue
		}
		keys = append(keys, jwk)
	}
	if len(keys) == 0 {
		if len(skipped) > 0 {
			return nil, kindError{fmt.Errorf("no usable signature key: %w", errors.Join(skipped...)), ErrNotJWKS}
		}
		return nil, kindError{errors.New("no usable signature key"), ErrNotJWKS}
	}
	return keys, nil
}

// CheckURL reports whether a key set may fetch from raw: an absolute https
// URL; or http to a loopback host (localhost, 127.0.0.0/8, ::1), which never
// leaves the machine; or, with insecureHTTP, http to any host. A refusal for
// plain http wraps ErrInsecureHTTP. The error reads after the URL it is about:
// "JWKS URL %q " + err.
func CheckURL(raw string, insecureHTTP bool) error {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return errors.New("must be an absolute http or https URL")
	}
	return checkScheme(u, insecureHTTP)
}

func checkScheme(u *url.URL, insecureHTTP bool) error {
	if u.Scheme == "https" || insecureHTTP || isLoopback(u.Hostname()) {
		return nil
	}
	return ErrInsecureHTTP
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// guardRedirects returns a copy of c whose redirects are bounded and held to
// the same rules as the URLs configured: Go's client follows ten, to any
// scheme, by default.
func guardRedirects(c *http.Client, insecureHTTP bool) *http.Client {
	guarded := *c
	next := c.CheckRedirect
	guarded.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if len(via) > maxRedirects {
			return fmt.Errorf("stopped after %d redirects", maxRedirects)
		}
		if req.URL.Scheme != "https" {
			for _, v := range via {
				if v.URL.Scheme == "https" {
					return fmt.Errorf("redirect to %s: %w", DisplayURL(req.URL.String()), ErrRedirectDowngrade)
				}
			}
		}
		if err := checkScheme(req.URL, insecureHTTP); err != nil {
			return fmt.Errorf("redirect to %s %w", DisplayURL(req.URL.String()), err)
		}
		if next != nil {
			return next(req, via)
		}
		return nil
	}
	return &guarded
}

// keyStore is the jwkset.Storage that keyfunc reads. It refreshes the set when
// a token names a kid it does not hold, which is how a key rotation at the
// identity provider reaches us before the next scheduled refresh.
type keyStore struct {
	*jwkset.MemoryJWKSet
	set *KeySet
}

// KeyRead looks a key up by kid, refreshing the set at most once per
// UnknownKIDInterval when it is missing and waiting at most UnknownKIDWait.
func (s *keyStore) KeyRead(ctx context.Context, kid string) (jwkset.JWK, error) {
	jwk, err := s.MemoryJWKSet.KeyRead(ctx, kid)
	if !errors.Is(err, jwkset.ErrKeyNotFound) {
		return jwk, err
	}
	k := s.set
	if !k.Remote() {
		return jwk, err
	}
	k.mu.Lock()
	now := k.cfg.Now()
	allowed := k.inflight != nil || now.Sub(k.lastUnkKID) >= k.cfg.UnknownKIDInterval
	if allowed && k.inflight == nil {
		k.lastUnkKID = now
	}
	k.mu.Unlock()
	if !allowed {
		return jwk, err
	}
	t := time.NewTimer(k.cfg.UnknownKIDWait)
	defer t.Stop()
	select {
	case <-k.refreshNow():
	case <-t.C:
		return jwk, err
	}
	return s.MemoryJWKSet.KeyRead(ctx, kid)
}

// DisplayURL is raw as it may be written to a log or shown to a user: its
// user information and its query are replaced by "REDACTED". A
// key set URL can carry a credential (a storage account's SAS signature in
// the query, a user and password), and logs are read by more people than
// configuration is.
func DisplayURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(a URL that does not parse)"
	}
	if u.User != nil {
		// A user alone can be a credential too (a token as the user name).
		u.User = url.User("REDACTED")
	}
	if u.RawQuery != "" || u.ForceQuery {
		u.RawQuery, u.ForceQuery = "REDACTED", false
	}
	return u.String()
}
