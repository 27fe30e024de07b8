package models

import (
	"fmt"
	"math"
	"time"
)

// DelayBins is the number of bins of a DelayHistogram.
const DelayBins = 31

// delayEdges are the bin edges of every DelayHistogram, in ms: bin i holds
// the delays in [delayEdges[i], delayEdges[i+1]); delays of 30 days or more
// go to the last bin. Finer where most conversions arrive (the first hour),
// coarser in the tail. Fixed, so that histograms of every replica merge.
var delayEdges = [DelayBins + 1]int64{
	0, 30e3, 60e3, 120e3, 180e3, 300e3, 450e3, 600e3, 900e3, 1200e3, // 0..20 min
	1800e3, 2700e3, 3600e3, 5400e3, 7200e3, 3 * 3600e3, 4 * 3600e3, 6 * 3600e3, 8 * 3600e3, 12 * 3600e3, // 30 min..12 h
	16 * 3600e3, 24 * 3600e3, 36 * 3600e3, 48 * 3600e3, 72 * 3600e3, 96 * 3600e3, 120 * 3600e3, 168 * 3600e3, 240 * 3600e3, 336 * 3600e3, // 16 h..14 d
	504 * 3600e3, 720 * 3600e3, // 21 d, 30 d
}

// DelayEdge returns the lower edge of bin i of a DelayHistogram, and for
// i == DelayBins the upper edge of the last one (30 days).
func DelayEdge(i int) time.Duration {
	return time.Duration(delayEdges[i]) * time.Millisecond
}

// DelayHistogram is the learned click-to-conversion delay distribution of a
// campaign: the delays (conversion ts - click_ts) recorded per fixed bin.
//
// Each delay is recorded with a weight, ideally 1 / the campaign's clicks
// per hour at its click time (CampaignState.ClickWeight): the conversions
// that arrive with a delay d come from the clicks made d earlier, so
// unweighted counts follow the click volume of the past (after a campaign
// halves its volume, the conversions of its busier past over-represent the
// long delays for weeks). Weighted, the histogram estimates the delay
// distribution per click whatever the volume did. Weight 1 everywhere is
// right for steady traffic.
//
// It is plain data (no pointers; JSON-marshalable), so bidder can
// checkpoint it with the windows and replicas that record the same
// conversions hold the same histogram. It is not safe for concurrent use:
// the owner serialises Add (or keeps one per ingest shard and Merges them
// on the control tick). StartMs is when recording began: the CDF corrects
// for delays longer than the recording could have seen (see CDF).
type DelayHistogram struct {
	// Weights is the sum of the weights of the delays of each bin.
	Weights [DelayBins]float64 `json:"weights"`
	// N is the number of delays recorded.
	N       uint64 `json:"n"`
	StartMs int64  `json:"start_ms"`
}

// delayBin returns the bin of a delay in ms; negative delays (clock skew)
// count as 0.
func delayBin(d int64) int {
	if d <= 0 {
		return 0
	}
	lo, hi := 0, DelayBins-1
	for lo < hi {
		mid := (lo + hi + 1) / 2
		if delayEdges[mid] <= d {
			lo = mid
		} else {
			hi = mid - 1
		}
	}
	return lo
}

// Add records one conversion at convMs whose click was at clickMs (both
// Unix ms) with weight w (see DelayHistogram; a weight that is not a
// finite number > 0 counts as 1). It allocates nothing. The earliest convMs
// recorded becomes StartMs.
func (h *DelayHistogram) Add(clickMs, convMs int64, w float64) {
	if !(w > 0 && w <= math.MaxFloat64) {
		w = 1
	}
	h.Weights[delayBin(convMs-clickMs)] += w
	if h.N < math.MaxUint64 {
		h.N++
	}
	if convMs > 0 && (h.StartMs == 0 || convMs < h.StartMs) {
		h.StartMs = convMs
	}
}

// Merge adds o's delays to h and keeps the earlier StartMs.
func (h *DelayHistogram) Merge(o *DelayHistogram) {
	for i := range h.Weights {
		h.Weights[i] += o.Weights[i]
	}
	h.N = addSat(h.N, o.N)
	if o.StartMs > 0 && (h.StartMs == 0 || o.StartMs < h.StartMs) {
		h.StartMs = o.StartMs
	}
}

// Samples returns the number of delays recorded.
func (h *DelayHistogram) Samples() uint64 {
	return h.N
}

func addSat(a, b uint64) uint64 {
	if s := a + b; s >= a {
		return s
	}
	return math.MaxUint64
}

// maxExposureBoost bounds the censoring correction of one bin.
const maxExposureBoost = 20

