package sim

import (
	"fmt"
	"math"
	"time"

	"github.com/bidpulse/bidpulse/models"
	"github.com/bidpulse/bidpulse/windows"
)

// Strategy is a way to bid on a market log.
type Strategy string

// The strategies of the replay. Param is each one's base: the bid at
// multiplier 1 for every one but ORTB, whose Param is 1/lambda.
const (
	// BidConstant bids Param on every auction.
	BidConstant Strategy = "constant"
	// BidLinear bids Param x (estimated CTR / average CTR): the "ctr" factor
	// of the performance policy, from the windows of its own wins.
	BidLinear Strategy = "linear"
	// BidORTB bids sqrt(c x Param x v + c^2) - c (Zhang, Yuan, Wang, KDD 2014,
	// ORTB1), v the estimated value per impression relative to the
	// campaign's (the ctr x cvr factors, unclamped), c the market's median
	// price (where the winning rate b/(c+b) is one half).
	BidORTB Strategy = "ortb"
	// BidPerformance bids Param x bidpulse's multiplier under the
	// performance policy.
	BidPerformance Strategy = "performance"
	// BidTargetCPA bids Param x bidpulse's multiplier under target_cpa.
	BidTargetCPA Strategy = "target_cpa"
	// BidPacing bids Param x bidpulse's multiplier under performance with a
	// daily budget of the replay's budget / days.
	BidPacing Strategy = "pacing"
)

// Strategies lists the strategies in report order.
func Strategies() []Strategy {
	return []Strategy{BidConstant, BidLinear, BidORTB, BidPerformance, BidTargetCPA, BidPacing}
}

// learns reports whether the strategy reads bidpulse's windows.
func (s Strategy) learns() bool { return s != BidConstant }

// ReplaySpec is one replay: a strategy with its parameter, on one
// campaign of a log, under a budget.
type ReplaySpec struct {
	Strategy Strategy
	// Campaign is the index of the campaign in the log.
	Campaign int
	Param    float64
	// BudgetMicros caps the spend: an auction is bought only while the
	// spend plus its price stays within it.
	BudgetMicros uint64
	// TargetCPA is the target of the TargetCPA strategy.
	TargetCPA float64
	// ORTBC is the c of ORTB, in micros.
	ORTBC float64
	// Policy is the campaign policy the learning strategies start from
	// (zero: MarketPolicy()).
	Policy *models.CampaignPolicy
}

// Outcome is what a replay bought. Conversions and Value count every
// conversion of a won click, also those that arrive after the log ends
// (the log's response), while the strategy learns only from those that
// arrived.
type Outcome struct {
	Impressions uint64  `json:"impressions"`
	Clicks      uint64  `json:"clicks"`
	Conversions uint64  `json:"conversions"`
	Value       float64 `json:"value"`
	SpendMicros uint64  `json:"spend_micros"`
	// ExhaustedStep is the step at which the budget could no longer buy
	// an auction it won, -1 if it never happened.
	ExhaustedStep int `json:"exhausted_step"`
}

// Spend returns the spend in account currency.
func (o *Outcome) Spend() float64 { return float64(o.SpendMicros) / 1e6 }

// CPA returns spend / conversions (0 without conversions).
func (o *Outcome) CPA() float64 {
	if o.Conversions == 0 {
		return 0
	}
	return o.Spend() / float64(o.Conversions)
}

// ECPC returns spend / clicks (0 without clicks).
func (o *Outcome) ECPC() float64 {
	if o.Clicks == 0 {
		return 0
	}
	return o.Spend() / float64(o.Clicks)
}

// MarketPolicy is the campaign policy of the market's learning strategies:
// the defaults, but a 24-hour window: with CTRs around 0.4% and a few
// conversions a day per placement, an hour holds too little to tell
// placements apart (docs/MODELS.md). The goal controller's integral gain
// is scaled down with its window, 24 times: the default 0.6/h suits the
// 1-hour window, whose CPA follows a bid change within the hour; a 24-hour
// window's follows it over a day, and at 0.6/h the integral runs to a
// bound on a few noisy conversions long before the window shows the
// effect of its own bids.
func MarketPolicy() models.CampaignPolicy {
	p := models.DefaultCampaignPolicy()
	p.Performance.Window = windows.Span24h
	p.Goal.Window = windows.Span24h
	p.Goal.Ki = models.DefaultGoal().Ki * float64(time.Hour) / float64(p.Goal.Window.Duration())
	p.Performance.Min, p.Performance.Max = 0.2, 5
	p.HardMax = models.DefaultHardMax
	return p
}

