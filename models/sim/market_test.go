package sim

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/bidpulse/bidpulse/windows"
)

// smallMarket is a market small enough for a test: a day of two campaigns
// of 20,000 auctions, two creatives each, over 8 placements, in 15-minute
// steps.
func smallMarket(seed uint64) MarketConfig {
	m := DefaultMarket(seed)
	m.Days = 1
	m.Step = 15 * time.Minute
	m.AuctionsPerDay = 20_000
	m.Campaigns = 2
	m.Creatives = 2
	m.Placements = 8
	m.Burst = MarketBurst{From: 18 * time.Hour, To: 20 * time.Hour, Traffic: 3, Price: 1.25}
	return m
}

func mustMarket(t *testing.T, cfg MarketConfig) *MarketLog {
	t.Helper()
	l, err := GenerateMarket(cfg)
	if err != nil {
		t.Fatalf("cannot generate the market: %s", err)
	}
	return l
}

func mustReplay(t *testing.T, l *MarketLog, spec ReplaySpec) Outcome {
	t.Helper()
	o, err := Replay(l, spec)
	if err != nil {
		t.Fatalf("cannot replay %s: %s", spec.Strategy, err)
	}
	return o
}

// TestMarketDeterministic: the same seed gives the same log and the same
// replays; another seed another log. Every campaign's auctions show each
// of its creatives.
func TestMarketDeterministic(t *testing.T) {
	a, b := mustMarket(t, smallMarket(5)), mustMarket(t, smallMarket(5))
	if !reflect.DeepEqual(a, b) {
		t.Fatalf("unexpected difference between two logs of seed 5")
	}
	c := mustMarket(t, smallMarket(6))
	if reflect.DeepEqual(a.Campaigns[0].Auctions, c.Campaigns[0].Auctions) || reflect.DeepEqual(a.Campaigns[0].Creatives, c.Campaigns[0].Creatives) {
		t.Fatalf("unexpected equal logs with seeds 5 and 6")
	}
	if len(a.Campaigns) != 2 {
		t.Fatalf("unexpected campaigns; got %d; want 2", len(a.Campaigns))
	}
	for ci := range a.Campaigns {
		shown := map[uint8]int{}
		for _, x := range a.Campaigns[ci].Auctions {
			shown[x.Creative]++
		}
		if len(shown) != len(a.Campaigns[ci].Creatives) || len(shown) != 2 {
			t.Fatalf("unexpected creatives shown by campaign %d; got %v; want each of 2", ci, shown)
		}
	}
	for _, s := range Strategies() {
		for ci := range a.Campaigns {
			spec := ReplaySpec{Strategy: s, Campaign: ci, Param: 0.0008, BudgetMicros: a.Campaigns[ci].TotalCostMicros / 8, TargetCPA: 2, ORTBC: 600}
			if s == BidORTB {
				spec.Param = 0.002
			}
			x, y := mustReplay(t, a, spec), mustReplay(t, b, spec)
			if x != y {
				t.Fatalf("unexpected difference between two replays of %s on campaign %d of seed 5; got %+v and %+v", s, ci, x, y)
			}
			if x.Impressions == 0 {
				t.Fatalf("unexpected replay of %s on campaign %d that bought nothing", s, ci)
			}
		}
	}
}

