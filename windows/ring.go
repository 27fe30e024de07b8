package windows

import (
	"fmt"
	"math/bits"
	"time"
)

// Resolution is one ring of every key: Buckets buckets of Width each, so the
// ring holds Width*Buckets of event time.
type Resolution struct {
	Width   time.Duration
	Buckets int
}

// DefaultResolutions returns 12 x 5s, 60 x 1m and 24 x 1h: 1m is served by the
// 5 s ring, 5m, 15m and 1h by the 1 min ring, 24h by the 1 h ring.
func DefaultResolutions() []Resolution {
	return []Resolution{
		{Width: 5 * time.Second, Buckets: 12},
		{Width: time.Minute, Buckets: 60},
		{Width: time.Hour, Buckets: 24},
	}
}

// maxRingBuckets bounds one ring so a misconfiguration cannot ask for
// gigabytes per key.
const maxRingBuckets = 1 << 16

// maxRingWindow bounds Width*Buckets of one ring.
const maxRingWindow = 366 * 24 * time.Hour

// bucket is one ring slot: the event-time bucket number it holds plus one (0
// for a slot that never held data) and its counters. 48 bytes, no pointers.
type bucket struct {
	tag uint64
	c   Counts
}

// ring is a Resolution in the units the hot path uses.
type ring struct {
	width   int64 // ms
	buckets int64
	off     int // index of the ring's first bucket in a key's block
}

// spanPlan says which ring serves a span and over how many buckets.
type spanPlan struct {
	ring int
	k    int64
}

// add adds c to the bucket of event time ts in the ring at time now. ts <= now.
// The event is dropped for this ring when its bucket has left the ring, or when
// its slot already holds a newer bucket (a concurrent caller passed a later now).
func (r *ring) add(block []bucket, ts, now int64, c *Counts) {
	e := ts / r.width
	if ts != now && e <= now/r.width-r.buckets {
		return
	}
	b := &block[r.off+int(e%r.buckets)]
	tag := uint64(e) + 1
	switch {
	case b.tag == tag:
		b.c.Add(*c)
	case b.tag < tag:
		// Lazy reset: the slot held an older bucket that has left the ring.
		b.tag = tag
		b.c = *c
	}
}

// sum returns the counts of the k newest buckets of the ring at time now: the
// current bucket and the k-1 before it.
func (r *ring) sum(block []bucket, now, k int64) Counts {
	var acc accumulator
	cur := now / r.width
	acc.walk(block[r.off:r.off+int(r.buckets)], cur, cur%r.buckets, min(k, cur+1))
	return acc.counts()
}

// sumSpans fills dst[sp] for the spans served by this ring, sorted by
// increasing k, in one pass over the newest buckets.
func (r *ring) sumSpans(block []bucket, now int64, spans []Span, plans *[NumSpans]spanPlan, dst *[NumSpans]Counts) {
	var acc accumulator
	cur := now / r.width
	slot := cur % r.buckets
	rb := block[r.off : r.off+int(r.buckets)]
	done := int64(0) // buckets summed so far
	for _, sp := range spans {
		// Nothing lies before bucket 0, so at most cur+1 buckets exist.
		k := min(plans[sp].k, cur+1)
		if k > done {
			acc.walk(rb, cur-done, slot, k-done)
			slot = (slot - (k-done)%r.buckets + r.buckets) % r.buckets
			done = k
		}
		dst[sp] = acc.counts()
	}
}

// accumulator sums buckets without branching on overflow: the carries are
// collected in ov and turned into saturation once, in counts.
type accumulator struct {
	imp, clk, conv, cost, val uint64
	ov                        uint64
}

// walk adds n buckets of rb, newest first: the bucket of epoch e sits in
// slot, e-1 in the slot before it (cyclically), and so on. A slot counts only
// when it holds exactly the expected epoch.
func (a *accumulator) walk(rb []bucket, e, slot, n int64) {
	// Locals keep the sums in registers across the loop.
	imp, clk, conv, cost, val, ov := a.imp, a.clk, a.conv, a.cost, a.val, a.ov
	tag := uint64(e) + 1
	for ; n > 0; n-- {
		b := &rb[slot]
		if b.tag == tag {
			var c uint64
			imp, c = bits.Add64(imp, b.c.Impressions, 0)
			ov |= c
			clk, c = bits.Add64(clk, b.c.Clicks, 0)
			ov |= c << 1
			conv, c = bits.Add64(conv, b.c.Conversions, 0)
			ov |= c << 2
			cost, c = bits.Add64(cost, b.c.CostMicros, 0)
			ov |= c << 3
			val, c = bits.Add64(val, b.c.ValueMicros, 0)
			ov |= c << 4
		}
		tag--
		if slot--; slot < 0 {
			slot = int64(len(rb)) - 1
		}
	}
	a.imp, a.clk, a.conv, a.cost, a.val, a.ov = imp, clk, conv, cost, val, ov
}

// counts returns the sums, each saturated at math.MaxUint64 if it overflowed
// (a set ov bit becomes an all-ones mask).
func (a *accumulator) counts() Counts {
	return Counts{
		Impressions: a.imp | -(a.ov & 1),
		Clicks:      a.clk | -(a.ov >> 1 & 1),
		Conversions: a.conv | -(a.ov >> 2 & 1),
		CostMicros:  a.cost | -(a.ov >> 3 & 1),
		ValueMicros: a.val | -(a.ov >> 4 & 1),
	}
}

// planRings checks the resolutions and picks the ring serving each span: the
// finest one whose window is at least the span and whose width divides the
// span evenly (ties: the first configured).
func planRings(res []Resolution) ([]ring, [NumSpans]spanPlan, error) {
	var plans [NumSpans]spanPlan
	rings := make([]ring, len(res))
	off := 0
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
		rings[i] = ring{width: r.Width.Milliseconds(), buckets: int64(r.Buckets), off: off}
		off += r.Buckets
	}
	for s := Span(0); s < NumSpans; s++ {
		d := s.Duration()
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
			return nil, plans, fmt.Errorf("cannot serve span %s with resolutions %s: no ring covers it with a width that divides it evenly", s, formatResolutions(res))
		}
		plans[s] = spanPlan{ring: best, k: int64(d / res[best].Width)}
	}
	return rings, plans, nil
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
