package windows

import (
	"fmt"
	"time"
	"unsafe"
)

// Resolution is one ring of every key: Buckets buckets of Width each, so the
// ring holds Width*Buckets of event time.
type Resolution struct {
	Width   time.Duration
	Buckets int
}

// DefaultResolutions returns 12 x 5s, 15 x 1m, 12 x 5m and 24 x 1h (63
// buckets): 1m is served by the 5 s ring, 5m and 15m by the 1 min ring, 1h by
// the 5 min ring, 24h by the 1 h ring. A span is its current, partial bucket
// plus whole ones, so each span holds between 11/12 (1m, 1h), 14/15 (15m),
// 4/5 (5m) or 23/24 (24h) of its length and all of it. Every span has 12 to
// 24 buckets: a twelfth of an hour is fine grain for a bid multiplier, and 63
// buckets (rather than 96 with a 60 x 1m ring for 1h) keep a busy key at
// 1,784 bytes of counters and running totals.
func DefaultResolutions() []Resolution {
	return []Resolution{
		{Width: 5 * time.Second, Buckets: 12},
		{Width: time.Minute, Buckets: 15},
		{Width: 5 * time.Minute, Buckets: 12},
		{Width: time.Hour, Buckets: 24},
	}
}

// maxRingBuckets bounds one ring so a misconfiguration cannot ask for
// gigabytes per key (and so the sums of a span cannot overflow, see bucket).
const maxRingBuckets = 1 << 16

// maxRingWindow bounds Width*Buckets of one ring.
const maxRingWindow = 366 * 24 * time.Hour

// maxRings bounds the number of resolutions (a key's block header holds one
// head per ring).
const maxRings = 16

// sparseCap is the number of buckets per ring a sparse key holds: a key
// whose events fall in at most this many buckets of every ring stays sparse.
const sparseCap = 4

// sparseEntry is one bucket of a sparse ring: tag is the ring slot
// (epoch mod buckets) plus one, 0 for an unused entry. 28 bytes.
type sparseEntry struct {
	tag uint32
	b   bucket
}

// ring is a Resolution in the units the hot path uses, and where its buckets
// lie in a key's block.
//
// A ring's state in a block is its head, the newest epoch (bucket number =
// event time / width) it has received (-1 before the first), and the
// buckets of the epochs head-buckets+1 .. head: a dense block holds them all,
// slot epoch mod buckets; a sparse block holds at most sparseCap of them,
// tagged with their slot. When the head moves forward the slots of the
// epochs that leave the ring are zeroed (dense) or freed (sparse), so every
// bucket present belongs to the window below the head and no per-bucket
// epoch is stored.
type ring struct {
	width, buckets int64
	wdiv, bdiv     divider
	denseOff       uintptr // offset of the ring's buckets in a dense block
	sparseOff      uintptr // offset of the ring's entries in a sparse block
	sparseCap      int64
	nRings         int
	spans          []Span  // spans served, by increasing k
	ks             []int64 // their bucket counts
}

// spanPlan says which ring serves a span and over how many buckets.
type spanPlan struct {
	ring int
	k    int64
}

// Block layout: a header of the newest event time added (Unix ms) and one
// head per ring (int64 each); in a dense block, the running total of each
// span at its ring's head (5 x uint64 each); then the rings' buckets (dense)
// or entries (sparse). Blocks are 8-byte aligned and hold no pointers.
//
// A span's running total is the sum of the k buckets ending at its ring's
// head. An Add to a bucket inside that window adds to it; moving the head
// subtracts the buckets that leave (before their slots are reused). A read at
// the head is the total alone; a read d buckets later subtracts d buckets or
// sums the k-d that remain, whichever is fewer. So a read touches the header
// and totals (three cache lines with the defaults) plus few buckets, not a
// whole ring: on a 2-core VM whose single-core bandwidth is a few GB/s, that
// is the difference between ~1 us and ~0.3 us for a cold key.
const blockHeaderBase = 8

func headerBytes(nRings int) uintptr { return blockHeaderBase + 8*uintptr(nRings) }

const totalBytes = unsafe.Sizeof(sums{})

func denseHeaderBytes(nRings int) uintptr {
	return headerBytes(nRings) + 8*uintptr(nRings) + uintptr(NumSpans)*totalBytes
}

