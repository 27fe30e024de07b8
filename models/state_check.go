package models

import (
	"errors"
	"fmt"
	"math"

	"github.com/bidpulse/bidpulse/windows"
)

// The Check methods validate a state that did not come from Tick: one read
// back from a checkpoint. Tick and Evaluate trust their states (indexes in
// range, sums finite); a corrupt or hand-edited checkpoint must not crash
// the control tick or turn a multiplier into NaN, so the loader checks each
// state and leaves out the ones that fail (they start afresh).

// maxStateValue bounds the magnitude of a restored float: states that Tick
// produces stay far below it, and sums and products of a few of them stay
// finite.
const maxStateValue = 1e100

func checkFloat(name string, v float64) error {
	if !(math.Abs(v) <= maxStateValue) {
		return fmt.Errorf("%s %v out of range", name, v)
	}
	return nil
}

// Check reports the first field of s out of the range Tick keeps it in.
func (s *CampaignState) Check() error {
	h := &s.Clicks
	if h.Head < 0 || h.Head >= HistoryBlocks || h.N < 0 || h.N > HistoryBlocks {
		return fmt.Errorf("click history head %d, %d blocks: out of range", h.Head, h.N)
	}
	if s.Delay.Window >= windows.NumSpans {
		return fmt.Errorf("delay window %d out of range", s.Delay.Window)
	}
	for _, f := range []struct {
		name string
		v    float64
	}{
		{"goal log_factor", s.Goal.LogFactor}, {"goal integral", s.Goal.Integral}, {"goal observed", s.Goal.Observed},
		{"goal error", s.Goal.Error}, {"goal expected_conversions", s.Goal.ExpectedConversions}, {"goal cost", s.Goal.Cost},
		{"pacing log_factor", s.Pacing.LogFactor}, {"pacing integral", s.Pacing.Integral}, {"pacing error", s.Pacing.Error},
		{"pacing rate", s.Pacing.Rate}, {"pacing planned_micros", s.Pacing.PlannedMicros}, {"pacing plan_share", s.Pacing.PlanShare},
		{"delay campaign_tail", s.Delay.CampaignTail}, {"delay tail_per_click", s.Delay.TailPerClick}, {"delay campaign_old", s.Delay.CampaignOld},
	} {
		if err := checkFloat(f.name, f.v); err != nil {
			return err
		}
	}
	if m := s.Delay.DelayModel; m != nil {
		if err := m.check(); err != nil {
			return err
		}
	}
	return nil
}

// check reports a compiled model whose distribution is not one: refresh
// makes CDF non-decreasing from 0 to 1, and G and the table finite.
func (m *DelayModel) check() error {
	// Within a rounding error: a fallback's interpolation may step back an ulp.
	const eps = 1e-9
	prev := 0.0
	for k, c := range m.CDF {
		if !(c >= prev-eps && c <= 1+eps) {
			return fmt.Errorf("delay cdf[%d] %v is not a distribution", k, c)
		}
		prev = c
	}
	for k, g := range m.G {
		if err := checkFloat(fmt.Sprintf("delay g[%d]", k), g); err != nil {
			return err
		}
	}
	for j := range m.Table.Gamma {
		for k, g := range m.Table.Gamma[j] {
			if err := checkFloat(fmt.Sprintf("delay gamma[%d][%d]", j, k), g); err != nil {
				return err
			}
		}
	}
	return checkFloat("delay tail", m.Table.Tail)
}

// Check reports a histogram with a negative weight or weights whose sum,
// boosted by CDF's exposure correction, would not be finite.
func (h *DelayHistogram) Check() error {
	total := 0.0
	for k, w := range h.Weights {
		if !(w >= 0 && w <= maxStateValue) {
			return fmt.Errorf("delay weight[%d] %v out of range", k, w)
		}
		total += w
	}
	if !(total*maxExposureBoost <= math.MaxFloat64) {
		return errors.New("delay weights too large")
	}
	return nil
}

// Check reports the first field of k out of the range Tick keeps it in.
func (k *KeyState) Check() error {
	if err := checkFloat("value", k.Value); err != nil {
		return err
	}
	if err := checkFloat("good", k.Good); err != nil {
		return err
	}
	return checkFloat("old", k.Old)
}
