package windows

import (
	"math/bits"
	"sync"
	"sync/atomic"
	"unsafe"
)

// Block classes: a key starts sparse (sparseCap buckets per ring) and becomes
// dense (every bucket) the first time a ring needs more.
const (
	classSparse = 0
	classDense  = 1
	numClasses  = 2
)

// slabChunkTarget is the size a chunk of blocks grows to (slots per chunk
// are a power of two, so finding a block is a shift and a mask).
const slabChunkTarget = 2 << 20

// slab holds the fixed-size blocks of one class, numbered by slot from 0.
// Its memory is off the Go heap where the platform allows (see slabMem):
// one reservation sized for MaxKeys blocks, committed page by page as slots
// are first used, with transparent huge pages requested past its first 2 MiB
// so a random access to a large store costs one TLB entry per 2 MiB rather
// than per 4 KiB. The garbage collector never scans it.
//
// Slots are handed out under mu (lock order: a shard's writer lock, then mu)
// and reused after eviction; memory is returned to the system only when the
// Store is garbage collected. Block contents are read and written only under
// the owning shard's seqlock (see shard).
type slab struct {
	blockBytes uintptr
	chunkShift uint
	chunkBytes uintptr
	// chunks[i] is the base of slots i<<chunkShift.., nil until first used;
	// its length is fixed at creation, its entries are accessed atomically.
	chunks []unsafe.Pointer
	region unsafe.Pointer // reserved memory of every chunk, nil on the heap fallback
	mem    *slabMem

	mu   sync.Mutex
	next uint32   // slots handed out so far (guarded by mu)
	free []uint32 // evicted slots (guarded by mu)
}

func (sl *slab) init(blockBytes uintptr, maxKeys int, mem *slabMem) {
	sl.blockBytes = blockBytes
	perChunk := max(1, int(slabChunkTarget/blockBytes))
	shift := uint(bits.Len(uint(perChunk)) - 1)
	if need := uint(bits.Len(uint(maxKeys - 1))); need < shift {
		shift = need // a small store: one chunk of just enough slots
	}
	sl.chunkShift = shift
	sl.chunkBytes = blockBytes << shift
	n := (maxKeys + 1<<shift - 1) >> shift
	sl.chunks = make([]unsafe.Pointer, n)
	sl.mem = mem
	sl.region = mem.reserve(uintptr(n) * sl.chunkBytes)
}

// block returns the memory of slot, or nil when the slot was never handed
// out (only a reader that met a concurrent change sees that; it retries).
func (sl *slab) block(slot uint32) unsafe.Pointer {
	c := uintptr(slot >> sl.chunkShift)
	if c >= uintptr(len(sl.chunks)) {
		return nil
	}
	base := atomic.LoadPointer(&sl.chunks[c])
	if base == nil {
		return nil
	}
	return unsafe.Add(base, uintptr(slot&(1<<sl.chunkShift-1))*sl.blockBytes)
}

// alloc returns a slot and its zeroed block. The caller holds a shard's
// writer lock and has reserved a key (so at most MaxKeys slots are in use).
func (sl *slab) alloc() (uint32, unsafe.Pointer) {
	sl.mu.Lock()
	var slot uint32
	reused := false
	if n := len(sl.free); n > 0 {
		slot, reused = sl.free[n-1], true
		sl.free = sl.free[:n-1]
	} else {
		slot = sl.next
		c := uintptr(slot >> sl.chunkShift)
		if c >= uintptr(len(sl.chunks)) {
			sl.mu.Unlock()
			panic("BUG: windows: more slots than MaxKeys")
		}
		if slot&(1<<sl.chunkShift-1) == 0 {
			var base unsafe.Pointer
			if sl.region != nil {
				base = unsafe.Add(sl.region, c*sl.chunkBytes)
			} else {
				base = unsafe.Pointer(unsafe.SliceData(make([]uint64, sl.chunkBytes/8)))
			}
			atomic.StorePointer(&sl.chunks[c], base)
		}
		sl.next++
	}
	sl.mu.Unlock()
	p := sl.block(slot)
	if reused {
		clear(unsafe.Slice((*byte)(p), sl.blockBytes))
	}
	return slot, p
}

// release makes slot available again. The caller holds the writer lock of
// the shard that owned it.
func (sl *slab) release(slot uint32) {
	sl.mu.Lock()
	sl.free = append(sl.free, slot)
	sl.mu.Unlock()
}

// usedBytes returns the bytes of the blocks handed out so far (live and free).
func (sl *slab) usedBytes() int64 {
	sl.mu.Lock()
	n := int64(sl.next) * int64(sl.blockBytes)
	sl.mu.Unlock()
	return n
}

// hugePageBytes is the transparent huge page size the slab aligns to.
const hugePageBytes = 2 << 20
