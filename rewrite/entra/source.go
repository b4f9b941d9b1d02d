package entra

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"go.uber.org/zap"

	"github.com/negotiate-sidecar/negotiate-sidecar/rewrite"
)

// The SDK's schedule (MicrosoftEntraAccessKey.cs): a key is fetched again
// 55 minutes after the last success, 5 minutes after a failure, and counts
// as expired 120 minutes after it was fetched. Each fetch makes up to 3
// attempts, 3 seconds apart, each within 100 seconds.
const (
	RefreshInterval = 55 * time.Minute
	RetryInterval   = 5 * time.Minute
	KeyLifetime     = 120 * time.Minute
	attempts        = 3
	attemptDelay    = 3 * time.Second
	attemptTimeout  = 100 * time.Second
)

// maxAnswer bounds the key API's answer: a key id and a key are short.
const maxAnswer = 64 << 10

// Config configures a Source.
type Config struct {
	// Entra is the endpoint and how the app signs in to it.
	Entra *rewrite.Entra
	// Credential gets the Entra tokens; Description names it in messages.
	Credential  azcore.TokenCredential
	Description string
	// Client asks the key API; default http.DefaultClient. A copy of it is
	// used that follows no redirect: one is a failed answer.
	Client *http.Client
	// Logger gets a line for each fetch; default none.
	Logger *zap.Logger
	// OnFetch, if set, is called after each fetch with its error.
	OnFetch func(err error)
	// Now returns the current time; default time.Now.
	Now func() time.Time
	// RetryDelay is the pause between a fetch's attempts; default 3s.
	RetryDelay time.Duration
	// Attempts is how many attempts a fetch makes; default 3, as the SDK.
	Attempts int
}

// Source holds the sidecar's own temporary key for one endpoint and
// refreshes it on the SDK's schedule. It is a rewrite.KeySource.
type Source struct {
	cfg    Config
	keyURL string

	mu      sync.RWMutex
	key     rewrite.SigningKey
	fetched time.Time // of the key held; zero while none
	lastErr error
	// tryErr is the error of the last failed attempt of the fetch under
	// way: readiness shows it at once rather than after the last attempt,
	// which can be minutes later.
	tryErr   error
	next     time.Time // when Run fetches again after a failure; zero otherwise
	failures int
	loaded   chan struct{} // closed when the first fetch ends, success or not
	once     sync.Once
}

// NewSource returns a Source for cfg. It fetches nothing until Run or Fetch.
// A key URL that is not https, except on loopback, is refused: the request
// carries the identity's Entra token.
func NewSource(cfg Config) (*Source, error) {
	if cfg.Entra == nil || cfg.Entra.Endpoint == nil || cfg.Credential == nil {
		return nil, errors.New("entra: a source needs an endpoint and a credential")
	}
	keyURL := cfg.Entra.KeyURL()
	u, err := url.Parse(keyURL)
	if err != nil {
		return nil, fmt.Errorf("entra: key URL: %w", err)
	}
	if u.Scheme != "https" && !isLoopback(u.Hostname()) {
		return nil, fmt.Errorf("the key API at %s must be https (http only on loopback): the request carries the identity's token", u.Redacted())
	}
	cfg.Client = withoutRedirects(cfg.Client)
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.RetryDelay == 0 {
		cfg.RetryDelay = attemptDelay
	}
	if cfg.Attempts <= 0 {
		cfg.Attempts = attempts
	}
	return &Source{cfg: cfg, keyURL: keyURL, loaded: make(chan struct{})}, nil
}

