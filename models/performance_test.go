package models

import (
	"math"
	"strings"
	"testing"

	"github.com/bidpulse/bidpulse/windows"
)

// counts builds the impressions, clicks and conversions of one level.
func counts(imps, clicks, convs uint64) windows.Counts {
	return windows.Counts{Impressions: imps, Clicks: clicks, Conversions: convs}
}

// almostEqual reports whether a and b agree to 1e-9, relatively.
func almostEqual(a, b float64) bool {
	return math.Abs(a-b) <= 1e-9*math.Max(1, math.Max(math.Abs(a), math.Abs(b)))
}

// campaign is the campaign of the hand-computed cases: 10000 impressions,
// 200 clicks, 10 conversions; ctr = 200/10000 = 0.02, cvr = 10/200 = 0.05.
var campaign = counts(10000, 200, 10)

func TestPerformanceHandComputed(t *testing.T) {
	type want struct {
		ctrFactor, cvrFactor, beforeClamp, multiplier float64
		clamped                                       bool
	}
	f := func(cfg PerformanceConfig, chain []windows.Counts, w want) {
		t.Helper()
		if err := cfg.Validate(); err != nil {
			t.Fatalf("unexpected error: %s", err)
		}
		var res Result
		Performance(&cfg, &Input{Chain: chain}, &res)
		if res.NFactors != 2 {
			t.Fatalf("unexpected NFactors; got %d; want 2", res.NFactors)
		}
		if f := res.Factors[0]; f.Name != FactorCTR || !almostEqual(f.Value, w.ctrFactor) {
			t.Fatalf("unexpected ctr factor; got %s=%v; want ctr=%v", f.Name, f.Value, w.ctrFactor)
		}
		if f := res.Factors[1]; f.Name != FactorCVR || !almostEqual(f.Value, w.cvrFactor) {
			t.Fatalf("unexpected cvr factor; got %s=%v; want cvr=%v", f.Name, f.Value, w.cvrFactor)
		}
		if !almostEqual(res.BeforeClamp, w.beforeClamp) {
			t.Fatalf("unexpected BeforeClamp; got %v; want %v", res.BeforeClamp, w.beforeClamp)
		}
		if !almostEqual(res.Multiplier, w.multiplier) {
			t.Fatalf("unexpected Multiplier; got %v; want %v", res.Multiplier, w.multiplier)
		}
		if res.Clamped != w.clamped {
			t.Fatalf("unexpected Clamped; got %v; want %v", res.Clamped, w.clamped)
		}
		if res.Min != cfg.Min || res.Max != cfg.Max {
			t.Fatalf("unexpected clamp; got [%v, %v]; want [%v, %v]", res.Min, res.Max, cfg.Min, cfg.Max)
		}
	}
	def := DefaultPerformance()

	// Placement A 2000/80/6:
	//   ctr = (80 + 1000*0.02) / (2000 + 1000) = 100/3000 = 1/30; factor (1/30)/0.02 = 5/3
	//   cvr = (6 + 50*0.05) / (80 + 50) = 8.5/130 = 17/260;       factor (17/260)/0.05 = 17/13
	//   before clamp 5/3 * 17/13 = 85/39 = 2.179..., clamped to 2
	f(def, []windows.Counts{campaign, counts(2000, 80, 6)}, want{5.0 / 3, 17.0 / 13, 85.0 / 39, 2, true})

	// Placement B 2000/10/0:
	//   ctr = (10 + 20) / 3000 = 0.01;          factor 0.01/0.02 = 1/2
	//   cvr = (0 + 2.5) / (10 + 50) = 1/24;     factor (1/24)/0.05 = 5/6
	//   before clamp 1/2 * 5/6 = 5/12 = 0.4166..., clamped to 0.5
	f(def, []windows.Counts{campaign, counts(2000, 10, 0)}, want{0.5, 5.0 / 6, 5.0 / 12, 0.5, true})

	// Sparse placement 10/1/0: its one click out of 10 (raw ctr 0.1) barely moves it.
	//   ctr = (1 + 20) / (10 + 1000) = 21/1010;  factor (21/1010)/0.02 = 210/202 = 1.0396...
	//   cvr = (0 + 2.5) / (1 + 50) = 2.5/51;     factor (2.5/51)/0.05 = 50/51 = 0.9803...
	//   before clamp 210/202 * 50/51 = 10500/10302 = 1.0192...
	f(def, []windows.Counts{campaign, counts(10, 1, 0)}, want{210.0 / 202, 50.0 / 51, 10500.0 / 10302, 10500.0 / 10302, false})

	// Three levels: campaign, creative 4000/100/6, creative/placement 500/10/1.
	//   creative:  ctr = (100 + 1000*0.02) / (4000 + 1000) = 120/5000 = 0.024
	//              cvr = (6 + 50*0.05) / (100 + 50) = 8.5/150 = 17/300
	//   placement: ctr = (10 + 1000*0.024) / (500 + 1000) = 34/1500; factor (34/1500)/0.02 = 17/15
	//              cvr = (1 + 50*17/300) / (10 + 50) = (23/6)/60 = 23/360; factor (23/360)/0.05 = 23/18
	//   before clamp 17/15 * 23/18 = 391/270 = 1.448...
	f(def, []windows.Counts{campaign, counts(4000, 100, 6), counts(500, 10, 1)},
		want{17.0 / 15, 23.0 / 18, 391.0 / 270, 391.0 / 270, false})

	// Elasticity 0.5 on placement A: sqrt(5/3) = 1.2910, sqrt(17/13) = 1.1435,
	// before clamp sqrt(85/39) = 1.4763, inside [0.5, 2].
	half := def
	half.Elasticity = 0.5
	f(half, []windows.Counts{campaign, counts(2000, 80, 6)},
		want{math.Sqrt(5.0 / 3), math.Sqrt(17.0 / 13), math.Sqrt(85.0 / 39), math.Sqrt(85.0 / 39), false})

	// Elasticity 2 on placement B: (1/2)^2 = 1/4, (5/6)^2 = 25/36, product 25/144 = 0.1736,
	// clamped to 0.5.
	two := def
	two.Elasticity = 2
	f(two, []windows.Counts{campaign, counts(2000, 10, 0)}, want{0.25, 25.0 / 36, 25.0 / 144, 0.5, true})

	// A wider clamp [0.25, 4] lets placement A's 85/39 and placement B's 5/12 through.
	wide := def
	wide.Min, wide.Max = 0.25, 4
	f(wide, []windows.Counts{campaign, counts(2000, 80, 6)}, want{5.0 / 3, 17.0 / 13, 85.0 / 39, 85.0 / 39, false})
	f(wide, []windows.Counts{campaign, counts(2000, 10, 0)}, want{0.5, 5.0 / 6, 5.0 / 12, 5.0 / 12, false})

	// A narrow clamp [0.9, 1.01] clamps even the sparse placement's 1.0192 down to 1.01.
	narrow := def
	narrow.Min, narrow.Max = 0.9, 1.01
	f(narrow, []windows.Counts{campaign, counts(10, 1, 0)}, want{210.0 / 202, 50.0 / 51, 10500.0 / 10302, 1.01, true})

	// Weaker priors (100 pseudo-impressions, 10 pseudo-clicks) on placement A:
	//   ctr = (80 + 100*0.02) / (2000 + 100) = 82/2100; factor (82/2100)/0.02 = 82/42 = 41/21
	//   cvr = (6 + 10*0.05) / (80 + 10) = 6.5/90;       factor (6.5/90)/0.05 = 130/90 = 13/9
	//   before clamp 41/21 * 13/9 = 533/189 = 2.82, clamped to 2
	weak := def
	weak.CTRPrior, weak.CVRPrior = 100, 10
	f(weak, []windows.Counts{campaign, counts(2000, 80, 6)}, want{41.0 / 21, 13.0 / 9, 533.0 / 189, 2, true})

	// A key with no impressions is its parent: both smoothed rates equal the campaign's.
	//   ctr = (0 + 1000*0.02) / 1000 = 0.02, cvr = (0 + 50*0.05) / 50 = 0.05
	f(def, []windows.Counts{campaign, counts(0, 0, 0)}, want{1, 1, 1, 1, false})
}

