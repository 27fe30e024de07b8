package windows

import (
	"encoding/binary"
	"sync"
	"unsafe"
)

const (
	shardBits = 6
	numShards = 1 << shardBits
)

// slotMeta describes one key slot of a shard, for the passes over all slots
// (Scan, EvictIdle). A free slot has klen == 0 (a key is at least its level
// byte).
type slotMeta struct {
	hash uint64 // seeded hash of the key
	off  uint32 // offset of the key's record in the shard's arena
	klen uint32 // key length in bytes
}

// An arena record is, little endian: the key length (4 bytes), the newest
// event time added (Unix ms, 8 bytes), then the key.
const (
	recLen    = 0
	recNewest = 4
	recHeader = 12
)

// A ref is what the index maps a key hash to: the slot in the high 32 bits
// and the arena offset of the key's record in the low 32. With both known
// from the map entry, the CPU fetches the record (key compare, newest time)
// and the buckets in parallel for a cold key, instead of one after the other.
type ref uint64

func makeRef(slot, off uint32) ref { return ref(slot)<<32 | ref(off) }
func (r ref) slot() uint32         { return uint32(r >> 32) }
func (r ref) off() uint32          { return uint32(r) }

// shardState is one shard of a Store. Every field is guarded by mu. Apart
// from coll (nil unless a true hash collision happened), the containers hold
// no pointers besides their own backing arrays, so the GC scans only the few
// headers here, not the keys or buckets.
type shardState struct {
	mu sync.Mutex

	// index maps a key hash to its ref. A key whose hash is already taken by
	// a different key (a true 64-bit collision, practically never) lives in
	// coll.
	index map[uint64]ref
	coll  map[string]ref

	metas []slotMeta // by slot
	// chunks hold the buckets of slot i at chunks[i>>chunkShift][(i&mask)*stride:].
	// Every chunk but the last is full; a full chunk never moves.
	chunks [][]bucket
	free   []uint32 // evicted slots, reused before new ones are made

	arena     []byte // key records of the slots
	arenaDead int    // arena bytes of evicted keys, reclaimed by compaction
}

// shard pads shardState to a multiple of 128 bytes so two shards' locks never
// share a cache line (nor an adjacent-line prefetch pair).
type shard struct {
	shardState
	_ [128 - unsafe.Sizeof(shardState{})%128]byte
}

// find returns the ref of key. The caller holds mu.
func (sh *shard) find(h uint64, key []byte) (ref, bool) {
	if r, ok := sh.index[h]; ok && sh.match(r.off(), key) {
		return r, true
	}
	if len(sh.coll) > 0 {
		r, ok := sh.coll[string(key)]
		return r, ok
	}
	return 0, false
}

// lookup returns the slot of key. The caller holds mu.
func (sh *shard) lookup(h uint64, key []byte) (uint32, bool) {
	r, ok := sh.find(h, key)
	return r.slot(), ok
}

// match reports whether the record at off holds key.
func (sh *shard) match(off uint32, key []byte) bool {
	rec := sh.arena[off:]
	n := binary.LittleEndian.Uint32(rec[recLen:])
	return int(n) == len(key) && string(rec[recHeader:recHeader+int(n)]) == string(key)
}

// newest returns the newest event time of the record at off.
func (sh *shard) newest(off uint32) int64 {
	return int64(binary.LittleEndian.Uint64(sh.arena[off+recNewest:]))
}

// key returns the bytes of a live slot's key; they are valid while mu is held.
func (sh *shard) key(slot uint32) []byte {
	m := &sh.metas[slot]
	start := m.off + recHeader
	return sh.arena[start : start+m.klen : start+m.klen]
}

// block returns the buckets of slot. The caller holds mu.
func (sh *shard) block(slot uint32, s *Store) []bucket {
	i := int(slot&(1<<s.chunkShift-1)) * s.stride
	return sh.chunks[slot>>s.chunkShift][i : i+s.stride : i+s.stride]
}

// insert adds key (copied) in a fresh slot with empty buckets and returns its
// ref. The caller holds mu and has checked that key is missing.
func (sh *shard) insert(h uint64, key []byte, s *Store) ref {
	if uint64(len(sh.arena))+recHeader+uint64(len(key)) > 1<<32-1 {
		panic("BUG: windows: a shard's key arena would exceed 4 GiB")
	}
	slot := sh.allocSlot(s)
	off := uint32(len(sh.arena))
	sh.arena = binary.LittleEndian.AppendUint32(sh.arena, uint32(len(key)))
	sh.arena = binary.LittleEndian.AppendUint64(sh.arena, 1<<63) // math.MinInt64: no event yet
	sh.arena = append(sh.arena, key...)
	sh.metas[slot] = slotMeta{hash: h, off: off, klen: uint32(len(key))}
	r := makeRef(slot, off)
	if _, taken := sh.index[h]; taken {
		if sh.coll == nil {
			sh.coll = make(map[string]ref)
		}
		sh.coll[string(key)] = r
	} else {
		sh.index[h] = r
	}
	return r
}

// allocSlot returns a slot with zeroed buckets, reusing an evicted one when
// possible. The caller holds mu.
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

// remove frees a live slot. The caller holds mu.
func (sh *shard) remove(slot uint32) {
	m := &sh.metas[slot]
	if r, ok := sh.index[m.hash]; ok && r.slot() == slot {
		delete(sh.index, m.hash)
	} else {
		delete(sh.coll, string(sh.key(slot)))
	}
	sh.arenaDead += recHeader + int(m.klen)
	*m = slotMeta{}
	sh.free = append(sh.free, slot)
}

// evictIdle removes the keys whose newest event is before threshold, then
// compacts the arena when most of it is dead. The caller holds mu.
func (sh *shard) evictIdle(threshold int64) int {
	n := 0
	for i := range sh.metas {
		if m := &sh.metas[i]; m.klen != 0 && sh.newest(m.off) < threshold {
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
		off := uint32(len(arena))
		arena = append(arena, sh.arena[m.off:m.off+recHeader+m.klen]...)
		r := makeRef(uint32(i), off)
		if cur, ok := sh.index[m.hash]; ok && cur.slot() == uint32(i) {
			sh.index[m.hash] = r
		} else {
			sh.coll[string(arena[off+recHeader:])] = r
		}
		m.off = off
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
