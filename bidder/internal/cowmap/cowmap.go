// Package cowmap is a sharded copy-on-write map from byte-string keys to
// pointers, for tables that a hot path reads and a few writers change:
// readers never take a lock and never wait, writers never block readers.
//
// Each shard publishes an immutable Go map through an atomic pointer. A
// writer copies its shard's map, changes the copy and publishes it, under
// the shard's writer lock, which readers never touch. With many shards a
// copy is small (entries/256).
//
// Entries can also be added in O(1) without publishing: Add and TryAdd put
// them in the shard's pending set, invisible to Get until Flush publishes
// all pending entries at once. That lets a hot path create entries (TryAdd
// never waits: when the shard's writer lock is taken it gives up) while the
// copies are made off it, in batches.
package cowmap

import (
	"sync"
	"sync/atomic"

	"github.com/cespare/xxhash/v2"
)

// numShards is a power of two.
const numShards = 256

// Map is a sharded copy-on-write map. The zero value is not usable: use
// New.
type Map[V any] struct {
	shards [numShards]shard[V]
	// n counts the entries, pending ones included.
	n atomic.Int64
	// pending counts the pending entries, so Flush with none is free.
	pending atomic.Int64
}

type shard[V any] struct {
	m  atomic.Pointer[map[string]*V]
	mu sync.Mutex // writers: pending, and the publication of m
	// pending holds entries added but not yet published.
	pending map[string]*V
	_       [40]byte // keeps shards' hot words on distinct cache lines
}

// New returns an empty map.
func New[V any]() *Map[V] {
	m := &Map[V]{}
	for i := range m.shards {
		empty := map[string]*V{}
		m.shards[i].m.Store(&empty)
	}
	return m
}

func (m *Map[V]) shard(key []byte) *shard[V] {
	return &m.shards[xxhash.Sum64(key)&(numShards-1)]
}

func (m *Map[V]) shardString(key string) *shard[V] {
	return &m.shards[xxhash.Sum64String(key)&(numShards-1)]
}

// Get returns the published value of key, or nil. It takes no lock and
// allocates nothing.
func (m *Map[V]) Get(key []byte) *V {
	return (*m.shard(key).m.Load())[string(key)]
}

// GetString is Get for a string key.
func (m *Map[V]) GetString(key string) *V {
	return (*m.shardString(key).m.Load())[key]
}

// Len returns the number of entries, pending ones included.
func (m *Map[V]) Len() int { return int(m.n.Load()) }

// Pending returns the number of entries not yet published.
func (m *Map[V]) Pending() int { return int(m.pending.Load()) }

// TryAdd adds key with the value mk returns to the pending set, unless
// key is published or pending already, the map holds limit entries or
// more (limit <= 0: no limit), or another writer holds the shard (it then
// gives up rather than wait). It returns the value it added (nil: none),
// and whether the map was full.
func (m *Map[V]) TryAdd(key []byte, mk func() *V, limit int) (added *V, full bool) {
	sh := m.shard(key)
	if !sh.mu.TryLock() {
		return nil, false
	}
	defer sh.mu.Unlock()
	if ok, full := m.addLocked(sh, key, mk, limit); !ok {
		return nil, full
	}
	return sh.pending[string(key)], false
}

// Find returns the value of key, published or pending, or nil. It takes
// the shard's writer lock when key is not published: not for hot paths.
func (m *Map[V]) Find(key string) *V {
	sh := m.shardString(key)
	if v := (*sh.m.Load())[key]; v != nil {
		return v
	}
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if v := (*sh.m.Load())[key]; v != nil {
		return v
	}
	return sh.pending[key]
}