// TestMarketCalibration: the log's statistics follow its configuration:
// the mean CTR and CVR of the placements, the mean price, the cap, a long
// tail of quality, creatives whose CTRs follow their effects.
func TestMarketCalibration(t *testing.T) {
	cfg := smallMarket(1)
	cfg.AuctionsPerDay = 100_000
	cfg.Campaigns = 2
	cfg.Creatives = 3
	cfg.Placements = 100
	l := mustMarket(t, cfg)
	s := l.Stats()
	f := func(name string, got, want, tol float64) {
		t.Helper()
		if got < want*(1-tol) || got > want*(1+tol) {
			t.Fatalf("unexpected %s; got %.5g; want %.5g +- %.0f%%", name, got, want, 100*tol)
		}
	}
	f("auctions", float64(s.Auctions), 2*expectedAuctions(cfg), 0.02)
	f("CTR", s.CTR, 0.0042, 0.3)
	f("CPM", s.CPM, 0.736, 0.2)
	if s.PriceP99 > cfg.PriceCap {
		t.Fatalf("unexpected price over the cap; got p99 %v; want <= %v", s.PriceP99, cfg.PriceCap)
	}
	if s.TopShareClicks < 0.2 {
		t.Fatalf("unexpected short tail; got %.2f of the clicks from the best tenth of placements; want >= 0.2", s.TopShareClicks)
	}
	for ci := range l.Campaigns {
		sum := 0.0
		for _, cr := range l.Campaigns[ci].Creatives {
			sum += cr.CTREffect
		}
		f("mean creative effect", sum/float64(len(l.Campaigns[ci].Creatives)), 1, 1e-9)
	}

	// Each creative's CTR over the campaign's follows its effect (every
	// creative shows on the same mix of placements): on one campaign of
	// 3,000 clicks or so.
	cfg = smallMarket(3)
	cfg.Campaigns, cfg.Creatives, cfg.AuctionsPerDay = 1, 3, 600_000
	c := &mustMarket(t, cfg).Campaigns[0]
	var auctions, clicks [3]float64
	for _, a := range c.Auctions {
		auctions[a.Creative]++
		if a.Click {
			clicks[a.Creative]++
		}
	}
	all := (clicks[0] + clicks[1] + clicks[2]) / (auctions[0] + auctions[1] + auctions[2])
	for k, cr := range c.Creatives {
		f("creative CTR / campaign CTR", clicks[k]/auctions[k]/all, cr.CTREffect, 0.12)
	}
	if r := c.Creatives[0].CTREffect / c.Creatives[1].CTREffect; r > 0.9 && r < 1.1 {
		t.Fatalf("unexpected creatives of seed 3 too alike to test their effect; got a ratio of %.3f", r)
	}
}

// expectedAuctions sums the curve, with the burst, over the log's hours.
func expectedAuctions(cfg MarketConfig) float64 {
	n := 0.0
	for h := 0; h < 24*cfg.Days; h++ {
		x := cfg.Curve[h%24] * cfg.AuctionsPerDay / 24
		if off := time.Duration(h) * time.Hour; off >= cfg.Burst.From && off < cfg.Burst.To {
			x *= cfg.Burst.Traffic
		}
		n += x
	}
	return n
}

// TestReplayBudget: no strategy ever spends more than its budget on any
// campaign, even bidding far above every price.
func TestReplayBudget(t *testing.T) {
	l := mustMarket(t, smallMarket(2))
	for _, frac := range []uint64{2, 32} {
		for ci := range l.Campaigns {
			budget := l.Campaigns[ci].TotalCostMicros / frac
			for _, s := range Strategies() {
				o := mustReplay(t, l, ReplaySpec{Strategy: s, Campaign: ci, Param: 0.05, BudgetMicros: budget, TargetCPA: 1, ORTBC: 600})
				if o.SpendMicros > budget {
					t.Fatalf("unexpected overspend of %s on campaign %d at 1/%d; got %d micros; want <= %d", s, ci, frac, o.SpendMicros, budget)
				}
				if s != BidPacing && o.SpendMicros < budget*9/10 {
					t.Fatalf("unexpected underspend of %s on campaign %d bidding 50x the mean price at 1/%d; got %d of %d micros", s, ci, frac, o.SpendMicros, budget)
				}
			}
		}
	}
}