// CDF fills cdf with the distribution function of the delays at each bin
// edge (cdf[0] = 0, cdf[DelayBins] = 1), linear in between.
//
// Recording for T = nowMs - StartMs cannot have seen a delay d from clicks
// made in the last d of it: with traffic steady since StartMs, a delay d
// was observable over T - d, not T. Each bin is weighted by T/(T - d) at
// its middle (at most 20x), which removes that bias from a young
// histogram; an old one (T much longer than the delays) is unchanged.
// Delays longer than T are not seen at all: the fallback distribution
// covers the campaign until enough samples arrive.
func (h *DelayHistogram) CDF(nowMs int64, cdf *[DelayBins + 1]float64) {
	T := float64(nowMs - h.StartMs)
	var w [DelayBins]float64
	total := 0.0
	for i, c := range h.Weights {
		x := c
		if h.StartMs > 0 && T > 0 {
			mid := float64(delayEdges[i]+delayEdges[i+1]) / 2
			boost := float64(maxExposureBoost)
			if T-mid > T/maxExposureBoost {
				boost = T / (T - mid)
			}
			x *= boost
		}
		w[i] = x
		total += x
	}
	cdf[0] = 0
	acc := 0.0
	for i := range w {
		acc += w[i]
		if total > 0 {
			cdf[i+1] = acc / total
		} else {
			cdf[i+1] = float64(i+1) / DelayBins
		}
	}
	cdf[DelayBins] = 1
}

// DelayPoint is one point of a fixed delay distribution: Share of the
// conversions arrive within After of their click.
type DelayPoint struct {
	After time.Duration `yaml:"after" json:"after"`
	Share float64       `yaml:"share" json:"share"`
}

// Delay attribution modes (DelayConfig.CountedAt).
const (
	// CountedAtConversion: the windows count a conversion at its own ts
	// (the bidpulse event contract).
	CountedAtConversion = "conversion"
	// CountedAtClick: the windows count a conversion at its click_ts.
	CountedAtClick = "click"
)

// DelayConfig configures the delay correction of conversion rates.
type DelayConfig struct {
	// Enabled turns the correction on.
	Enabled bool `yaml:"enabled"`
	// MinSamples is the number of recorded delays from which the learned
	// histogram replaces Fallback.
	MinSamples uint64 `yaml:"min_samples"`
	// CountedAt says at which time the windows count conversions:
	// "conversion" (their own ts, the default) or "click" (their click_ts).
	CountedAt string `yaml:"counted_at"`
	// MaxCorrection bounds the correction: the effective clicks stay within
	// [clicks/MaxCorrection, clicks*MaxCorrection].
	MaxCorrection float64 `yaml:"max_correction"`
	// Fallback is the distribution used until MinSamples delays are
	// recorded: points with increasing After and non-decreasing Share, the
	// last Share 1; linear in between, from (0, 0).
	Fallback []DelayPoint `yaml:"fallback"`
}

// DefaultDelay returns the default delay configuration: enabled, 500
// samples to trust the histogram, conversions counted at their own time, a
// correction of at most 10x, and a fallback after Chapelle (KDD 2014):
// 35% of conversions within 1 h, 55% within 1 d, 85% within 7 d, all
// within 30 d.
func DefaultDelay() DelayConfig {
	return DelayConfig{
		Enabled:       true,
		MinSamples:    500,
		CountedAt:     CountedAtConversion,
		MaxCorrection: 10,
		Fallback: []DelayPoint{
			{After: time.Hour, Share: 0.35},
			{After: 24 * time.Hour, Share: 0.55},
			{After: 7 * 24 * time.Hour, Share: 0.85},
			{After: 30 * 24 * time.Hour, Share: 1},
		},
	}
}

// Validate reports the first invalid field of c, named as in YAML.
func (c *DelayConfig) Validate() error {
	if c.CountedAt != CountedAtConversion && c.CountedAt != CountedAtClick {
		return fmt.Errorf("invalid delay.counted_at %q; want conversion or click", c.CountedAt)
	}
	if !(c.MaxCorrection >= 1 && c.MaxCorrection <= 1000) {
		return fmt.Errorf("invalid delay.max_correction %v; want a number in [1, 1000]", c.MaxCorrection)
	}
	if len(c.Fallback) == 0 {
		return fmt.Errorf("invalid delay.fallback: empty; want points {after, share} ending with share 1")
	}
	var prev DelayPoint
	for i, p := range c.Fallback {
		if p.After <= prev.After {
			return fmt.Errorf("invalid delay.fallback[%d].after %s; want more than %s", i, p.After, prev.After)
		}
		if !(p.Share >= prev.Share && p.Share <= 1) {
			return fmt.Errorf("invalid delay.fallback[%d].share %v; want a number in [%v, 1]", i, p.Share, prev.Share)
		}
		prev = p
	}
	if prev.Share != 1 {
		return fmt.Errorf("invalid delay.fallback[%d].share %v; the last point must have share 1", len(c.Fallback)-1, prev.Share)
	}
	return nil
}

// fallbackCDF fills cdf from c.Fallback at the bin edges.
func (c *DelayConfig) fallbackCDF(cdf *[DelayBins + 1]float64) {
	for i, e := range delayEdges {
		cdf[i] = pointsCDF(c.Fallback, float64(e))
	}
}

// pointsCDF interpolates the points linearly from (0, 0); 1 past the last.
func pointsCDF(pts []DelayPoint, ms float64) float64 {
	x0, y0 := 0.0, 0.0
	for _, p := range pts {
		x1 := float64(p.After.Milliseconds())
		if ms <= x1 {
			if x1 == x0 {
				return p.Share
			}
			return y0 + (p.Share-y0)*(ms-x0)/(x1-x0)
		}
		x0, y0 = x1, p.Share
	}
	return 1
}
