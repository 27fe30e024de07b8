package models

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/bidpulse/bidpulse/windows"
)

// TestEvaluateMatchesPerformance: with the guardrails and delay correction
// off and the performance clamp as the final clamp, Evaluate answers what
// Performance does.
func TestEvaluateMatchesPerformance(t *testing.T) {
	cfg := DefaultCampaignPolicy()
	cfg.Guard = GuardConfig{}
	cfg.Delay.Enabled = false
	cfg.Min, cfg.Max = cfg.Performance.Min, cfg.Performance.Max
	for _, chain := range [][]windows.Counts{
		{campaign, counts(2000, 80, 6)},
		{campaign, counts(2000, 10, 0)},
		{campaign, counts(4000, 100, 6), counts(500, 10, 1)},
		{campaign},
		nil,
	} {
		var a, b Result
		Performance(&cfg.Performance, &Input{Chain: chain}, &a)
		Evaluate(&cfg, &Input{Chain: chain}, nil, nil, nil, &b)
		if a.Multiplier != b.Multiplier {
			t.Fatalf("unexpected multiplier for %v; got %v; want %v as Performance", chain, b.Multiplier, a.Multiplier)
		}
	}
}

func TestEvaluateStacking(t *testing.T) {
	cfg := DefaultCampaignPolicy()
	cfg.Guard = GuardConfig{}
	cfg.Delay.Enabled = false
	cfg.Policy = PolicyTargetCPA
	cfg.Goal.Target = 20
	cfg.Pacing.DailyBudget = 100
	cfg.Modifiers.Device = map[string]float64{"mobile": 1.5, "tv": 0}
	cfg.Modifiers.Country = map[string]float64{"FR": 2}
	cs := &CampaignState{Goal: GoalState{LogFactor: 0.5}, Pacing: PacingState{LogFactor: -0.2, DayEndMs: 2e12}}
	chain := []windows.Counts{campaign, counts(2000, 50, 3)}
	in := &Input{Chain: chain, Device: []byte("mobile"), Country: []byte("FR"), NowMs: 1e12}
	var perf, res Result
	Performance(&cfg.Performance, &Input{Chain: chain}, &perf)
	Evaluate(&cfg, in, cs, nil, nil, &res)
	want := perf.BeforeClamp * 1.6487212707001282 * 0.8187307530779818 * 1.5 * 2
	if !almostEqual(res.BeforeClamp, want) || res.Multiplier != res.BeforeClamp || res.Policy != PolicyTargetCPA {
		t.Fatalf("unexpected stacking; got %v (multiplier %v); want %v", res.BeforeClamp, res.Multiplier, want)
	}
	names := ""
	for i := 0; i < res.NFactors; i++ {
		names += res.Factors[i].Name + " "
	}
	if names != "ctr cvr target_cpa pacing device country " {
		t.Fatalf("unexpected factors %q", names)
	}
	// The final clamp, under the hard cap.
	cfg.Max, cfg.HardMax = 8, 3
	cs.Goal.LogFactor = 1.5
	Evaluate(&cfg, in, cs, nil, nil, &res)
	if res.Multiplier != 3 || !res.Clamped || res.Max != 3 || res.CampaignMax != 8 || res.HardMax != 3 {
		t.Fatalf("unexpected hard cap: %+v", res)
	}
	// A 0 opts out and skips the clamp: the modifier, and a spent budget.
	in.Device = []byte("tv")
	Evaluate(&cfg, in, cs, nil, nil, &res)
	if res.Multiplier != 0 || res.Clamped {
		t.Fatalf("unexpected opt-out: multiplier %v, clamped %v", res.Multiplier, res.Clamped)
	}
	in.Device = nil
	in.SpendKnown, in.SpentTodayMicros = true, 100e6
	Evaluate(&cfg, in, cs, nil, nil, &res)
	if res.Multiplier != 0 {
		t.Fatalf("unexpected multiplier with the budget spent; got %v; want 0", res.Multiplier)
	}
	in.SpendKnown = false
	cs.Pacing.Exhausted = true
	Evaluate(&cfg, in, cs, nil, nil, &res)
	if res.Multiplier != 0 {
		t.Fatalf("unexpected multiplier with the budget exhausted; got %v; want 0", res.Multiplier)
	}
	// No data: goal, pacing and modifiers still apply.
	cs.Pacing.Exhausted = false
	in.Chain = nil
	Evaluate(&cfg, in, cs, nil, nil, &res)
	if _, ok := res.Factor(FactorPacing); !ok || res.NFactors != 3 {
		t.Fatalf("unexpected factors without data: %d", res.NFactors)
	}
}

