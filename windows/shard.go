package windows

import (
	"encoding/binary"
	"sync/atomic"
	"unsafe"
)

const (
	shardBits = 6
	numShards = 1 << shardBits
)

// arenaBuf is a published key arena: the whole backing array (records are
// only ever appended past every published ref, so a reader may index it up
// to its capacity).
type arenaBuf struct{ b []byte }

// metaBuf is a published metas array, indexed by local id.
type metaBuf struct{ m []meta }

// meta is a key's entry in its shard's metas, by local id: the passes over
// every key (Scan, EvictIdle, WriteCheckpoint) walk metas, whose positions
// never move, instead of the index, whose entries shift on deletion. hash 0
// marks a free local id. Accessed with atomic operations.
type meta struct {
	hash uint64
	ref  uint64
}

// shardState is one shard of a Store: its keys' index, metas and arena
// (pointer-free containers on the Go heap) and a seqlock over all of it and
// over its keys' blocks in the slabs.
//
// Readers load the arena before the index or metas, so any ref they find
// points at record bytes published before it, or (after a compaction) into
// an older arena that no writer touches any more; then they validate with
// the seqlock.
type shardState struct {
	seqlock
	index atomic.Pointer[table]
	arena atomic.Pointer[arenaBuf]
	metas atomic.Pointer[metaBuf]

	// Writers only (writer lock held):
	arenaLen  int      // bytes of the arena in use
	arenaDead int      // of which belong to removed keys
	nLocal    uint32   // local ids handed out
	freeLocal []uint32 // removed keys' local ids
}

// shard pads shardState to a multiple of 128 bytes so two shards' sequence
// words never share a cache line (nor an adjacent-line prefetch pair).
type shard struct {
	shardState
	_ [128 - unsafe.Sizeof(shardState{})%128]byte
}

func (sh *shard) init() {
	sh.index.Store(newTable(minTableSize))
	sh.arena.Store(&arenaBuf{})
	sh.metas.Store(&metaBuf{})
	sh.arenaLen, sh.arenaDead, sh.nLocal, sh.freeLocal = 0, 0, 0, nil
}

// find looks key up. Readers call it between readBegin and readValid;
// writers with the lock held.
func (sh *shard) find(h uint64, key []byte) (int, ref, bool) {
	ar := sh.arena.Load()
	return sh.index.Load().find(h, key, ar.b)
}

// appendRecord appends key's record and returns its offset. The caller holds
// the writer lock.
func (sh *shard) appendRecord(key []byte, local uint32) uint32 {
	need := recHeader + len(key)
	if uint64(sh.arenaLen)+uint64(need) > 1<<32-1 {
		panic("BUG: windows: a shard's key arena would exceed 4 GiB")
	}
	ar := sh.arena.Load()
	b := ar.b
	if sh.arenaLen+need > len(b) {
		// Grow by 1/4 (not 2x): the arena is a steady part of the memory per key.
		grown := make([]byte, max(sh.arenaLen+need, len(b)+len(b)/4, 1024))
		copy(grown, b[:sh.arenaLen])
		b = grown
	}
	off := sh.arenaLen
	binary.LittleEndian.PutUint32(b[off+recLen:], uint32(len(key)))
	binary.LittleEndian.PutUint32(b[off+recLocal:], local)
	copy(b[off+recHeader:], key)
	sh.arenaLen += need
	if len(b) != len(ar.b) {
		sh.arena.Store(&arenaBuf{b: b})
	}
	return uint32(off)
}

// local returns the local id in the record at off. Writers only.
func (sh *shard) local(off uint32) uint32 {
	return binary.LittleEndian.Uint32(sh.arena.Load().b[off+recLocal:])
}

// allocLocal returns a free local id, growing metas when needed. Writers only.
func (sh *shard) allocLocal() uint32 {
	if n := len(sh.freeLocal); n > 0 {
		id := sh.freeLocal[n-1]
		sh.freeLocal = sh.freeLocal[:n-1]
		return id
	}
	id := sh.nLocal
	mb := sh.metas.Load()
	if int(id) == len(mb.m) {
		grown := make([]meta, max(16, len(mb.m)+len(mb.m)/4))
		for i := range mb.m {
			grown[i] = meta{hash: atomic.LoadUint64(&mb.m[i].hash), ref: atomic.LoadUint64(&mb.m[i].ref)}
		}
		sh.metas.Store(&metaBuf{m: grown})
	}
	sh.nLocal++
	return id
}

// setMeta stores local's entry. Writers only.
func (sh *shard) setMeta(local uint32, h uint64, r ref) {
	m := &sh.metas.Load().m[local]
	atomic.StoreUint64(&m.ref, uint64(r))
	atomic.StoreUint64(&m.hash, h)
}

// setRef points key's index entry (at pos) and meta at r. Writers only.
func (sh *shard) setRef(pos int, h uint64, old, r ref) {
	sh.index.Load().set(pos, h, r)
	m := &sh.metas.Load().m[sh.local(old.off())]
	atomic.StoreUint64(&m.ref, uint64(r))
}