// TestReplayCreativeKeys: bidpulse counts a campaign's wins under keys of
// each of its creatives (campaign/creative and campaign/creative/placement,
// as its ingest counts an event with a creative), fits and answers bids at
// the creative/placement level, and bids differently on two creatives of
// one placement.
func TestReplayCreativeKeys(t *testing.T) {
	l := mustMarket(t, smallMarket(4))
	for ci := range l.Campaigns {
		c := &l.Campaigns[ci]
		_, lr, err := replay(l, ReplaySpec{Strategy: BidPerformance, Campaign: ci, Param: 0.001, BudgetMicros: c.TotalCostMicros / 2})
		if err != nil {
			t.Fatalf("cannot replay campaign %d: %s", ci, err)
		}
		now := l.Config.Start.Add(time.Duration(l.Config.Days) * 24 * time.Hour).UnixMilli()
		keys := func(level string) map[string]int {
			t.Helper()
			lvl, ok := lr.rollups.ByName(level)
			if !ok {
				t.Fatalf("unexpected rollups without %s", level)
			}
			seen := map[string]int{}
			lr.store.Scan(lvl, windows.Span24h, now, func(key []byte, cnt windows.Counts) bool {
				var v windows.Values
				if _, err := windows.DecodeKey(key, lr.rollups, &v); err != nil {
					t.Fatalf("cannot decode a key: %s", err)
				}
				if string(v[windows.DimCampaign]) != c.Name {
					t.Fatalf("unexpected campaign %q in a key of campaign %q", v[windows.DimCampaign], c.Name)
				}
				if cnt.Impressions > 0 {
					seen[string(v[windows.DimCreative])]++
				}
				return true
			})
			return seen
		}
		byCreative, byCell := keys("campaign/creative"), keys("campaign/creative/placement")
		for _, cr := range c.Creatives {
			if byCreative[cr.Name] != 1 || byCell[cr.Name] == 0 {
				t.Fatalf("unexpected keys of creative %s of campaign %s; got %d creative keys and %d creative/placement keys with impressions; want 1 and > 0",
					cr.Name, c.Name, byCreative[cr.Name], byCell[cr.Name])
			}
		}
		if len(byCreative) != len(c.Creatives) {
			t.Fatalf("unexpected creatives counted for campaign %s; got %v; want %d", c.Name, byCreative, len(c.Creatives))
		}
		cellLvl, _ := lr.rollups.ByName("campaign/creative/placement")
		answered := 0
		for _, a := range lr.answer {
			if a >= 0 && lr.nodes[a].level == cellLvl {
				answered++
			}
		}
		if answered < len(lr.cells)/2 {
			t.Fatalf("unexpected answers of campaign %s at the creative/placement level; got %d of %d cells; want at least half", c.Name, answered, len(lr.cells))
		}
		// The two creatives of the busiest placement get different bids.
		bids := make([]float64, len(lr.cells))
		lr.bids(l.Steps()-1, now-l.Config.Step.Milliseconds(), &ReplaySpec{Strategy: BidLinear, Param: 1}, bids)
		np := len(l.Placements)
		best := 0
		for p := range l.Placements {
			if l.Placements[p].Share > l.Placements[best].Share {
				best = p
			}
		}
		if bids[best] == bids[np+best] {
			t.Fatalf("unexpected equal bids on the two creatives of placement %s of campaign %s: %v", l.Placements[best].Name, c.Name, bids[best])
		}
	}
}

// handLog builds a log of one campaign with one creative, two placements
// and two one-hour steps from (step, placement, price, click) entries.
func handLog(entries [][4]int) *MarketLog {
	l := &MarketLog{Config: MarketConfig{Start: time.Date(2025, 3, 3, 0, 0, 0, 0, time.UTC), Days: 1, Step: time.Hour},
		Placements: []MarketPlacement{{Name: "a", Share: 0.5}, {Name: "b", Share: 0.5}},
		Campaigns: []MarketCampaign{{Name: "c1", Creatives: []MarketCreative{{Name: "cr1", Share: 1, CTREffect: 1}},
			Placements: []CampaignPlacement{{CTR: 0.1, CVR: 0.1, Value: 1}, {CTR: 0.1, CVR: 0.1, Value: 1}}}}}
	c := &l.Campaigns[0]
	startMs := l.Config.Start.UnixMilli()
	c.StepStart = []int{0}
	for s := 0; s < 24; s++ {
		for _, e := range entries {
			if e[0] == s {
				c.Auctions = append(c.Auctions, Auction{TimeMs: startMs + int64(s)*3600e3, Placement: uint16(e[1]), PriceMicros: uint32(e[2]), Click: e[3] == 1})
				c.TotalCostMicros += uint64(e[2])
			}
		}
		c.StepStart = append(c.StepStart, len(c.Auctions))
	}
	l.TotalCostMicros = c.TotalCostMicros
	return l
}

