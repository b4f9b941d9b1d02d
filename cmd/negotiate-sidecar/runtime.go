package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/negotiate-sidecar/negotiate-sidecar/auth"
	"github.com/negotiate-sidecar/negotiate-sidecar/proxy"
	"github.com/negotiate-sidecar/negotiate-sidecar/rewrite"
)

// runtime is everything built from one version of the configuration: the
// proxy handler with its authenticator and rewriter, and the state readiness
// and metrics look at. A reload builds a new runtime and swaps it in whole.
type runtime struct {
	settings  settings
	handler   http.Handler
	authn     *auth.Authenticator
	providers []providerRuntime
	endpoints []endpoint
}

type providerRuntime struct {
	settings providerSettings
	keys     *auth.KeySet
	keyID    string // the key pool's id
}

// deps are what every runtime shares: they outlive reloads.
type deps struct {
	log       *zap.Logger
	metrics   *proxy.Metrics
	transport http.RoundTripper
	pool      *keyPool
	// cache outlives reloads so that its counters do not reset; each new
	// authenticator starts with none of its entries.
	cache *auth.Cache
}

// buildRuntime builds a runtime from s. Problems are reported together.
func buildRuntime(s settings, env environment, d deps) (*runtime, error) {
	var problems []error
	css, err := collectConnectionStrings(s, env)
	if err != nil {
		problems = append(problems, err)
	}
	endpoints, err := parseEndpoints(css, s.Service)
	if err != nil {
		problems = append(problems, err)
	}
	var rw *rewrite.Rewriter
	if len(problems) == 0 {
		rw, err = rewrite.New(formatOf(s.Service), rewriteKeys(endpoints), rewrite.Options{
			ForwardClaims:       s.Tokens.ForwardClaims,
			MaxTokenLifetime:    s.Tokens.MaxTokenLifetime,
			BindToCallerExpiry:  s.Tokens.BindToCallerExpiry,
			CloseOnCallerExpiry: s.Tokens.CloseOnCallerExpiry,
			MaxTokenLength:      s.Tokens.MaxTokenLength,
		})
		if err != nil {
			problems = append(problems, err)
		}
	}

	rt := &runtime{settings: s, endpoints: endpoints}
	var providers []auth.Provider
	for _, ps := range s.Providers {
		ks, id, err := d.pool.get(ps)
		if err != nil {
			problems = append(problems, fmt.Errorf("provider %q: %w", ps.Name, err))
			continue
		}
		rt.providers = append(rt.providers, providerRuntime{settings: ps, keys: ks, keyID: id})
		providers = append(providers, ps.authProvider(ks))
	}
	if len(problems) > 0 {
		return nil, errors.Join(problems...)
	}
	rt.authn, err = auth.New(auth.Config{Providers: providers, Cache: d.cache})
	if err != nil {
		return nil, err
	}
	upstream, _ := url.Parse(s.Upstream) // validated with the settings
	matcher, _ := proxy.NewMatcher(s.NegotiatePaths)
	rt.handler, err = proxy.New(proxy.Config{
		Upstream:         upstream,
		Authenticator:    rt.authn,
		Rewriter:         rw,
		Negotiate:        matcher,
		MaxBodyBytes:     s.MaxBodyBytes,
		NegotiateTimeout: s.NegotiateTimeout,
		Transport:        d.transport,
		Logger:           d.log.Named("proxy"),
		Metrics:          d.metrics,
	})
	if err != nil {
		return nil, err
	}
	return rt, nil
}

// keySetConfig describes where the provider's keys come from: a static file's
// contents, JWKS URLs, or, with neither, OpenID Connect discovery from the
// issuer.
func (ps providerSettings) keySetConfig(static []byte, client *http.Client) auth.KeySetConfig {
	cfg := auth.KeySetConfig{JWKSURLs: ps.JWKSURLs, Static: static, Client: client, RefreshInterval: ps.RefreshInterval, InsecureHTTP: ps.InsecureHTTP}
	if len(ps.JWKSURLs) == 0 && len(static) == 0 {
		cfg.Issuer = ps.Issuer
	}
	return cfg
}

