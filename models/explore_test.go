package models

import (
	"math"
	"testing"

	"github.com/bidpulse/bidpulse/windows"
)

func TestExplore(t *testing.T) {
	cfg := DefaultCampaignPolicy()
	cfg.Explore.Enabled = true
	cfg.Guard = GuardConfig{}
	chain := []windows.Counts{campaign, counts(300, 9, 1)}
	in := &Input{Chain: chain}
	var res Result
	draw := func(seed uint64, n int) []float64 {
		r := NewRand(seed)
		out := make([]float64, n)
		for i := range out {
			Evaluate(&cfg, in, nil, nil, &r, &res)
			f, ok := res.Factor(FactorExplore)
			if !ok {
				t.Fatalf("missing the explore factor")
			}
			out[i] = f.Value
		}
		return out
	}
	// Seeded: the same seed, the same draws.
	a, b := draw(9, 100), draw(9, 100)
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("unexpected draw %d; got %v and %v from the same seed", i, a[i], b[i])
		}
	}
	// The draws spread around the posterior mean: the lift of a draw over
	// the mean is 1 on average (elasticity 1), and it varies.
	xs := draw(1, 20000)
	mean, lo, hi := 0.0, math.Inf(1), math.Inf(-1)
	for _, x := range xs {
		mean += x
		lo, hi = math.Min(lo, x), math.Max(hi, x)
	}
	mean /= float64(len(xs))
	if math.Abs(mean-1) > 0.03 || lo > 0.7 || hi < 1.4 {
		t.Fatalf("unexpected draws: mean %v in [%v, %v]; want a mean of 1 and a wide spread", mean, lo, hi)
	}
	// No exploration with enough evidence, without a Rand, or disabled.
	f := func(name string, cfg CampaignPolicy, in *Input, rng *Rand) {
		t.Helper()
		Evaluate(&cfg, in, nil, nil, rng, &res)
		if _, ok := res.Factor(FactorExplore); ok {
			t.Fatalf("%s: unexpected explore factor", name)
		}
	}
	r := NewRand(1)
	f("evidence", cfg, &Input{Chain: []windows.Counts{campaign, counts(5000, 150, 10)}}, &r)
	f("no rand", cfg, in, nil)
	off := cfg
	off.Explore.Enabled = false
	f("disabled", off, in, &r)
	f("campaign", cfg, &Input{Chain: []windows.Counts{campaign}}, &r)
}
