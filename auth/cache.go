package auth

import (
	"container/list"
	"crypto/sha256"
	"sync"
	"sync/atomic"
	"time"
)

// EntryBudget is the memory, in bytes, that a Cache allows each entry on
// average: a cache of n entries holds at most n*EntryBudget bytes (as
// estimated from the size of tokens' claims), so that a stream of tokens
// with large claims evicts sooner rather than growing the process.
const EntryBudget = 2 << 10

// Cache remembers tokens that verified, so that a caller who presents the
// same token again, as every SignalR reconnect and every API call does, costs
// a hash and a map lookup instead of a signature check and a JSON decode.
//
// Only successes are kept; a refused token is checked again every time. An
// entry is keyed by the SHA-256 of the whole token (signature included), is
// valid until the token's exp plus the provider's leeway, exactly as long as
// a fresh check would accept it, and is dropped when the provider's keys
// change (a key rotated in or removed) or the Authenticator that verified it
// is replaced by a reload. It holds at most MaxEntries entries and about
// MaxEntries*EntryBudget bytes, evicting the least recently used.
//
// A Cache outlives reloads, so that its counters do not reset; an
// Authenticator never serves another's entries. It is safe for concurrent use.
type Cache struct {
	maxEntries int
	maxBytes   int64

	mu      sync.Mutex
	entries map[[sha256.Size]byte]*list.Element
	lru     list.List // front: most recently used
	bytes   int64

	hits, misses atomic.Uint64
}

type cacheEntry struct {
	key        [sha256.Size]byte
	owner      *Authenticator
	generation uint64
	current    func() uint64 // the provider's key generation now
	validUntil time.Time
	size       int64
	id         Identity
}

// NewCache returns a cache of at most maxEntries tokens, or nil (no caching)
// when maxEntries is not positive.
func NewCache(maxEntries int) *Cache {
	if maxEntries <= 0 {
		return nil
	}
	return &Cache{
		maxEntries: maxEntries,
		maxBytes:   int64(maxEntries) * EntryBudget,
		entries:    make(map[[sha256.Size]byte]*list.Element, min(maxEntries, 1024)),
	}
}

// CacheStats is a snapshot of a Cache, for metrics.
type CacheStats struct {
	Entries      int
	Bytes        int64
	Hits, Misses uint64
}

// Stats returns the cache's size and its hit and miss counts since it was
// made. A nil Cache reports zeros.
func (c *Cache) Stats() CacheStats {
	if c == nil {
		return CacheStats{}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return CacheStats{Entries: len(c.entries), Bytes: c.bytes, Hits: c.hits.Load(), Misses: c.misses.Load()}
}

// get returns the identity cached for key by owner, if it is still valid at
// now under the provider's current key generation.
func (c *Cache) get(key [sha256.Size]byte, owner *Authenticator, now time.Time) (Identity, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.entries[key]
	if !ok {
		c.misses.Add(1)
		return Identity{}, false
	}
	e := el.Value.(*cacheEntry)
	if e.owner != owner || e.generation != e.current() || !now.Before(e.validUntil) {
		c.remove(el)
		c.misses.Add(1)
		return Identity{}, false
	}
	c.lru.MoveToFront(el)
	c.hits.Add(1)
	return e.id, true
}

// entryOverhead is what a cache entry costs beside its strings: the entry
// and its list element, its slot in the map, and the identity's memo with
// its boxes.
const entryOverhead = 512

// entrySize estimates the memory a cached identity holds: the entry's
// overhead, its strings, and what consumers memoize from it. That last is
// guessed at twice the claims' text: the X-MS-CLIENT-PRINCIPAL header is the
// claims again, one {"typ","val"} pair for each value, in base64. Measured
// for tokens of 300 bytes to 1.5 KB, the estimate is within 10% of the heap
// an entry holds.
func entrySize(id Identity) int64 {
	return int64(entryOverhead + len(id.UserID) + len(id.Name) + 3*len(id.payload))
}

// put remembers a verified identity until validUntil.
func (c *Cache) put(key [sha256.Size]byte, owner *Authenticator, generation uint64, current func() uint64, validUntil time.Time, size int64, id Identity) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.entries[key]; ok {
		c.remove(el)
	}
	e := &cacheEntry{key: key, owner: owner, generation: generation, current: current, validUntil: validUntil, size: size, id: id}
	c.entries[key] = c.lru.PushFront(e)
	c.bytes += size
	for len(c.entries) > c.maxEntries || (c.bytes > c.maxBytes && len(c.entries) > 1) {
		c.remove(c.lru.Back())
	}
}

func (c *Cache) remove(el *list.Element) {
	e := c.lru.Remove(el).(*cacheEntry)
	delete(c.entries, e.key)
	c.bytes -= e.size
}
