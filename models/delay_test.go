package models

import (
	"encoding/json"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/bidpulse/bidpulse/windows"
)

func TestDelayBin(t *testing.T) {
	f := func(d time.Duration, want int) {
		t.Helper()
		if got := delayBin(d.Milliseconds()); got != want {
			t.Fatalf("unexpected bin of %s; got %d; want %d", d, got, want)
		}
	}
	f(-time.Hour, 0)
	f(0, 0)
	f(29*time.Second, 0)
	f(30*time.Second, 1)
	f(59*time.Minute, 11)
	f(time.Hour, 12)
	f(29*24*time.Hour, DelayBins-1)
	f(300*24*time.Hour, DelayBins-1)
	for i := 0; i < DelayBins; i++ {
		if DelayEdge(i) >= DelayEdge(i+1) {
			t.Fatalf("unexpected edges %s, %s", DelayEdge(i), DelayEdge(i+1))
		}
	}
}

func TestDelayHistogram(t *testing.T) {
	var a, b DelayHistogram
	a.Add(1000, 1000+10*60e3, 1)    // 10 min
	a.Add(5000, 5000+10*60e3, 0)    // weight 0 counts as 1
	a.Add(9000, 9000+3*3600e3, 0.5) // 3 h
	b.Add(100, 100+10*60e3, 2)
	b.Add(0, 50, math.NaN())
	if a.Samples() != 3 || a.StartMs != 1000+10*60e3 {
		t.Fatalf("unexpected histogram %+v", a)
	}
	a.Merge(&b)
	if a.Samples() != 5 || a.StartMs != 50 {
		t.Fatalf("unexpected merged samples %d, start %d; want 5, 50", a.Samples(), a.StartMs)
	}
	if w := a.Weights[delayBin(10*60e3)]; w != 4 {
		t.Fatalf("unexpected weight of the 10-minute bin; got %v; want 4", w)
	}
	// Plain data: JSON round trip.
	buf, err := json.Marshal(&a)
	if err != nil {
		t.Fatalf("cannot marshal: %s", err)
	}
	var c DelayHistogram
	if err := json.Unmarshal(buf, &c); err != nil || c != a {
		t.Fatalf("unexpected round trip; got %+v, %v; want %+v", c, err, a)
	}
}

// TestDelayHistogramExposure: a young recording cannot have seen the long
// delays of its latest clicks; the CDF corrects for it.
func TestDelayHistogramExposure(t *testing.T) {
	// Steady clicks over the last 4 days, delays uniform on [0, 2 d): a
	// delay d is seen for the clicks of the first 4d - d only.
	const day = 24 * 3600e3
	T := int64(4 * day)
	now := int64(100 * day)
	var h DelayHistogram
	r := NewRand(1)
	for i := 0; i < 400000; i++ {
		click := now - T + int64(r.Float64()*float64(T))
		d := int64(r.Float64() * 2 * day)
		if click+d < now {
			h.Add(click, click+d, 1)
		}
	}
	h.StartMs = now - T
	var cdf [DelayBins + 1]float64
	h.CDF(now, &cdf)
	for i, e := range delayEdges {
		want := math.Min(float64(e)/(2*day), 1)
		if math.Abs(cdf[i]-want) > 0.02 {
			t.Fatalf("unexpected CDF at %s; got %.4f; want %.4f", DelayEdge(i), cdf[i], want)
		}
	}
	// Without the correction (no StartMs) the long delays are missing.
	h.StartMs = 0
	h.CDF(now, &cdf)
	if got := cdf[delayBin(day)]; got < 0.55 {
		t.Fatalf("unexpected uncorrected CDF at 1 d; got %.3f; want well above the true 0.5", got)
	}
	// An empty histogram still gives a distribution function.
	var empty DelayHistogram
	empty.CDF(now, &cdf)
	if cdf[0] != 0 || cdf[DelayBins] != 1 {
		t.Fatalf("unexpected CDF of an empty histogram: %v", cdf)
	}
}

func TestDelayConfigValidate(t *testing.T) {
	f := func(mutate func(*DelayConfig), want string) {
		t.Helper()
		c := DefaultDelay()
		mutate(&c)
		err := c.Validate()
		if want == "" {
			if err != nil {
				t.Fatalf("unexpected error: %s", err)
			}
			return
		}
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("unexpected error; got %v; want one containing %q", err, want)
		}
	}
	f(func(c *DelayConfig) {}, "")
	f(func(c *DelayConfig) { c.CountedAt = "when" }, "delay.counted_at")
	f(func(c *DelayConfig) { c.MaxCorrection = 0.5 }, "delay.max_correction")
	f(func(c *DelayConfig) { c.Fallback = nil }, "delay.fallback")
	f(func(c *DelayConfig) { c.Fallback[1].After = time.Minute }, "delay.fallback[1].after")
	f(func(c *DelayConfig) { c.Fallback[1].Share = 0.1 }, "delay.fallback[1].share")
	f(func(c *DelayConfig) { c.Fallback = c.Fallback[:2] }, "must have share 1")
}