func TestPerformanceInputs(t *testing.T) {
	cfg := DefaultPerformance()
	var res Result
	Performance(&cfg, &Input{Chain: []windows.Counts{campaign, counts(4000, 100, 6), counts(500, 10, 1)}}, &res)
	f := func(factor, input string, want float64) {
		t.Helper()
		fa, ok := res.Factor(factor)
		if !ok {
			t.Fatalf("missing factor %q", factor)
		}
		got, ok := fa.Input(input)
		if !ok {
			t.Fatalf("missing input %q of factor %q", input, factor)
		}
		if !almostEqual(got, want) {
			t.Fatalf("unexpected %s.%s; got %v; want %v", factor, input, got, want)
		}
	}
	// The key is 500/10/1 under the creative 4000/100/6 (see TestPerformanceHandComputed).
	f("ctr", "impressions", 500)
	f("ctr", "clicks", 10)
	f("ctr", "raw_ctr", 10.0/500)
	f("ctr", "prior_ctr", 0.024)
	f("ctr", "smoothed_ctr", 34.0/1500)
	f("ctr", "campaign_ctr", 0.02)
	f("cvr", "clicks", 10)
	f("cvr", "conversions", 1)
	f("cvr", "raw_cvr", 0.1)
	f("cvr", "prior_cvr", 17.0/300)
	f("cvr", "smoothed_cvr", 23.0/360)
	f("cvr", "campaign_cvr", 0.05)
	// The evidence: the prior strength and a 90% interval around the
	// smoothed rate, from its n + prior pseudo-trials:
	//   ctr 34/1500 from 500 + 1000, cvr 23/360 from 10 + 50.
	f("ctr", "prior_strength", 1000)
	f("cvr", "prior_strength", 50)
	ctr, cvr := 34.0/1500, 23.0/360
	hc := CIZ * math.Sqrt(ctr*(1-ctr)/1501)
	hv := CIZ * math.Sqrt(cvr*(1-cvr)/61)
	f("ctr", "ci_low", ctr-hc)
	f("ctr", "ci_high", ctr+hc)
	f("cvr", "ci_low", cvr-hv)
	f("cvr", "ci_high", cvr+hv)
	if n := res.Factors[0].NInputs; n != 9 {
		t.Fatalf("unexpected ctr inputs; got %d; want 9", n)
	}
	if n := res.Factors[1].NInputs; n != 9 {
		t.Fatalf("unexpected cvr inputs; got %d; want 9", n)
	}
}

