package models

import (
	"testing"
	"time"

	"github.com/bidpulse/bidpulse/windows"
)

// benchSetup returns a fully configured policy (target CPA, pacing, every
// modifier, guardrails, delay correction, exploration) with ticked states
// and the input of a key two levels below its campaign.
func benchSetup(b *testing.B) (*CampaignPolicy, *Input, *CampaignState, *KeyState, *TickInput) {
	cfg := DefaultCampaignPolicy()
	if err := cfg.SetTimeZone("Europe/Paris"); err != nil {
		b.Fatalf("unexpected error: %s", err)
	}
	cfg.Policy = PolicyTargetCPA
	cfg.Goal.Target = 20
	cfg.Pacing.DailyBudget = 5000
	cfg.Explore.Enabled = true
	cfg.Modifiers = ModifierConfig{Device: map[string]float64{"mobile": 1.2}, Country: map[string]float64{"FR": 1.1},
		Hour: map[int]float64{9: 0.9}, Seasons: []Season{{Start: time.Unix(0, 0), End: time.Unix(1e10, 0), Factor: 1.2}}}
	now := time.Date(2025, 11, 28, 9, 30, 0, 0, time.UTC).UnixMilli()
	camp, mid, key := keySpans(10000, 200), keySpans(4000, 100), keySpans(500, 10)
	in := &Input{
		Chain:     []windows.Counts{camp[windows.Span1h], mid[windows.Span1h], key[windows.Span1h]},
		Spans:     []Spans{camp, mid, key},
		Strengths: []Strength{{}, {CTR: 800, CVR: 60}, {CTR: 500, CVR: 40}},
		NowMs:     now, Device: []byte("mobile"), Country: []byte("FR"),
	}
	var hist DelayHistogram
	for i := 0; i < 1000; i++ {
		hist.Add(now-int64(i)*60e3, now, 1)
	}
	ti := &TickInput{NowMs: now, Campaign: camp, Delays: &hist, HourlyKnown: true}
	cs := new(CampaignState)
	cs.Tick(&cfg, ti)
	ks := new(KeyState)
	ks.Tick(&cfg, in, cs)
	return &cfg, in, cs, ks, ti
}

// BenchmarkEvaluate measures the bid path: Evaluate with every policy on,
// against Performance alone (the baseline it stacks on).
func BenchmarkEvaluate(b *testing.B) {
	cfg, in, cs, ks, _ := benchSetup(b)
	b.Run("performance_baseline", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			var res Result
			for pb.Next() {
				Performance(&cfg.Performance, in, &res)
			}
		})
	})
	b.Run("evaluate_all", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			var res Result
			rng := NewRand(1)
			for pb.Next() {
				Evaluate(cfg, in, cs, ks, &rng, &res)
			}
		})
	})
	b.Run("evaluate_all_explain", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			var res Result
			rng := NewRand(1)
			buf := make([]byte, 0, 8192)
			for pb.Next() {
				Evaluate(cfg, in, cs, ks, &rng, &res)
				buf = res.AppendJSON(buf[:0])
			}
		})
	})
}

// BenchmarkTick measures the control tick of a campaign and of a key.
func BenchmarkTick(b *testing.B) {
	cfg, in, cs, ks, ti := benchSetup(b)
	b.Run("campaign", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			cs.Tick(cfg, ti)
		}
	})
	b.Run("key", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			ks.Tick(cfg, in, cs)
		}
	})
	var hourly [24]windows.Counts
	in.Hourly = &hourly
	b.Run("key_hourly", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			ks.Tick(cfg, in, cs)
		}
	})
	sibs := make([]windows.Counts, 100)
	for i := range sibs {
		sibs[i] = counts(uint64(1000+i*37), uint64(20+i%13), uint64(i%5))
	}
	b.Run("fit_priors_100", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			FitPriors(&cfg.Performance, sibs)
		}
	})
}