// insert adds key with a fresh block (sparse unless dense is set) and
// returns its ref and block; false when the store is full. The caller holds
// the writer lock and has checked that key is missing.
func (s *Store) insert(sh *shard, h uint64, key []byte, dense bool) (ref, unsafe.Pointer, bool) {
	if !s.reserveKey() {
		return 0, nil, false
	}
	class := classSparse
	if dense {
		class = classDense
	}
	slot, p := s.slabs[class].alloc()
	s.initBlock(p)
	local := sh.allocLocal()
	r := makeRef(slot, dense, sh.appendRecord(key, local))
	sh.setMeta(local, h, r)
	t := sh.index.Load()
	if g := t.insert(h, r); g != t {
		sh.index.Store(g)
	}
	s.beforeChange(sh, r, p, false) // not in a snapshot begun before it
	return r, p, true
}

// initBlock sets a zeroed block's header: no event yet, no ring head.
func (s *Store) initBlock(p unsafe.Pointer) {
	*blockNewest(p) = noEvent
	for ri := range s.rings {
		*blockHead(p, ri) = -1
	}
}

// noEvent is the newest event time of a key that has none (a key created by
// a late Add holds none in its rings but does have a newest time).
const noEvent = -1 << 63

// remove deletes the key at index position pos. Writers only; the caller
// then decrements Store.keys.
func (s *Store) remove(sh *shard, pos int, h uint64, r ref) {
	s.beforeChange(sh, r, s.blockOf(r), true)
	sh.index.Load().remove(pos)
	local := sh.local(r.off())
	sh.setMeta(local, 0, 0)
	sh.freeLocal = append(sh.freeLocal, local)
	k, _ := recKey(sh.arena.Load().b, r.off())
	sh.arenaDead += recHeader + len(k)
	s.slabOf(r).release(r.slot())
}

// promote moves a sparse key to a dense block and returns its new ref and
// block. Writers only.
func (s *Store) promote(sh *shard, h uint64, r ref) (ref, unsafe.Pointer) {
	old := s.slabs[classSparse].block(r.slot())
	slot, p := s.slabs[classDense].alloc()
	*blockNewest(p) = *blockNewest(old)
	for ri := range s.rings {
		rg := &s.rings[ri]
		*blockHead(p, ri) = *blockHead(old, ri)
		rb := rg.dense(p)
		for _, e := range rg.sparse(old) {
			if e.tag != 0 {
				rb[e.tag-1] = e.b
			}
		}
		rg.setTotals(p, ri)
	}
	nr := makeRef(slot, true, r.off())
	sh.setRef(sh.index.Load().findRef(h, r), h, r, nr)
	s.slabs[classSparse].release(r.slot())
	return nr, p
}

func (s *Store) slabOf(r ref) *slab {
	return &s.slabs[r>>31&1] // classDense when the dense bit is set
}

// blockOf returns r's block (nil only for a reader that raced a writer).
func (s *Store) blockOf(r ref) unsafe.Pointer {
	return s.slabOf(r).block(r.slot())
}

// compactArena copies the live records into a new arena once most of the
// arena belongs to removed keys. Writers only.
func (s *Store) compactArena(sh *shard) {
	if sh.arenaDead < minArenaCompaction || 2*sh.arenaDead <= sh.arenaLen {
		return
	}
	old := sh.arena.Load().b
	live := sh.arenaLen - sh.arenaDead
	b := make([]byte, max(live+live/4, 1024))
	n := 0
	t := sh.index.Load()
	mb := sh.metas.Load()
	// Refs are rewritten before the new arena is published: a reader that
	// loaded the old arena and meets a new offset reads stale bytes of an
	// arena no writer touches any more, and its validation fails.
	for i := range t.ents {
		e := &t.ents[i]
		if e.hash == 0 {
			continue
		}
		r := ref(e.ref)
		k, _ := recKey(old, r.off())
		size := recHeader + len(k)
		copy(b[n:], old[r.off():int(r.off())+size])
		nr := makeRef(r.slot(), r.dense(), uint32(n))
		t.set(i, e.hash, nr)
		atomic.StoreUint64(&mb.m[binary.LittleEndian.Uint32(old[r.off()+recLocal:])].ref, uint64(nr))
		n += size
	}
	sh.arenaLen, sh.arenaDead = n, 0
	sh.arena.Store(&arenaBuf{b: b})
}

// minArenaCompaction keeps small arenas from being copied on every eviction.
const minArenaCompaction = 4 << 10

// memoryBytes estimates the heap bytes of the shard (index, metas, arena).
// Writers only.
func (sh *shard) memoryBytes() int64 {
	return int64(len(sh.index.Load().ents))*entryBytes +
		int64(len(sh.metas.Load().m))*int64(unsafe.Sizeof(meta{})) +
		int64(len(sh.arena.Load().b)) + int64(cap(sh.freeLocal))*4
}
