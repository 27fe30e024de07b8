package windows

import (
	"math"
	"testing"
)

func TestCounts(t *testing.T) {
	c := Counts{Impressions: 10, Clicks: 3, Conversions: 1, CostMicros: 5, ValueMicros: 7}
	c.Add(Counts{Impressions: 10, Clicks: 1, CostMicros: 1})
	if want := (Counts{Impressions: 20, Clicks: 4, Conversions: 1, CostMicros: 6, ValueMicros: 7}); c != want {
		t.Fatalf("unexpected sum; got %+v; want %+v", c, want)
	}
	c.Add(Counts{Impressions: math.MaxUint64 - 5, ValueMicros: math.MaxUint64})
	if c.Impressions != math.MaxUint64 || c.ValueMicros != math.MaxUint64 || c.Clicks != 4 {
		t.Fatalf("unexpected saturation; got %+v", c)
	}
	f := func(c Counts, ctr, cvr float64) {
		t.Helper()
		if got := c.CTR(); got != ctr {
			t.Fatalf("unexpected CTR of %+v; got %v; want %v", c, got, ctr)
		}
		if got := c.CVR(); got != cvr {
			t.Fatalf("unexpected CVR of %+v; got %v; want %v", c, got, cvr)
		}
	}
	f(Counts{}, 0, 0)
	f(Counts{Clicks: 3, Conversions: 1}, 0, 1.0/3)
	f(Counts{Impressions: 4, Clicks: 1}, 0.25, 0)
	f(Counts{Impressions: 4, Clicks: 9, Conversions: 12}, 1, 1)
	f(Counts{Impressions: math.MaxUint64, Clicks: math.MaxUint64 - 1, Conversions: 1}, 1, 1/float64(math.MaxUint64))
}
