package auth

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"sync"

	"go.uber.org/zap"
)

// KeyPool keeps one running KeySet per identity provider key source across
// reloads of a configuration, so that a reload that leaves a provider's keys
// alone neither fetches them again nor leaves a gap while they load.
type KeyPool struct {
	ctx       context.Context
	log       *zap.Logger
	client    *http.Client
	onRefresh func(provider string, err error)

	mu     sync.Mutex
	sets   map[string]context.CancelFunc
	keys   map[string]*KeySet
	closed bool
	// running counts the key sets' refresh goroutines, stopped or not, so
	// that Close can wait for every one of them.
	running sync.WaitGroup
}

// NewKeyPool returns a pool whose key sets refresh until ctx ends or the
// pool is closed, fetch with client, log to log and report each refresh of
// a named provider's keys to onRefresh, if set.
func NewKeyPool(ctx context.Context, log *zap.Logger, client *http.Client, onRefresh func(provider string, err error)) *KeyPool {
	if log == nil {
		log = zap.NewNop()
	}
	return &KeyPool{ctx: ctx, log: log, client: client, onRefresh: onRefresh, sets: map[string]context.CancelFunc{}, keys: map[string]*KeySet{}}
}

// Get returns the running KeySet of the named provider's key source, as
// cfg describes it, starting one if there is none yet; and the id that
// Retain keeps it by. cfg's Client, Logger and OnRefresh are the pool's.
func (p *KeyPool) Get(provider string, cfg KeySetConfig) (*KeySet, string, error) {
	sum := sha256.Sum256(cfg.Static)
	// InsecureHTTP is part of the identity: a reload that withdraws it must
	// not keep a key set that fetches over plain http.
	id := strings.Join([]string{provider, cfg.Issuer, strings.Join(cfg.JWKSURLs, " "), hex.EncodeToString(sum[:]), cfg.RefreshInterval.String(), strconv.FormatBool(cfg.InsecureHTTP)}, "|")

	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, "", errors.New("the key pool is closed: the sidecar is stopping")
	}
	if ks, ok := p.keys[id]; ok {
		return ks, id, nil
	}
	cfg.Client = p.client
	cfg.Logger = p.log.Named("jwks").With(zap.String("provider", provider))
	cfg.OnRefresh = nil
	if p.onRefresh != nil {
		cfg.OnRefresh = func(err error) { p.onRefresh(provider, err) }
	}
	ks, err := NewKeySet(cfg)
	if err != nil {
		return nil, "", err
	}
	ctx, cancel := context.WithCancel(p.ctx)
	p.running.Add(1)
	go func() { defer p.running.Done(); ks.Run(ctx) }()
	p.sets[id], p.keys[id] = cancel, ks
	return ks, id, nil
}

// Retain stops every key set whose id is not in keep.
func (p *KeyPool) Retain(keep map[string]bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for id, cancel := range p.sets {
		if !keep[id] {
			cancel()
			delete(p.sets, id)
			delete(p.keys, id)
		}
	}
}

// Close stops every key set, those retired by Retain included, and waits
// until their refreshes have ended. Get fails afterwards.
func (p *KeyPool) Close() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.Retain(nil)
	p.running.Wait()
}
