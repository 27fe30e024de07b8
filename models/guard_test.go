package models

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/bidpulse/bidpulse/windows"
)

func TestLimitStep(t *testing.T) {
	f := func(prev, next, step, want float64) {
		t.Helper()
		if got := limitStep(prev, next, step); !almostEqual(got, want) {
			t.Fatalf("unexpected limitStep(%v, %v, %v); got %v; want %v", prev, next, step, got, want)
		}
	}
	f(1, 2, 0.2, 1.2)
	f(1, 0.5, 0.2, 1/1.2)
	f(1, 1.1, 0.2, 1.1)
	f(1.5, 3, 1, 3)
	f(1, 2, 0, 1)
}

// keySpans returns spans for a key with a steady CTR over the hour and a
// last minute of imps1m impressions and clicks1m clicks.
func keySpans(imps1m, clicks1m uint64) Spans {
	var sp Spans
	sp[windows.Span1m] = windows.Counts{Impressions: imps1m, Clicks: clicks1m}
	for s, n := range map[windows.Span]uint64{windows.Span5m: 5, windows.Span15m: 15, windows.Span1h: 60, windows.Span24h: 1440} {
		sp[s] = windows.Counts{Impressions: imps1m + (n-1)*1000, Clicks: clicks1m + (n-1)*20}
	}
	return sp
}

func TestAnomaly(t *testing.T) {
	cfg := DefaultGuard()
	f := func(imps, clicks uint64, want bool) {
		t.Helper()
		sp := keySpans(imps, clicks)
		got, ctr1m, base, n := anomaly(&cfg, &sp, nil)
		if got != want {
			t.Fatalf("unexpected anomaly for %d/%d in the last minute; got %v (ctr %v, baseline %v, clicks %d); want %v", clicks, imps, got, ctr1m, base, n, want)
		}
	}
	f(1000, 20, false)   // the baseline 2%
	f(1000, 59, false)   // 5.9% < 3 x 2%
	f(1000, 61, true)    // 6.1%
	f(100, 19, false)    // 19% but too few clicks
	f(1000, 600, true)   // a click-fraud burst
	f(0, 30, true)       // clicks without impressions
	sp := keySpans(0, 0) // nothing at all
	if got, _, _, _ := anomaly(&cfg, &sp, nil); got {
		t.Fatalf("unexpected anomaly without clicks")
	}
}

func TestLastEventAge(t *testing.T) {
	now := int64(1e12)
	var sp Spans
	sp[windows.Span1h] = windows.Counts{Impressions: 5}
	sp[windows.Span24h] = windows.Counts{Impressions: 9}
	f := func(in Input, key *Spans, want int64) {
		t.Helper()
		if got := lastEventAge(&in, key); got != want {
			t.Fatalf("unexpected age; got %d; want %d", got, want)
		}
	}
	f(Input{NowMs: now, LastEventMs: now - 5000}, &sp, 5000)
	f(Input{NowMs: now}, &sp, 15*60e3) // nothing in the last 15 minutes
	f(Input{NowMs: now}, nil, -1)
	var empty Spans
	f(Input{NowMs: now}, &empty, 24*3600e3)
}

