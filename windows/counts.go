package windows

import "math/bits"

// Counts holds the counters of one bucket or one span. Money is in integer
// micros of the account currency. Every counter saturates at math.MaxUint64
// instead of wrapping.
type Counts struct {
	Impressions, Clicks, Conversions, CostMicros, ValueMicros uint64
}

// Add adds d to c, saturating each counter at math.MaxUint64.
func (c *Counts) Add(d Counts) {
	c.Impressions = addSat(c.Impressions, d.Impressions)
	c.Clicks = addSat(c.Clicks, d.Clicks)
	c.Conversions = addSat(c.Conversions, d.Conversions)
	c.CostMicros = addSat(c.CostMicros, d.CostMicros)
	c.ValueMicros = addSat(c.ValueMicros, d.ValueMicros)
}

// CTR returns clicks / impressions: 0 when there are no impressions, and at
// most 1 (in a short event-time window clicks can outrun their impressions).
func (c Counts) CTR() float64 {
	return ratio(c.Clicks, c.Impressions)
}

// CVR returns the post-click conversion rate conversions / clicks: 0 when
// there are no clicks, and at most 1.
func (c Counts) CVR() float64 {
	return ratio(c.Conversions, c.Clicks)
}

func ratio(num, den uint64) float64 {
	if den == 0 || num == 0 {
		return 0
	}
	if num >= den {
		return 1
	}
	return float64(num) / float64(den)
}

// addSat returns a+b, or math.MaxUint64 when it overflows (the carry becomes
// an all-ones mask, without a branch).
func addSat(a, b uint64) uint64 {
	s, carry := bits.Add64(a, b, 0)
	return s | -carry
}
