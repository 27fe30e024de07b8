package models

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/bidpulse/bidpulse/windows"
)

func goalConfig(target float64) GoalConfig {
	c := DefaultGoal()
	c.Target = target
	return c
}

func TestGoalStep(t *testing.T) {
	cfg := goalConfig(20)
	var s GoalState
	if s.Factor() != 1 {
		t.Fatalf("unexpected factor of a fresh controller; got %v; want 1", s.Factor())
	}
	// Too little evidence: the factor holds.
	s.Step(&cfg, false, GoalObservation{Cost: 100, ExpectedConversions: 2}, 1000)
	if s.Active || s.LogFactor != 0 {
		t.Fatalf("unexpected step without evidence: %+v", s)
	}
	// CPA 40 against 20, a minute after the last step: bid down.
	// observed = (400 + 5*20)/(10 + 5) = 33.33, e = ln(20/33.33), the
	// integral e/60 (hours), the log factor Kp*e + Ki*e/60.
	s.Step(&cfg, false, GoalObservation{Cost: 400, ExpectedConversions: 10}, 61000)
	wantObs := 500.0 / 15
	e := math.Log(20 / wantObs)
	if !almostEqual(s.Observed, wantObs) || !almostEqual(s.Error, e) || !almostEqual(s.Integral, e/60) {
		t.Fatalf("unexpected step: %+v; want observed %v, error %v, integral %v", s, wantObs, e, e/60)
	}
	if !almostEqual(s.LogFactor, cfg.Kp*e+cfg.Ki*e/60) || s.Factor() >= 1 {
		t.Fatalf("unexpected factor %v; want exp(Kp*e + Ki*e/60) < 1", s.Factor())
	}
	// ROAS 2 against a target of 4: bid down too.
	var r GoalState
	rc := goalConfig(4)
	r.Step(&rc, true, GoalObservation{Cost: 100, ExpectedConversions: 50, ExpectedValue: 200}, 1000)
	if !(r.Observed < 4 && r.Error < 0 && r.Factor() < 1) {
		t.Fatalf("unexpected ROAS step: %+v", r)
	}
	// A ROAS of 0 (no value) is the largest error, never NaN.
	r.Step(&rc, true, GoalObservation{Cost: 100, ExpectedConversions: 50}, 61000)
	if math.IsNaN(r.LogFactor) || r.Factor() < rc.MinFactor-1e-12 {
		t.Fatalf("unexpected ROAS step without value: %+v", r)
	}
}

// TestGoalAntiWindup: a target the plant cannot reach saturates the factor
// without winding the integral up, so the controller recovers at once when
// the target becomes reachable.
func TestGoalAntiWindup(t *testing.T) {
	cfg := goalConfig(1)
	var s GoalState
	now := int64(0)
	for i := 0; i < 24*60; i++ { // a day at CPA 10, ten times the target
		now += 60e3
		s.Step(&cfg, false, GoalObservation{Cost: 1000, ExpectedConversions: 100}, now)
	}
	// At the bound, give or take the step on which integrating stopped.
	if got := s.Factor(); got < cfg.MinFactor || got > cfg.MinFactor*1.03 {
		t.Fatalf("unexpected saturated factor; got %v; want %v", got, cfg.MinFactor)
	}
	if s.Integral < math.Log(cfg.MinFactor)/cfg.Ki-1e-9 {
		t.Fatalf("unexpected wound-up integral %v; want at least %v", s.Integral, math.Log(cfg.MinFactor)/cfg.Ki)
	}
	// On target now: within an hour the factor leaves its bound.
	for i := 0; i < 60; i++ {
		now += 60e3
		s.Step(&cfg, false, GoalObservation{Cost: 100, ExpectedConversions: 100}, now)
	}
	if s.Factor() <= cfg.MinFactor*1.05 {
		t.Fatalf("unexpected factor an hour after the target became reachable; got %v", s.Factor())
	}
}