// authProvider is the provider as the authenticator takes it, verified with ks.
func (ps providerSettings) authProvider(ks *auth.KeySet) auth.Provider {
	return auth.Provider{
		Name:       ps.Name,
		Issuer:     ps.Issuer,
		Audiences:  ps.Audiences,
		Algorithms: ps.Algorithms,
		Leeway:     *ps.Leeway,
		UserClaim:  ps.UserClaim,
		Keys:       ks.Keyfunc,
		Loaded:     ks.Loaded,
		Generation: ks.Generation,
	}
}

// ready reports why the runtime cannot serve yet, or nil: every provider
// needs keys, and keys fetched longer ago than the provider's max staleness
// no longer count.
func (rt *runtime) ready(now time.Time) error {
	for _, p := range rt.providers {
		if !p.keys.Loaded() {
			return fmt.Errorf("no key loaded yet for provider %q", p.settings.Name)
		}
		if max := p.settings.MaxStaleness; max > 0 && p.keys.Remote() {
			last := p.keys.LastSuccess()
			if last.IsZero() || now.Sub(last) > max {
				return fmt.Errorf("the keys of provider %q were last fetched more than %s ago", p.settings.Name, max)
			}
		}
	}
	return nil
}

// keyPool keeps one KeySet per identity provider key source across reloads,
// so that a reload that leaves a provider's keys alone neither refetches them
// nor leaves a gap while they load again.
type keyPool struct {
	ctx       context.Context
	log       *zap.Logger
	client    *http.Client
	onRefresh func(provider string, err error)

	mu     sync.Mutex
	sets   map[string]*pooledKeySet
	closed bool
	// running counts the key sets' refresh goroutines, stopped or not, so
	// that close can wait for every one of them.
	running sync.WaitGroup
}

type pooledKeySet struct {
	keys   *auth.KeySet
	cancel context.CancelFunc
}

func newKeyPool(ctx context.Context, log *zap.Logger, client *http.Client, onRefresh func(string, error)) *keyPool {
	return &keyPool{ctx: ctx, log: log, client: client, onRefresh: onRefresh, sets: map[string]*pooledKeySet{}}
}

// get returns the running KeySet for the provider's key source, starting one
// if there is none yet.
func (p *keyPool) get(ps providerSettings) (*auth.KeySet, string, error) {
	var static []byte
	if ps.JWKSFile != "" {
		var err error
		if static, err = os.ReadFile(ps.JWKSFile); err != nil {
			return nil, "", fmt.Errorf("JWKS file: %w", err)
		}
	}
	sum := sha256.Sum256(static)
	// InsecureHTTP is part of the identity: a reload that withdraws it must
	// not keep a key set that fetches over plain http.
	id := strings.Join([]string{ps.Name, ps.Issuer, strings.Join(ps.JWKSURLs, " "), hex.EncodeToString(sum[:]), ps.RefreshInterval.String(), strconv.FormatBool(ps.InsecureHTTP)}, "|")

	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, "", errors.New("the sidecar is stopping")
	}
	if s, ok := p.sets[id]; ok {
		return s.keys, id, nil
	}
	cfg := ps.keySetConfig(static, p.client)
	cfg.Logger = p.log.Named("jwks").With(zap.String("provider", ps.Name))
	cfg.OnRefresh = func(err error) { p.onRefresh(ps.Name, err) }
	ks, err := auth.NewKeySet(cfg)
	if err != nil {
		return nil, "", err
	}
	ctx, cancel := context.WithCancel(p.ctx)
	p.running.Add(1)
	go func() { defer p.running.Done(); ks.Run(ctx) }()
	p.sets[id] = &pooledKeySet{keys: ks, cancel: cancel}
	return ks, id, nil
}

// close stops every key set, those retired by retain included, and waits
// until their refreshes have ended. get fails afterwards.
func (p *keyPool) close() {
	p.mu.Lock()
	p.closed = true
	for id, s := range p.sets {
		s.cancel()
		delete(p.sets, id)
	}
	p.mu.Unlock()
	p.running.Wait()
}

// retain stops every key set not in keep.
func (p *keyPool) retain(keep map[string]bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for id, s := range p.sets {
		if !keep[id] {
			s.cancel()
			delete(p.sets, id)
		}
	}
}

// current holds the runtime in use; requests and probes read it without locks.
type current struct{ p atomic.Pointer[runtime] }

func (c *current) load() *runtime { return c.p.Load() }

// ServeHTTP hands each request to the runtime current when it arrives.
func (c *current) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c.load().handler.ServeHTTP(w, r)
}
