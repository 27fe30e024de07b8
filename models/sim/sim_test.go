package sim

import (
	"flag"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	_ "time/tzdata" // the pacing scenario's America/New_York on any machine

	"github.com/bidpulse/bidpulse/models"
)

// run runs the built-in scenario name with seed 1 and returns its only
// campaign's report.
func run(t *testing.T, name string) (*Report, *CampaignReport) {
	t.Helper()
	cfg, err := Scenario(name, 1)
	if err != nil {
		t.Fatalf("unexpected error: %s", err)
	}
	rep, err := Run(cfg)
	if err != nil {
		t.Fatalf("cannot run %s: %s", name, err)
	}
	if len(rep.Campaigns) != 1 {
		t.Fatalf("unexpected campaigns; got %d; want 1", len(rep.Campaigns))
	}
	if testing.Verbose() {
		t.Logf("\n%s", rep.Text())
	}
	return &rep, &rep.Campaigns[0]
}

// TestRanking: after the warm-up, the multipliers rank the placements like
// their true value per impression, and the sparse ones stay near 1 whatever
// their true value.
func TestRanking(t *testing.T) {
	_, c := run(t, "ranking")
	if c.Spearman < 0.9 {
		t.Fatalf("unexpected Spearman correlation between true value and mean multiplier; got %.3f; want >= 0.9", c.Spearman)
	}
	sparse := 0
	for _, p := range c.Placements {
		if !p.Sparse {
			continue
		}
		sparse++
		if math.Abs(p.MeanMultiplier-1) > 0.15 {
			t.Fatalf("unexpected mean multiplier of sparse placement %s (%d impressions, true value %.4f); got %.3f; want 1 +- 0.15",
				p.Name, p.Impressions, p.TrueValue, p.MeanMultiplier)
		}
	}
	if sparse != 3 {
		t.Fatalf("unexpected sparse placements; got %d; want 3", sparse)
	}
}

// TestPacing: each simulated day spends the budget within 5%, never more
// than all of it, despite the bursts; the spend pacing computes from the
// windows' hourly buckets is exactly the simulator's own count.
func TestPacing(t *testing.T) {
	_, c := run(t, "pacing")
	if len(c.Days) != 2 {
		t.Fatalf("unexpected days; got %d; want 2", len(c.Days))
	}
	for _, d := range c.Days {
		if !d.Full {
			t.Fatalf("unexpected partial day %s", d.Date)
		}
		if d.Share > 1 {
			t.Fatalf("unexpected overspend on %s; got %.4f of the budget; want at most 1", d.Date, d.Share)
		}
		if d.Share < 0.95 {
			t.Fatalf("unexpected underspend on %s; got %.4f of the budget; want at least 0.95", d.Date, d.Share)
		}
	}
	if c.SpendCheckMicros != 0 {
		t.Fatalf("unexpected difference between the spend from hourly buckets and the counted spend; got %d micros; want 0", c.SpendCheckMicros)
	}
}

// TestCPA: the CPA controller brings the true CPA within 10% of the target
// in a few hours, and once there it stays there (no oscillation out of the
// band), with a factor that settles.
func TestCPA(t *testing.T) {
	_, c := run(t, "cpa")
	target := c.Target
	settled := -1
	for i, h := range c.Hours {
		inBand := math.Abs(h.TrueCPA/target-1) <= 0.1
		if settled < 0 && inBand {
			settled = i
		}
		if settled >= 0 && !inBand {
			t.Fatalf("unexpected true CPA at %s after settling at %s; got %.3f; want %.3f +- 10%%", h.At, c.Hours[settled].At, h.TrueCPA, target)
		}
	}
	if settled < 0 || c.Hours[settled].At > 4*time.Hour {
		t.Fatalf("unexpected settling; got hour index %d; want the true CPA within 10%% of the target by +4h", settled)
	}
	// The factor settles: over the last 16 hours it moves within 20% of
	// its mean, without the swings of an oscillating loop.
	lo, hi, sum := math.Inf(1), math.Inf(-1), 0.0
	tail := c.Hours[len(c.Hours)-16:]
	for _, h := range tail {
		lo, hi, sum = math.Min(lo, h.GoalFactor), math.Max(hi, h.GoalFactor), sum+h.GoalFactor
	}
	if mean := sum / float64(len(tail)); (hi-lo)/mean > 0.2 {
		t.Fatalf("unexpected goal factor swing over the last 16 hours; got [%.3f, %.3f]; want within 20%% of the mean %.3f", lo, hi, mean)
	}
	// The multiplier came down from the too expensive start.
	if f := c.Hours[len(c.Hours)-1].GoalFactor; !(f < 0.9) {
		t.Fatalf("unexpected final goal factor; got %.3f; want < 0.9 (the CPA at multiplier 1 is above the target)", f)
	}
}

