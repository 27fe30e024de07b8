package models

import (
	"fmt"
	"math"
	"time"

	"github.com/bidpulse/bidpulse/windows"
)

// Factor and input names of the guardrails.
const (
	FactorGuard = "guard"

	InputLive          = "live"
	InputPrevious      = "previous"
	InputElapsedS      = "elapsed_s"
	InputMaxStep       = "max_step_per_min"
	InputHeld          = "held"
	InputStale         = "stale"
	InputCTR1m         = "ctr_1m"
	InputCTRBaseline   = "ctr_baseline"
	InputClicks1m      = "clicks_1m"
	InputLastEventAgeS = "last_event_age_s"
)

// GuardConfig configures the guardrails on a key's live (performance)
// value: a maximum change per minute, the anomaly hold, and the neutral 1
// on stale data.
type GuardConfig struct {
	// MaxStepPerMinute bounds the relative change of the key's value: after
	// m minutes it may move by a factor of at most 1 + MaxStepPerMinute*m
	// up or down from the previous value. 0 turns the bound off.
	MaxStepPerMinute float64 `yaml:"max_step_per_minute"`
	// AnomalyRatio: the key is anomalous when its 1m CTR exceeds
	// AnomalyRatio x its baseline CTR (the rest of the last hour) with at
	// least AnomalyMinClicks clicks in the minute. 0 turns the hold off.
	AnomalyRatio     float64 `yaml:"anomaly_ratio"`
	AnomalyMinClicks uint64  `yaml:"anomaly_min_clicks"`
	// HoldFor is how long the last good value is held after the last
	// anomalous control tick: the anomalous clicks stay in the policy
	// window that long.
	HoldFor time.Duration `yaml:"hold_for"`
	// StaleAfter: a key without events for this long answers the neutral
	// 1. 0 turns the check off.
	StaleAfter time.Duration `yaml:"stale_after"`
}

// DefaultGuard returns the default guardrails: at most 20% per minute, an
// anomaly above 3x the baseline CTR with 20 clicks in the minute, held for
// 1h, and stale after 15 minutes without events.
func DefaultGuard() GuardConfig {
	return GuardConfig{
		MaxStepPerMinute: 0.2,
		AnomalyRatio:     3,
		AnomalyMinClicks: 20,
		HoldFor:          time.Hour,
		StaleAfter:       15 * time.Minute,
	}
}

// Validate reports the first invalid field of c, named as in YAML.
func (c *GuardConfig) Validate() error {
	if !(c.MaxStepPerMinute >= 0 && c.MaxStepPerMinute <= 100) {
		return fmt.Errorf("invalid guard.max_step_per_minute %v; want a number in [0, 100] (0: off)", c.MaxStepPerMinute)
	}
	if !(c.AnomalyRatio == 0 || (c.AnomalyRatio > 1 && c.AnomalyRatio <= 1000)) {
		return fmt.Errorf("invalid guard.anomaly_ratio %v; want 0 (off) or a number in (1, 1000]", c.AnomalyRatio)
	}
	if c.AnomalyRatio > 0 && c.AnomalyMinClicks == 0 {
		return fmt.Errorf("invalid guard.anomaly_min_clicks 0; want at least 1 click")
	}
	if c.HoldFor < 0 || c.HoldFor > 7*24*time.Hour {
		return fmt.Errorf("invalid guard.hold_for %s; want a duration in [0, 168h]", c.HoldFor)
	}
	if c.StaleAfter < 0 || c.StaleAfter > 7*24*time.Hour {
		return fmt.Errorf("invalid guard.stale_after %s; want a duration in [0, 168h] (0: off)", c.StaleAfter)
	}
	return nil
}

// KeyState is the guardrail state of one key: the value it last served
// and the last good value to hold. Plain data; the zero value is a key
// never served. bidder advances it on the control tick (KeyState.Tick)
// and Evaluate only reads it.
type KeyState struct {
	// Value is the key's guarded live value at AtMs; 0: none yet.
	Value float64 `json:"value"`
	AtMs  int64   `json:"at_ms"`
	// Good is the last value served outside an anomaly; 0: none yet.
	Good float64 `json:"good"`
	// HoldUntilMs is the end of the current anomaly hold (0: none), and
	// HeldSinceMs its start.
	HoldUntilMs int64 `json:"hold_until_ms"`
	HeldSinceMs int64 `json:"held_since_ms"`
	// Anomalies counts the control ticks that saw an anomaly.
	Anomalies uint64 `json:"anomalies"`
	// FirstMs is a lower bound of the time of the key's first event, set
	// by the first Tick that sees its data; 0: not yet. The delay
	// correction knows from it that a young key's clicks are all recent.
	FirstMs int64 `json:"first_ms"`
	// Old is the key's effective clicks an hour old and more (the delay
	// correction's share of its older clicks), computed by Tick from
	// Input.Hourly; OldKnown says it was.
	Old      float64 `json:"old"`
	OldKnown bool    `json:"old_known"`
}

// Held reports whether the key is held at nowMs.
func (k *KeyState) Held(nowMs int64) bool {
	return nowMs < k.HoldUntilMs
}

// guardView is the outcome of the guardrails for one key at one time.
type guardView struct {
	served    float64
	target    float64
	held      bool // an anomaly now, or a hold still running
	anomalous bool // an anomaly now
	stale     bool
	limited   bool // the step bound changed the value
	ageMs     int64
	elapsedMs int64
	ctr1m     float64
	ctrBase   float64
	clicks1m  uint64
}