// TestEvaluatePerformanceClamp: the key's live value stays within the
// performance clamp, and the explanation says so.
func TestEvaluatePerformanceClamp(t *testing.T) {
	cfg := DefaultCampaignPolicy()
	cfg.Guard = GuardConfig{}
	cfg.Delay.Enabled = false
	var res Result
	Evaluate(&cfg, &Input{Chain: []windows.Counts{campaign, counts(2000, 80, 6)}}, nil, nil, nil, &res)
	f, ok := res.Factor(FactorPerformanceClamp)
	if !ok || !almostEqual(res.BeforeClamp, 2) || res.Clamped {
		t.Fatalf("unexpected result: %+v", res)
	}
	if before, _ := f.Input(InputBefore); !almostEqual(before, 85.0/39) {
		t.Fatalf("unexpected value before the performance clamp; got %v; want %v", before, 85.0/39)
	}
}

// TestEvaluateGolden compares the explanation of a fully stacked answer
// with testdata/evaluate_<name>.json (-update rewrites them).
func TestEvaluateGolden(t *testing.T) {
	paris, err := time.LoadLocation("Europe/Paris")
	if err != nil {
		t.Fatalf("cannot load Europe/Paris: %s", err)
	}
	now := time.Date(2025, 11, 28, 9, 30, 0, 0, paris)
	f := func(name string, cfg CampaignPolicy, cs *CampaignState, ks *KeyState, in *Input) {
		t.Helper()
		if err := cfg.Validate(); err != nil {
			t.Fatalf("%s: invalid config: %s", name, err)
		}
		var res Result
		Evaluate(&cfg, in, cs, ks, nil, &res)
		var got bytes.Buffer
		if err := json.Indent(&got, res.AppendJSON(nil), "", "  "); err != nil {
			t.Fatalf("%s: invalid JSON: %s", name, err)
		}
		got.WriteByte('\n')
		path := filepath.Join("testdata", "evaluate_"+name+".json")
		if *update {
			if err := os.WriteFile(path, got.Bytes(), 0o644); err != nil {
				t.Fatalf("cannot update %s: %s", path, err)
			}
			return
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("cannot read golden file (run go test -run TestEvaluateGolden -update to create it): %s", err)
		}
		if !bytes.Equal(got.Bytes(), want) && !jsonClose(t, got.Bytes(), want) {
			t.Fatalf("unexpected output for %s (run with -update to accept it);\ngot\n%s\nwant\n%s", path, got.Bytes(), want)
		}
	}
	camp := keySpans(10000, 200)
	key := keySpans(1000, 30)
	for s := range camp {
		camp[s].Conversions = camp[s].Clicks / 20
		key[s].Conversions = key[s].Clicks / 15
	}
	in := func() *Input {
		return &Input{Chain: []windows.Counts{camp[windows.Span1h], key[windows.Span1h]}, Spans: []Spans{camp, key},
			NowMs: now.UnixMilli(), Device: []byte("mobile"), Country: []byte("FR")}
	}
	cfg := DefaultCampaignPolicy()
	cfg.Location, cfg.TimeZone = paris, "Europe/Paris"
	cfg.Delay.Enabled = false
	cfg.Policy = PolicyTargetCPA
	cfg.Goal.Target = 20
	cfg.Pacing.DailyBudget = 5000
	cfg.HardMax = 5
	cfg.Modifiers = ModifierConfig{
		Device:  map[string]float64{"mobile": 1.3},
		Country: map[string]float64{"FR": 1.2},
		Hour:    map[int]float64{9: 0.9},
		Seasons: []Season{{Name: "black-friday", Start: now.Add(-9 * time.Hour), End: now.Add(72 * time.Hour), Factor: 1.5}},
	}
	cs := &CampaignState{
		Goal:   GoalState{LogFactor: -0.2, Integral: -0.3, Observed: 24, Error: -0.18, ExpectedConversions: 40, Cost: 960, Active: true},
		Pacing: PacingState{LogFactor: -0.1, SpentMicros: 1900e6, PlannedMicros: 1950e6, PlanShare: 0.39, Error: 0.01, DayEndMs: now.Add(15 * time.Hour).UnixMilli()},
	}
	ks := &KeyState{Value: 1.4, AtMs: now.Add(-time.Minute).UnixMilli(), Good: 1.4}
	f("stacked", cfg, cs, ks, in())
	// Held: a click burst in the key's last minute.
	burst := in()
	burst.Spans[1] = keySpans(1000, 400)
	for s := range burst.Spans[1] {
		burst.Spans[1][s].Conversions = key[s].Conversions
	}
	burst.Chain[1] = burst.Spans[1][windows.Span1h]
	f("held", cfg, cs, ks, burst)
	// Budget spent: 0, no clamp.
	spent := *cs
	spent.Pacing.Exhausted = true
	f("budget_spent", cfg, &spent, ks, in())
}