// withoutRedirects returns a copy of c, http.DefaultClient when nil, that
// hands back a redirect as the answer instead of following it. The key API
// and the token API never redirect, and Go's client would follow one to the
// same host name on another port or scheme, plain http included, with the
// Authorization header and its Entra token; whatever answered there would
// also choose the sidecar's key.
func withoutRedirects(c *http.Client) *http.Client {
	if c == nil {
		c = http.DefaultClient
	}
	guarded := *c
	guarded.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &guarded
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// SigningKey returns the key held, unless none is or it is older than
// KeyLifetime; the error then says why, the last failure included.
func (s *Source) SigningKey() (rewrite.SigningKey, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.fetched.IsZero() {
		if s.tryErr != nil {
			return rewrite.SigningKey{}, fmt.Errorf("no key yet, trying again: %w", s.tryErr)
		}
		if s.lastErr != nil {
			return rewrite.SigningKey{}, fmt.Errorf("no key yet%s: %w", s.nextTry(), s.lastErr)
		}
		return rewrite.SigningKey{}, errors.New("no key yet: the first one is being fetched")
	}
	if age := s.cfg.Now().Sub(s.fetched); age > KeyLifetime {
		return rewrite.SigningKey{}, fmt.Errorf("the key is %s old, past the service's %s%s: %w", age.Round(time.Second), KeyLifetime, s.nextTry(), s.lastErr)
	}
	return s.key, nil
}

// nextTry says when Run fetches again after a failure, for messages; ""
// when it is not waiting to.
func (s *Source) nextTry() string {
	if s.next.IsZero() {
		return ""
	}
	return fmt.Sprintf(" (next try in %s)", max(0, s.next.Sub(s.cfg.Now())).Round(time.Second))
}

// Status is what readiness and metrics show of a Source.
type Status struct {
	Fetched  time.Time // when the key held was fetched; zero while none
	Failures int       // fetches failed since the last success
	Err      error     // the last fetch's error, nil after a success
}

// Status returns the source's state.
func (s *Source) Status() Status {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return Status{Fetched: s.fetched, Failures: s.failures, Err: s.lastErr}
}

// Endpoint is the endpoint's URL, for logs and metrics.
func (s *Source) Endpoint() string { return s.cfg.Entra.Endpoint.String() }

// Description names the credential.
func (s *Source) Description() string { return s.cfg.Description }

// Loaded is closed once the first fetch has ended, whether it succeeded.
func (s *Source) Loaded() <-chan struct{} { return s.loaded }

// Run fetches a key now, then again on the SDK's schedule, until ctx ends.
func (s *Source) Run(ctx context.Context) {
	for {
		wait := RefreshInterval
		_, err := s.Fetch(ctx)
		var next time.Time
		if err != nil {
			wait = RetryInterval
			next = s.cfg.Now().Add(wait)
			s.cfg.Logger.Info("trying again for a key later", zap.String("endpoint", s.Endpoint()), zap.Duration("in", wait))
		}
		s.mu.Lock()
		s.next = next
		s.mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// Fetch gets a new key, in up to Config.Attempts attempts, and holds it. A failure
// leaves the key held before, which stays usable until KeyLifetime.
func (s *Source) Fetch(ctx context.Context) (rewrite.SigningKey, error) {
	var key rewrite.SigningKey
	var err error
	for i := range s.cfg.Attempts {
		if i > 0 {
			select {
			case <-ctx.Done():
				return rewrite.SigningKey{}, s.record(key, fmt.Errorf("%w (stopped: %v)", err, ctx.Err()))
			case <-time.After(s.cfg.RetryDelay):
			}
		}
		key, err = s.attempt(ctx)
		var ke *APIError
		if err == nil || ctx.Err() != nil || errors.As(err, &ke) && !ke.retryable() {
			break
		}
		if i < s.cfg.Attempts-1 {
			s.mu.Lock()
			s.tryErr = err
			s.mu.Unlock()
			s.cfg.Logger.Info("a key request failed; trying again", zap.String("endpoint", s.Endpoint()), zap.Duration("in", s.cfg.RetryDelay), zap.Error(err))
		}
	}
	return key, s.record(key, err)
}

func (s *Source) record(key rewrite.SigningKey, err error) error {
	s.mu.Lock()
	s.tryErr = nil
	if err == nil {
		s.key, s.fetched, s.lastErr, s.failures = key, s.cfg.Now(), nil, 0
	} else {
		s.lastErr = err
		s.failures++
	}
	s.mu.Unlock()
	s.once.Do(func() { close(s.loaded) })
	if err != nil {
		s.cfg.Logger.Warn("could not get a key from the service", zap.String("endpoint", s.Endpoint()), zap.String("identity", s.cfg.Description), zap.Error(err))
	} else {
		s.cfg.Logger.Info("got a key from the service", zap.String("endpoint", s.Endpoint()), zap.String("identity", s.cfg.Description), zap.String("key_id", key.ID))
	}
	if s.cfg.OnFetch != nil {
		s.cfg.OnFetch(err)
	}
	return err
}

// retryable reports whether another attempt may fare better: not after an
// answer that says the request itself is wrong.
func (e *APIError) retryable() bool {
	switch e.Status {
	case http.StatusBadRequest, http.StatusUnauthorized, http.StatusForbidden, http.StatusNotFound:
		return false
	}
	return true
}

// TokenError is a failure to get an Entra token.
type TokenError struct {
	Identity string
	Scope    string // default Scope, SignalR's
	Err      error
}

func (e *TokenError) Error() string {
	scope := e.Scope
	if scope == "" {
		scope = Scope
	}
	return fmt.Sprintf("getting a Microsoft Entra token for %s as %s: %v", scope, e.Identity, e.Err)
}

func (e *TokenError) Unwrap() error { return e.Err }

func (s *Source) attempt(ctx context.Context) (rewrite.SigningKey, error) {
	ctx, cancel := context.WithTimeout(ctx, attemptTimeout)
	defer cancel()
	tok, err := s.cfg.Credential.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{Scope}})
	if err != nil {
		return rewrite.SigningKey{}, &TokenError{Identity: s.cfg.Description, Err: err}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.keyURL, nil)
	if err != nil {
		return rewrite.SigningKey{}, &APIError{api: keyAPI, URL: s.keyURL, Err: err}
	}
	status, body, err := callAPI(s.cfg.Client, req, tok.Token)
	if err != nil || status != http.StatusOK {
		return rewrite.SigningKey{}, &APIError{api: keyAPI, URL: s.keyURL, Status: status, Err: err}
	}
	key, err := parseAnswer(body)
	if err != nil {
		return rewrite.SigningKey{}, &APIError{api: keyAPI, URL: s.keyURL, Status: status, Err: err}
	}
	return key, nil
}

// callAPI sends req to a service's data-plane API with token as its bearer
// token and returns the answer's status and, for a 200, its body, read up to
// maxAnswer bytes. The status is 0 when no answer came; err is nil for an
// answer other than 200, whose status says all there is to say, and the
// error never quotes the body, which may hold a key or a token.
func callAPI(client *http.Client, req *http.Request, token string) (int, []byte, error) {
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, redactURLError(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer+1))
	if resp.StatusCode != http.StatusOK {
		return resp.StatusCode, nil, nil
	}
	if err != nil {
		return resp.StatusCode, nil, fmt.Errorf("reading the answer: %w", err)
	}
	if len(body) > maxAnswer {
		return resp.StatusCode, nil, fmt.Errorf("the answer is over %d bytes", maxAnswer)
	}
	return resp.StatusCode, body, nil
}

