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

// AddBatch adds every event of batch as Add(e.Key, e.TsMs, nowMs, e.C) would
// and returns how many were added (an event is refused, changing nothing,
// when its key is missing and the store is full); when added is not nil
// (len(added) >= len(batch)) it also records each result. Keys may be
// modified after AddBatch returns. It does not allocate when the keys exist.
//
// It is faster per event than Add. It works in windows of 16 events: it
// hashes them, merges an event into an earlier one of the window with the
// same key and the same bucket in every ring (a hot key's events then cost
// a key comparison and five additions), prefetches the index entries of the
// rest, then their key records and the bucket lines they will touch, and
// only then applies them, so the cache misses of cold keys overlap instead
// of following each other; consecutive events of one shard share one hold of
// its writer lock. The result equals adding the events one by one with this
// nowMs (within one now the order of Adds does not change the outcome),
// except that Saturated counts a merged group once.
func (s *Store) AddBatch(batch []Event, nowMs int64, added []bool) int {
	nowMs = max(nowMs, 0)
	var (
		hs   [batchWindow]uint64
		shs  [batchWindow]*shard
		cs   [batchWindow]Counts
		ts   [batchWindow]int64
		ep   [batchWindow]int64 // epoch in the finest ring
		into [batchWindow]int8  // the event merged into, -1 for none
		ok   [batchWindow]bool
	)
	n := 0
	fine := &s.rings[s.finest]
	for start := 0; start < len(batch); start += batchWindow {
		w := batch[start:min(start+batchWindow, len(batch))]
		for i := range w {
			key := w[i].Key
			if len(key) == 0 {
				panic("BUG: windows: AddBatch with an empty key")
			}
			t := min(max(w[i].TsMs, 0), nowMs)
			into[i] = -1
			if s.nested && i > 0 && string(key) == string(w[i-1].Key) {
				// The same key as the event before (a hot key's run): no hash.
				j := i - 1
				if into[j] >= 0 {
					j = int(into[j])
				}
				if e := fine.wdiv.div(t); e == ep[j] {
					cs[j].Add(w[i].C)
					ts[j] = max(ts[j], t)
					into[i] = int8(j)
					continue
				}
			}
			sh, h := s.shardOf(key)
			hs[i], ep[i] = h, fine.wdiv.div(t)
			if s.nested {
				for j := i - 1; j >= 0; j-- {
					if hs[j] == h && into[j] < 0 && ep[j] == ep[i] && string(w[j].Key) == string(key) {
						cs[j].Add(w[i].C)
						ts[j] = max(ts[j], t)
						into[i] = int8(j)
						break
					}
				}
				if into[i] >= 0 {
					continue
				}
			}
			shs[i], cs[i], ts[i] = sh, w[i].C, t
			tab := sh.index.Load()
			prefetch(unsafe.Pointer(&tab.ents[h&tab.mask]))
		}
		for i := range w {
			if into[i] < 0 {
				s.prefetchEvent(shs[i], hs[i], ts[i])
			}
		}
		var held *shard
		for i := range w {
			if j := into[i]; j >= 0 {
				ok[i] = ok[j]
			} else {
				sh := shs[i]
				if sh != held {
					if held != nil {
						held.unlock()
					}
					sh.lock()
					held = sh
				}
				ok[i] = s.addLocked(sh, hs[i], w[i].Key, ts[i], nowMs, &cs[i], false)
			}
			if added != nil {
				added[start+i] = ok[i]
			}
			if ok[i] {
				n++
			}
		}
		held.unlock()
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
