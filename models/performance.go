package models

import (
	"fmt"
	"math"

	"github.com/bidpulse/bidpulse/windows"
)

// Factor and input names of the performance policy, as shown by
// /v1/multiplier?explain=1.
const (
	FactorCTR = "ctr"
	FactorCVR = "cvr"

	InputImpressions         = "impressions"
	InputClicks              = "clicks"
	InputConversions         = "conversions"
	InputRawCTR              = "raw_ctr"
	InputPriorCTR            = "prior_ctr"
	InputSmoothedCTR         = "smoothed_ctr"
	InputCampaignCTR         = "campaign_ctr"
	InputRawCVR              = "raw_cvr"
	InputPriorCVR            = "prior_cvr"
	InputSmoothedCVR         = "smoothed_cvr"
	InputCampaignCVR         = "campaign_cvr"
	InputCampaignConversions = "campaign_conversions"
)

// PerformanceConfig is the configuration of the performance policy. Get one
// from DefaultPerformance, change what differs, and check it with Validate
// once, at load time: Performance trusts it.
type PerformanceConfig struct {
	// Window is the span whose counts feed the policy.
	Window windows.Span `yaml:"window"`
	// Elasticity is the exponent applied to the value ratio: 1 bids in
	// proportion to the expected value, below 1 damps, above 1 amplifies.
	Elasticity float64 `yaml:"elasticity"`
	// CTRPrior is the strength of the Beta prior on CTR, in
	// pseudo-impressions: a key needs about this many impressions before
	// its own clicks weigh as much as its parent's rate.
	CTRPrior float64 `yaml:"ctr_prior"`
	// CVRPrior is the strength of the Beta prior on CVR, in pseudo-clicks.
	CVRPrior float64 `yaml:"cvr_prior"`
	// Min and Max clamp the multiplier.
	Min float64 `yaml:"min"`
	Max float64 `yaml:"max"`
}

// DefaultPerformance returns the default configuration: the 1h window,
// elasticity 1, priors of 1000 pseudo-impressions and 50 pseudo-clicks, and
// the clamp [0.5, 2].
func DefaultPerformance() PerformanceConfig {
	return PerformanceConfig{
		Window:     windows.Span1h,
		Elasticity: 1,
		CTRPrior:   1000,
		CVRPrior:   50,
		Min:        0.5,
		Max:        2,
	}
}

// Validate reports the first field of c that is out of range. Every check
// is written so that NaN fails it.
func (c *PerformanceConfig) Validate() error {
	switch c.Window {
	case windows.Span1m, windows.Span5m, windows.Span15m, windows.Span1h, windows.Span24h:
	default:
		return fmt.Errorf("invalid performance window %v; want one of 1m, 5m, 15m, 1h, 24h", c.Window)
	}
	if !(c.Elasticity > 0 && c.Elasticity <= 4) {
		return fmt.Errorf("invalid performance elasticity %v; want a number in (0, 4]", c.Elasticity)
	}
	// A zero prior would let a key's raw rate, 0 for any key without a
	// click, decide its bid; an infinite one gives Inf/Inf.
	if !(c.CTRPrior > 0 && c.CTRPrior <= math.MaxFloat64) {
		return fmt.Errorf("invalid performance ctr_prior %v; want a finite number of pseudo-impressions > 0", c.CTRPrior)
	}
	if !(c.CVRPrior > 0 && c.CVRPrior <= math.MaxFloat64) {
		return fmt.Errorf("invalid performance cvr_prior %v; want a finite number of pseudo-clicks > 0", c.CVRPrior)
	}
	if !(c.Min > 0 && c.Min <= 1) {
		return fmt.Errorf("invalid performance min %v; want a number in (0, 1]", c.Min)
	}
	if !(c.Max >= 1 && c.Max <= 10) {
		return fmt.Errorf("invalid performance max %v; want a number in [1, 10]", c.Max)
	}
	return nil
}

// Input holds the counts, in the policy's window, of the key's chain:
// Chain[0] is the campaign, Chain[len-1] the key itself, in between its
// ancestors (parents) in order.
//
// Performance only reads Chain; the caller owns it and may reuse it once
// Performance returns.
type Input struct {
	Chain []windows.Counts
}