func TestEvaluateAllocs(t *testing.T) {
	cfg := DefaultCampaignPolicy()
	if err := cfg.SetTimeZone("Europe/Paris"); err != nil {
		t.Fatalf("unexpected error: %s", err)
	}
	cfg.Policy = PolicyTargetCPA
	cfg.Goal.Target = 20
	cfg.Pacing.DailyBudget = 100
	cfg.Explore.Enabled = true
	cfg.Modifiers = ModifierConfig{Device: map[string]float64{"mobile": 1.2}, Country: map[string]float64{"FR": 1.1},
		Hour: map[int]float64{}, Seasons: []Season{{Start: time.Unix(0, 0), End: time.Unix(1e10, 0), Factor: 1.2}}}
	for h := 0; h < 24; h++ {
		cfg.Modifiers.Hour[h] = 1.1
	}
	camp := keySpans(10000, 200)
	var key Spans // little evidence: exploration draws
	for s := range key {
		key[s] = counts(500, 15, 1)
	}
	now := time.Date(2025, 11, 28, 9, 30, 0, 0, time.UTC).UnixMilli()
	in := &Input{Chain: []windows.Counts{camp[windows.Span1h], key[windows.Span1h]}, Spans: []Spans{camp, key},
		Strengths: []Strength{{}, {CTR: 500, CVR: 40}}, NowMs: now, Device: []byte("mobile"), Country: []byte("FR"), SpendKnown: true}
	var cs CampaignState
	var hist DelayHistogram
	for i := 0; i < 1000; i++ {
		hist.Add(now-int64(i)*60e3, now, 1)
	}
	ti := &TickInput{NowMs: now, Campaign: camp, Delays: &hist, HourlyKnown: true}
	cs.Tick(&cfg, ti)
	var ks KeyState
	ks.Tick(&cfg, in, &cs)
	rng := NewRand(1)
	var res Result
	buf := make([]byte, 0, 8192)
	f := func(name string, fn func()) {
		t.Helper()
		if n := testing.AllocsPerRun(200, fn); n != 0 {
			t.Fatalf("unexpected allocations in %s; got %v; want 0", name, n)
		}
	}
	f("Evaluate", func() {
		Evaluate(&cfg, in, &cs, &ks, &rng, &res)
		buf = res.AppendJSON(buf[:0])
	})
	if _, ok := res.Factor(FactorExplore); !ok || res.NFactors < 9 {
		t.Fatalf("unexpected factors; got %d; want every kind", res.NFactors)
	}
	// A learned delay model is compiled anew on each tick (a published
	// state's model is never changed): one allocation; on the fallback,
	// the shared model: none.
	if n := testing.AllocsPerRun(200, func() { cs.Tick(&cfg, ti) }); n != 1 {
		t.Fatalf("unexpected allocations in CampaignState.Tick with a learned model; got %v; want 1", n)
	}
	var fresh CampaignState
	noDelays := &TickInput{NowMs: now, Campaign: camp, HourlyKnown: true}
	f("CampaignState.Tick on the fallback", func() { fresh.Tick(&cfg, noDelays) })
	f("KeyState.Tick", func() { ks.Tick(&cfg, in, &cs) })
}
