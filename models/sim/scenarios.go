package sim

import (
	"fmt"
	"math"
	"time"

	"github.com/bidpulse/bidpulse/models"
)

// RealisticDelay is a click-to-conversion delay after Chapelle (KDD 2014):
// about a third of conversions within an hour of the click, a little over
// half within a day, a long tail over the following weeks.
var RealisticDelay = []DelayComponent{
	{Share: 0.35, Mean: 20 * time.Minute},
	{Share: 0.15, Mean: 8 * time.Hour},
	{Share: 0.50, Mean: 7 * 24 * time.Hour},
}

// DiurnalCurve is a traffic curve by local hour: quiet nights, a morning
// rise, an evening peak.
var DiurnalCurve = [24]float64{
	0.35, 0.25, 0.2, 0.2, 0.25, 0.35, 0.55, 0.8, 1.0, 1.1, 1.1, 1.15,
	1.2, 1.15, 1.1, 1.1, 1.15, 1.25, 1.4, 1.55, 1.6, 1.4, 0.95, 0.6,
}

// Scenarios returns the names of the built-in scenarios, in order.
func Scenarios() []string {
	return []string{"ranking", "pacing", "cpa", "delay", "fraud"}
}

// Scenario returns the built-in scenario called name, seeded with seed.
func Scenario(name string, seed uint64) (Config, error) {
	switch name {
	case "ranking":
		return Ranking(seed), nil
	case "pacing":
		return Pacing(seed), nil
	case "cpa":
		return CPA(seed), nil
	case "delay":
		return Delay(seed), nil
	case "fraud":
		return Fraud(seed), nil
	}
	return Config{}, fmt.Errorf("unknown scenario %q; want one of %v", name, Scenarios())
}

// basePolicy is the performance policy of the scenarios.
func basePolicy() models.CampaignPolicy {
	return models.DefaultCampaignPolicy()
}

// Ranking: ten placements whose true values per impression span 0.6x to
// 1.7x, and three sparse ones (a few impressions an hour) with extreme
// true values, under the performance policy with empirical-Bayes priors
// and delay-corrected CVR. After the warm-up, the mean multipliers should
// rank the ten like their true values, and the sparse ones stay near 1.
func Ranking(seed uint64) Config {
	c := CampaignSpec{
		Name:         "rank",
		Policy:       basePolicy(),
		Requests:     2e6,
		BaseBid:      0.002,
		MarketMedian: 0.002,
		MarketSigma:  0.5,
		Delay:        RealisticDelay,
		HistoryDays:  7,
	}
	ctrs := []float64{0.012, 0.02, 0.03, 0.016, 0.025}
	for i := 0; i < 10; i++ {
		value := 0.0006 * math.Pow(1.7/0.6, float64(i)/9)
		ctr := ctrs[i%len(ctrs)]
		c.Placements = append(c.Placements, PlacementSpec{
			Name: fmt.Sprintf("p%02d", i+1), Share: 0.1, CTR: ctr, CVR: value / ctr, Value: 1,
		})
	}
	c.Placements = append(c.Placements,
		PlacementSpec{Name: "sparse-low", Share: 2e-5, CTR: 0.01, CVR: 0.02, Value: 1, Sparse: true},
		PlacementSpec{Name: "sparse-high", Share: 2e-5, CTR: 0.06, CVR: 0.1, Value: 1, Sparse: true},
		PlacementSpec{Name: "sparse-mid", Share: 2e-5, CTR: 0.02, CVR: 0.05, Value: 1, Sparse: true},
	)
	return Config{
		Name: "ranking", Seed: seed, Duration: 12 * time.Hour, Step: 20 * time.Second, MeasureFrom: 2 * time.Hour,
		HardMax: models.DefaultHardMax, Campaigns: []CampaignSpec{c},
	}
}

// Pacing: a daily budget of 2500 against a campaign that would spend about
// three times that at multiplier 1, over two days in New York with a
// diurnal curve and unannounced bursts (3x for 90 minutes on day one, 2.5x
// for two evening hours on day two), on the traffic-shaped plan.
func Pacing(seed uint64) Config {
	pol := basePolicy()
	if err := pol.SetTimeZone("America/New_York"); err != nil {
		// No zoneinfo on this machine (and no time/tzdata in the binary):
		// early March in New York is UTC-5 anyway.
		pol.TimeZone, pol.Location = "", time.FixedZone("EST", -5*3600)
	}
	pol.Pacing.DailyBudget = 2500
	pol.Pacing.Plan = models.PlanTraffic
	loc := pol.Location
	c := CampaignSpec{
		Name:         "pace",
		Policy:       pol,
		Requests:     4e5,
		Curve:        DiurnalCurve,
		BaseBid:      0.002,
		MarketMedian: 0.002,
		MarketSigma:  0.5,
		Delay:        RealisticDelay,
		HistoryDays:  2,
		Bursts: []Burst{
			{From: 10 * time.Hour, To: 11*time.Hour + 30*time.Minute, Factor: 3},
			{From: 24*time.Hour + 19*time.Hour, To: 24*time.Hour + 21*time.Hour, Factor: 2.5},
		},
		Placements: []PlacementSpec{
			{Name: "a", Share: 0.4, CTR: 0.02, CVR: 0.05, Value: 1},
			{Name: "b", Share: 0.35, CTR: 0.015, CVR: 0.06, Value: 1},
			{Name: "c", Share: 0.25, CTR: 0.025, CVR: 0.04, Value: 1},
		},
	}
	return Config{
		Name: "pacing", Seed: seed, Start: time.Date(2025, 3, 3, 0, 0, 0, 0, loc),
		Duration: 48 * time.Hour, Step: 30 * time.Second, HardMax: models.DefaultHardMax, Campaigns: []CampaignSpec{c},
	}
}