// TestDelayCorrection: an hour after a placement launches, its naive 1h CVR
// is off by more than half (most of its conversions have not arrived), the
// corrected one is within 10% of the truth.
func TestDelayCorrection(t *testing.T) {
	_, c := run(t, "delay")
	found := false
	for _, p := range c.Probes {
		if p.Placement != "launch" {
			continue
		}
		if math.Abs(p.Corrected/p.Truth-1) >= math.Abs(p.Naive/p.Truth-1) {
			t.Fatalf("unexpected probe at %s: corrected %.4f no closer to the truth %.4f than naive %.4f", p.At, p.Corrected, p.Truth, p.Naive)
		}
		if p.At != 3*time.Hour {
			continue
		}
		found = true
		if p.Naive/p.Truth > 0.5 {
			t.Fatalf("unexpected naive CVR an hour after launch; got %.4f; want at most half the truth %.4f", p.Naive, p.Truth)
		}
		if math.Abs(p.Corrected/p.Truth-1) > 0.1 {
			t.Fatalf("unexpected corrected CVR an hour after launch; got %.4f; want %.4f +- 10%%", p.Corrected, p.Truth)
		}
	}
	if !found {
		t.Fatalf("missing the probe an hour after launch")
	}
}

// TestFraudHold: a click-fraud burst triggers the anomaly hold on its
// placement, only there, and the hold keeps the multiplier where it was
// while the unguarded policy would have bid it up.
func TestFraudHold(t *testing.T) {
	_, c := run(t, "fraud")
	if len(c.Holds) != 1 {
		t.Fatalf("unexpected holds; got %+v; want one, on p3", c.Holds)
	}
	h := c.Holds[0]
	if h.Placement != "p3" {
		t.Fatalf("unexpected hold on %s; want p3", h.Placement)
	}
	if h.From < 4*time.Hour || h.From > 4*time.Hour+3*time.Minute {
		t.Fatalf("unexpected start of the hold; got %s; want within 3 minutes of the burst at 4h", h.From)
	}
	if h.MaxHeld > h.Before*1.001 {
		t.Fatalf("unexpected multiplier during the hold; got up to %.3f; want at most the %.3f before it", h.MaxHeld, h.Before)
	}
	if h.MaxUnguarded < h.Before*1.3 {
		t.Fatalf("unexpected unguarded multiplier; got %.3f; want a jump of 30%% or more over %.3f (else the scenario proves nothing)", h.MaxUnguarded, h.Before)
	}
}

// TestRunDeterministic: the same seed gives the same report; another seed
// another one.
func TestRunDeterministic(t *testing.T) {
	cfg := func(seed uint64) Config {
		c := Fraud(seed)
		c.Duration = 90 * time.Minute
		c.Campaigns[0].HistoryDays = 1
		c.Campaigns[0].Policy.Explore.Enabled = true
		return c
	}
	a, err := Run(cfg(7))
	if err != nil {
		t.Fatalf("unexpected error: %s", err)
	}
	b, _ := Run(cfg(7))
	if !reflect.DeepEqual(a, b) {
		t.Fatalf("unexpected difference between two runs with the same seed:\n%s\n%s", a.Text(), b.Text())
	}
	d, _ := Run(cfg(8))
	if reflect.DeepEqual(a.Campaigns, d.Campaigns) {
		t.Fatalf("unexpected equal reports with seeds 7 and 8")
	}
	if !strings.Contains(a.Text(), "campaign fraud: policy performance") {
		t.Fatalf("unexpected text report:\n%s", a.Text())
	}
}

func TestRunErrors(t *testing.T) {
	f := func(mutate func(*Config), want string) {
		t.Helper()
		c := Fraud(1)
		mutate(&c)
		_, err := Run(c)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("unexpected error; got %v; want one containing %q", err, want)
		}
	}
	f(func(c *Config) { c.Duration = 0 }, "duration")
	f(func(c *Config) { c.Tick = 15 * time.Second }, "tick")
	f(func(c *Config) { c.Campaigns = nil }, "no campaigns")
	f(func(c *Config) { c.Campaigns[0].Placements = nil }, "no placements")
	f(func(c *Config) { c.Campaigns[0].Policy.Max = 0.5 }, "invalid max")
	f(func(c *Config) { c.Campaigns[0].MarketSigma = 0 }, "sigma")
	f(func(c *Config) { c.Campaigns[0].Placements[0].CTR = 2 }, "rates")
	f(func(c *Config) { c.Campaigns[0].Fraud[0].Placement = "nope" }, "unknown placement")
	if _, err := Scenario("nope", 1); err == nil {
		t.Fatalf("expecting an error for an unknown scenario")
	}
}