// parseAnswer reads {"KeyId": ..., "AccessKey": ...}. The SDK reads it with
// System.Text.Json's defaults, which match member names exactly, and needs
// both to be non-empty strings. The error never quotes the answer: it holds
// a key.
func parseAnswer(body []byte) (rewrite.SigningKey, error) {
	var members map[string]json.RawMessage
	if err := json.Unmarshal(body, &members); err != nil {
		return rewrite.SigningKey{}, errors.New("the answer is not a JSON object")
	}
	var id, key string
	if err := json.Unmarshal(members["KeyId"], &id); err != nil || id == "" {
		return rewrite.SigningKey{}, errors.New("the answer has no KeyId string")
	}
	if err := json.Unmarshal(members["AccessKey"], &key); err != nil || key == "" {
		return rewrite.SigningKey{}, errors.New("the answer has no AccessKey string")
	}
	return rewrite.SigningKey{ID: id, Secret: []byte(key)}, nil
}

// redactURLError drops user info and query from the URL a client error
// names; the key URL has neither, but a proxy's might.
func redactURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		if u, perr := url.Parse(ue.URL); perr == nil {
			u.User, u.RawQuery = nil, ""
			return &url.Error{Op: ue.Op, URL: u.String(), Err: ue.Err}
		}
	}
	return err
}