func TestPerformanceNeutral(t *testing.T) {
	f := func(name string, chain []windows.Counts, wantFactors int) {
		t.Helper()
		cfg := DefaultPerformance()
		var res Result
		Performance(&cfg, &Input{Chain: chain}, &res)
		// Exactly 1, not approximately.
		if res.Multiplier != 1 || res.BeforeClamp != 1 || res.Clamped {
			t.Fatalf("%s: unexpected result; got multiplier %v, before clamp %v, clamped %v; want exactly 1 unclamped",
				name, res.Multiplier, res.BeforeClamp, res.Clamped)
		}
		if res.NFactors != wantFactors {
			t.Fatalf("%s: unexpected NFactors; got %d; want %d", name, res.NFactors, wantFactors)
		}
		for i := 0; i < res.NFactors; i++ {
			if v := res.Factors[i].Value; v != 1 {
				t.Fatalf("%s: unexpected factor %s; got %v; want 1", name, res.Factors[i].Name, v)
			}
		}
	}
	f("no data", nil, 0)
	f("campaign-level key", []windows.Counts{campaign}, 2)
	f("campaign-level key, ctr 1", []windows.Counts{counts(3, 3, 1)}, 2)
	f("campaign-level key, no clicks", []windows.Counts{counts(10000, 0, 0)}, 2)
	f("empty campaign and key", []windows.Counts{{}, {}}, 2)
	f("campaign with impressions but no clicks", []windows.Counts{counts(10000, 0, 0), counts(2000, 0, 0)}, 2)
	// Windows may briefly count a child above its parent: still neutral.
	f("no campaign clicks, key clicks", []windows.Counts{counts(10000, 0, 0), counts(2000, 50, 5)}, 2)
	f("conversions without clicks", []windows.Counts{counts(10000, 0, 7), counts(2000, 0, 3)}, 2)
	f("three levels, no campaign clicks", []windows.Counts{counts(10000, 0, 0), counts(5000, 0, 0), counts(10, 0, 0)}, 2)
}