// steadySpans returns the spans of a key clicking at rate clicks/ms for
// ever.
func steadySpans(rate float64) Spans {
	var sp Spans
	for s := windows.Span(0); s < windows.NumSpans; s++ {
		sp[s].Clicks = uint64(math.Round(rate * float64(s.Duration().Milliseconds())))
	}
	return sp
}

// TestEffectiveClicksSteady: with clicks at a steady rate for ever and
// conversions counted at their own time, every window counts as many
// conversions as its clicks will bring: the effective clicks are the
// clicks, whatever the delays.
func TestEffectiveClicksSteady(t *testing.T) {
	cfg := DefaultDelay()
	for _, w := range []windows.Span{windows.Span1m, windows.Span1h, windows.Span24h} {
		var d DelayState
		d.refresh(&cfg, nil, w, 0)
		sp := steadySpans(3600.0 / 3600e3) // a click a second
		got := d.EffectiveClicks(&sp, 10)
		want := float64(sp[w].Clicks)
		if math.Abs(got/want-1) > 0.01 {
			t.Fatalf("unexpected effective clicks of window %s; got %.1f; want %.1f", w, got, want)
		}
	}
}

// TestEffectiveClicksYoung: a key launched an hour ago has seen only the
// conversions of its clicks that arrived within their age.
func TestEffectiveClicksYoung(t *testing.T) {
	cfg := DefaultDelay()
	var d DelayState
	d.refresh(&cfg, nil, windows.Span1h, 0)
	// 6000 clicks over the last hour, none before.
	sp := steadySpans(6000.0 / 3600e3)
	for s := windows.Span1h; s < windows.NumSpans; s++ {
		sp[s].Clicks = sp[windows.Span1h].Clicks
	}
	// The expected share: the mean of F over [0, 1h), by the trapezoid
	// rule on the fallback (linear to 0.35 at 1 h): 0.175.
	want := 6000 * 0.175
	for _, age := range []int64{-1, 3600e3} {
		got := d.EffectiveClicksAged(&sp, age, 10)
		if math.Abs(got/want-1) > 0.02 {
			t.Fatalf("unexpected effective clicks of a key of age %d; got %.1f; want %.1f", age, got, want)
		}
	}
	// The correction is bounded.
	if got := d.EffectiveClicksAged(&sp, 3600e3, 2); got != 3000 {
		t.Fatalf("unexpected bounded effective clicks; got %v; want 3000", got)
	}
	// Counted at the click, the same.
	cfg.CountedAt = CountedAtClick
	d.refresh(&cfg, nil, windows.Span1h, 0)
	if got := d.EffectiveClicks(&sp, 10); math.Abs(got/want-1) > 0.02 {
		t.Fatalf("unexpected effective clicks counted at the click; got %.1f; want %.1f", got, want)
	}
	// Not refreshed: the clicks of its window.
	d = DelayState{Window: windows.Span1h}
	if got := d.EffectiveClicks(&sp, 10); got != 6000 {
		t.Fatalf("unexpected effective clicks without a model; got %v; want 6000", got)
	}
}

func TestDelayStateLearned(t *testing.T) {
	cfg := DefaultDelay()
	cfg.MinSamples = 10
	var h DelayHistogram
	now := int64(1e12)
	for i := 0; i < 9; i++ {
		h.Add(now-1000, now, 1)
	}
	var d DelayState
	d.refresh(&cfg, &h, windows.Span1h, now)
	if d.Learned || math.Abs(d.F(3600e3)-0.35) > 1e-9 {
		t.Fatalf("unexpected model from 9 samples: learned %v, F(1h) %v; want the fallback's 0.35", d.Learned, d.F(3600e3))
	}
	h.Add(now-1000, now, 1)
	d.refresh(&cfg, &h, windows.Span1h, now)
	if !d.Learned || d.F(30e3) != 1 {
		t.Fatalf("unexpected model from 10 one-second delays: learned %v, F(30s) %v; want 1", d.Learned, d.F(30e3))
	}
}
