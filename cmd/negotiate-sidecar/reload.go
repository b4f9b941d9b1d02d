package main

import (
	"context"
	"crypto/sha256"
	"os"
	"time"

	"go.uber.org/zap"
)

// reloader re-reads the configuration when the configuration file or a
// connection string file changes, and swaps in a new instance if the new
// configuration is good. A bad one is logged and the running configuration
// stays.
//
// Files are compared by content, polled: Kubernetes updates mounted secrets
// and config maps by swapping a symlink to a new directory, which changes no
// inode of the path we were given and is easy to miss with file events.
type reloader struct {
	args   []string
	env    environment
	deps   deps
	cur    *current
	level  zap.AtomicLevel
	every  time.Duration
	seen   map[string][32]byte
	onDone func(ok bool) // metrics
	// settle bounds how long a new instance may wait for a new provider's
	// keys before it is swapped in anyway.
	settle time.Duration
}

func fingerprint(files []string) map[string][32]byte {
	out := make(map[string][32]byte, len(files))
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			data = []byte("unreadable: " + err.Error())
		}
		out[f] = sha256.Sum256(data)
	}
	return out
}

func (r *reloader) run(ctx context.Context) {
	t := time.NewTicker(r.every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		files := command(false).Watched(&r.cur.load().settings)
		now := fingerprint(files)
		if mapsEqual(now, r.seen) {
			continue
		}
		r.seen = now
		r.reload(ctx)
	}
}

func mapsEqual(a, b map[string][32]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// reload builds and swaps in an instance from the files as they are now.
func (r *reloader) reload(ctx context.Context) {
	log := r.deps.log
	old := r.cur.load()
	s, err := loadSettings(r.args, r.env, false)
	if err == nil {
		var rt *instance
		if rt, err = buildInstance(s, r.env, r.deps); err == nil {
			r.settleKeys(ctx, rt)
			r.cur.p.Store(rt)
			keep := map[string]bool{}
			for _, p := range rt.providers {
				keep[p.keyID] = true
			}
			r.deps.pool.Retain(keep)
			r.deps.entra.Retain(entraIDs(rt))
			r.seen = fingerprint(command(false).Watched(&s))
			warnRestartNeeded(log, old.settings, s)
			if lvl, lerr := parseLevel(s.LogLevel); lerr == nil {
				r.level.SetLevel(lvl)
			}
			log.Info("configuration reloaded", zap.Strings("providers", rt.authn.Providers()), zap.Int("endpoints", len(rt.endpoints)))
			r.onDone(true)
			return
		}
	}
	// Drop key sets started for the failed attempt.
	keep := map[string]bool{}
	for _, p := range old.providers {
		keep[p.keyID] = true
	}
	r.deps.pool.Retain(keep)
	r.deps.entra.Retain(entraIDs(old))
	log.Error("configuration change not applied; still running the previous configuration", zap.Error(err))
	r.onDone(false)
}

// entraIDs are the pool ids of rt's own key sources.
func entraIDs(rt *instance) map[string]bool {
	keep := map[string]bool{}
	for _, e := range rt.entra {
		keep[e.id] = true
	}
	return keep
}

// settleKeys waits, within r.settle, until every provider of rt has keys, so
// that adding a provider does not briefly refuse its callers.
func (r *reloader) settleKeys(ctx context.Context, rt *instance) {
	deadline := time.Now().Add(r.settle)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if rt.ready(time.Now()) == nil {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// warnRestartNeeded logs settings that only take effect at start.
func warnRestartNeeded(log *zap.Logger, old, s settings) {
	for _, c := range []struct {
		name     string
		old, new any
	}{
		{"listen", old.Listen, s.Listen},
		{"admin_listen", old.AdminListen, s.AdminListen},
		{"log_format", old.LogFormat, s.LogFormat},
		{"max_connections", old.MaxConnections, s.MaxConnections},
		{"shutdown_delay", old.ShutdownDelay, s.ShutdownDelay},
		{"shutdown_timeout", old.ShutdownTimeout, s.ShutdownTimeout},
		{"reload_interval", old.ReloadInterval, s.ReloadInterval},
		{"token_cache_size", old.TokenCacheSize, s.TokenCacheSize},
	} {
		if c.old != c.new {
			log.Warn("setting changed; restart to apply it", zap.String("setting", c.name))
		}
	}
}