// Add is TryAdd that waits for the shard's writer lock, and returns the
// value of key: the published or pending one, or the one it added; nil
// when the map is full.
func (m *Map[V]) Add(key []byte, mk func() *V, limit int) *V {
	sh := m.shard(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if v := (*sh.m.Load())[string(key)]; v != nil {
		return v
	}
	if v := sh.pending[string(key)]; v != nil {
		return v
	}
	if added, _ := m.addLocked(sh, key, mk, limit); !added {
		return nil
	}
	return sh.pending[string(key)]
}

func (m *Map[V]) addLocked(sh *shard[V], key []byte, mk func() *V, limit int) (added, full bool) {
	if (*sh.m.Load())[string(key)] != nil || sh.pending[string(key)] != nil {
		return false, false
	}
	if limit > 0 && m.n.Load() >= int64(limit) {
		return false, true
	}
	if sh.pending == nil {
		sh.pending = map[string]*V{}
	}
	sh.pending[string(key)] = mk()
	m.n.Add(1)
	m.pending.Add(1)
	return true, false
}

// Set publishes v as the value of key at once (a copy of its shard), and
// returns the previous value. It does not check a limit: see Len.
func (m *Map[V]) Set(key string, v *V) (prev *V) {
	sh := m.shardString(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	m.flushLocked(sh, nil)
	old := *sh.m.Load()
	next := make(map[string]*V, len(old)+1)
	for k, x := range old {
		next[k] = x
	}
	prev = old[key]
	next[key] = v
	sh.m.Store(&next)
	if prev == nil {
		m.n.Add(1)
	}
	return prev
}

// Delete removes key at once, and returns its value (nil: none).
func (m *Map[V]) Delete(key []byte) *V {
	sh := m.shard(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	m.flushLocked(sh, nil)
	old := *sh.m.Load()
	prev := old[string(key)]
	if prev == nil {
		return nil
	}
	next := make(map[string]*V, len(old))
	for k, x := range old {
		if k != string(key) {
			next[k] = x
		}
	}
	sh.m.Store(&next)
	m.n.Add(-1)
	return prev
}

// Flush publishes every pending entry, and calls added, if not nil, for
// each entry it publishes (with the shard's writer lock held). With keep,
// it also drops the published and pending entries for which keep returns
// false, shard by shard: each shard's new map is built under its writer
// lock (TryAdd on that shard gives up meanwhile; Get never waits). between,
// if not nil, runs between shards, with no lock held: a long walk can
// yield there.
func (m *Map[V]) Flush(keep func(key string, v *V) bool, added func(key string, v *V), between func()) {
	if keep == nil && m.pending.Load() == 0 {
		return
	}
	for i := range m.shards {
		sh := &m.shards[i]
		sh.mu.Lock()
		if added != nil {
			for k, v := range sh.pending {
				if keep == nil || keep(k, v) {
					added(k, v)
				}
			}
		}
		m.flushLocked(sh, keep)
		sh.mu.Unlock()
		if between != nil {
			between()
		}
	}
}

func (m *Map[V]) flushLocked(sh *shard[V], keep func(string, *V) bool) {
	if len(sh.pending) == 0 && keep == nil {
		return
	}
	old := *sh.m.Load()
	next := make(map[string]*V, len(old)+len(sh.pending))
	dropped := 0
	for k, v := range old {
		if keep != nil && !keep(k, v) {
			dropped++
			continue
		}
		next[k] = v
	}
	for k, v := range sh.pending {
		if keep != nil && !keep(k, v) {
			dropped++
			continue
		}
		next[k] = v
	}
	m.pending.Add(-int64(len(sh.pending)))
	m.n.Add(-int64(dropped))
	clear(sh.pending)
	if dropped == 0 && len(next) == len(old) {
		return // nothing changed: keep the published map
	}
	sh.m.Store(&next)
}

// Range calls fn for each published entry, shard by shard, until fn
// returns false. It takes no lock: each shard is seen as published when
// Range reaches it. between, if not nil, runs after each shard.
func (m *Map[V]) Range(fn func(key string, v *V) bool, between func()) {
	for i := range m.shards {
		for k, v := range *m.shards[i].m.Load() {
			if !fn(k, v) {
				return
			}
		}
		if between != nil {
			between()
		}
	}
}
