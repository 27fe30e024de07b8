package models

import (
	"fmt"
	"math"

	"github.com/bidpulse/bidpulse/windows"
)

// EBConfig bounds the empirical-Bayes fit of the prior strengths (FitPriors).
// Its zero value disables the fit.
type EBConfig struct {
	// Enabled turns the fit on.
	Enabled bool `yaml:"enabled"`
	// MinSiblings is the number of siblings with data the fit needs; with
	// fewer, the configured priors apply.
	MinSiblings int `yaml:"min_siblings"`
	// MinCTRPrior and MaxCTRPrior bound the fitted CTR strength, in
	// pseudo-impressions.
	MinCTRPrior float64 `yaml:"min_ctr_prior"`
	MaxCTRPrior float64 `yaml:"max_ctr_prior"`
	// MinCVRPrior and MaxCVRPrior bound the fitted CVR strength, in
	// pseudo-clicks.
	MinCVRPrior float64 `yaml:"min_cvr_prior"`
	MaxCVRPrior float64 `yaml:"max_cvr_prior"`
}

// DefaultEB returns the default bounds: on, 3 siblings, CTR strength in
// [100, 100000] pseudo-impressions and CVR strength in [10, 5000]
// pseudo-clicks.
func DefaultEB() EBConfig {
	return EBConfig{
		Enabled:     true,
		MinSiblings: 3,
		MinCTRPrior: 100,
		MaxCTRPrior: 100000,
		MinCVRPrior: 10,
		MaxCVRPrior: 5000,
	}
}

// Validate reports the first invalid field of c, named as in YAML. A
// disabled config is always valid.
func (c *EBConfig) Validate() error {
	if !c.Enabled {
		return nil
	}
	if c.MinSiblings < 2 || c.MinSiblings > 1000 {
		return fmt.Errorf("invalid performance empirical_bayes.min_siblings %d; want 2..1000", c.MinSiblings)
	}
	if !(c.MinCTRPrior > 0 && c.MaxCTRPrior >= c.MinCTRPrior && c.MaxCTRPrior <= 1e12) {
		return fmt.Errorf("invalid performance empirical_bayes.min_ctr_prior/max_ctr_prior [%v, %v]; want 0 < min <= max <= 1e12", c.MinCTRPrior, c.MaxCTRPrior)
	}
	if !(c.MinCVRPrior > 0 && c.MaxCVRPrior >= c.MinCVRPrior && c.MaxCVRPrior <= 1e12) {
		return fmt.Errorf("invalid performance empirical_bayes.min_cvr_prior/max_cvr_prior [%v, %v]; want 0 < min <= max <= 1e12", c.MinCVRPrior, c.MaxCVRPrior)
	}
	return nil
}

// Strength is the strength of the Beta priors of one level: CTR in
// pseudo-impressions, CVR in pseudo-clicks. A zero field means the
// configured prior.
type Strength struct {
	CTR float64 `json:"ctr"`
	CVR float64 `json:"cvr"`
}

// PriorFit is the outcome of FitPriors: the strengths to use for the
// children of one parent, and the moments they come from (for explain and
// dashboards). Plain data.
type PriorFit struct {
	Strength
	// CTRFitted and CVRFitted say the strength was fitted; false: too few
	// siblings with data, or no successes at all, and the strength is the
	// configured prior.
	CTRFitted bool `json:"ctr_fitted"`
	CVRFitted bool `json:"cvr_fitted"`
	// Siblings with impressions (CTR) and with clicks (CVR).
	CTRSiblings int `json:"ctr_siblings"`
	CVRSiblings int `json:"cvr_siblings"`
	// The pooled mean rate of the siblings and the standard deviation of
	// their true rates (net of sampling noise).
	CTRMean   float64 `json:"ctr_mean"`
	CTRSpread float64 `json:"ctr_spread"`
	CVRMean   float64 `json:"cvr_mean"`
	CVRSpread float64 `json:"cvr_spread"`
}