// TestGoalClosedLoop: against a plant whose CPA is proportional to the bid
// factor and observed through a 1-hour moving average, the controller
// settles within 2% of the target without overshooting by more than 10%.
func TestGoalClosedLoop(t *testing.T) {
	cfg := goalConfig(1)
	var s GoalState
	const base = 1.6 // CPA at factor 1
	var hist [60]float64
	for i := range hist {
		hist[i] = base
	}
	now := int64(0)
	minCPA, settledAt := math.Inf(1), time.Duration(-1)
	for i := 0; i < 24*60; i++ {
		now += 60e3
		hist[i%60] = base * s.Factor()
		avg := 0.0
		for _, v := range hist {
			avg += v
		}
		avg /= float64(len(hist))
		s.Step(&cfg, false, GoalObservation{Cost: avg * 1000, ExpectedConversions: 1000}, now)
		minCPA = math.Min(minCPA, avg)
		if settledAt < 0 && math.Abs(avg-1) < 0.02 {
			settledAt = time.Duration(now) * time.Millisecond
		}
	}
	if settledAt < 0 || settledAt > 8*time.Hour {
		t.Fatalf("unexpected settling time %s; want within 2%% in 8 h", settledAt)
	}
	if minCPA < 0.9 {
		t.Fatalf("unexpected overshoot; the CPA went down to %.3f; want >= 0.9", minCPA)
	}
	if math.Abs(s.Factor()-1/base) > 0.01 {
		t.Fatalf("unexpected final factor %.4f; want %.4f", s.Factor(), 1/base)
	}
}

// TestGoalStarvedAtFloor: a factor below 1 cuts the traffic that brings
// the controller its evidence. A day of a CPA ten times the target, on
// plenty of conversions, drives the factor to its floor; then the plant
// turns cheap (half the target at any bid) but its conversions fall with
// the cube of the factor (100 in the window at 1, 0.8 at the floor of
// 0.2), too few to pass min_conversions at the floor: the factor must not
// stay pinned there on evidence that has long left its window. It
// relaxes toward 1 until the evidence is back, then the controller bids
// up.
func TestGoalStarvedAtFloor(t *testing.T) {
	cfg := goalConfig(1)
	var s GoalState
	now := int64(0)
	for i := 0; i < 24*60; i++ {
		now += 60e3
		s.Step(&cfg, false, GoalObservation{Cost: 1000, ExpectedConversions: 100, Conversions: 100}, now)
	}
	if got := s.Factor(); got > cfg.MinFactor*1.03 {
		t.Fatalf("unexpected factor after a day at ten times the target; got %v; want the floor %v", got, cfg.MinFactor)
	}
	for i := 0; i < 6*60; i++ {
		now += 60e3
		conv := 100 * math.Pow(s.Factor(), 3)
		s.Step(&cfg, false, GoalObservation{Cost: 0.5 * conv, ExpectedConversions: conv, Conversions: conv}, now)
	}
	if !s.Active || s.Factor() < 1 {
		t.Fatalf("unexpected factor 6 hours after the CPA fell to half the target; got %.3f, active %v; want >= 1, active", s.Factor(), s.Active)
	}
}

// TestGoalHoldsAboveOne: without evidence, a factor above 1 holds (its
// bids buy evidence; it starves nothing), and a factor below 1 moves only
// a little toward 1 over a few minutes.
func TestGoalHoldsAboveOne(t *testing.T) {
	cfg := goalConfig(1)
	up := GoalState{LogFactor: math.Log(2), Integral: math.Log(2) / cfg.Ki, LastMs: 1000}
	up.Step(&cfg, false, GoalObservation{Cost: 1, ExpectedConversions: 1}, 1000+3600e3)
	if up.Active || up.Factor() != 2 {
		t.Fatalf("unexpected factor above 1 after an hour without evidence; got %v, active %v; want 2, inactive", up.Factor(), up.Active)
	}
	down := GoalState{LogFactor: math.Log(0.5), Integral: math.Log(0.5) / cfg.Ki, LastMs: 1000}
	down.Step(&cfg, false, GoalObservation{Cost: 1, ExpectedConversions: 1}, 1000+5*60e3)
	// Five minutes of a 1-hour window: ln 0.5 x exp(-5/60).
	if want := math.Exp(math.Log(0.5) * math.Exp(-5.0/60)); !almostEqual(down.Factor(), want) {
		t.Fatalf("unexpected factor below 1 after 5 minutes without evidence; got %v; want %v", down.Factor(), want)
	}
}

