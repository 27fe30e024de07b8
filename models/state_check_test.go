package models

import (
	"testing"

	"github.com/bidpulse/bidpulse/windows"
)

func TestStateCheck(t *testing.T) {
	cfg := DefaultCampaignPolicy()
	cfg.Delay.Enabled = true
	var sp Spans
	for s := range sp {
		sp[s] = windows.Counts{Impressions: 1000, Clicks: 40, Conversions: 3, CostMicros: 9e6}
	}
	var h DelayHistogram
	for i := range 50 {
		h.Add(0, int64(i)*3_600_000, 1)
	}
	// States that ticks make, on the fallback and on learned delays, pass.
	for _, delays := range []*DelayHistogram{nil, &h} {
		var s CampaignState
		for i := range 3 {
			s.Tick(&cfg, &TickInput{NowMs: 1_767_323_045_000 + int64(i)*86_400_000, Campaign: sp, Delays: delays})
		}
		if !s.Delay.Ready {
			t.Fatalf("unexpected state without a delay model after ticks")
		}
		if err := s.Check(); err != nil {
			t.Fatalf("unexpected error checking a ticked state (learned delays: %v): %v", delays != nil, err)
		}
	}
	if err := h.Check(); err != nil {
		t.Fatalf("unexpected error checking a recorded histogram: %v", err)
	}
	var ks KeyState
	ks.Value, ks.Good = 1.3, 1.2
	if err := ks.Check(); err != nil {
		t.Fatalf("unexpected error checking a key state: %v", err)
	}

	f := func(name string, edit func(s *CampaignState)) {
		t.Helper()
		var s CampaignState
		s.Tick(&cfg, &TickInput{NowMs: 1_767_323_045_000, Campaign: sp, Delays: &h})
		edit(&s)
		if s.Check() == nil {
			t.Fatalf("unexpected pass of a state with %s", name)
		}
	}
	f("a click history head of -5", func(s *CampaignState) { s.Clicks.Head = -5 })
	f("41 click history blocks", func(s *CampaignState) { s.Clicks.N = HistoryBlocks + 1 })
	f("delay window 9", func(s *CampaignState) { s.Delay.Window = 9 })
	f("a goal factor of e^1e300", func(s *CampaignState) { s.Goal.LogFactor = 1e300 })
	f("a decreasing delay distribution", func(s *CampaignState) {
		m := *s.Delay.DelayModel
		m.CDF[3] = m.CDF[2] - 0.1
		s.Delay.DelayModel = &m
	})
	for _, w := range []float64{-1, 1e300} {
		bad := h
		bad.Weights[2] = w
		if bad.Check() == nil {
			t.Fatalf("unexpected pass of a histogram with weight %v", w)
		}
	}
	if (&KeyState{Value: -1e200}).Check() == nil {
		t.Fatalf("unexpected pass of a key state of value -1e200")
	}
}
