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

// ReplaySpec is one replay: a strategy with its parameter, on a log, under
// a budget.
type ReplaySpec struct {
	Strategy Strategy
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

// Replay bids spec's strategy on every auction of l, second price, within
// the budget, and returns what it bought. The learning strategies run
// bidpulse's models on windows fed only with the events of their own wins
// (impressions, clicks and cost at the step of the auction, conversions
// when they arrive), ticked every step, as bidder runs them.
func Replay(l *MarketLog, spec ReplaySpec) (Outcome, error) {
	out := Outcome{ExhaustedStep: -1}
	pol := MarketPolicy()
	if spec.Policy != nil {
		pol = *spec.Policy
	}
	switch spec.Strategy {
	case BidConstant, BidLinear, BidPerformance:
	case BidORTB:
		if !(spec.ORTBC > 0) {
			return out, fmt.Errorf("cannot replay ortb: c must be > 0")
		}
	case BidTargetCPA:
		pol.Policy = models.PolicyTargetCPA
		pol.Goal.Target = spec.TargetCPA
	case BidPacing:
		pol.Pacing.DailyBudget = float64(spec.BudgetMicros) / 1e6 / float64(l.Config.Days)
	default:
		return out, fmt.Errorf("unknown strategy %q", spec.Strategy)
	}
	if !(spec.Param > 0) || math.IsInf(spec.Param, 0) {
		return out, fmt.Errorf("cannot replay %s: invalid parameter %v", spec.Strategy, spec.Param)
	}
	var r *runner
	if spec.Strategy.learns() {
		if err := pol.Validate(); err != nil {
			return out, fmt.Errorf("cannot replay %s: %w", spec.Strategy, err)
		}
		var err error
		r, err = newMarketRunner(l, pol)
		if err != nil {
			return out, fmt.Errorf("cannot replay %s: %w", spec.Strategy, err)
		}
	}
	np := len(l.Placements)
	bids := make([]float64, np)
	wins := make([]windows.Counts, np)
	stepMs := l.Config.Step.Milliseconds()
	startMs := l.Config.Start.UnixMilli()
	for s := 0; s < l.Steps(); s++ {
		now := startMs + int64(s)*stepMs
		if r == nil {
			for i := range bids {
				bids[i] = spec.Param * 1e6
			}
		} else {
			r.marketBids(s, now, &spec, bids)
		}
		clear(wins)
		for _, a := range l.Auctions[l.StepStart[s]:l.StepStart[s+1]] {
			if !(bids[a.Placement] > float64(a.PriceMicros)) {
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
			w := &wins[a.Placement]
			w.Impressions++
			w.CostMicros += uint64(a.PriceMicros)
			if a.Click {
				out.Clicks++
				w.Clicks++
			}
			if a.Conv {
				out.Conversions++
				out.Value += l.Placements[a.Placement].Value
				if r != nil {
					r.file(0, int(a.Placement), now, now+a.DelayMs)
				}
			}
		}
		if r != nil {
			r.marketWins(now, wins)
		}
	}
	return out, nil
}

// newMarketRunner builds the simulator's runner for one campaign whose
// placements are the log's, with no traffic of its own: Replay drives it.
func newMarketRunner(l *MarketLog, pol models.CampaignPolicy) (*runner, error) {
	spec := CampaignSpec{Name: "market", Policy: pol, BaseBid: 1, MarketMedian: 1, MarketSigma: 1}
	for _, p := range l.Placements {
		spec.Placements = append(spec.Placements, PlacementSpec{Name: p.Name, Share: p.Share, CTR: p.CTR, CVR: p.CVR, Value: p.Value})
	}
	cfg := Config{Name: "market", Seed: l.Config.Seed, Start: l.Config.Start, Duration: time.Duration(l.Config.Days) * 24 * time.Hour,
		Step: l.Config.Step, Tick: l.Config.Step, HardMax: pol.HardMax, Campaigns: []CampaignSpec{spec}}
	if err := cfg.check(); err != nil {
		return nil, err
	}
	r, err := newRunner(cfg)
	if err != nil {
		return nil, err
	}
	// A market replay runs hundreds of times per table: the older clicks
	// of a key are re-read every 30 minutes instead of 5.
	r.oldEvery = 30 * time.Minute
	return r, nil
}

// marketBids plays the start of step s for a learning strategy: the
// conversions arriving, the day, the control tick, then each placement's
// bid in micros into bids.
func (r *runner) marketBids(s int, now int64, spec *ReplaySpec, bids []float64) {
	c := &r.camps[0]
	r.deliver(int64(s), now)
	r.day(c, now)
	r.tick(c, now, time.Duration(s)*r.cfg.Step)
	r.read(0, c.key, now)
	for pi := range c.places {
		ks := r.input(c, pi, now)
		models.Evaluate(c.pol, &r.in, &c.st, ks, &r.xrng, &r.res)
		ctr, cvr := 1.0, 1.0
		if f, ok := r.res.Factor(models.FactorCTR); ok {
			ctr = f.Value
		}
		if f, ok := r.res.Factor(models.FactorCVR); ok {
			cvr = f.Value
		}
		var b float64
		switch spec.Strategy {
		case BidLinear:
			b = spec.Param * ctr
		case BidORTB:
			cc := spec.ORTBC
			b = (math.Sqrt(cc*spec.Param*1e6*ctr*cvr+cc*cc) - cc) / 1e6
		default:
			b = spec.Param * r.res.Multiplier
		}
		bids[pi] = b * 1e6
	}
}

// marketWins counts the step's wins in the windows and in the day's spend.
func (r *runner) marketWins(now int64, wins []windows.Counts) {
	c := &r.camps[0]
	for pi := range wins {
		w := wins[pi]
		if w.Impressions == 0 {
			continue
		}
		p := &c.places[pi]
		r.store.Add(p.key, now, now, w)
		r.store.Add(c.key, now, now, w)
		c.spentToday += w.CostMicros
		p.rep.Impressions += w.Impressions
		p.rep.Clicks += w.Clicks
	}
}