// TestReplayConstantClosedForm: a constant bid b buys, in log order, every
// auction priced below b that the budget left can pay.
func TestReplayConstantClosedForm(t *testing.T) {
	l := handLog([][4]int{{0, 0, 100, 1}, {0, 1, 300, 1}, {0, 0, 200, 0}, {1, 1, 250, 1}, {1, 0, 150, 0}, {1, 1, 249, 1}, {2, 0, 250, 0}})
	// Bid 250: 100, 200 bought (300); 300 is above the bid; 250 is not
	// below it (a tie loses); 150 would make 450 > 400: skipped; 249
	// would make 549: skipped; the last ties.
	o := mustReplay(t, l, ReplaySpec{Strategy: BidConstant, Param: 250e-6, BudgetMicros: 400})
	want := Outcome{Impressions: 2, Clicks: 1, SpendMicros: 300, ExhaustedStep: 1}
	if o != want {
		t.Fatalf("unexpected outcome; got %+v; want %+v", o, want)
	}
	// With the budget to spare: every auction priced below 250.
	o = mustReplay(t, l, ReplaySpec{Strategy: BidConstant, Param: 250e-6, BudgetMicros: 1e6})
	want = Outcome{Impressions: 4, Clicks: 2, SpendMicros: 100 + 200 + 150 + 249, ExhaustedStep: -1}
	if o != want {
		t.Fatalf("unexpected outcome; got %+v; want %+v", o, want)
	}
}

// TestReplayLinearClosedForm: on the first step nothing is known and the
// linear strategy bids its base everywhere; on the second it bids base x
// smoothed CTR / campaign CTR, the smoothing a Beta prior of 1000
// pseudo-impressions centred on the creative's CTR, which is the
// campaign's (its one creative has all the traffic; two placements are too
// few to fit the prior).
func TestReplayLinearClosedForm(t *testing.T) {
	var entries [][4]int
	for i := 0; i < 1000; i++ {
		entries = append(entries, [4]int{0, 0, 100, b2i(i%10 == 0)}, [4]int{0, 1, 100, 0})
	}
	// Campaign and creative CTR 100/2000 = 0.05; a: (100 + 1000 x 0.05) / 2000 =
	// 0.075, lift 1.5, bid 300; b: 50/2000 = 0.025, lift 0.5, bid 100.
	entries = append(entries, [4]int{1, 0, 299, 0}, [4]int{1, 0, 301, 0}, [4]int{1, 1, 99, 1}, [4]int{1, 1, 101, 0})
	l := handLog(entries)
	o := mustReplay(t, l, ReplaySpec{Strategy: BidLinear, Param: 200e-6, BudgetMicros: 1e9})
	want := Outcome{Impressions: 2002, Clicks: 101, SpendMicros: 2000*100 + 299 + 99, ExhaustedStep: -1}
	if o != want {
		t.Fatalf("unexpected outcome; got %+v; want %+v", o, want)
	}
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// TestRunMarket: a tiny benchmark aggregates every strategy at every
// fraction, within budget.
func TestRunMarket(t *testing.T) {
	rep, err := RunMarket(MarketOptions{Seeds: []uint64{1}, Fractions: []int{4}, Market: smallMarket})
	if err != nil {
		t.Fatalf("unexpected error: %s", err)
	}
	if len(rep.Rows) != len(Strategies()) || len(rep.Runs) != 1 {
		t.Fatalf("unexpected report; got %d rows and %d runs", len(rep.Rows), len(rep.Runs))
	}
	for s, o := range rep.Runs[0].Outcomes {
		if o.SpendMicros > rep.Runs[0].BudgetMicros {
			t.Fatalf("unexpected overspend of %s; got %d; want <= %d", s, o.SpendMicros, rep.Runs[0].BudgetMicros)
		}
	}
	if testing.Verbose() {
		t.Logf("\n%s", rep.Text())
	}
	if c := Failed(rep.BudgetClaims()); len(c) > 0 {
		t.Fatalf("unexpected failed claim: %s", c[0].Line("claim"))
	}
	var b strings.Builder
	if err := rep.WriteHTML(&b); err != nil {
		t.Fatalf("cannot write the HTML page: %s", err)
	}
	if !strings.Contains(b.String(), `"strategy":"performance"`) || !strings.Contains(b.String(), "<svg") && !strings.Contains(b.String(), "createElementNS") {
		t.Fatalf("unexpected HTML page without the data or the chart:\n%.500s", b.String())
	}
}