func TestPerformanceNoCampaignConversions(t *testing.T) {
	// Campaign 10000/200/0, placement 2000/80/0: value is ctr alone.
	//   ctr = (80 + 20) / 3000 = 1/30; factor (1/30)/0.02 = 5/3 = 1.667, inside [0.5, 2]
	cfg := DefaultPerformance()
	var res Result
	Performance(&cfg, &Input{Chain: []windows.Counts{counts(10000, 200, 0), counts(2000, 80, 0)}}, &res)
	if !almostEqual(res.Multiplier, 5.0/3) {
		t.Fatalf("unexpected Multiplier; got %v; want %v", res.Multiplier, 5.0/3)
	}
	cvr, ok := res.Factor(FactorCVR)
	if !ok {
		t.Fatalf("missing cvr factor")
	}
	if cvr.Value != 1 || cvr.NInputs != 1 || cvr.Inputs[0] != (Param{Name: "campaign_conversions", Value: 0}) {
		t.Fatalf("unexpected cvr factor; got %+v; want value 1 with the one input campaign_conversions=0", *cvr)
	}

	// A key with conversions its campaign does not have (a window skew) is
	// still judged on ctr alone.
	Performance(&cfg, &Input{Chain: []windows.Counts{counts(10000, 200, 0), counts(2000, 80, 9)}}, &res)
	if !almostEqual(res.Multiplier, 5.0/3) {
		t.Fatalf("unexpected Multiplier; got %v; want %v", res.Multiplier, 5.0/3)
	}
}

func TestPerformanceZeroFactorSkipsClamp(t *testing.T) {
	cfg := DefaultPerformance()
	var res Result
	// Placement A: before clamp 85/39, clamped to 2 (see TestPerformanceHandComputed).
	Performance(&cfg, &Input{Chain: []windows.Counts{campaign, counts(2000, 80, 6)}}, &res)
	if res.Multiplier != 2 || !res.Clamped {
		t.Fatalf("unexpected result; got multiplier %v, clamped %v; want 2, true", res.Multiplier, res.Clamped)
	}
	// The caller opts the key out: 0, although the clamp's Min is 0.5.
	res.AddFactor("opt_out", 0)
	res.Finish()
	if res.Multiplier != 0 || res.BeforeClamp != 0 || res.Clamped {
		t.Fatalf("unexpected result; got multiplier %v, before clamp %v, clamped %v; want 0, 0, false",
			res.Multiplier, res.BeforeClamp, res.Clamped)
	}
}

func TestPerformanceResetsResult(t *testing.T) {
	cfg := DefaultPerformance()
	var res Result
	res.AddFactor("stale", 0)
	res.AddFactor("stale2", 3)
	Performance(&cfg, &Input{Chain: []windows.Counts{campaign}}, &res)
	if res.Multiplier != 1 || res.NFactors != 2 || res.Factors[0].Name != FactorCTR {
		t.Fatalf("unexpected result; got %+v; want a fresh neutral result", res)
	}
}

