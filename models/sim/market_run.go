package sim

import (
	"fmt"
	"math"
	"sync"
)

// trainSalt makes a seed's training auctions differ from its test
// auctions: the training log is the test log's market (same placements,
// qualities and prices) on other days.
const trainSalt = 0x7ea1_2b0c_5eed_0001

// MarketOptions describes a market benchmark.
type MarketOptions struct {
	// Seeds of the test logs; each seed's training log has the same
	// market and its auctions drawn from seed ^ trainSalt.
	Seeds []uint64
	// Fractions are the budgets, as 1/Fraction of the cost of buying the
	// whole test log (default 2, 4, 8, 16, 32).
	Fractions []int
	// Market returns the market of a seed (nil: DefaultMarket).
	Market func(seed uint64) MarketConfig
	// Workers run seeds in parallel (default 1); results do not depend on
	// it.
	Workers int
}

// SeedRun is one seed at one budget fraction: every campaign's tuned
// parameters and what every strategy bought on its test log, and the sums
// over the campaigns.
type SeedRun struct {
	Seed     uint64 `json:"seed"`
	Fraction int    `json:"fraction"`
	// BudgetMicros is the sum of the campaigns' budgets.
	BudgetMicros uint64        `json:"budget_micros"`
	Campaigns    []CampaignRun `json:"campaigns"`
	// Outcomes are the sums over the campaigns.
	Outcomes map[Strategy]Outcome `json:"outcomes"`
}

// CampaignRun is one campaign of a SeedRun: its own budget (1/Fraction of
// the cost of buying its whole test log), its parameters tuned on its
// training log, what each strategy bought.
type CampaignRun struct {
	Campaign     string               `json:"campaign"`
	BudgetMicros uint64               `json:"budget_micros"`
	Tuned        Tuned                `json:"tuned"`
	Outcomes     map[Strategy]Outcome `json:"outcomes"`
}

// add adds x to o; ExhaustedStep becomes the later of the two.
func (o *Outcome) add(x Outcome) {
	o.Impressions += x.Impressions
	o.Clicks += x.Clicks
	o.Conversions += x.Conversions
	o.Value += x.Value
	o.SpendMicros += x.SpendMicros
	o.ExhaustedStep = max(o.ExhaustedStep, x.ExhaustedStep)
}

// RunSeed generates seed's training and test logs and replays every
// strategy on every campaign at every fraction, each campaign under its
// own budget, as the iPinYou benchmark runs each campaign on its own log.
func RunSeed(seed uint64, fractions []int, market func(uint64) MarketConfig) ([]SeedRun, MarketStats, error) {
	if market == nil {
		market = DefaultMarket
	}
	tc := market(seed)
	tc.AuctionSeed = seed ^ trainSalt
	train, err := GenerateMarket(tc)
	if err != nil {
		return nil, MarketStats{}, err
	}
	test, err := GenerateMarket(market(seed))
	if err != nil {
		return nil, MarketStats{}, err
	}
	var runs []SeedRun
	for _, f := range fractions {
		run := SeedRun{Seed: seed, Fraction: f, Outcomes: make(map[Strategy]Outcome)}
		for _, s := range Strategies() {
			run.Outcomes[s] = Outcome{ExhaustedStep: -1}
		}
		for ci := range test.Campaigns {
			t, err := Tune(train, ci, f)
			if err != nil {
				return nil, MarketStats{}, fmt.Errorf("seed %d, campaign %d, budget 1/%d: %w", seed, ci, f, err)
			}
			cr := CampaignRun{Campaign: test.Campaigns[ci].Name, BudgetMicros: test.Campaigns[ci].TotalCostMicros / uint64(f),
				Tuned: t, Outcomes: make(map[Strategy]Outcome)}
			for _, s := range Strategies() {
				o, err := Replay(test, ReplaySpec{Strategy: s, Campaign: ci, Param: t.Params[s], BudgetMicros: cr.BudgetMicros,
					TargetCPA: t.TargetCPA, ORTBC: t.ORTBC})
				if err != nil {
					return nil, MarketStats{}, fmt.Errorf("seed %d, campaign %d, budget 1/%d: %w", seed, ci, f, err)
				}
				cr.Outcomes[s] = o
				sum := run.Outcomes[s]
				sum.add(o)
				run.Outcomes[s] = sum
			}
			run.BudgetMicros += cr.BudgetMicros
			run.Campaigns = append(run.Campaigns, cr)
		}
		runs = append(runs, run)
	}
	return runs, test.Stats(), nil
}

// RunMarket runs the benchmark of o and aggregates it.
func RunMarket(o MarketOptions) (*MarketReport, error) {
	if len(o.Seeds) == 0 {
		return nil, fmt.Errorf("no seeds")
	}
	if len(o.Fractions) == 0 {
		o.Fractions = []int{2, 4, 8, 16, 32}
	}
	for _, f := range o.Fractions {
		if f < 1 {
			return nil, fmt.Errorf("invalid budget fraction 1/%d", f)
		}
	}
	workers := max(o.Workers, 1)
	runs := make([][]SeedRun, len(o.Seeds))
	stats := make([]MarketStats, len(o.Seeds))
	errs := make([]error, len(o.Seeds))
	var wg sync.WaitGroup
	next := make(chan int)
	for w := 0; w < workers; w++ {
		wg.Go(func() {
			for i := range next {
				runs[i], stats[i], errs[i] = RunSeed(o.Seeds[i], o.Fractions, o.Market)
			}
		})
	}
	for i := range o.Seeds {
		next <- i
	}
	close(next)
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	rep := &MarketReport{Seeds: o.Seeds, Fractions: o.Fractions, LogStats: stats}
	m := DefaultMarket(0)
	if o.Market != nil {
		m = o.Market(o.Seeds[0])
	}
	rep.Market = m
	for _, r := range runs {
		rep.Runs = append(rep.Runs, r...)
	}
	rep.aggregate()
	return rep, nil
}

// Stat is a mean over seeds with its 95% confidence interval (Student's t).
type Stat struct {
	Mean float64 `json:"mean"`
	Lo   float64 `json:"lo"`
	Hi   float64 `json:"hi"`
}

// meanCI returns the mean of xs and its 95% interval.
func meanCI(xs []float64) Stat {
	n := len(xs)
	if n == 0 {
		return Stat{}
	}
	m := 0.0
	for _, x := range xs {
		m += x
	}
	m /= float64(n)
	if n < 2 {
		return Stat{m, m, m}
	}
	v := 0.0
	for _, x := range xs {
		v += (x - m) * (x - m)
	}
	h := tQuantile975(n-1) * math.Sqrt(v/float64(n-1)/float64(n))
	return Stat{m, m - h, m + h}
}

// tQuantile975 is the 97.5% quantile of Student's t with df degrees of
// freedom.
func tQuantile975(df int) float64 {
	table := []float64{0, 12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
		2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
		2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042}
	if df < len(table) {
		return table[df]
	}
	return 1.96
}