func TestGoalConfigValidate(t *testing.T) {
	f := func(mutate func(*GoalConfig), want string) {
		t.Helper()
		c := goalConfig(10)
		mutate(&c)
		err := c.Validate()
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("unexpected error; got %v; want one containing %q", err, want)
		}
	}
	f(func(c *GoalConfig) { c.Target = 0 }, "goal.target")
	f(func(c *GoalConfig) { c.Target = math.NaN() }, "goal.target")
	f(func(c *GoalConfig) { c.Window = 9 }, "goal.window")
	f(func(c *GoalConfig) { c.CVRWindow = 9 }, "goal.cvr_window")
	f(func(c *GoalConfig) { c.Kp = -1 }, "goal.kp")
	f(func(c *GoalConfig) { c.Ki = math.Inf(1) }, "goal.ki")
	f(func(c *GoalConfig) { c.MinFactor = 0 }, "goal.min_factor")
	f(func(c *GoalConfig) { c.MaxFactor = 0.5 }, "goal.max_factor")
	f(func(c *GoalConfig) { c.MinConversions = -1 }, "goal.min_conversions")
	f(func(c *GoalConfig) { c.PriorConversions = -1 }, "goal.prior_conversions")
	f(func(c *GoalConfig) { c.MaxStepDt = 0 }, "goal.max_step_dt")
	c := goalConfig(10)
	if err := c.Validate(); err != nil {
		t.Fatalf("unexpected error: %s", err)
	}
}

// TestGoalEvidence: the pseudo-conversions weigh against the conversions
// counted, not the expected conversions a delay correction scales them up
// to: 5 conversions read as 10 expected are 5 conversions of evidence.
func TestGoalEvidence(t *testing.T) {
	cfg := goalConfig(5)
	var s GoalState
	s.Step(&cfg, false, GoalObservation{Cost: 100, ExpectedConversions: 10, Conversions: 5}, 1000)
	// P = 5 x 10/5 = 10 expected pseudo-conversions at the target:
	// (100 + 10*5) / (10 + 10) = 7.5.
	if !s.Active || !almostEqual(s.Observed, 7.5) {
		t.Fatalf("unexpected step on 5 conversions scaled to 10: %+v; want observed 7.5", s)
	}
	// Without the count, the expected conversions are the evidence:
	// (100 + 5*5) / (10 + 5).
	var u GoalState
	u.Step(&cfg, false, GoalObservation{Cost: 100, ExpectedConversions: 10}, 1000)
	if !almostEqual(u.Observed, 125.0/15) {
		t.Fatalf("unexpected step without a count: %+v; want observed %v", u, 125.0/15)
	}
}

// TestGoalObservationCounts: the observation carries the conversions of the
// CVR window that its expected conversions rest on.
func TestGoalObservationCounts(t *testing.T) {
	cfg := goalConfig(5)
	var sp Spans
	sp[cfg.Window] = windows.Counts{Clicks: 100, CostMicros: 50e6}
	sp[cfg.CVRWindow] = windows.Counts{Clicks: 2000, Conversions: 40}
	obs := goalObservation(&cfg, &sp, nil, nil, 10, -1, nil, 0)
	if obs.Conversions != 40 || !almostEqual(obs.ExpectedConversions, 2) || !almostEqual(obs.Cost, 50) {
		t.Fatalf("unexpected observation %+v; want 40 conversions, 2 expected, cost 50", obs)
	}
}