// FitPriors fits the strengths of the CTR and CVR priors of the children
// of one parent from their counts (the siblings, in the policy window), by
// the method of moments on the beta-binomial model.
//
// With n_i trials and x_i successes per sibling (impressions and clicks
// for CTR; clicks and conversions for CVR), N = sum n_i, the pooled mean
// m = sum x_i / N, and r_i = x_i / n_i, the variance of the true rates is
//
//	s2 = (sum n_i (r_i - m)^2 - (k-1) m (1-m)) / (N - sum n_i^2 / N)
//
// (the observed spread minus the binomial noise, k siblings with data),
// and the prior strength is m(1-m)/s2 - 1 pseudo-trials, bounded to
// cfg's [Min, Max]: siblings that differ a lot get a weak prior (each key
// is judged on its own data sooner), alike siblings a strong one. When the
// noise explains all the spread (s2 <= 0) the strength is the maximum.
//
// It is meant for the control tick: bidder scans a level, groups the keys
// by parent, calls FitPriors per group, and passes the strengths on the bid
// path in Input.Strengths. It allocates nothing and reads siblings only.
// With cfg.EmpiricalBayes disabled, it returns the configured priors.
func FitPriors(cfg *PerformanceConfig, siblings []windows.Counts) PriorFit {
	eb := &cfg.EmpiricalBayes
	fit := PriorFit{Strength: Strength{CTR: cfg.CTRPrior, CVR: cfg.CVRPrior}}
	var ctr, cvr momentSums
	for i := range siblings {
		c := &siblings[i]
		ctr.add(float64(c.Clicks), float64(c.Impressions))
		cvr.add(float64(c.Conversions), float64(c.Clicks))
	}
	fit.CTRSiblings, fit.CVRSiblings = ctr.k, cvr.k
	if !eb.Enabled {
		return fit
	}
	var ok bool
	fit.CTRMean, fit.CTRSpread, fit.CTR, ok = ctr.strength(eb.MinSiblings, eb.MinCTRPrior, eb.MaxCTRPrior)
	if ok {
		fit.CTRFitted = true
	} else {
		fit.CTR = cfg.CTRPrior
	}
	fit.CVRMean, fit.CVRSpread, fit.CVR, ok = cvr.strength(eb.MinSiblings, eb.MinCVRPrior, eb.MaxCVRPrior)
	if ok {
		fit.CVRFitted = true
	} else {
		fit.CVR = cfg.CVRPrior
	}
	return fit
}

// momentSums accumulates sibling counts for the method of moments, in two
// passes' worth of sums gathered in one: sum x, sum n, sum n^2 and
// sum x^2/n (so that sum n (x/n - m)^2 = sum x^2/n - m^2 N).
type momentSums struct {
	k                 int
	x, n, n2, x2overn float64
}

func (s *momentSums) add(x, n float64) {
	if !(n > 0) {
		return
	}
	x = math.Min(x, n)
	s.k++
	s.x += x
	s.n += n
	s.n2 += n * n
	s.x2overn += x * x / n
}

// strength returns the pooled mean, the spread of the true rates, and the
// bounded strength; ok is false when the fit is not possible.
func (s *momentSums) strength(minK int, lo, hi float64) (mean, spread, strength float64, ok bool) {
	if s.k < minK || !(s.n > 0) {
		return 0, 0, 0, false
	}
	m := s.x / s.n
	if m <= 0 || m >= 1 {
		// No successes (or only successes): nothing to fit a Beta to.
		return m, 0, 0, false
	}
	ss := s.x2overn - m*m*s.n
	den := s.n - s.n2/s.n
	if !(den > 0) {
		return m, 0, 0, false
	}
	s2 := (ss - float64(s.k-1)*m*(1-m)) / den
	if !(s2 > 0) {
		return m, 0, hi, true
	}
	st := m*(1-m)/s2 - 1
	return m, math.Sqrt(s2), math.Min(math.Max(st, lo), hi), true
}
