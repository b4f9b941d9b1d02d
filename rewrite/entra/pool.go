package entra

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"slices"
	"strings"
	"sync"

	"go.uber.org/zap"

	"github.com/negotiate-sidecar/negotiate-sidecar/rewrite"
)

// Pool keeps one running Source per endpoint and identity across reloads
// of a configuration, so that a reload that leaves them alone neither asks
// the service for another key nor leaves a gap while one comes.
type Pool struct {
	ctx     context.Context
	log     *zap.Logger
	client  *http.Client
	opts    Options
	onFetch func(endpoint string, err error)

	mu      sync.Mutex
	sources map[string]*Source
	cancels map[string]context.CancelFunc
	clients map[string]*TokenClient // for Web PubSub, by id
	closed  bool
	running sync.WaitGroup
}

// NewPool returns a pool whose sources refresh until ctx ends or the pool
// is closed, ask the key API with client, build credentials with opts, log
// to log and report each fetch to onFetch, if set.
func NewPool(ctx context.Context, log *zap.Logger, client *http.Client, opts Options, onFetch func(endpoint string, err error)) *Pool {
	if log == nil {
		log = zap.NewNop()
	}
	return &Pool{ctx: ctx, log: log, client: client, opts: opts, onFetch: onFetch,
		sources: map[string]*Source{}, cancels: map[string]context.CancelFunc{}, clients: map[string]*TokenClient{}}
}

// Get returns the running Source for e, starting one if there is none yet,
// and the id Retain keeps it by.
func (p *Pool) Get(e *rewrite.Entra) (*Source, string, error) {
	id := poolID("key", e)

	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, "", errors.New("the key pool is closed: the sidecar is stopping")
	}
	if s, ok := p.sources[id]; ok {
		return s, id, nil
	}
	cred, desc, err := Credential(e, p.opts)
	if err != nil {
		return nil, "", err
	}
	endpoint := e.Endpoint.String()
	cfg := Config{Entra: e, Credential: cred, Description: desc, Client: p.client,
		Logger: p.log.Named("entra")}
	if p.onFetch != nil {
		cfg.OnFetch = func(err error) { p.onFetch(endpoint, err) }
	}
	s, err := NewSource(cfg)
	if err != nil {
		return nil, "", err
	}
	ctx, cancel := context.WithCancel(p.ctx)
	p.running.Add(1)
	go func() { defer p.running.Done(); s.Run(ctx) }()
	p.sources[id], p.cancels[id] = s, cancel
	return s, id, nil
}

// poolID is the id of what the pool keeps for e. The secret is part of the
// identity, hashed: a rotated secret needs a new credential.
func poolID(kind string, e *rewrite.Entra) string {
	sum := sha256.Sum256([]byte(strings.Join([]string{kind, e.String(), e.ClientSecret}, "\x00")))
	return hex.EncodeToString(sum[:])
}

// TokenClient returns the TokenClient for a Web PubSub endpoint e, making
// one if there is none yet, and the id Retain keeps it by. It is kept
// across reloads so that its credential's cached Entra token is too.
func (p *Pool) TokenClient(e *rewrite.Entra) (*TokenClient, string, error) {
	id := poolID("webpubsub", e)
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, "", errors.New("the key pool is closed: the sidecar is stopping")
	}
	if c, ok := p.clients[id]; ok {
		return c, id, nil
	}
	cred, desc, err := Credential(e, p.opts)
	if err != nil {
		return nil, "", err
	}
	c, err := NewTokenClient(IssuerConfig{Entra: e, Credential: cred, Description: desc, Client: p.client})
	if err != nil {
		return nil, "", err
	}
	p.clients[id] = c
	return c, id, nil
}

// Sources returns the running sources, ordered by endpoint.
func (p *Pool) Sources() []*Source {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []*Source
	for _, s := range p.sources {
		out = append(out, s)
	}
	slices.SortFunc(out, func(a, b *Source) int { return strings.Compare(a.Endpoint(), b.Endpoint()) })
	return out
}

// Retain stops every source, and drops every token client, whose id is not
// in keep.
func (p *Pool) Retain(keep map[string]bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for id := range p.clients {
		if !keep[id] {
			delete(p.clients, id)
		}
	}
	for id, cancel := range p.cancels {
		if !keep[id] {
			cancel()
			delete(p.cancels, id)
			delete(p.sources, id)
		}
	}
}

// Close stops every source and waits until their refreshes have ended.
// Get fails afterwards.
func (p *Pool) Close() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.Retain(nil)
	p.running.Wait()
}
