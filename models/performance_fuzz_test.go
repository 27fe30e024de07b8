package models

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/bidpulse/bidpulse/windows"
)

// checkPerformance runs Performance and fails unless the result holds the
// policy's invariants: finite, in [Min, Max], factor values finite and > 0
// whose product is BeforeClamp, and inputs finite.
func checkPerformance(t *testing.T, cfg *PerformanceConfig, chain []windows.Counts) {
	t.Helper()
	var res Result
	Performance(cfg, &Input{Chain: chain}, &res)
	m := res.Multiplier
	if math.IsNaN(m) || math.IsInf(m, 0) || m < cfg.Min || m > cfg.Max {
		t.Fatalf("unexpected Multiplier for %+v, %+v; got %v; want a finite number in [%v, %v]", cfg, chain, m, cfg.Min, cfg.Max)
	}
	if math.IsNaN(res.BeforeClamp) || math.IsInf(res.BeforeClamp, 0) {
		t.Fatalf("unexpected BeforeClamp for %+v, %+v; got %v; want finite", cfg, chain, res.BeforeClamp)
	}
	p := 1.0
	for i := 0; i < res.NFactors; i++ {
		fa := &res.Factors[i]
		if !(fa.Value > 0) || math.IsInf(fa.Value, 0) {
			t.Fatalf("unexpected factor %s for %+v, %+v; got %v; want finite and > 0", fa.Name, cfg, chain, fa.Value)
		}
		for j := 0; j < fa.NInputs; j++ {
			v := fa.Inputs[j].Value
			if math.IsNaN(v) || math.IsInf(v, 0) || v < 0 {
				t.Fatalf("unexpected input %s.%s for %+v, %+v; got %v; want finite and >= 0", fa.Name, fa.Inputs[j].Name, cfg, chain, v)
			}
		}
		p *= fa.Value
	}
	if p != res.BeforeClamp {
		t.Fatalf("unexpected BeforeClamp; got %v; want the product of the factors %v", res.BeforeClamp, p)
	}
	if len(chain) == 1 && m != 1 {
		t.Fatalf("unexpected Multiplier of a campaign-level key %+v; got %v; want exactly 1", chain, m)
	}
	if len(chain) > 0 && chain[0].Clicks == 0 && m != 1 {
		t.Fatalf("unexpected Multiplier of a campaign without clicks %+v; got %v; want exactly 1", chain, m)
	}
}

// randomCount returns a count from a distribution that favours the edges:
// 0, small numbers, realistic ones and numbers near the uint64 limit.
func randomCount(r *rand.Rand, upTo uint64) uint64 {
	switch r.IntN(6) {
	case 0:
		return 0
	case 1:
		return r.Uint64N(10)
	case 2:
		return math.MaxUint64 - r.Uint64N(3)
	case 3:
		return r.Uint64()
	default:
		if upTo == 0 {
			return 0
		}
		return r.Uint64N(upTo)
	}
}

// atMost returns a uniform count in [0, n].
func atMost(r *rand.Rand, n uint64) uint64 {
	if n == math.MaxUint64 {
		return r.Uint64()
	}
	return r.Uint64N(n + 1)
}

func TestPerformanceProperties(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	cfgs := []PerformanceConfig{DefaultPerformance()}
	for range 30 {
		c := DefaultPerformance()
		c.Elasticity = 4 * (1 - r.Float64()) // (0, 4]
		c.CTRPrior = math.Pow(10, -6+18*r.Float64())
		c.CVRPrior = math.Pow(10, -6+18*r.Float64())
		c.Min = 1 - r.Float64()*0.999
		c.Max = 1 + r.Float64()*9
		if err := c.Validate(); err != nil {
			t.Fatalf("BUG: random config is invalid: %s", err)
		}
		cfgs = append(cfgs, c)
	}
	// Extremes of the valid range.
	ext := DefaultPerformance()
	ext.Elasticity, ext.CTRPrior, ext.CVRPrior, ext.Min, ext.Max = 4, math.SmallestNonzeroFloat64, math.SmallestNonzeroFloat64, math.SmallestNonzeroFloat64, 10
	cfgs = append(cfgs, ext)
	ext.CTRPrior, ext.CVRPrior = math.MaxFloat64, math.MaxFloat64
	cfgs = append(cfgs, ext)

	chain := make([]windows.Counts, 0, 5)
	for i := range 20000 {
		cfg := &cfgs[i%len(cfgs)]
		chain = chain[:0]
		n := 1 + r.IntN(5)
		consistent := r.IntN(2) == 0
		for level := range n {
			var c windows.Counts
			if consistent && level > 0 {
				// A child never counts more than its parent, clicks never
				// outrun impressions, conversions never outrun clicks.
				p := chain[level-1]
				c.Impressions = atMost(r, p.Impressions)
				c.Clicks = atMost(r, min(c.Impressions, p.Clicks))
				c.Conversions = atMost(r, min(c.Clicks, p.Conversions))
			} else {
				c.Impressions = randomCount(r, 1e7)
				c.Clicks = randomCount(r, 1e5)
				c.Conversions = randomCount(r, 1e3)
			}
			chain = append(chain, c)
		}
		checkPerformance(t, cfg, chain)
	}
}

func FuzzPerformance(f *testing.F) {
	f.Add(uint64(10000), uint64(200), uint64(10), uint64(4000), uint64(100), uint64(6), uint64(500), uint64(10), uint64(1), 1.0, 1000.0, 50.0, uint8(3))
	f.Add(uint64(10000), uint64(0), uint64(0), uint64(2000), uint64(5), uint64(0), uint64(0), uint64(0), uint64(0), 0.5, 1.0, 1.0, uint8(2))
	f.Add(uint64(1), uint64(1), uint64(1), uint64(math.MaxUint64), uint64(math.MaxUint64), uint64(math.MaxUint64), uint64(0), uint64(7), uint64(9), 4.0, 1e-300, 1e300, uint8(3))
	f.Fuzz(func(t *testing.T, ci, cc, cv, pi, pc, pv, ki, kc, kv uint64, e, ctrPrior, cvrPrior float64, n uint8) {
		cfg := DefaultPerformance()
		cfg.Elasticity, cfg.CTRPrior, cfg.CVRPrior = e, ctrPrior, cvrPrior
		if cfg.Validate() != nil {
			return
		}
		chain := []windows.Counts{counts(ci, cc, cv), counts(pi, pc, pv), counts(ki, kc, kv)}
		checkPerformance(t, &cfg, chain[:1+int(n)%3])
	})
}