// guardrails computes what the key serves instead of its live value: 1
// when its data is stale, the last good value while held, the live value
// otherwise; then bounded by the maximum step from ks's previous value.
func guardrails(cfg *GuardConfig, ks *KeyState, in *Input, live float64, g *guardView) {
	*g = guardView{served: live, target: live, ageMs: -1}
	now := in.NowMs
	var key *Spans
	if n := len(in.Chain); n > 0 && len(in.Spans) == n {
		key = &in.Spans[n-1]
	}
	if cfg.StaleAfter > 0 {
		g.ageMs = lastEventAge(in, key)
		if g.ageMs >= cfg.StaleAfter.Milliseconds() {
			g.stale = true
		}
	}
	if cfg.AnomalyRatio > 0 && key != nil {
		var camp *Spans
		if len(in.Spans) > 0 {
			camp = &in.Spans[0]
		}
		g.anomalous, g.ctr1m, g.ctrBase, g.clicks1m = anomaly(cfg, key, camp)
	}
	g.held = g.anomalous || (ks != nil && ks.Held(now))
	switch {
	case g.stale:
		g.target = 1
	case g.held:
		g.target = 1
		if ks != nil && ks.Good > 0 {
			g.target = ks.Good
		}
	}
	g.served = g.target
	if ks != nil && ks.Value > 0 && cfg.MaxStepPerMinute > 0 {
		g.elapsedMs = max(now-ks.AtMs, 0)
		g.served = limitStep(ks.Value, g.target, cfg.MaxStepPerMinute*float64(g.elapsedMs)/60e3)
		g.limited = g.served != g.target
	}
}

// limitStep bounds next to [prev/(1+step), prev*(1+step)].
func limitStep(prev, next, step float64) float64 {
	b := 1 + step
	if hi := prev * b; next > hi {
		return hi
	}
	if lo := prev / b; next < lo {
		return lo
	}
	return next
}

// lastEventAge returns the age in ms of the key's newest event: from
// in.LastEventMs when known, else a lower bound from the spans (the
// longest empty span; 0 when the smallest one has events), -1 when
// neither is known.
func lastEventAge(in *Input, key *Spans) int64 {
	if in.LastEventMs > 0 {
		return max(in.NowMs-in.LastEventMs, 0)
	}
	if key == nil {
		return -1
	}
	age := int64(0)
	for s := windows.Span(0); s < windows.NumSpans; s++ {
		c := &key[s]
		if c.Impressions|c.Clicks|c.Conversions != 0 {
			return age
		}
		age = s.Duration().Milliseconds()
	}
	return age
}

// anomaly reports whether the key's last minute looks like a click burst:
// at least MinClicks clicks and a CTR above Ratio x the baseline, the CTR
// of the rest of the last hour (the campaign's last hour when the key has
// no impressions before the minute).
func anomaly(cfg *GuardConfig, key, camp *Spans) (bool, float64, float64, uint64) {
	m := &key[windows.Span1m]
	h := &key[windows.Span1h]
	ctr1m := m.CTR()
	if m.Clicks < cfg.AnomalyMinClicks {
		return false, ctr1m, 0, m.Clicks
	}
	if m.Impressions == 0 {
		// Enough clicks in a minute without a single impression.
		return true, 1, h.CTR(), m.Clicks
	}
	var base windows.Counts
	if h.Impressions > m.Impressions {
		base.Impressions = h.Impressions - m.Impressions
		if h.Clicks > m.Clicks {
			base.Clicks = h.Clicks - m.Clicks
		}
	} else if camp != nil {
		base = camp[windows.Span1h]
	}
	ctrBase := base.CTR()
	if base.Impressions == 0 {
		// No baseline at all: only an absurd CTR is anomalous.
		return ctr1m > 0.5, ctr1m, 0, m.Clicks
	}
	// One pseudo-click keeps a baseline without clicks from flagging
	// every click.
	ctrBase = math.Max(ctrBase, 1/float64(base.Impressions))
	return ctr1m > cfg.AnomalyRatio*ctrBase, ctr1m, ctrBase, m.Clicks
}

// addGuardFactor adds the "guard" factor when a guardrail acted or holds.
func addGuardFactor(cfg *GuardConfig, ks *KeyState, g *guardView, live float64, res *Result) {
	if !g.held && !g.stale && !g.limited {
		return
	}
	v := 1.0
	if live > 0 {
		v = g.served / live
	}
	if !(v > 0 && v <= math.MaxFloat64) {
		v = 1
	}
	f := res.AddFactor(FactorGuard, v)
	f.AddInput(InputLive, live)
	prev := 0.0
	if ks != nil {
		prev = ks.Value
	}
	f.AddInput(InputPrevious, prev)
	f.AddInput(InputElapsedS, float64(g.elapsedMs)/1e3)
	f.AddInput(InputMaxStep, cfg.MaxStepPerMinute)
	f.AddInput(InputHeld, b2f(g.held))
	f.AddInput(InputStale, b2f(g.stale))
	f.AddInput(InputLastEventAgeS, float64(g.ageMs)/1e3)
	f.AddInput(InputCTR1m, g.ctr1m)
	f.AddInput(InputCTRBaseline, g.ctrBase)
	f.AddInput(InputClicks1m, float64(g.clicks1m))
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
