package sim

import (
	"fmt"
	"strings"
	"time"
)

// Report is the outcome of a run: per campaign, the placements' true
// values and served multipliers, the days' spend, hourly controller
// series, anomaly holds and CVR probes. Durations are offsets from Start,
// in nanoseconds in JSON.
type Report struct {
	Name      string           `json:"name"`
	Seed      uint64           `json:"seed"`
	Start     time.Time        `json:"start"`
	Duration  time.Duration    `json:"duration_ns"`
	Campaigns []CampaignReport `json:"campaigns"`
	// Claims are what a built-in scenario proves, checked (none for
	// another configuration).
	Claims []Claim `json:"claims"`
}

// CampaignReport is one campaign's outcome.
type CampaignReport struct {
	Name   string `json:"name"`
	Policy string `json:"policy"`
	// Target of the goal policy, Budget of pacing (0: none).
	Target     float64           `json:"target"`
	Budget     float64           `json:"budget"`
	Placements []PlacementReport `json:"placements"`
	// Spearman is the rank correlation, over the placements neither sparse
	// nor launched late, between their true value per impression and their
	// mean multiplier after the warm-up; 0 with fewer than 3 or when
	// their true values are all equal (nothing to rank), and then
	// SpearmanPlacements, the number of placements ranked, is 0 too.
	Spearman           float64       `json:"spearman"`
	SpearmanPlacements int           `json:"spearman_placements"`
	Days               []DayReport   `json:"days"`
	Hours              []HourReport  `json:"hours"`
	Holds              []HoldReport  `json:"holds"`
	Probes             []ProbeReport `json:"probes"`
	// SpendCheckMicros is the largest difference seen on a tick between
	// the spend since local midnight computed from the windows' hourly
	// buckets (what pacing used) and the simulator's own count.
	SpendCheckMicros uint64 `json:"spend_check_micros"`
}

// PlacementReport is one placement's outcome.
type PlacementReport struct {
	Name    string  `json:"name"`
	TrueCTR float64 `json:"true_ctr"`
	TrueCVR float64 `json:"true_cvr"`
	// TrueValue is CTR x CVR: conversions per impression.
	TrueValue   float64 `json:"true_value"`
	Sparse      bool    `json:"sparse"`
	Launched    bool    `json:"launched"`
	Impressions uint64  `json:"impressions"`
	Clicks      uint64  `json:"clicks"`
	Convs       uint64  `json:"conversions"`
	// MeanMultiplier, MinMultiplier and MaxMultiplier of the multiplier
	// served after the warm-up (per step).
	MeanMultiplier float64 `json:"mean_multiplier"`
	MinMultiplier  float64 `json:"min_multiplier"`
	MaxMultiplier  float64 `json:"max_multiplier"`
}

// DayReport is one local day of a paced campaign.
type DayReport struct {
	Date string `json:"date"`
	// Spent and Budget in account currency; Share = Spent/Budget.
	Spent  float64 `json:"spent"`
	Budget float64 `json:"budget"`
	Share  float64 `json:"share"`
	// Full says the whole day was simulated.
	Full bool `json:"full"`
	// ExhaustedAt is the local time the budget ran out ("" if it did not).
	ExhaustedAt string `json:"exhausted_at"`
}

// HourReport is one simulated hour of a campaign.
type HourReport struct {
	// At is the end of the hour.
	At          time.Duration `json:"at_ns"`
	Impressions uint64        `json:"impressions"`
	Clicks      uint64        `json:"clicks"`
	Spend       float64       `json:"spend"`
	// TrueCPA is the spend over the conversions the hour's clicks will
	// bring (clicks x true CVR); 0 without clicks.
	TrueCPA float64 `json:"true_cpa"`
	// ObservedCPA is the goal controller's smoothed observation at the
	// end of the hour, GoalFactor and PacingFactor the controllers'
	// factors then.
	ObservedCPA  float64 `json:"observed_cpa"`
	GoalFactor   float64 `json:"goal_factor"`
	PacingFactor float64 `json:"pacing_factor"`
}

// HoldReport is one anomaly hold of a placement.
type HoldReport struct {
	Placement string `json:"placement"`
	// From and To (0: still held at the end).
	From time.Duration `json:"from_ns"`
	To   time.Duration `json:"to_ns"`
	// Before is the multiplier served on the tick before the hold, MaxHeld
	// the largest served during it, MaxUnguarded the largest the policy
	// would have served without guardrails.
	Before       float64 `json:"before"`
	MaxHeld      float64 `json:"max_held"`
	MaxUnguarded float64 `json:"max_unguarded"`
}