// blockFloor is a dense ring's floor: the slots of epochs below it (and
// below head-buckets+1) are stale. A head that jumps past the whole ring (a
// key idle for longer than the ring) moves the floor up to itself and zeroes
// one slot instead of the whole ring; a later event below the floor zeroes
// the slots down to it.
func blockFloor(p unsafe.Pointer, nRings, ri int) *int64 {
	return (*int64)(unsafe.Add(p, headerBytes(nRings)+8*uintptr(ri)))
}

func blockTotal(p unsafe.Pointer, nRings int, sp Span) *sums {
	return (*sums)(unsafe.Add(p, headerBytes(nRings)+8*uintptr(nRings)+uintptr(sp)*totalBytes))
}

func blockNewest(p unsafe.Pointer) *int64 { return (*int64)(p) }

func blockHead(p unsafe.Pointer, ri int) *int64 {
	return (*int64)(unsafe.Add(p, blockHeaderBase+8*ri))
}

func (r *ring) dense(p unsafe.Pointer) []bucket {
	return unsafe.Slice((*bucket)(unsafe.Add(p, r.denseOff)), r.buckets)
}

func (r *ring) sparse(p unsafe.Pointer) []sparseEntry {
	return unsafe.Slice((*sparseEntry)(unsafe.Add(p, r.sparseOff)), r.sparseCap)
}

// epochOf returns the epoch of ring slot slot under head h (h >= 0).
func (r *ring) epochOf(h, slot int64) int64 {
	d := r.bdiv.mod(h) - slot
	if d < 0 {
		d += r.buckets
	}
	return h - d
}

// advance decides where an event of epoch e goes in a ring whose head is
// *head, at now epoch nowE: it returns false when the event is dropped for
// this ring (its bucket has left the ring at now, or its slot already holds
// a newer bucket because an earlier Add passed a later now). It returns the
// old head when e moves the head forward (the caller frees the slots that
// leave), else e itself.
func (r *ring) advance(head *int64, e, nowE int64) (old int64, ok bool) {
	if e <= nowE-r.buckets {
		return 0, false
	}
	h := *head
	if e > h {
		*head = e
		return h, true
	}
	if e <= h-r.buckets {
		return 0, false
	}
	return e, true
}

// addDense adds c to epoch e's bucket and to the running totals whose
// window holds it; it reports whether a counter saturated.
func (r *ring) addDense(p unsafe.Pointer, ri int, e, nowE int64, c *Counts) bool {
	old, ok := r.advance(blockHead(p, ri), e, nowE)
	if !ok {
		return false
	}
	rb := r.dense(p)
	fp := blockFloor(p, r.nRings, ri)
	head := e
	switch {
	case old < e && (old < 0 || e-old >= r.buckets):
		// Every bucket left the ring: no total holds anything.
		for _, sp := range r.spans {
			*blockTotal(p, r.nRings, sp) = sums{}
		}
		*fp = e
		rb[r.bdiv.mod(e)] = bucket{}
	case old < e:
		// The windows move from old-k+1..old to e-k+1..e: subtract the
		// buckets that leave, then zero the slots of the epochs old+1 .. e
		// (which held old-buckets+1 .. e-buckets).
		f := *fp
		for i, sp := range r.spans {
			k := r.ks[i]
			t := blockTotal(p, r.nRings, sp)
			if e-old >= k {
				*t = sums{}
			} else {
				var gone sums
				r.sumDense(rb, max(old-k+1, f, 0), e-k, &gone)
				t.sub(&gone)
			}
		}
		r.clearDense(rb, old+1, e)
	default:
		head = *blockHead(p, ri)
		if f := *fp; e < f {
			r.clearDense(rb, e, f-1)
			*fp = e
		}
	}
	var d sums
	sat := rb[r.bdiv.mod(e)].add(c, &d)
	for i, sp := range r.spans {
		if e > head-r.ks[i] {
			if t := blockTotal(p, r.nRings, sp); sat {
				t.addSums(&d)
			} else {
				t.addCounts(c)
			}
		}
	}
	return sat
}

// clearDense zeroes the slots of epochs lo..hi (0 <= hi-lo < buckets).
func (r *ring) clearDense(rb []bucket, lo, hi int64) {
	i := r.bdiv.mod(lo)
	n := hi - lo + 1
	if end := i + n; end <= r.buckets {
		clear(rb[i:end])
	} else {
		clear(rb[i:])
		clear(rb[:end-r.buckets])
	}
}