func TestSpearman(t *testing.T) {
	f := func(x, y []float64, want float64) {
		t.Helper()
		if got := spearman(x, y); math.Abs(got-want) > 1e-12 {
			t.Fatalf("unexpected spearman(%v, %v); got %v; want %v", x, y, got, want)
		}
	}
	f([]float64{1, 2, 3, 4}, []float64{10, 20, 30, 40}, 1)
	f([]float64{1, 2, 3, 4}, []float64{4, 3, 2, 1}, -1)
	f([]float64{1, 2, 3}, []float64{1, 1, 1}, 0)
	// Ties take the mean rank: ranks of y are 1, 2.5, 2.5, 4.
	f([]float64{1, 2, 3, 4}, []float64{1, 2, 2, 3}, 0.9486832980505138)
	f([]float64{1}, []float64{1}, 0)
}

func TestDraws(t *testing.T) {
	r := models.NewRand(3)
	f := func(name string, draw func() uint64, mean, tol float64) {
		t.Helper()
		const n = 20000
		sum := 0.0
		for i := 0; i < n; i++ {
			sum += float64(draw())
		}
		if got := sum / n; math.Abs(got-mean) > tol*mean {
			t.Fatalf("unexpected mean of %s; got %v; want %v +- %v%%", name, got, mean, 100*tol)
		}
	}
	f("poisson(3)", func() uint64 { return poisson(&r, 3) }, 3, 0.03)
	f("poisson(300)", func() uint64 { return poisson(&r, 300) }, 300, 0.01)
	f("binomial(20, 0.3)", func() uint64 { return binomial(&r, 20, 0.3) }, 6, 0.03)
	f("binomial(1000, 0.01)", func() uint64 { return binomial(&r, 1000, 0.01) }, 10, 0.03)
	f("binomial(1000, 0.5)", func() uint64 { return binomial(&r, 1000, 0.5) }, 500, 0.01)
	f("binomial(1000, 0.995)", func() uint64 { return binomial(&r, 1000, 0.995) }, 995, 0.01)
	if binomial(&r, 10, 1) != 10 || binomial(&r, 10, 0) != 0 || poisson(&r, 0) != 0 {
		t.Fatalf("unexpected degenerate draws")
	}
	m := market{mu: math.Log(0.002), sigma: 0.5}
	p, price := m.win(0.002)
	if math.Abs(p-0.5) > 1e-12 || !(price > 0 && price < 0.002) {
		t.Fatalf("unexpected win at the median; got p %v, price %v; want 0.5 and a price below the bid", p, price)
	}
	if p, _ := m.win(0); p != 0 {
		t.Fatalf("unexpected win with a zero bid; got %v", p)
	}
}

var simSeeds = flag.Int("sim-seeds", 3, "seeds (1..N) on which TestScenarioClaims checks every scenario's claims")

// TestScenarioClaims: every claim of every built-in scenario holds on seeds
// 1..-sim-seeds (3 by default), and the cpa scenario, whose placements
// share one true value, reports no Spearman.
func TestScenarioClaims(t *testing.T) {
	for seed := uint64(1); seed <= uint64(*simSeeds); seed++ {
		for _, name := range Scenarios() {
			cfg, err := Scenario(name, seed)
			if err != nil {
				t.Fatalf("unexpected error: %s", err)
			}
			rep, err := Run(cfg)
			if err != nil {
				t.Fatalf("cannot run %s: %s", name, err)
			}
			if len(rep.Claims) == 0 {
				t.Fatalf("unexpected %s without claims", name)
			}
			for _, c := range Failed(rep.Claims) {
				t.Errorf("seed %d: %s", seed, c.Line("claim"))
			}
			text := rep.Text()
			if got := strings.Count(text, "\nclaim "); got != len(rep.Claims) {
				t.Fatalf("unexpected claim lines in the %s report; got %d; want %d:\n%s", name, got, len(rep.Claims), text)
			}
			if name == "cpa" && strings.Contains(text, "spearman") {
				t.Fatalf("unexpected Spearman in the cpa report:\n%s", text)
			}
		}
	}
}

func TestClaimFails(t *testing.T) {
	rep := Report{Name: "ranking", Campaigns: []CampaignReport{{Spearman: 0.5}}}
	if len(Failed(ScenarioClaims(&rep))) == 0 {
		t.Fatalf("expecting a failed claim for a Spearman of 0.5")
	}
	if l := atLeast("x", 0.5, 0.9).Line("claim"); !strings.HasSuffix(l, "FAIL\n") {
		t.Fatalf("unexpected claim line %q; want one ending in FAIL", l)
	}
}
