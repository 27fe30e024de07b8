package windows

import (
	"sync/atomic"
	"unsafe"
)

// Event is one event of AddBatch.
type Event struct {
	Key  []byte
	TsMs int64
	C    Counts
}

// batchWindow is how many events AddBatch fetches ahead: enough cache misses
// in flight to keep the memory system busy, few enough that the lines
// fetched are still in cache when the events are applied.
const batchWindow = 16

// mergeChunk is how many events AddBatch merges at a time: the events of a
// chunk with the same key and bucket become one write.
const mergeChunk = 512

// AddBatch adds every event of batch as Add(e.Key, e.TsMs, nowMs, e.C) would
// and returns how many were added (an event is refused, changing nothing,
// when its key is missing and the store is full); when added is not nil
// (len(added) >= len(batch)) it also records each result. Keys may be
// modified after AddBatch returns. It does not allocate in steady state: it
// keeps a 27 KiB scratch per concurrent caller, up to 4 (a fifth allocates).
//
// It is faster per event than Add. It works in chunks of 512 events: it
// hashes them and merges the events of a chunk that have the same key and
// the same bucket in every ring into one write (a hot key's events then cost
// a hash and five additions each), prefetching the index entries of the
// writes left; then, 16 writes at a time, it prefetches their key records
// and the bucket lines they will touch, and only then applies them, so the
// cache misses of cold keys overlap instead of following each other;
// consecutive writes to one shard share one hold of its writer lock. The
// result equals adding the events one by one with this nowMs (within one
// now the order of Adds does not change the outcome, and a merged event
// takes its key's first place), except that Saturated counts a merged group
// once.
func (s *Store) AddBatch(batch []Event, nowMs int64, added []bool) int {
	nowMs = max(nowMs, 0)
	n := 0
	for start := 0; start < len(batch); start += mergeChunk {
		end := min(start+mergeChunk, len(batch))
		var res []bool
		if added != nil {
			res = added[start:end]
		}
		n += s.addChunk(batch[start:end], nowMs, res)
	}
	return n
}

// batchWrite is one write of a chunk: one event, or several merged.
type batchWrite struct {
	key []byte
	h   uint64
	sh  *shard
	c   Counts
	ts  int64 // the newest of the merged events
	ep  int64 // epoch in the finest ring
}

// batchScratch is the working memory of addChunk, reused through the
// Store's free list (a fresh one on the stack would be zeroed, 27 KiB, on
// every call; a sync.Pool would drop it at every garbage collection).
type batchScratch struct {
	ws   [mergeChunk]batchWrite
	of   [mergeChunk]int16     // the write of each event
	ok   [mergeChunk]bool      // the result of each write
	tab  [2 * mergeChunk]int16 // write index + 1, by hash and epoch; zero between calls
	used [mergeChunk]uint16    // the slots of tab set
}

// batchScratches bounds the scratches a Store keeps: concurrent AddBatch
// calls beyond it allocate their own.
const batchScratches = 4