func TestPerformanceConfigValidate(t *testing.T) {
	f := func(change func(c *PerformanceConfig), wantErr string) {
		t.Helper()
		c := DefaultPerformance()
		change(&c)
		err := c.Validate()
		if wantErr == "" {
			if err != nil {
				t.Fatalf("unexpected error: %s", err)
			}
			return
		}
		if err == nil {
			t.Fatalf("expecting an error naming %q", wantErr)
		}
		if !strings.Contains(err.Error(), wantErr) {
			t.Fatalf("unexpected error; got %q; want it to name %q", err, wantErr)
		}
	}
	nan := math.NaN()
	inf := math.Inf(1)
	f(func(c *PerformanceConfig) {}, "")
	f(func(c *PerformanceConfig) { c.Window = windows.Span24h }, "")
	f(func(c *PerformanceConfig) { c.Elasticity = 4 }, "")
	f(func(c *PerformanceConfig) { c.Min, c.Max = 1, 1 }, "")
	f(func(c *PerformanceConfig) { c.Max = 10 }, "")
	f(func(c *PerformanceConfig) { c.CTRPrior, c.CVRPrior = 0.001, 1e9 }, "")

	f(func(c *PerformanceConfig) { c.Window = 200 }, "window")
	f(func(c *PerformanceConfig) { c.Elasticity = 0 }, "elasticity")
	f(func(c *PerformanceConfig) { c.Elasticity = -1 }, "elasticity")
	f(func(c *PerformanceConfig) { c.Elasticity = 4.01 }, "elasticity")
	f(func(c *PerformanceConfig) { c.Elasticity = nan }, "elasticity")
	f(func(c *PerformanceConfig) { c.CTRPrior = 0 }, "ctr_prior")
	f(func(c *PerformanceConfig) { c.CTRPrior = -5 }, "ctr_prior")
	f(func(c *PerformanceConfig) { c.CTRPrior = inf }, "ctr_prior")
	f(func(c *PerformanceConfig) { c.CTRPrior = nan }, "ctr_prior")
	f(func(c *PerformanceConfig) { c.CVRPrior = 0 }, "cvr_prior")
	f(func(c *PerformanceConfig) { c.CVRPrior = inf }, "cvr_prior")
	f(func(c *PerformanceConfig) { c.CVRPrior = nan }, "cvr_prior")
	f(func(c *PerformanceConfig) { c.Min = 0 }, "min")
	f(func(c *PerformanceConfig) { c.Min = 1.1 }, "min")
	f(func(c *PerformanceConfig) { c.Min = nan }, "min")
	f(func(c *PerformanceConfig) { c.Max = 0.99 }, "max")
	f(func(c *PerformanceConfig) { c.Max = 10.5 }, "max")
	f(func(c *PerformanceConfig) { c.Max = nan }, "max")

	var zero PerformanceConfig
	if err := zero.Validate(); err == nil {
		t.Fatalf("expecting an error for the zero config")
	}
}

func TestDefaultPerformance(t *testing.T) {
	c := DefaultPerformance()
	want := PerformanceConfig{Window: windows.Span1h, Elasticity: 1, CTRPrior: 1000, CVRPrior: 50, Min: 0.5, Max: 2,
		EmpiricalBayes: EBConfig{Enabled: true, MinSiblings: 3, MinCTRPrior: 100, MaxCTRPrior: 100000, MinCVRPrior: 10, MaxCVRPrior: 5000}}
	if c != want {
		t.Fatalf("unexpected defaults; got %+v; want %+v", c, want)
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("unexpected error: %s", err)
	}
}

func TestPerformanceAllocs(t *testing.T) {
	cfg := DefaultPerformance()
	in := &Input{Chain: []windows.Counts{campaign, counts(4000, 100, 6), counts(500, 10, 1)}}
	var res Result
	buf := make([]byte, 0, 4096)
	n := testing.AllocsPerRun(1000, func() {
		Performance(&cfg, in, &res)
		buf = res.AppendJSON(buf[:0])
	})
	if n != 0 {
		t.Fatalf("unexpected allocations; got %v; want 0", n)
	}
	// No campaign conversions: the other branch.
	in.Chain[0].Conversions = 0
	n = testing.AllocsPerRun(1000, func() {
		Performance(&cfg, in, &res)
	})
	if n != 0 {
		t.Fatalf("unexpected allocations; got %v; want 0", n)
	}
}