// Replay bids spec's strategy on every auction of one campaign of l,
// second price, within the budget, and returns what it bought. The
// learning strategies bid per creative and placement from bidpulse's
// models on windows fed only with the events of their own wins
// (impressions, clicks and cost at the step of the auction, conversions
// when they arrive), ticked every step, as bidder runs them (learner).
func Replay(l *MarketLog, spec ReplaySpec) (Outcome, error) {
	o, _, err := replay(l, spec)
	return o, err
}

// replay is Replay, also returning the learner (nil for constant) so that
// tests can look at what bidpulse counted.
func replay(l *MarketLog, spec ReplaySpec) (Outcome, *learner, error) {
	out := Outcome{ExhaustedStep: -1}
	if spec.Campaign < 0 || spec.Campaign >= len(l.Campaigns) {
		return out, nil, fmt.Errorf("cannot replay campaign %d of a log of %d", spec.Campaign, len(l.Campaigns))
	}
	c := &l.Campaigns[spec.Campaign]
	pol := MarketPolicy()
	if spec.Policy != nil {
		pol = *spec.Policy
	}
	switch spec.Strategy {
	case BidConstant, BidLinear, BidPerformance:
	case BidORTB:
		if !(spec.ORTBC > 0) {
			return out, nil, fmt.Errorf("cannot replay ortb: c must be > 0")
		}
	case BidTargetCPA:
		pol.Policy = models.PolicyTargetCPA
		pol.Goal.Target = spec.TargetCPA
	case BidPacing:
		pol.Pacing.DailyBudget = float64(spec.BudgetMicros) / 1e6 / float64(l.Config.Days)
	default:
		return out, nil, fmt.Errorf("unknown strategy %q", spec.Strategy)
	}
	if !(spec.Param > 0) || math.IsInf(spec.Param, 0) {
		return out, nil, fmt.Errorf("cannot replay %s: invalid parameter %v", spec.Strategy, spec.Param)
	}
	var lr *learner
	if spec.Strategy.learns() {
		if err := pol.Validate(); err != nil {
			return out, nil, fmt.Errorf("cannot replay %s: %w", spec.Strategy, err)
		}
		var err error
		if lr, err = newLearner(l, c, &pol); err != nil {
			return out, nil, fmt.Errorf("cannot replay %s: %w", spec.Strategy, err)
		}
	}
	np := len(l.Placements)
	bids := make([]float64, len(c.Creatives)*np)
	wins := make([]windows.Counts, len(bids))
	stepMs := l.Config.Step.Milliseconds()
	startMs := l.Config.Start.UnixMilli()
	for s := 0; s < l.Steps(); s++ {
		now := startMs + int64(s)*stepMs
		if lr == nil {
			for i := range bids {
				bids[i] = spec.Param * 1e6
			}
		} else {
			lr.bids(s, now, &spec, bids)
		}
		clear(wins)
		for _, a := range c.Auctions[c.StepStart[s]:c.StepStart[s+1]] {
			cell := int(a.Creative)*np + int(a.Placement)
			if !(bids[cell] > float64(a.PriceMicros)) {
				continue
			}
			if out.SpendMicros+uint64(a.PriceMicros) > spec.BudgetMicros {
				if out.ExhaustedStep < 0 {
					out.ExhaustedStep = s
				}
				continue
			}
			out.SpendMicros += uint64(a.PriceMicros)
			out.Impressions++
			w := &wins[cell]
			w.Impressions++
			w.CostMicros += uint64(a.PriceMicros)
			if a.Click {
				out.Clicks++
				w.Clicks++
			}
			if a.Conv {
				out.Conversions++
				out.Value += c.Placements[a.Placement].Value
				if lr != nil {
					lr.file(cell, now, now+a.DelayMs)
				}
			}
		}
		if lr != nil {
			lr.wins(now, wins)
		}
	}
	return out, lr, nil
}