// ProbeReport is one measure of a placement's 1h CVR.
type ProbeReport struct {
	Placement   string        `json:"placement"`
	At          time.Duration `json:"at_ns"`
	Clicks      uint64        `json:"clicks"`
	Conversions uint64        `json:"conversions"`
	// EffectiveClicks is the delay-corrected denominator.
	EffectiveClicks float64 `json:"effective_clicks"`
	// Truth is the placement's true CVR; Naive = conversions/clicks;
	// Corrected = conversions/EffectiveClicks.
	Truth     float64 `json:"truth"`
	Naive     float64 `json:"naive"`
	Corrected float64 `json:"corrected"`
}

// Text formats the report for a terminal.
func (r *Report) Text() string {
	var b strings.Builder
	fmt.Fprintf(&b, "== %s (seed %d, %s from %s)\n", r.Name, r.Seed, r.Duration, r.Start.Format(time.RFC3339))
	for i := range r.Campaigns {
		c := &r.Campaigns[i]
		fmt.Fprintf(&b, "campaign %s: policy %s", c.Name, c.Policy)
		if c.Target > 0 {
			fmt.Fprintf(&b, ", target %.4g", c.Target)
		}
		if c.Budget > 0 {
			fmt.Fprintf(&b, ", daily budget %.2f", c.Budget)
		}
		b.WriteString("\n")
		if len(c.Placements) > 1 {
			fmt.Fprintf(&b, "  %-12s %8s %8s %10s %10s %8s %8s %8s %8s\n", "placement", "ctr", "cvr", "value/imp", "imps", "clicks", "mean x", "min x", "max x")
			for _, p := range c.Placements {
				tag := ""
				if p.Sparse {
					tag = " (sparse)"
				}
				if p.Launched {
					tag = " (launched)"
				}
				fmt.Fprintf(&b, "  %-12s %8.4f %8.4f %10.6f %10d %8d %8.3f %8.3f %8.3f%s\n", p.Name, p.TrueCTR, p.TrueCVR, p.TrueValue,
					p.Impressions, p.Clicks, p.MeanMultiplier, p.MinMultiplier, p.MaxMultiplier, tag)
			}
			if c.SpearmanPlacements > 0 {
				fmt.Fprintf(&b, "  spearman(true value, mean multiplier) = %.3f over %d placements\n", c.Spearman, c.SpearmanPlacements)
			}
		}
		for _, d := range c.Days {
			full := ""
			if !d.Full {
				full = " (partial day)"
			}
			ex := ""
			if d.ExhaustedAt != "" {
				ex = ", exhausted at " + d.ExhaustedAt
			}
			fmt.Fprintf(&b, "  day %s: spent %.2f of %.2f = %.2f%%%s%s\n", d.Date, d.Spent, d.Budget, 100*d.Share, ex, full)
		}
		if c.Budget > 0 {
			fmt.Fprintf(&b, "  spend from the windows' hourly buckets vs counted: max difference %.6f\n", float64(c.SpendCheckMicros)/1e6)
		}
		if c.Target > 0 || c.Budget > 0 {
			fmt.Fprintf(&b, "  %6s %9s %7s %9s %9s %9s %7s %7s\n", "hour", "imps", "clicks", "spend", "true cpa", "obs cpa", "goal x", "pace x")
			for _, h := range c.Hours {
				fmt.Fprintf(&b, "  %6s %9d %7d %9.2f %9.3f %9.3f %7.3f %7.3f\n", fmtOffset(h.At), h.Impressions, h.Clicks, h.Spend, h.TrueCPA, h.ObservedCPA, h.GoalFactor, h.PacingFactor)
			}
		}
		for _, h := range c.Holds {
			to := "end"
			if h.To > 0 {
				to = fmtOffset(h.To)
			}
			fmt.Fprintf(&b, "  anomaly hold on %s from %s to %s: before %.3f, max served %.3f, max unguarded %.3f\n",
				h.Placement, fmtOffset(h.From), to, h.Before, h.MaxHeld, h.MaxUnguarded)
		}
		for _, p := range c.Probes {
			fmt.Fprintf(&b, "  1h cvr of %s at %s: truth %.4f, naive %.4f (%+.0f%%), corrected %.4f (%+.1f%%); %d clicks, %.0f effective, %d conversions\n",
				p.Placement, fmtOffset(p.At), p.Truth, p.Naive, 100*(p.Naive/p.Truth-1), p.Corrected, 100*(p.Corrected/p.Truth-1),
				p.Clicks, p.EffectiveClicks, p.Conversions)
		}
	}
	for _, c := range r.Claims {
		b.WriteString(c.Line("claim"))
	}
	return b.String()
}

func fmtOffset(d time.Duration) string {
	h := int(d / time.Hour)
	m := int(d % time.Hour / time.Minute)
	return fmt.Sprintf("+%dh%02d", h, m)
}