// setTotals computes the running totals of a dense block from its buckets
// (after a promotion or a checkpoint load).
func (r *ring) setTotals(p unsafe.Pointer, ri int) {
	h, f := *blockHead(p, ri), *blockFloor(p, r.nRings, ri)
	for i, sp := range r.spans {
		var t sums
		if h >= 0 {
			r.sumDense(r.dense(p), max(h-r.ks[i]+1, f, 0), h, &t)
		}
		*blockTotal(p, r.nRings, sp) = t
	}
}

// addSparse adds c to epoch e's entry. full reports that the entry is
// missing and no entry is free: the caller makes the key dense and adds again
// (the head may have moved already; that is consistent).
func (r *ring) addSparse(p unsafe.Pointer, ri int, e, nowE int64, c *Counts) (sat, full bool) {
	old, ok := r.advance(blockHead(p, ri), e, nowE)
	if !ok {
		return false, false
	}
	es := r.sparse(p)
	if old < e && old >= 0 {
		for i := range es {
			if t := es[i].tag; t != 0 && r.epochOf(old, int64(t-1)) <= e-r.buckets {
				es[i] = sparseEntry{}
			}
		}
	}
	tag := uint32(r.bdiv.mod(e)) + 1
	free := -1
	for i := range es {
		switch es[i].tag {
		case tag:
			var d sums
			return es[i].b.add(c, &d), false
		case 0:
			if free < 0 {
				free = i
			}
		}
	}
	if free < 0 {
		return false, true
	}
	es[free].tag = tag
	var d sums
	return es[free].b.add(c, &d), false
}

// window returns the epochs a span of k buckets at now epoch cur reads from a
// ring with head h: lo..hi, empty when lo > hi. The bounds keep every index
// in range even for a header read while a writer changed it.
func (r *ring) window(h, cur, k int64) (lo, hi int64) {
	if h < 0 {
		return 1, 0
	}
	hi = min(cur, h)
	lo = max(cur-k+1, h-r.buckets+1, 0)
	return lo, hi
}

// sumDense adds the buckets of epochs lo..hi (hi-lo < buckets) to acc.
func (r *ring) sumDense(rb []bucket, lo, hi int64, acc *sums) {
	if lo > hi {
		return
	}
	i := r.bdiv.mod(lo)
	n := hi - lo + 1
	end := i + n
	if end > r.buckets {
		for j := range rb[i:] {
			acc.add(&rb[i+int64(j)])
		}
		i, end = 0, end-r.buckets
	}
	for j := i; j < end; j++ {
		acc.add(&rb[j])
	}
}

// sumSparse adds the entries of epochs lo..hi to acc.
func (r *ring) sumSparse(es []sparseEntry, h, lo, hi int64, acc *sums) {
	if lo > hi {
		return
	}
	for i := range es {
		if t := es[i].tag; t != 0 {
			if e := r.epochOf(h, int64(t-1)); e >= lo && e <= hi {
				acc.add(&es[i].b)
			}
		}
	}
}

// span sets *dst to the counts of span (served by this ring, the i-th of
// r.spans) at now epoch cur: the current bucket and the k-1 before it.
// Every range it sums lies within head-k+1 .. head, whatever a concurrent
// writer did to the header, so a reader never indexes outside the ring.
// (It fills *dst field by field rather than returning or copying a Counts:
// the compiler copies 40-byte structs with 16-byte loads of what it just
// stored in 8-byte words, a store-forwarding stall that cost a hot read a
// third of its time.)
func (r *ring) span(p unsafe.Pointer, ri int, dense bool, i int, cur int64, dst *Counts) {
	var acc sums
	k := r.ks[i]
	h := *blockHead(p, ri)
	switch {
	case h < 0:
	case !dense:
		lo, hi := r.window(h, cur, k)
		r.sumSparse(r.sparse(p), h, lo, hi, &acc)
	case cur == h:
		acc.setFrom(blockTotal(p, r.nRings, r.spans[i]))
	case cur > h && cur-h < k:
		// The span holds the total's window minus its d oldest buckets.
		f := *blockFloor(p, r.nRings, ri)
		if d := cur - h; d <= k-d {
			acc.setFrom(blockTotal(p, r.nRings, r.spans[i]))
			var gone sums
			r.sumDense(r.dense(p), max(h-k+1, f, 0), cur-k, &gone)
			acc.sub(&gone)
		} else {
			r.sumDense(r.dense(p), max(cur-k+1, f, 0), h, &acc)
		}
	case cur < h:
		// A read before the head (a caller's now behind an Add's): sum.
		lo, hi := r.window(h, cur, k)
		r.sumDense(r.dense(p), max(lo, *blockFloor(p, r.nRings, ri)), hi, &acc)
	}
	acc.store(dst)
}