// Performance computes the multiplier of in's key into res (res is Reset
// first).
//
// It allocates nothing and is safe for concurrent use with distinct res.
// cfg must have passed Validate. The result holds the factors "ctr" and
// "cvr", whose product is res.BeforeClamp; each is (smoothed rate of the
// key / rate of the campaign) ^ Elasticity. The "cvr" factor is 1 when the
// campaign has no conversions; both are 1 when the campaign has no clicks
// or the key is the campaign. An empty chain (no data) gives 1 with no
// factors. Factor values are always finite and > 0, so the multiplier is
// always in [Min, Max]; see doc.go for the maths.
func Performance(cfg *PerformanceConfig, in *Input, res *Result) {
	res.Reset()
	res.Min, res.Max = cfg.Min, cfg.Max
	chain := in.Chain
	if len(chain) == 0 {
		res.Finish()
		return
	}
	camp := chain[0]
	key := chain[len(chain)-1]
	campCTR, campCVR := camp.CTR(), camp.CVR()

	// Walk down the chain: each level's rates are smoothed with a Beta
	// prior centred on its parent's smoothed rates. The campaign's rates
	// are its raw ones.
	ctr, cvr := campCTR, campCVR
	priorCTR, priorCVR := ctr, cvr
	for i := 1; i < len(chain); i++ {
		c := &chain[i]
		priorCTR, priorCVR = ctr, cvr
		ctr = smoothRate(float64(c.Clicks), float64(c.Impressions), cfg.CTRPrior, priorCTR)
		cvr = smoothRate(float64(c.Conversions), float64(c.Clicks), cfg.CVRPrior, priorCVR)
	}

	// The key is the campaign, or the campaign has no clicks, so no value
	// to compare with: neutral.
	neutral := len(chain) == 1 || campCTR == 0

	v := 1.0
	if !neutral {
		v = lift(ctr, campCTR, cfg.Elasticity)
	}
	f := res.AddFactor(FactorCTR, v)
	f.AddInput(InputImpressions, float64(key.Impressions))
	f.AddInput(InputClicks, float64(key.Clicks))
	f.AddInput(InputRawCTR, key.CTR())
	f.AddInput(InputPriorCTR, priorCTR)
	f.AddInput(InputSmoothedCTR, ctr)
	f.AddInput(InputCampaignCTR, campCTR)

	if camp.Conversions == 0 {
		// Value per impression is CTR alone.
		f = res.AddFactor(FactorCVR, 1)
		f.AddInput(InputCampaignConversions, 0)
		res.Finish()
		return
	}
	v = 1
	if !neutral && campCVR > 0 {
		v = lift(cvr, campCVR, cfg.Elasticity)
	}
	f = res.AddFactor(FactorCVR, v)
	f.AddInput(InputClicks, float64(key.Clicks))
	f.AddInput(InputConversions, float64(key.Conversions))
	f.AddInput(InputRawCVR, key.CVR())
	f.AddInput(InputPriorCVR, priorCVR)
	f.AddInput(InputSmoothedCVR, cvr)
	f.AddInput(InputCampaignCVR, campCVR)
	res.Finish()
}

// smoothRate returns the posterior mean of a rate with hits successes out
// of trials, under a Beta prior of strength prior (pseudo-trials) centred
// on mean, clamped to [0, 1]. prior > 0 keeps the denominator positive.
//
// The explicit float64 conversion forbids a fused multiply-add, so that
// every architecture, and so every replica, computes the same bits.
func smoothRate(hits, trials, prior, mean float64) float64 {
	r := (hits + float64(prior*mean)) / (trials + prior)
	if !(r >= 0) { // NaN too, which valid inputs cannot give
		return 0
	}
	if r > 1 {
		return 1
	}
	return r
}

// lift returns (rate/base)^e for base > 0, kept finite and > 0: a value of 0
// would read as an opt-out, and underflow is the only way to reach it.
func lift(rate, base, e float64) float64 {
	v := rate / base
	if e != 1 {
		v = math.Pow(v, e)
	}
	switch {
	case v > math.MaxFloat64:
		return math.MaxFloat64
	case v >= math.SmallestNonzeroFloat64:
		return v
	case math.IsNaN(v):
		return 1
	default:
		return math.SmallestNonzeroFloat64
	}
}