// CPA: a steady stream whose CPA at multiplier 1 is about 1.4, under
// target_cpa with a target of 1: the controller has to bring the bids down
// and hold them there.
func CPA(seed uint64) Config {
	pol := basePolicy()
	pol.Policy = models.PolicyTargetCPA
	pol.Goal.Target = 1
	c := CampaignSpec{
		Name:         "cpa",
		Policy:       pol,
		Requests:     1e6,
		BaseBid:      0.002,
		MarketMedian: 0.002,
		MarketSigma:  0.5,
		Delay:        RealisticDelay,
		HistoryDays:  30,
		Placements: []PlacementSpec{
			{Name: "a", Share: 0.4, CTR: 0.02, CVR: 0.05, Value: 1},
			{Name: "b", Share: 0.35, CTR: 0.025, CVR: 0.04, Value: 1},
			{Name: "c", Share: 0.25, CTR: 0.0125, CVR: 0.08, Value: 1},
		},
	}
	return Config{
		Name: "cpa", Seed: seed, Duration: 24 * time.Hour, Step: 30 * time.Second,
		HardMax: models.DefaultHardMax, Campaigns: []CampaignSpec{c},
	}
}

// Delay: a campaign steady for 30 days (its delay histogram learned from
// them) launches a large placement two hours into the run. Only the
// conversions of its earliest clicks have arrived an hour later: its naive
// 1h CVR is far below the truth, the delay-corrected one is not.
func Delay(seed uint64) Config {
	c := CampaignSpec{
		Name:         "delay",
		Policy:       basePolicy(),
		Requests:     4e6,
		BaseBid:      0.002,
		MarketMedian: 0.002,
		MarketSigma:  0.5,
		Delay:        RealisticDelay,
		HistoryDays:  30,
		Placements: []PlacementSpec{
			{Name: "a", Share: 0.05, CTR: 0.02, CVR: 0.05, Value: 1},
			{Name: "b", Share: 0.05, CTR: 0.015, CVR: 0.06, Value: 1},
			{Name: "c", Share: 0.05, CTR: 0.025, CVR: 0.04, Value: 1},
			{Name: "launch", Share: 0.85, CTR: 0.03, CVR: 0.1, Value: 1, LaunchAfter: 2 * time.Hour},
		},
		Probes: []Probe{
			{Placement: "launch", At: 2*time.Hour + 30*time.Minute},
			{Placement: "launch", At: 3 * time.Hour},
			{Placement: "launch", At: 4 * time.Hour},
			{Placement: "launch", At: 6 * time.Hour},
			{Placement: "a", At: 3 * time.Hour},
		},
	}
	return Config{
		Name: "delay", Seed: seed, Duration: 6*time.Hour + time.Minute, Step: 20 * time.Second,
		HardMax: models.DefaultHardMax, Campaigns: []CampaignSpec{c},
	}
}

// Fraud: five steady placements; four hours in, bots click placement p3
// about 18 times as often as its users do, for five minutes. The anomaly
// hold should keep p3's multiplier where it was while the unguarded policy
// would bid it up.
func Fraud(seed uint64) Config {
	c := CampaignSpec{
		Name:         "fraud",
		Policy:       basePolicy(),
		Requests:     1e6,
		BaseBid:      0.002,
		MarketMedian: 0.002,
		MarketSigma:  0.5,
		Delay:        RealisticDelay,
		HistoryDays:  3,
		Placements: []PlacementSpec{
			{Name: "p1", Share: 0.2, CTR: 0.02, CVR: 0.05, Value: 1},
			{Name: "p2", Share: 0.2, CTR: 0.015, CVR: 0.06, Value: 1},
			{Name: "p3", Share: 0.2, CTR: 0.02, CVR: 0.04, Value: 1},
			{Name: "p4", Share: 0.2, CTR: 0.025, CVR: 0.05, Value: 1},
			{Name: "p5", Share: 0.2, CTR: 0.018, CVR: 0.05, Value: 1},
		},
		Fraud: []FraudSpec{{Placement: "p3", From: 4 * time.Hour, To: 4*time.Hour + 5*time.Minute, ClicksPerMinute: 600}},
	}
	return Config{
		Name: "fraud", Seed: seed, Duration: 6 * time.Hour, Step: 20 * time.Second, MeasureFrom: time.Hour,
		HardMax: models.DefaultHardMax, Campaigns: []CampaignSpec{c},
	}
}
