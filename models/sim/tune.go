package sim

import (
	"fmt"
	"math"
	"slices"
)

// tuneSpendShare is the share of the budget a tuned strategy spends on the
// training log: the tuned parameter is the smallest that spends it. A
// larger one would buy the same budget earlier in the log, at higher
// bids, and run out before its end.
const tuneSpendShare = 0.99

// tuneSteps is the number of bisection steps after bracketing: the
// parameter is found within a factor 2^(1/2^tuneSteps) (0.5%).
const tuneSteps = 7

// tuneParam returns the smallest parameter of spec's strategy whose replay
// on the training log spends tuneSpendShare of spec.BudgetMicros, by
// bracketing from guess in factors of 2 and then bisecting in log space.
// A strategy that cannot spend that much even at 2^20 x guess gets the
// largest parameter tried.
func tuneParam(train *MarketLog, spec ReplaySpec, guess float64) (float64, error) {
	target := uint64(tuneSpendShare * float64(spec.BudgetMicros))
	spends := func(p float64) (bool, error) {
		spec.Param = p
		o, err := Replay(train, spec)
		if err != nil {
			return false, err
		}
		return o.SpendMicros >= target, nil
	}
	lo, hi := guess, guess
	ok, err := spends(guess)
	if err != nil {
		return 0, err
	}
	if ok {
		for i := 0; ; i++ {
			if i == 20 {
				return lo, nil
			}
			lo /= 2
			if ok, err = spends(lo); err != nil {
				return 0, err
			} else if !ok {
				break
			}
			hi = lo
		}
	} else {
		for i := 0; ; i++ {
			if i == 20 {
				return hi, nil
			}
			hi *= 2
			if ok, err = spends(hi); err != nil {
				return 0, err
			} else if ok {
				break
			}
			lo = hi
		}
	}
	for i := 0; i < tuneSteps; i++ {
		mid := math.Sqrt(lo * hi)
		ok, err := spends(mid)
		if err != nil {
			return 0, err
		}
		if ok {
			hi = mid
		} else {
			lo = mid
		}
	}
	return hi, nil
}

// Tuned holds the parameters of every strategy for one campaign at one
// budget fraction, all found on a training log.
type Tuned struct {
	Params map[Strategy]float64 `json:"params"`
	// TargetCPA is the target given to BidTargetCPA: the CPA of the
	// linear strategy on the training log at this budget fraction.
	TargetCPA float64 `json:"target_cpa"`
	// ORTBC is ORTB's c in micros: the campaign's median price on the
	// training log.
	ORTBC float64 `json:"ortb_c_micros"`
}

// pacingHeadroom is the base of the pacing strategy over the tuned
// performance base: room for the pacing controller to throttle.
const pacingHeadroom = 2

// Tune finds every strategy's parameter for campaign ci on the training
// log, for a budget of the campaign's training cost / fraction: constant,
// linear, ORTB and performance spend tuneSpendShare of it; pacing bids
// pacingHeadroom x the performance base and lets its controller spend the
// budget; target-CPA starts from the performance base with the target of
// linear's training CPA.
func Tune(train *MarketLog, ci, fraction int) (Tuned, error) {
	t := Tuned{Params: make(map[Strategy]float64)}
	if fraction <= 0 {
		return t, fmt.Errorf("invalid budget fraction 1/%d", fraction)
	}
	if ci < 0 || ci >= len(train.Campaigns) {
		return t, fmt.Errorf("invalid campaign %d of %d", ci, len(train.Campaigns))
	}
	c := &train.Campaigns[ci]
	budget := c.TotalCostMicros / uint64(fraction)
	prices := make([]uint32, len(c.Auctions))
	for i, a := range c.Auctions {
		prices[i] = a.PriceMicros
	}
	slices.Sort(prices)
	if len(prices) == 0 {
		return t, fmt.Errorf("cannot tune on an empty log")
	}
	t.ORTBC = float64(prices[len(prices)/2])
	mean := float64(c.TotalCostMicros) / float64(len(prices)) / 1e6
	guesses := map[Strategy]float64{
		BidConstant: mean, BidLinear: mean, BidPerformance: mean,
		BidORTB: mean * mean * 1e6 / t.ORTBC,
	}
	for _, s := range []Strategy{BidConstant, BidLinear, BidORTB, BidPerformance} {
		p, err := tuneParam(train, ReplaySpec{Strategy: s, Campaign: ci, BudgetMicros: budget, ORTBC: t.ORTBC}, guesses[s])
		if err != nil {
			return t, fmt.Errorf("cannot tune %s: %w", s, err)
		}
		t.Params[s] = p
	}
	t.Params[BidPacing] = pacingHeadroom * t.Params[BidPerformance]
	t.Params[BidTargetCPA] = t.Params[BidPerformance]
	lin, err := Replay(train, ReplaySpec{Strategy: BidLinear, Campaign: ci, Param: t.Params[BidLinear], BudgetMicros: budget})
	if err != nil {
		return t, err
	}
	t.TargetCPA = lin.CPA()
	if t.TargetCPA == 0 {
		// No conversion bought: aim at the cost of the mean conversion.
		t.TargetCPA = float64(budget) / 1e6
	}
	return t, nil
}