// TestKeyStateHold: an anomalous minute starts a hold at the last good
// value; the hold ends HoldFor after the last anomalous tick; the maximum
// step bounds every move.
func TestKeyStateHold(t *testing.T) {
	cfg := DefaultCampaignPolicy()
	cfg.Guard.MaxStepPerMinute = 0.1
	now := int64(1e12)
	camp := keySpans(10000, 200)
	good := keySpans(1000, 30) // 3% against the campaign's 2%
	in := func(key Spans) *Input {
		return &Input{Chain: []windows.Counts{camp[windows.Span1h], key[windows.Span1h]}, Spans: []Spans{camp, key}, NowMs: now}
	}
	var ks KeyState
	ks.Tick(&cfg, in(good), nil)
	v0 := ks.Value
	if v0 <= 1 || ks.Good != v0 || ks.Held(now) {
		t.Fatalf("unexpected first tick: %+v", ks)
	}
	// A burst: held at the good value, and said so.
	now += 60e3
	burst := keySpans(1000, 500)
	ks.Tick(&cfg, in(burst), nil)
	if !ks.Held(now) || ks.Value != v0 || ks.Anomalies != 1 || ks.HeldSinceMs != now {
		t.Fatalf("unexpected tick during the burst: %+v", ks)
	}
	var res Result
	Evaluate(&cfg, in(burst), nil, &ks, nil, &res)
	g, ok := res.Factor(FactorGuard)
	if held, _ := g.Input(InputHeld); !ok || held != 1 || !almostEqual(res.BeforeClamp, v0) {
		t.Fatalf("unexpected explain during the hold: %+v, before clamp %v; want held=1 and %v", g, res.BeforeClamp, v0)
	}
	// Still held after the burst, until HoldFor passed.
	now += 30 * 60e3
	ks.Tick(&cfg, in(good), nil)
	if !ks.Held(now) || ks.Value != v0 {
		t.Fatalf("unexpected tick 30 minutes after the burst: %+v", ks)
	}
	now += cfg.Guard.HoldFor.Milliseconds()
	ks.Tick(&cfg, in(good), nil)
	if ks.Held(now) || ks.HeldSinceMs != 0 {
		t.Fatalf("unexpected hold after HoldFor: %+v", ks)
	}
	// The maximum step: a jump to a much better key moves 10% a minute.
	v := ks.Value
	now += 60e3
	great := keySpans(1000, 59)
	great[windows.Span1h].Clicks *= 3
	ks.Tick(&cfg, in(great), nil)
	if !almostEqual(ks.Value, v*1.1) {
		t.Fatalf("unexpected step; got %v; want %v", ks.Value, v*1.1)
	}
}

func TestGuardStale(t *testing.T) {
	cfg := DefaultCampaignPolicy()
	now := int64(1e12)
	camp := keySpans(10000, 200)
	key := keySpans(1000, 40)
	in := &Input{Chain: []windows.Counts{camp[windows.Span1h], key[windows.Span1h]}, Spans: []Spans{camp, key}, NowMs: now,
		LastEventMs: now - 20*60e3}
	var res Result
	Evaluate(&cfg, in, nil, nil, nil, &res)
	g, ok := res.Factor(FactorGuard)
	if stale, _ := g.Input(InputStale); !ok || stale != 1 || res.Multiplier != 1 {
		t.Fatalf("unexpected stale answer: multiplier %v, guard %+v", res.Multiplier, g)
	}
	in.LastEventMs = now - 60e3
	Evaluate(&cfg, in, nil, nil, nil, &res)
	if _, ok := res.Factor(FactorGuard); ok || res.Multiplier <= 1 {
		t.Fatalf("unexpected answer for fresh data: multiplier %v, factors %d", res.Multiplier, res.NFactors)
	}
}

func TestGuardConfigValidate(t *testing.T) {
	f := func(mutate func(*GuardConfig), want string) {
		t.Helper()
		c := DefaultGuard()
		mutate(&c)
		err := c.Validate()
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("unexpected error; got %v; want one containing %q", err, want)
		}
	}
	f(func(c *GuardConfig) { c.MaxStepPerMinute = -1 }, "guard.max_step_per_minute")
	f(func(c *GuardConfig) { c.AnomalyRatio = 1 }, "guard.anomaly_ratio")
	f(func(c *GuardConfig) { c.AnomalyMinClicks = 0 }, "guard.anomaly_min_clicks")
	f(func(c *GuardConfig) { c.HoldFor = -time.Second }, "guard.hold_for")
	f(func(c *GuardConfig) { c.StaleAfter = 1000 * time.Hour }, "guard.stale_after")
	c := GuardConfig{}
	if err := c.Validate(); err != nil {
		t.Fatalf("unexpected error for guardrails off: %s", err)
	}
	if c := DefaultGuard(); math.IsNaN(c.MaxStepPerMinute) || c.Validate() != nil {
		t.Fatalf("unexpected default %+v", c)
	}
}
