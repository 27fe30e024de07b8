package windows

import (
	"sync"
	"unsafe"
)

const (
	shardBits = 6
	numShards = 1 << shardBits
)

// slotMeta describes one key slot of a shard. A free slot has klen == 0 (a key
// is at least its level byte).
type slotMeta struct {
	hash   uint64 // seeded hash of the key
	newest int64  // newest event time added, Unix ms
	off    uint32 // key offset in the shard's arena
	klen   uint32 // key length in bytes
}

// shardState is one shard of a Store. Every field is guarded by mu. The
// containers hold no pointers into the Go heap besides their own backing
// arrays, so the GC scans only the few slice headers here.
type shardState struct {
	mu sync.RWMutex

	// index maps a key hash to its slot. A key whose hash is already taken by a
	// different key (a true 64-bit collision, practically never) lives in coll.
	index map[uint64]uint32
	coll  map[string]uint32

	metas []slotMeta // by slot
	// chunks hold the buckets of slot i at chunks[i>>chunkShift][(i&mask)*stride:].
	// Every chunk but the last is full; a full chunk never moves.
	chunks [][]bucket
	free   []uint32 // evicted slots, reused before new ones are made

	arena     []byte // key bytes of the slots
	arenaDead int    // arena bytes of evicted keys, reclaimed by compaction
	live      int    // live keys in this shard
}

// shard pads shardState to a multiple of 128 bytes so two shards' locks never
// share a cache line (nor an adjacent-line prefetch pair).
type shard struct {
	shardState
	_ [128 - unsafe.Sizeof(shardState{})%128]byte
}

// lookup returns the slot of key. The caller holds mu (read or write).
func (sh *shard) lookup(h uint64, key []byte) (uint32, bool) {
	if slot, ok := sh.index[h]; ok {
		m := &sh.metas[slot]
		if string(sh.arena[m.off:m.off+m.klen]) == string(key) {
			return slot, true
		}
	}
	if len(sh.coll) > 0 {
		slot, ok := sh.coll[string(key)]
		return slot, ok
	}
	return 0, false
}

// key returns the bytes of a live slot's key; they are valid while mu is held.
func (sh *shard) key(slot uint32) []byte {
	m := &sh.metas[slot]
	return sh.arena[m.off : m.off+m.klen : m.off+m.klen]
}

// block returns the buckets of slot. The caller holds mu.
func (sh *shard) block(slot uint32, s *Store) []bucket {
	i := int(slot&(1<<s.chunkShift-1)) * s.stride
	return sh.chunks[slot>>s.chunkShift][i : i+s.stride : i+s.stride]
}

// insert adds key (copied) in a fresh slot with empty buckets. The caller
// holds mu for writing and has checked that key is missing.
func (sh *shard) insert(h uint64, key []byte, s *Store) uint32 {
	if uint64(len(sh.arena))+uint64(len(key)) > 1<<32-1 {
		panic("BUG: windows: a shard's key arena would exceed 4 GiB")
	}
	slot := sh.allocSlot(s)
	off := len(sh.arena)
	sh.arena = append(sh.arena, key...)
	sh.metas[slot] = slotMeta{hash: h, newest: minTime, off: uint32(off), klen: uint32(len(key))}
	if _, taken := sh.index[h]; taken {
		if sh.coll == nil {
			sh.coll = make(map[string]uint32)
		}
		sh.coll[string(key)] = slot
	} else {
		sh.index[h] = slot
	}
	sh.live++
	return slot
}

// allocSlot returns a slot with zeroed buckets, reusing an evicted one when
// possible. The caller holds mu for writing.
func (sh *shard) allocSlot(s *Store) uint32 {
	if n := len(sh.free); n > 0 {
		slot := sh.free[n-1]
		sh.free = sh.free[:n-1]
		clear(sh.block(slot, s))
		return slot
	}
	slot := uint32(len(sh.metas))
	sh.metas = append(sh.metas, slotMeta{})
	c := int(slot >> s.chunkShift)
	if c == len(sh.chunks) {
		sh.chunks = append(sh.chunks, nil)
	}
	ch := sh.chunks[c]
	need := (int(slot&(1<<s.chunkShift-1)) + 1) * s.stride
	if need > cap(ch) {
		// The last chunk grows by doubling up to its full size, so a store with
		// few keys stays small and a full chunk is allocated exactly once.
		n := min(max(2*cap(ch), need), s.stride<<s.chunkShift)
		grown := make([]bucket, len(ch), n)
		copy(grown, ch)
		ch = grown
	}
	sh.chunks[c] = ch[:need]
	return slot
}

// remove frees a live slot. The caller holds mu for writing.
func (sh *shard) remove(slot uint32) {
	m := &sh.metas[slot]
	if cur, ok := sh.index[m.hash]; ok && cur == slot {
		delete(sh.index, m.hash)
	} else {
		delete(sh.coll, string(sh.key(slot)))
	}
	sh.arenaDead += int(m.klen)
	*m = slotMeta{}
	sh.free = append(sh.free, slot)
	sh.live--
}

// evictIdle removes the keys whose newest event is before threshold, then
// compacts the arena when most of it is dead. The caller holds mu for writing.
func (sh *shard) evictIdle(threshold int64) int {
	n := 0
	for i := range sh.metas {
		if m := &sh.metas[i]; m.klen != 0 && m.newest < threshold {
			sh.remove(uint32(i))
			n++
		}
	}
	if sh.arenaDead >= minArenaCompaction && 2*sh.arenaDead > len(sh.arena) {
		sh.compactArena()
	}
	return n
}

// minArenaCompaction keeps small arenas from being copied on every eviction.
const minArenaCompaction = 4 << 10

func (sh *shard) compactArena() {
	live := len(sh.arena) - sh.arenaDead
	arena := make([]byte, 0, live+live/4)
	for i := range sh.metas {
		m := &sh.metas[i]
		if m.klen == 0 {
			continue
		}
		off := len(arena)
		arena = append(arena, sh.arena[m.off:m.off+m.klen]...)
		m.off = uint32(off)
	}
	sh.arena = arena
	sh.arenaDead = 0
}

// memoryBytes estimates the bytes held by the shard. The caller holds mu.
func (sh *shard) memoryBytes() int64 {
	n := int64(cap(sh.metas))*int64(unsafe.Sizeof(slotMeta{})) +
		int64(cap(sh.free))*4 + int64(cap(sh.arena)) +
		int64(len(sh.index)+len(sh.coll))*indexEntryBytes
	for _, ch := range sh.chunks {
		n += int64(cap(ch)) * int64(unsafe.Sizeof(bucket{}))
	}
	return n
}

// indexEntryBytes approximates the cost of one index map entry (8-byte key,
// 4-byte value, control byte, load-factor slack).
const indexEntryBytes = 24