// planRings checks the resolutions, picks the ring serving each span (the
// finest one whose window is at least the span and whose width divides the
// span evenly; ties: the first configured) and lays out the blocks.
func planRings(res []Resolution) ([]ring, [NumSpans]spanPlan, error) {
	var plans [NumSpans]spanPlan
	if len(res) > maxRings {
		return nil, plans, fmt.Errorf("cannot use %d resolutions: at most %d are supported", len(res), maxRings)
	}
	rings := make([]ring, len(res))
	for i, r := range res {
		if r.Width <= 0 || r.Width%time.Millisecond != 0 {
			return nil, plans, fmt.Errorf("cannot use resolution %d (%d x %s): the width must be a positive whole number of milliseconds", i, r.Buckets, r.Width)
		}
		if r.Buckets < 1 || r.Buckets > maxRingBuckets {
			return nil, plans, fmt.Errorf("cannot use resolution %d (%d x %s): buckets must be in 1..%d", i, r.Buckets, r.Width, maxRingBuckets)
		}
		if r.Width > maxRingWindow/time.Duration(r.Buckets) {
			return nil, plans, fmt.Errorf("cannot use resolution %d (%d x %s): the ring may hold at most %s", i, r.Buckets, r.Width, maxRingWindow)
		}
		w, b := r.Width.Milliseconds(), int64(r.Buckets)
		rings[i] = ring{width: w, buckets: b, wdiv: newDivider(w), bdiv: newDivider(b), sparseCap: min(sparseCap, b)}
	}
	for sp := Span(0); sp < NumSpans; sp++ {
		d := sp.Duration()
		best := -1
		for i, r := range res {
			if r.Width*time.Duration(r.Buckets) < d || d%r.Width != 0 {
				continue
			}
			if best < 0 || r.Width < res[best].Width {
				best = i
			}
		}
		if best < 0 {
			return nil, plans, fmt.Errorf("cannot serve span %s with resolutions %s: no ring covers it with a width that divides it evenly", sp, formatResolutions(res))
		}
		plans[sp] = spanPlan{ring: best, k: int64(d / res[best].Width)}
	}
	for sp := Span(0); sp < NumSpans; sp++ {
		r := &rings[plans[sp].ring]
		i := len(r.ks)
		for i > 0 && r.ks[i-1] > plans[sp].k {
			i--
		}
		r.spans = append(r.spans[:i], append([]Span{sp}, r.spans[i:]...)...)
		r.ks = append(r.ks[:i], append([]int64{plans[sp].k}, r.ks[i:]...)...)
	}
	dense, sparse := denseHeaderBytes(len(res)), headerBytes(len(res))
	for i := range rings {
		rings[i].nRings = len(res)
		rings[i].denseOff = dense
		dense += uintptr(rings[i].buckets) * unsafe.Sizeof(bucket{})
		rings[i].sparseOff = sparse
		sparse += uintptr(rings[i].sparseCap) * unsafe.Sizeof(sparseEntry{})
	}
	return rings, plans, nil
}

// blockSizes returns the bytes of a dense and of a sparse block, rounded up
// to 8.
func blockSizes(rings []ring) (dense, sparse uintptr) {
	dense, sparse = denseHeaderBytes(len(rings)), headerBytes(len(rings))
	for i := range rings {
		dense += uintptr(rings[i].buckets) * unsafe.Sizeof(bucket{})
		sparse += uintptr(rings[i].sparseCap) * unsafe.Sizeof(sparseEntry{})
	}
	return (dense + 7) &^ 7, (sparse + 7) &^ 7
}

func formatResolutions(res []Resolution) string {
	s := ""
	for i, r := range res {
		if i > 0 {
			s += ", "
		}
		s += fmt.Sprintf("%d x %s", r.Buckets, r.Width)
	}
	return s
}
