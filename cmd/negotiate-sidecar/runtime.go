package main

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/negotiate-sidecar/negotiate-sidecar/auth"
	"github.com/negotiate-sidecar/negotiate-sidecar/proxy"
	"github.com/negotiate-sidecar/negotiate-sidecar/rewrite"
	"github.com/negotiate-sidecar/negotiate-sidecar/rewrite/entra"
)

// instance is everything built from one version of the configuration: the
// proxy handler with its authenticator and rewriter, and the state readiness
// and metrics look at. A reload builds a new instance and swaps it in whole.
type instance struct {
	settings  settings
	handler   http.Handler
	authn     *auth.Authenticator
	providers []providerInstance
	endpoints []rewrite.Endpoint
	entra     []entraInstance
}

// entraInstance is, for an endpoint the app reaches with Microsoft Entra
// ID, the sidecar's own key source (SignalR) or the client that asks the
// service for tokens (Web PubSub).
type entraInstance struct {
	source *entra.Source
	issuer *entra.TokenClient
	id     string // the pool's id
}

type providerInstance struct {
	settings providerSettings
	keys     *auth.KeySet
	keyID    string // the key pool's id
}

// deps are what every instance shares: they outlive reloads.
type deps struct {
	log       *zap.Logger
	metrics   *proxy.Metrics
	transport http.RoundTripper
	pool      *auth.KeyPool
	entra     *entra.Pool
	// cache outlives reloads so that its counters do not reset; each new
	// authenticator starts with none of its entries.
	cache *auth.Cache
}

// buildInstance builds an instance from s. Problems are reported together.
func buildInstance(s settings, env environment, d deps) (*instance, error) {
	var problems []error
	eps, err := endpoints(s, env)
	if err != nil {
		problems = append(problems, err)
	}
	rt := &instance{settings: s, endpoints: eps}
	format := formatOf(s.Service)
	for i, e := range eps {
		if e.Entra == nil || err != nil {
			continue
		}
		if format.EntraIssuesTokens {
			tc, id, gerr := d.entra.TokenClient(e.Entra)
			if gerr != nil {
				problems = append(problems, fmt.Errorf("%s: %w", e.Entra.Source, gerr))
				continue
			}
			eps[i].Issuer = tc
			rt.entra = append(rt.entra, entraInstance{issuer: tc, id: id})
			continue
		}
		src, id, gerr := d.entra.Get(e.Entra)
		if gerr != nil {
			problems = append(problems, fmt.Errorf("%s: %w", e.Entra.Source, gerr))
			continue
		}
		eps[i].Source = src
		rt.entra = append(rt.entra, entraInstance{source: src, id: id})
	}
	var rw *rewrite.Rewriter
	if len(problems) == 0 {
		rw, err = rewrite.New(format, rewrite.Keys(eps), s.rewriteOptions())
		if err != nil {
			problems = append(problems, err)
		}
	}

	var providers []auth.Provider
	for _, ps := range s.Providers {
		cfg, err := ps.keySetConfig(nil)
		var ks *auth.KeySet
		var id string
		if err == nil {
			ks, id, err = d.pool.Get(ps.Name, cfg)
		}
		if err != nil {
			problems = append(problems, fmt.Errorf("provider %q: %w", ps.Name, err))
			continue
		}
		rt.providers = append(rt.providers, providerInstance{settings: ps, keys: ks, keyID: id})
		providers = append(providers, ps.authProvider(ks))
	}
	if len(problems) > 0 {
		return nil, errors.Join(problems...)
	}
	rt.authn, err = auth.New(auth.Config{Providers: providers, Cache: d.cache})
	if err != nil {
		return nil, err
	}
	rt.handler, err = newHandler(s, rt.authn, rw, d)
	if err != nil {
		return nil, err
	}
	return rt, nil
}

// newHandler is the proxy's request path for s.
func newHandler(s settings, authn *auth.Authenticator, rw *rewrite.Rewriter, d deps) (http.Handler, error) {
	upstream, _ := url.Parse(s.Upstream) // validated with the settings
	matcher, _ := proxy.NewMatcher(s.NegotiatePaths)
	h, err := proxy.New(proxy.Config{
		Upstream:         upstream,
		Authenticator:    authn,
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
	return h, nil
}

// keySources describes where the provider's keys come from: the JWKS file,
// JWKS URLs, or, with neither, OpenID Connect discovery from the issuer.
func (ps providerSettings) keySources() auth.KeySetConfig {
	cfg := auth.KeySetConfig{JWKSURLs: ps.JWKSURLs, RefreshInterval: ps.RefreshInterval, InsecureHTTP: ps.InsecureHTTP}
	if len(ps.JWKSURLs) == 0 && ps.JWKSFile == "" {
		cfg.Issuer = ps.Issuer
	}
	return cfg
}

// keySetConfig is keySources with the JWKS file read and client to fetch with.
func (ps providerSettings) keySetConfig(client *http.Client) (auth.KeySetConfig, error) {
	cfg := ps.keySources()
	cfg.Client = client
	if ps.JWKSFile != "" {
		static, err := os.ReadFile(ps.JWKSFile)
		if err != nil {
			return cfg, fmt.Errorf("JWKS file: %w", err)
		}
		cfg.Static = static
	}
	return cfg, nil
}

// authProvider is the provider as the authenticator takes it, verified with
// ks; without ks, for judging the settings only.
func (ps providerSettings) authProvider(ks *auth.KeySet) auth.Provider {
	p := auth.Provider{
		Name:       ps.Name,
		Issuer:     ps.Issuer,
		Audiences:  ps.Audiences,
		Algorithms: ps.Algorithms,
		Leeway:     ps.Leeway,
		UserClaim:  ps.UserClaim,
	}
	if ks != nil {
		p.Keys, p.Loaded, p.Generation = ks.Keyfunc, ks.Loaded, ks.Generation
	}
	return p
}

// ready reports why the instance cannot serve yet, or nil: every provider
// needs keys, and keys fetched longer ago than the provider's max staleness
// no longer count.
func (rt *instance) ready(now time.Time) error {
	for _, e := range rt.entra {
		if e.source == nil {
			continue // the service issues each token: there is no key to wait for
		}
		if _, err := e.source.SigningKey(); err != nil {
			return fmt.Errorf("no usable key of the sidecar's own for %s (%s): %w", e.source.Endpoint(), e.source.Description(), err)
		}
	}
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

// current holds the instance in use; requests and probes read it without locks.
type current struct{ p atomic.Pointer[instance] }

func (c *current) load() *instance { return c.p.Load() }

// ServeHTTP hands each request to the instance current when it arrives.
func (c *current) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c.load().handler.ServeHTTP(w, r)
}
