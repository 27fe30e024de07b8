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
	InputPriorStrength       = "prior_strength"
	InputCILow               = "ci_low"
	InputCIHigh              = "ci_high"
	InputEffectiveClicks     = "effective_clicks"
)

// CIZ is the normal quantile of the evidence intervals reported with the
// smoothed rates: 1.645, a 90% interval.
const CIZ = 1.6448536269514722

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
	// EmpiricalBayes bounds the prior strengths fitted from sibling keys
	// by FitPriors. Its zero value disables the fit (CTRPrior and CVRPrior
	// apply everywhere).
	EmpiricalBayes EBConfig `yaml:"empirical_bayes"`
}

// DefaultPerformance returns the default configuration: the 1h window,
// elasticity 1, priors of 1000 pseudo-impressions and 50 pseudo-clicks, the
// clamp [0.5, 2], and the empirical-Bayes fit on (DefaultEB).
func DefaultPerformance() PerformanceConfig {
	return PerformanceConfig{
		Window:         windows.Span1h,
		Elasticity:     1,
		CTRPrior:       1000,
		CVRPrior:       50,
		Min:            0.5,
		Max:            2,
		EmpiricalBayes: DefaultEB(),
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
	return c.EmpiricalBayes.Validate()
}

// Input holds what a policy reads for one key: the counts, in the policy's
// window, of the key's chain, and optionally more.
//
// Chain[0] is the campaign, Chain[len-1] the key itself, in between its
// ancestors (parents) in order. Only Chain is required; Performance reads
// Chain and Strengths, Evaluate and KeyState.Tick read every field.
//
// The policies only read Input; the caller owns it and its slices and may
// reuse them once the call returns.
type Input struct {
	Chain []windows.Counts

	// Spans, when not nil, holds every span of each level of Chain, in the
	// same order (as windows.Store.Read fills them). It enables the delay
	// correction of conversion rates, the anomaly hold and the staleness
	// check; without it they are skipped.
	Spans []Spans
	// Strengths, when not nil, holds the prior strengths fitted by
	// FitPriors for each level of Chain (entry i: the prior of level i
	// among its siblings under level i-1; entry 0 is unused). A zero
	// strength means the configured CTRPrior or CVRPrior.
	Strengths []Strength

	// NowMs is the time of the request, Unix ms (modifiers by hour and
	// season, staleness, the maximum step, the pacing day).
	NowMs int64
	// LastEventMs is the time of the key's newest event; 0 when unknown,
	// and the staleness check then uses Spans.
	LastEventMs int64
	// Device and Country are the request's values, normalised like events
	// (device lower-case, country upper-case); empty when absent. Only
	// read, never kept.
	Device, Country []byte
	// SpentTodayMicros is the campaign's live spend since the start of its
	// current day, when SpendKnown; pacing answers 0 as soon as it reaches
	// the budget, without waiting for the next control tick.
	SpentTodayMicros uint64
	SpendKnown       bool
	// Hourly, read by KeyState.Tick only (never on the bid path), holds
	// the key's 24 hourly buckets (ReadBuckets), so that the delay
	// correction knows the age of its older clicks; nil: approximated
	// from Spans.
	Hourly *[24]windows.Counts
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
//
// Performance reads in.Chain and in.Strengths only: no delay correction,
// guardrail or modifier (Evaluate adds those).
func Performance(cfg *PerformanceConfig, in *Input, res *Result) {
	res.Reset()
	res.Min, res.Max = cfg.Min, cfg.Max
	var out perfOut
	performance(cfg, in, nil, res, &out)
	res.Finish()
}

// perfOut is what performance tells Evaluate besides the factors.
type perfOut struct {
	// live is the product of the ctr and cvr factors.
	live float64
	// neutral: the key is its campaign, or the campaign has no clicks.
	neutral bool
	// The key's smoothed rates and their Beta posterior parameters, and
	// the campaign's rates.
	ctr, cvr               float64
	ctrA, ctrB, cvrA, cvrB float64
	campCTR, campCVR       float64
	// useCVR: the campaign has conversions, so the value is ctr x cvr.
	useCVR bool
	// keyImpressions of the key in the window.
	keyImpressions uint64
}

// delayView is what the delay correction of a chain needs.
type delayView struct {
	d       *DelayState
	maxCorr float64
	// campAge and keyAge are the times since the campaign and the key
	// were first seen (-1: unknown); campOld and keyOld their effective
	// clicks an hour old and more from the tick (-1: unknown); campTail the
	// campaign's effective clicks older than 24 h from its click history
	// (-1: unknown).
	campAge, keyAge int64
	campOld, keyOld float64
	campTail        float64
}

// trials returns the effective clicks of chain level i of n: below the
// campaign, a level's clicks older than a day follow the campaign's
// volume history.
func (v *delayView) trials(sp *Spans, i, n int) float64 {
	if i == 0 {
		return v.d.effective(sp, v.campAge, v.campOld, v.campTail, v.maxCorr)
	}
	age, old := int64(-1), -1.0
	if i == n-1 {
		age, old = v.keyAge, v.keyOld
	}
	return v.d.effective(sp, age, old, v.d.keyTail(sp), v.maxCorr)
}

// performance adds the "ctr" and "cvr" factors of in's key to res and fills
// out. With dv not nil and in.Spans set, each level's clicks in the CVR
// are replaced by its effective clicks (delay correction).
func performance(cfg *PerformanceConfig, in *Input, dv *delayView, res *Result, out *perfOut) {
	*out = perfOut{live: 1, neutral: true, ctr: 0, cvr: 0}
	chain := in.Chain
	if len(chain) == 0 {
		return
	}
	corrected := dv != nil && dv.d != nil && dv.d.Ready && len(in.Spans) == len(chain) && dv.maxCorr >= 1
	camp := chain[0]
	key := chain[len(chain)-1]
	campTrials := float64(camp.Clicks)
	if corrected {
		campTrials = dv.trials(&in.Spans[0], 0, len(chain))
	}
	campCTR := camp.CTR()
	campCVR := rawRate(float64(camp.Conversions), campTrials)

	// Walk down the chain: each level's rates are smoothed with a Beta
	// prior centred on its parent's smoothed rates. The campaign's rates
	// are its raw ones.
	ctr, cvr := campCTR, campCVR
	priorCTR, priorCVR := ctr, cvr
	sCTR, sCVR := 0.0, 0.0
	keyTrials := campTrials
	for i := 1; i < len(chain); i++ {
		c := &chain[i]
		priorCTR, priorCVR = ctr, cvr
		sCTR, sCVR = cfg.CTRPrior, cfg.CVRPrior
		if i < len(in.Strengths) {
			if s := in.Strengths[i].CTR; s > 0 {
				sCTR = s
			}
			if s := in.Strengths[i].CVR; s > 0 {
				sCVR = s
			}
		}
		trials := float64(c.Clicks)
		if corrected {
			trials = dv.trials(&in.Spans[i], i, len(chain))
		}
		keyTrials = trials
		ctr = smoothRate(float64(c.Clicks), float64(c.Impressions), sCTR, priorCTR)
		cvr = smoothRate(float64(c.Conversions), trials, sCVR, priorCVR)
	}

	// The key is the campaign, or the campaign has no clicks, so no value
	// to compare with: neutral.
	neutral := len(chain) == 1 || campCTR == 0
	out.neutral = neutral
	out.ctr, out.cvr, out.campCTR, out.campCVR = ctr, cvr, campCTR, campCVR
	out.keyImpressions = key.Impressions
	out.ctrA, out.ctrB = betaParams(float64(key.Clicks), float64(key.Impressions), sCTR, priorCTR)
	out.cvrA, out.cvrB = betaParams(float64(key.Conversions), keyTrials, sCVR, priorCVR)

	v := 1.0
	if !neutral {
		v = lift(ctr, campCTR, cfg.Elasticity)
	}
	live := v
	lo, hi := interval(ctr, float64(key.Impressions)+sCTR)
	f := res.AddFactor(FactorCTR, v)
	f.AddInput(InputImpressions, float64(key.Impressions))
	f.AddInput(InputClicks, float64(key.Clicks))
	f.AddInput(InputRawCTR, key.CTR())
	f.AddInput(InputPriorCTR, priorCTR)
	f.AddInput(InputPriorStrength, sCTR)
	f.AddInput(InputSmoothedCTR, ctr)
	f.AddInput(InputCILow, lo)
	f.AddInput(InputCIHigh, hi)
	f.AddInput(InputCampaignCTR, campCTR)

	if camp.Conversions == 0 {
		// Value per impression is CTR alone.
		f = res.AddFactor(FactorCVR, 1)
		f.AddInput(InputCampaignConversions, 0)
		out.live = live
		return
	}
	out.useCVR = true
	v = 1
	if !neutral && campCVR > 0 {
		v = lift(cvr, campCVR, cfg.Elasticity)
	}
	out.live = live * v
	lo, hi = interval(cvr, keyTrials+sCVR)
	f = res.AddFactor(FactorCVR, v)
	f.AddInput(InputClicks, float64(key.Clicks))
	if corrected {
		f.AddInput(InputEffectiveClicks, keyTrials)
	}
	f.AddInput(InputConversions, float64(key.Conversions))
	f.AddInput(InputRawCVR, key.CVR())
	f.AddInput(InputPriorCVR, priorCVR)
	f.AddInput(InputPriorStrength, sCVR)
	f.AddInput(InputSmoothedCVR, cvr)
	f.AddInput(InputCILow, lo)
	f.AddInput(InputCIHigh, hi)
	f.AddInput(InputCampaignCVR, campCVR)
}

// rawRate returns hits/trials in [0, 1], 0 when trials is not > 0.
func rawRate(hits, trials float64) float64 {
	if !(trials > 0) || hits <= 0 {
		return 0
	}
	if hits >= trials {
		return 1
	}
	return hits / trials
}

// smoothRate returns the posterior mean of a rate with hits successes out
// of trials, under a Beta prior of strength prior (pseudo-trials) centred
// on mean, clamped to [0, 1]. The denominator is kept positive: prior > 0
// for every level below the campaign.
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

// betaParams returns the Beta posterior (a, b) of smoothRate's inputs,
// each kept > 0 so that it can be sampled.
func betaParams(hits, trials, prior, mean float64) (a, b float64) {
	const tiny = 1e-6
	a = hits + float64(prior*mean)
	b = trials - hits + float64(prior*(1-mean))
	return math.Max(a, tiny), math.Max(b, tiny)
}

// interval returns the CIZ interval of a rate r estimated from n
// (pseudo-)trials, from the normal approximation of its Beta posterior,
// within [0, 1]. With n not > 0 it is [0, 1].
func interval(r, n float64) (lo, hi float64) {
	if !(n > 0) {
		return 0, 1
	}
	h := CIZ * math.Sqrt(r*(1-r)/(n+1))
	return math.Max(r-h, 0), math.Min(r+h, 1)
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
