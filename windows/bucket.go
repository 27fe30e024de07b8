package windows

import "math"

// Counter widths of one bucket. A span sums at most 65,536 buckets (the
// longest ring), so the uint64 sums of a read never overflow:
// 2^16 * (2^48-1) < 2^64.
const (
	// MaxBucketEvents is the most impressions, clicks or conversions one
	// bucket holds (uint32): 4.29 billion, i.e. 1.19 million a second for a
	// whole hour in the default 1 h ring.
	MaxBucketEvents = math.MaxUint32
	// MaxBucketMicros is the most cost or value micros one bucket holds (48
	// bits): 281,474,976 currency units, i.e. 78,187 a second for a whole hour.
	MaxBucketMicros = 1<<48 - 1
)

// bucket is one ring slot's counters, 24 bytes, no pointers. Money is split
// into a low 32-bit word and 16 high bits so that five counters fit in six
// words. A counter that would pass its maximum stays at the maximum
// (saturates), and the Store counts it (Store.Saturated).
type bucket struct {
	imp, clk, conv uint32
	costLo, valLo  uint32
	moneyHi        uint32 // bits 32..47 of the cost (low half) and of the value (high half)
}

func (b *bucket) cost() uint64 { return uint64(b.moneyHi&0xffff)<<32 | uint64(b.costLo) }
func (b *bucket) val() uint64  { return uint64(b.moneyHi>>16)<<32 | uint64(b.valLo) }

// add adds c, saturating each counter; it reports whether any saturated,
// and then (only then) sets *d to what it added. The common case (every
// input and sum within its width) takes one branch.
//
// (Returning the amounts by value instead made the compiler spill them with
// 8-byte stores and reload them with 16-byte loads, a store-forwarding stall
// that doubled the cost of a hot Add.)
func (b *bucket) add(c *Counts, d *sums) bool {
	imp := uint64(b.imp) + c.Impressions
	clk := uint64(b.clk) + c.Clicks
	conv := uint64(b.conv) + c.Conversions
	cost := b.cost() + c.CostMicros
	val := b.val() + c.ValueMicros
	// Inputs below 2^32 (2^48) cannot wrap the uint64 sums.
	if (c.Impressions|c.Clicks|c.Conversions|imp|clk|conv)>>32|(c.CostMicros|c.ValueMicros|cost|val)>>48 != 0 {
		return b.addSat(c, d)
	}
	b.imp, b.clk, b.conv = uint32(imp), uint32(clk), uint32(conv)
	b.costLo, b.valLo = uint32(cost), uint32(val)
	b.moneyHi = uint32(cost>>32) | uint32(val>>32)<<16
	return false
}

func (b *bucket) addSat(c *Counts, d *sums) bool {
	before := *b
	var sat bool
	b.imp, sat = add32(b.imp, c.Impressions, sat)
	b.clk, sat = add32(b.clk, c.Clicks, sat)
	b.conv, sat = add32(b.conv, c.Conversions, sat)
	var cost, val uint64
	cost, sat = add48(b.cost(), c.CostMicros, sat)
	val, sat = add48(b.val(), c.ValueMicros, sat)
	b.costLo, b.valLo = uint32(cost), uint32(val)
	b.moneyHi = uint32(cost>>32) | uint32(val>>32)<<16
	*d = b.minus(&before)
	return sat
}

func add32(a uint32, d uint64, sat bool) (uint32, bool) {
	s := uint64(a) + d
	if s > math.MaxUint32 || s < d {
		return math.MaxUint32, true
	}
	return uint32(s), sat
}

func add48(a, d uint64, sat bool) (uint64, bool) {
	s := a + d
	if s > MaxBucketMicros || s < d {
		return MaxBucketMicros, true
	}
	return s, sat
}

// sums accumulates buckets into uint64 counters (which cannot overflow, see
// above).
type sums struct {
	imp, clk, conv, cost, val uint64
}

func (a *sums) add(b *bucket) {
	a.imp += uint64(b.imp)
	a.clk += uint64(b.clk)
	a.conv += uint64(b.conv)
	a.cost += b.cost()
	a.val += b.val()
}

func (a *sums) addSums(b *sums) {
	a.imp += b.imp
	a.clk += b.clk
	a.conv += b.conv
	a.cost += b.cost
	a.val += b.val
}

func (a *sums) addCounts(c *Counts) {
	a.imp += c.Impressions
	a.clk += c.Clicks
	a.conv += c.Conversions
	a.cost += c.CostMicros
	a.val += c.ValueMicros
}

func (a *sums) sub(b *sums) {
	a.imp -= b.imp
	a.clk -= b.clk
	a.conv -= b.conv
	a.cost -= b.cost
	a.val -= b.val
}

// minus returns b - before, counter by counter.
func (b *bucket) minus(before *bucket) sums {
	return sums{
		uint64(b.imp - before.imp), uint64(b.clk - before.clk), uint64(b.conv - before.conv),
		b.cost() - before.cost(), b.val() - before.val(),
	}
}

// plus returns the counts of a plus b.
func (a *sums) plus(b *bucket) Counts {
	a.add(b)
	return a.counts()
}

// setFrom and store copy field by field (see ring.span for why).
func (a *sums) setFrom(b *sums) {
	a.imp, a.clk, a.conv, a.cost, a.val = b.imp, b.clk, b.conv, b.cost, b.val
}

func (a *sums) store(c *Counts) {
	c.Impressions, c.Clicks, c.Conversions, c.CostMicros, c.ValueMicros = a.imp, a.clk, a.conv, a.cost, a.val
}

func (a *sums) counts() Counts {
	return Counts{Impressions: a.imp, Clicks: a.clk, Conversions: a.conv, CostMicros: a.cost, ValueMicros: a.val}
}
