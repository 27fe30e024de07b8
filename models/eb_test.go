package models

import (
	"math"
	"testing"

	"github.com/bidpulse/bidpulse/windows"
)

func TestFitPriors(t *testing.T) {
	cfg := DefaultPerformance()
	// Siblings drawn from a Beta prior of strength 500 around a CTR of
	// 0.02 and a CVR prior of strength 100 around 0.05, with plenty of
	// data each: the fit finds strengths of that order.
	r := NewRand(5)
	var sibs []windows.Counts
	for i := 0; i < 200; i++ {
		ctr := r.Beta(0.02*500, 0.98*500)
		cvr := r.Beta(0.05*100, 0.95*100)
		imps := uint64(20000 + r.Float64()*80000)
		clicks := uint64(float64(imps) * ctr)
		sibs = append(sibs, windows.Counts{Impressions: imps, Clicks: clicks, Conversions: uint64(float64(clicks) * cvr)})
	}
	fit := FitPriors(&cfg, sibs)
	if !fit.CTRFitted || !fit.CVRFitted || fit.CTRSiblings != 200 {
		t.Fatalf("unexpected fit %+v", fit)
	}
	if fit.CTR < 300 || fit.CTR > 800 {
		t.Fatalf("unexpected CTR strength; got %.0f; want about 500", fit.CTR)
	}
	if fit.CVR < 50 || fit.CVR > 200 {
		t.Fatalf("unexpected CVR strength; got %.0f; want about 100", fit.CVR)
	}
	if math.Abs(fit.CTRMean-0.02) > 0.002 {
		t.Fatalf("unexpected CTR mean; got %v; want about 0.02", fit.CTRMean)
	}

	f := func(name string, sibs []windows.Counts, wantCTR, wantCVR float64, fitted bool) {
		t.Helper()
		fit := FitPriors(&cfg, sibs)
		if fit.CTR != wantCTR || fit.CVR != wantCVR || fit.CTRFitted != fitted {
			t.Fatalf("%s: unexpected fit %+v; want strengths %v, %v, fitted %v", name, fit, wantCTR, wantCVR, fitted)
		}
	}
	eb := cfg.EmpiricalBayes
	// Identical siblings: the noise explains every difference, the
	// strength is the maximum.
	same := windows.Counts{Impressions: 10000, Clicks: 200, Conversions: 10}
	f("identical", []windows.Counts{same, same, same, same}, eb.MaxCTRPrior, eb.MaxCVRPrior, true)
	// Wildly different siblings: the minimum.
	f("different", []windows.Counts{
		{Impressions: 100000, Clicks: 100, Conversions: 1}, {Impressions: 100000, Clicks: 10000, Conversions: 5000},
		{Impressions: 100000, Clicks: 500, Conversions: 400}, {Impressions: 100000, Clicks: 30000, Conversions: 300},
	}, eb.MinCTRPrior, eb.MinCVRPrior, true)
	// Too few siblings, no clicks at all, disabled: the configured priors.
	f("two siblings", []windows.Counts{same, same}, cfg.CTRPrior, cfg.CVRPrior, false)
	f("no clicks", []windows.Counts{{Impressions: 10}, {Impressions: 20}, {Impressions: 5}}, cfg.CTRPrior, cfg.CVRPrior, false)
	f("nothing", nil, cfg.CTRPrior, cfg.CVRPrior, false)
	off := cfg
	off.EmpiricalBayes.Enabled = false
	if fit := FitPriors(&off, []windows.Counts{same, same, same}); fit.CTRFitted || fit.CTR != cfg.CTRPrior {
		t.Fatalf("unexpected fit when disabled: %+v", fit)
	}
	if n := testing.AllocsPerRun(100, func() { FitPriors(&cfg, sibs) }); n != 0 {
		t.Fatalf("unexpected allocations; got %v; want 0", n)
	}
}

// TestPerformanceStrengths: fitted strengths replace the configured priors
// level by level.
func TestPerformanceStrengths(t *testing.T) {
	cfg := DefaultPerformance()
	chain := []windows.Counts{campaign, counts(2000, 80, 6)}
	var res Result
	// A strength of 200 pseudo-impressions: ctr = (80 + 200*0.02)/(2000+200).
	Performance(&cfg, &Input{Chain: chain, Strengths: []Strength{{}, {CTR: 200}}}, &res)
	f, _ := res.Factor(FactorCTR)
	if got, _ := f.Input(InputSmoothedCTR); !almostEqual(got, 84.0/2200) {
		t.Fatalf("unexpected smoothed ctr; got %v; want %v", got, 84.0/2200)
	}
	if got, _ := f.Input(InputPriorStrength); got != 200 {
		t.Fatalf("unexpected prior strength; got %v; want 200", got)
	}
	// The CVR strength was 0: the configured 50.
	f, _ = res.Factor(FactorCVR)
	if got, _ := f.Input(InputPriorStrength); got != 50 {
		t.Fatalf("unexpected cvr prior strength; got %v; want 50", got)
	}
}

func TestEBConfigValidate(t *testing.T) {
	c := DefaultEB()
	if err := c.Validate(); err != nil {
		t.Fatalf("unexpected error: %s", err)
	}
	c.MinSiblings = 1
	if err := c.Validate(); err == nil {
		t.Fatalf("expecting an error for min_siblings 1")
	}
	c = DefaultEB()
	c.MaxCTRPrior = 10
	if err := c.Validate(); err == nil {
		t.Fatalf("expecting an error for max_ctr_prior below min_ctr_prior")
	}
	c = EBConfig{}
	if err := c.Validate(); err != nil {
		t.Fatalf("unexpected error for the disabled zero value: %s", err)
	}
}
