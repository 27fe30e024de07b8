package models

import (
	"fmt"
	"math"
)

// Factor and input names of exploration.
const (
	FactorExplore = "explore"

	InputSampledCTR = "sampled_ctr"
	InputSampledCVR = "sampled_cvr"
)

// ExploreConfig configures Thompson sampling for keys with little
// evidence: instead of bidding on the posterior means of their CTR and
// CVR, such keys bid on a draw from their Beta posteriors, so that a key
// whose value is uncertain is sometimes bid up and learnt about.
type ExploreConfig struct {
	// Enabled turns exploration on (and needs a *Rand from the caller).
	Enabled bool `yaml:"enabled"`
	// MaxImpressions: keys with fewer impressions in the policy window
	// explore.
	MaxImpressions uint64 `yaml:"max_impressions"`
}

// DefaultExplore returns the default: off, for keys under 2000
// impressions when turned on.
func DefaultExplore() ExploreConfig {
	return ExploreConfig{MaxImpressions: 2000}
}

// Validate reports the first invalid field of c, named as in YAML.
func (c *ExploreConfig) Validate() error {
	if c.Enabled && c.MaxImpressions == 0 {
		return fmt.Errorf("invalid explore.max_impressions 0; want at least 1 when exploration is enabled")
	}
	return nil
}

// explore adds the "explore" factor: the lift of a posterior draw over the
// posterior mean, (ctr~/ctr)^e x (cvr~/cvr)^e, for a key under
// MaxImpressions. Nothing when the key is neutral (its campaign).
func explore(cfg *ExploreConfig, e float64, p *perfOut, rng *Rand, res *Result) {
	if !cfg.Enabled || rng == nil || p.neutral || p.keyImpressions >= cfg.MaxImpressions {
		return
	}
	sctr := rng.Beta(p.ctrA, p.ctrB)
	v := 1.0
	if p.ctr > 0 {
		v = lift(sctr, p.ctr, e)
	}
	scvr := p.cvr
	if p.useCVR {
		scvr = rng.Beta(p.cvrA, p.cvrB)
		if p.cvr > 0 {
			v *= lift(scvr, p.cvr, e)
		}
	}
	if !(v > 0 && v <= math.MaxFloat64) {
		v = 1
	}
	f := res.AddFactor(FactorExplore, v)
	f.AddInput(InputImpressions, float64(p.keyImpressions))
	f.AddInput(InputSmoothedCTR, p.ctr)
	f.AddInput(InputSampledCTR, sctr)
	f.AddInput(InputSmoothedCVR, p.cvr)
	f.AddInput(InputSampledCVR, scvr)
}
