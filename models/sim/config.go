// Package sim simulates campaigns against the real windows.Store and the
// bidding models of package models, in simulated time, with synthetic
// traffic of known true click-through and conversion rates, conversion
// delays and traffic curves. It proves the policies in tests (ranking,
// pacing, the CPA controller, delay correction, the anomaly hold) and is
// what `bidpulse simulate` prints.
//
// The simulator plays the part of bidder: it owns a Store, a CampaignState
// and a DelayHistogram per campaign and a KeyState per placement, ticks
// them on a control tick, and asks models.Evaluate for a multiplier every
// step. The market is a second-price auction against a log-normal
// competing price; conversions arrive after delays drawn from a mixture of
// exponentials. Every draw comes from a models.Rand seeded by Config.Seed:
// a run is deterministic.
package sim

import (
	"fmt"
	"time"

	"github.com/bidpulse/bidpulse/models"
)

// Config describes one simulation.
type Config struct {
	// Name of the scenario, for the report.
	Name string
	// Seed of every random draw.
	Seed uint64
	// Start of the simulated time, and Duration of the run.
	Start    time.Time
	Duration time.Duration
	// Step is the granularity of traffic (events of a step share a
	// timestamp; default 10 s). Tick is the control tick (default 1 min).
	Step time.Duration
	Tick time.Duration
	// MeasureFrom is the warm-up: multipliers are averaged from then on.
	MeasureFrom time.Duration
	// HardMax is the global hard cap given to every campaign's policy.
	HardMax float64
	// Campaigns to simulate.
	Campaigns []CampaignSpec
}

// CampaignSpec is one synthetic campaign.
type CampaignSpec struct {
	Name string
	// Policy is the campaign's bidding policy; Run sets its HardMax and
	// validates it.
	Policy models.CampaignPolicy
	// Requests is the number of bid requests per hour at curve level 1.
	Requests float64
	// Curve is the traffic level by local hour of day in the policy's
	// time zone (all zero: flat 1).
	Curve [24]float64
	// Bursts multiply the traffic over a time range.
	Bursts []Burst
	// BaseBid is the bid per impression at multiplier 1 (account
	// currency); the competing price is log-normal with median
	// MarketMedian and log standard deviation MarketSigma, and the winner
	// pays it (second price).
	BaseBid      float64
	MarketMedian float64
	MarketSigma  float64
	// Placements of the campaign, each with its share of the requests and
	// its true rates.
	Placements []PlacementSpec
	// Delay is the true click-to-conversion delay: a mixture of
	// exponentials (empty: immediate conversions).
	Delay []DelayComponent
	// HistoryDays of steady traffic (at multiplier 1) precede Start: their
	// conversion delays fill the campaign's histogram, their last 24 hours
	// fill the windows, and their late conversions arrive during the run,
	// so that the campaign starts in its steady state.
	HistoryDays int
	// Fraud injects click bursts (clicks without impressions or
	// conversions).
	Fraud []FraudSpec
	// Probes measure a placement's 1h CVR, naive and corrected.
	Probes []Probe
}

// PlacementSpec is one placement of a campaign.
type PlacementSpec struct {
	Name string
	// Share of the campaign's bid requests.
	Share float64
	// CTR and CVR are the true rates; Value is the value of a conversion.
	CTR, CVR, Value float64
	// LaunchAfter is when the placement starts getting traffic (0: from
	// the start and in the history).
	LaunchAfter time.Duration
	// Sparse marks a placement expected to stay near 1 (little traffic).
	Sparse bool
}

// DelayComponent is one exponential of the delay mixture.
type DelayComponent struct {
	Share float64
	Mean  time.Duration
}

// Burst multiplies the campaign's traffic by Factor from From to To
// (offsets from Start).
type Burst struct {
	From, To time.Duration
	Factor   float64
}

// FraudSpec adds ClicksPerMinute bot clicks to a placement from From to To.
type FraudSpec struct {
	Placement       string
	From, To        time.Duration
	ClicksPerMinute float64
}

// Probe measures the CVR of a placement at an offset from Start.
type Probe struct {
	Placement string
	At        time.Duration
}

// check validates cfg and fills its defaults.
func (cfg *Config) check() error {
	if cfg.Duration <= 0 {
		return fmt.Errorf("invalid duration %s; want > 0", cfg.Duration)
	}
	if cfg.Step <= 0 {
		cfg.Step = 10 * time.Second
	}
	if cfg.Tick <= 0 {
		cfg.Tick = time.Minute
	}
	if cfg.Tick%cfg.Step != 0 {
		return fmt.Errorf("invalid tick %s; want a multiple of the step %s", cfg.Tick, cfg.Step)
	}
	if cfg.Start.IsZero() {
		cfg.Start = time.Date(2025, 3, 3, 0, 0, 0, 0, time.UTC)
	}
	if len(cfg.Campaigns) == 0 {
		return fmt.Errorf("no campaigns")
	}
	for i := range cfg.Campaigns {
		c := &cfg.Campaigns[i]
		c.Policy.HardMax = cfg.HardMax
		if err := c.Policy.Validate(); err != nil {
			return fmt.Errorf("campaign %s: %w", c.Name, err)
		}
		if len(c.Placements) == 0 {
			return fmt.Errorf("campaign %s: no placements", c.Name)
		}
		if !(c.BaseBid > 0 && c.MarketMedian > 0 && c.MarketSigma > 0) {
			return fmt.Errorf("campaign %s: base bid, market median and sigma must be > 0", c.Name)
		}
		for _, p := range c.Placements {
			if !(p.CTR >= 0 && p.CTR <= 1 && p.CVR >= 0 && p.CVR <= 1 && p.Share >= 0) {
				return fmt.Errorf("campaign %s: placement %s: rates must be in [0, 1], the share >= 0", c.Name, p.Name)
			}
		}
		for _, f := range c.Fraud {
			if c.placement(f.Placement) < 0 {
				return fmt.Errorf("campaign %s: fraud on unknown placement %q", c.Name, f.Placement)
			}
		}
		for _, p := range c.Probes {
			if c.placement(p.Placement) < 0 {
				return fmt.Errorf("campaign %s: probe of unknown placement %q", c.Name, p.Placement)
			}
		}
	}
	return nil
}

func (c *CampaignSpec) placement(name string) int {
	for i := range c.Placements {
		if c.Placements[i].Name == name {
			return i
		}
	}
	return -1
}

// level returns the traffic level at t: the curve at the local hour times
// the active bursts.
func (c *CampaignSpec) level(t time.Time, off time.Duration) float64 {
	v := 1.0
	flat := true
	for _, x := range c.Curve {
		if x != 0 {
			flat = false
			break
		}
	}
	if !flat {
		loc := c.Policy.Location
		if loc == nil {
			loc = time.UTC
		}
		v = c.Curve[t.In(loc).Hour()]
	}
	for _, b := range c.Bursts {
		if off >= b.From && off < b.To {
			v *= b.Factor
		}
	}
	return v
}