// addChunk is AddBatch for at most mergeChunk events.
func (s *Store) addChunk(w []Event, nowMs int64, added []bool) int {
	var sc *batchScratch
	select {
	case sc = <-s.scratch:
	default:
		sc = new(batchScratch)
	}
	defer func() {
		select {
		case s.scratch <- sc:
		default:
		}
	}()
	ws, of, ok, tab := &sc.ws, &sc.of, &sc.ok, &sc.tab
	nw, prev := 0, -1 // writes; the write of the event before
	defer func() {
		for _, slot := range sc.used[:nw] {
			tab[slot] = 0
		}
		clear(ws[:nw]) // drop the references to the caller's keys
	}()
	fine := &s.rings[s.finest]
	for i := range w {
		key := w[i].Key
		if len(key) == 0 {
			panic("BUG: windows: AddBatch with an empty key")
		}
		t := min(max(w[i].TsMs, 0), nowMs)
		ep := fine.wdiv.div(t)
		var sh *shard
		var h uint64
		if prev >= 0 && string(key) == string(w[i-1].Key) {
			// The same key as the event before (a hot key's run): no hash.
			sh, h = ws[prev].sh, ws[prev].h
		} else {
			sh, h = s.shardOf(key)
		}
		j := -1
		if s.nested {
			// Every width is a multiple of the finest: the same finest epoch
			// is the same bucket in every ring.
			slot := (h ^ uint64(ep)*0x9e3779b97f4a7c15) & (2*mergeChunk - 1)
			for tab[slot] != 0 {
				if x := &ws[tab[slot]-1]; x.h == h && x.ep == ep && string(x.key) == string(key) {
					j = int(tab[slot] - 1)
					break
				}
				slot = (slot + 1) & (2*mergeChunk - 1)
			}
			if j < 0 {
				tab[slot] = int16(nw + 1)
				sc.used[nw] = uint16(slot)
			}
		}
		if j >= 0 {
			x := &ws[j]
			x.c.Add(w[i].C)
			x.ts = max(x.ts, t)
		} else {
			j = nw
			nw++
			ws[j] = batchWrite{key: key, h: h, sh: sh, c: w[i].C, ts: t, ep: ep}
			tab := sh.index.Load()
			prefetch(unsafe.Pointer(&tab.ents[h&tab.mask]))
		}
		of[i] = int16(j)
		prev = j
	}
	for start := 0; start < nw; start += batchWindow {
		win := ws[start:min(start+batchWindow, nw)]
		for i := range win {
			s.prefetchEvent(win[i].sh, win[i].h, win[i].ts)
		}
		var held *shard
		for i := range win {
			x := &win[i]
			if x.sh != held {
				if held != nil {
					held.unlock()
				}
				x.sh.lock()
				held = x.sh
			}
			ok[start+i] = s.addLocked(x.sh, x.h, x.key, x.ts, nowMs, &x.c, false)
		}
		held.unlock()
	}
	n := 0
	for i := range w {
		r := ok[of[i]]
		if added != nil {
			added[i] = r
		}
		if r {
			n++
		}
	}
	return n
}

// prefetchEvent starts loading the key record and the block lines an Add of
// key hash h at tsMs will touch. It holds no lock: what it reads is only a
// hint (read with atomic loads), checked again under the lock.
func (s *Store) prefetchEvent(sh *shard, h uint64, tsMs int64) {
	ar := sh.arena.Load()
	t := sh.index.Load()
	j := h & t.mask
	for probe := 0; probe < 4; probe++ {
		e := &t.ents[j]
		eh := atomic.LoadUint64(&e.hash)
		if eh == 0 {
			return
		}
		if eh == h {
			r := ref(atomic.LoadUint64(&e.ref))
			if off := int(r.off()); off < len(ar.b) {
				prefetch(unsafe.Pointer(&ar.b[off]))
			}
			if p := s.blockOf(r); p != nil {
				s.prefetchBlock(p, r.dense(), tsMs)
			}
			return
		}
		j = (j + 1) & t.mask
	}
}

// prefetchBlock starts loading the header of block p and the buckets of
// epoch tsMs in each ring.
func (s *Store) prefetchBlock(p unsafe.Pointer, dense bool, tsMs int64) {
	s.prefetchHeader(p, dense)
	for i := range s.rings {
		rg := &s.rings[i]
		if dense {
			slot := rg.bdiv.mod(rg.wdiv.div(tsMs))
			prefetch(unsafe.Add(p, rg.denseOff+uintptr(slot)*unsafe.Sizeof(bucket{})))
		}
	}
}

// prefetchHeader starts loading the header of block p (with the running
// totals of a dense block; a sparse block is small: all of it).
func (s *Store) prefetchHeader(p unsafe.Pointer, dense bool) {
	n := s.slabs[classSparse].blockBytes
	if dense {
		n = denseHeaderBytes(len(s.rings))
	}
	end := uintptr(p) + n
	for a := uintptr(p) &^ 63; a < end; a += 64 {
		prefetch(unsafe.Add(p, a-uintptr(p)))
	}
}
