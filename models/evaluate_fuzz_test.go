package models

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/bidpulse/bidpulse/windows"
)

// checkEvaluate ticks fresh states on spans, evaluates the key, and fails
// unless the result holds Evaluate's invariants whatever the counts
// (inconsistent spans and children above their parents included): a
// finite multiplier, 0 exactly when a factor is 0, else within the final
// clamp; finite factor values and inputs; finite states.
func checkEvaluate(t *testing.T, spans []Spans, nowMs int64, seed uint64) {
	t.Helper()
	cfg := DefaultCampaignPolicy()
	cfg.Policy = PolicyTargetROAS
	cfg.Goal.Target = 3
	cfg.Pacing.DailyBudget = 100
	cfg.Explore.Enabled = true
	cfg.Explore.MaxImpressions = math.MaxUint64
	cfg.Modifiers.Device = map[string]float64{"mobile": 0.5}
	cfg.HardMax = 4
	chain := make([]windows.Counts, len(spans))
	for i := range spans {
		chain[i] = spans[i][cfg.Performance.Window]
	}
	var hist DelayHistogram
	hist.Add(nowMs-1000, nowMs, 1)
	var cs CampaignState
	var ks KeyState
	in := &Input{Chain: chain, Spans: spans, NowMs: nowMs, Device: []byte("mobile")}
	for i := int64(0); i < 3; i++ {
		ti := &TickInput{NowMs: nowMs + i*60e3, Delays: &hist, HourlyKnown: i == 1, SpentTodayMicros: uint64(seed)}
		if len(spans) > 0 {
			ti.Campaign = spans[0]
			for h := range ti.Hourly {
				ti.Hourly[h] = spans[0][windows.Span1h]
			}
		}
		cs.Tick(&cfg, ti)
		in.NowMs = ti.NowMs
		ks.Tick(&cfg, in, &cs)
	}
	for _, v := range []float64{cs.Goal.LogFactor, cs.Goal.Integral, cs.Pacing.LogFactor, cs.Pacing.Integral, cs.Delay.CampaignOld, cs.Delay.CampaignTail, ks.Value, ks.Good, ks.Old} {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			t.Fatalf("unexpected non-finite state for %+v: %+v, %+v", spans, cs.Goal, ks)
		}
	}
	rng := NewRand(seed)
	var res Result
	Evaluate(&cfg, in, &cs, &ks, &rng, &res)
	m := res.Multiplier
	zero := false
	for i := 0; i < res.NFactors; i++ {
		fa := &res.Factors[i]
		if !(fa.Value >= 0) || math.IsInf(fa.Value, 0) {
			t.Fatalf("unexpected factor %s for %+v; got %v", fa.Name, spans, fa.Value)
		}
		zero = zero || fa.Value == 0
		for j := 0; j < fa.NInputs; j++ {
			if v := fa.Inputs[j].Value; math.IsNaN(v) || math.IsInf(v, 0) {
				t.Fatalf("unexpected input %s.%s for %+v; got %v", fa.Name, fa.Inputs[j].Name, spans, v)
			}
		}
	}
	switch {
	case zero && m != 0:
		t.Fatalf("unexpected multiplier %v with a zero factor", m)
	case !zero && !(m >= res.Min && m <= res.Max && res.Max <= cfg.HardMax):
		t.Fatalf("unexpected multiplier for %+v; got %v; want within [%v, %v]", spans, m, res.Min, res.Max)
	}
}

func randomSpans(r *rand.Rand, levels int) []Spans {
	out := make([]Spans, levels)
	for l := range out {
		for s := range out[l] {
			c := &out[l][s]
			c.Impressions = randomCount(r, 1e7)
			c.Clicks = randomCount(r, c.Impressions/10+1)
			c.Conversions = randomCount(r, c.Clicks/10+1)
			c.CostMicros = randomCount(r, 1e12)
			c.ValueMicros = randomCount(r, 1e12)
		}
	}
	return out
}

func TestEvaluateProperties(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for i := 0; i < 1000; i++ {
		checkEvaluate(t, randomSpans(r, r.IntN(4)), int64(r.Uint64N(4e12)), r.Uint64())
	}
}

func FuzzEvaluate(f *testing.F) {
	f.Add(uint64(10000), uint64(200), uint64(10), uint64(2000), uint64(80), uint64(6), int64(1764322200000))
	f.Add(uint64(0), uint64(0), uint64(0), uint64(0), uint64(5), uint64(0), int64(0))
	f.Add(uint64(math.MaxUint64), uint64(math.MaxUint64), uint64(1), uint64(1), uint64(math.MaxUint64), uint64(7), int64(-5))
	f.Fuzz(func(t *testing.T, ci, cc, cv, ki, kc, kv uint64, now int64) {
		var sp [2]Spans
		for s := range sp[0] {
			n := uint64(s + 1)
			sp[0][s] = windows.Counts{Impressions: ci * n, Clicks: cc * n, Conversions: cv * n, CostMicros: ci, ValueMicros: cv}
			sp[1][s] = windows.Counts{Impressions: ki * n, Clicks: kc * n, Conversions: kv * n}
		}
		checkEvaluate(t, sp[:], now, ci^kc)
	})
}
