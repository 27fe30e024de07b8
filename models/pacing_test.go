package models

import (
	"math"
	"strings"
	"testing"
	"time"

	_ "time/tzdata" // IANA zones on any machine
)

func mustLoc(t *testing.T, name string) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation(name)
	if err != nil {
		t.Fatalf("cannot load %s: %s", name, err)
	}
	return loc
}

func TestDayBounds(t *testing.T) {
	ny := mustLoc(t, "America/New_York")
	f := func(at time.Time, wantHours float64) {
		t.Helper()
		start, end := DayBounds(at.UnixMilli(), ny)
		s := time.UnixMilli(start).In(ny)
		if s.Hour() != 0 || s.Minute() != 0 || s.Day() != at.In(ny).Day() {
			t.Fatalf("unexpected day start %s for %s", s, at)
		}
		if got := float64(end-start) / 3600e3; got != wantHours {
			t.Fatalf("unexpected day length for %s; got %vh; want %vh", at, got, wantHours)
		}
	}
	f(time.Date(2025, 3, 3, 12, 0, 0, 0, ny), 24)
	f(time.Date(2025, 3, 9, 12, 0, 0, 0, ny), 23) // spring forward
	f(time.Date(2025, 11, 2, 23, 59, 0, 0, ny), 25)
	// 03:30 UTC on the 4th is still the 3rd in New York.
	f(time.Date(2025, 3, 4, 3, 30, 0, 0, time.UTC), 24)
}

func TestPlanShare(t *testing.T) {
	utc := time.UTC
	start, end := DayBounds(time.Date(2025, 3, 3, 12, 0, 0, 0, utc).UnixMilli(), utc)
	at := func(h float64) int64 { return start + int64(h*3600e3) }
	even := DefaultPacing()
	even.Plan = PlanEven
	f := func(c *PacingConfig, profile *[24]float64, h, want float64) {
		t.Helper()
		if got := PlanShare(c, utc, profile, start, end, at(h)); math.Abs(got-want) > 1e-9 {
			t.Fatalf("unexpected plan share at %vh; got %v; want %v", h, got, want)
		}
	}
	f(&even, nil, 0, 0)
	f(&even, nil, 6, 0.25)
	f(&even, nil, 24, 1)
	f(&even, nil, -1, 0)
	// Traffic plan, no floor: all traffic between 18:00 and 20:00.
	tr := DefaultPacing()
	tr.ProfileFloor = 0
	var p [24]float64
	p[18], p[19] = 3, 1
	f(&tr, &p, 18, 0)
	f(&tr, &p, 18.5, 0.375)
	f(&tr, &p, 19, 0.75)
	f(&tr, &p, 20, 1)
	// With a 10% floor, each hour gets at least 0.1/24 of the day.
	tr.ProfileFloor = 0.1
	f(&tr, &p, 1, 0.1/24)
	// No profile: even.
	var zero [24]float64
	f(&tr, &zero, 12, 0.5)
}

func TestPacingStep(t *testing.T) {
	utc := time.UTC
	cfg := DefaultPacing()
	cfg.DailyBudget = 100
	cfg.Plan = PlanEven
	day0 := time.Date(2025, 3, 3, 0, 0, 0, 0, utc).UnixMilli()
	var s PacingState
	if s.Factor(day0) != 1 {
		t.Fatalf("unexpected factor of a fresh state; got %v", s.Factor(day0))
	}
	// Noon, nothing spent: behind the plan, the factor goes to its max.
	s.Step(&cfg, utc, 0, nil, day0+12*3600e3)
	if !(s.Error > 0.4) || s.Factor(day0+12*3600e3) != cfg.MaxFactor {
		t.Fatalf("unexpected step behind the plan: %+v", s)
	}
	// Far ahead of the plan: down.
	s.Step(&cfg, utc, 90e6, nil, day0+12*3600e3+60e3)
	if !(s.Error < 0) || s.Factor(day0+12*3600e3+60e3) >= 1 {
		t.Fatalf("unexpected step ahead of the plan: %+v", s)
	}
	// Budget spent: exactly 0 until the day ends.
	s.Step(&cfg, utc, 100e6, nil, day0+13*3600e3)
	if !s.Exhausted || s.Factor(day0+13*3600e3) != 0 || s.Factor(day0+24*3600e3-1) != 0 {
		t.Fatalf("unexpected factor once spent: %+v", s)
	}
	if s.Factor(day0+24*3600e3) == 0 {
		t.Fatalf("unexpected factor 0 after the day rolled over")
	}
	// The next day opens with the next step.
	s.Step(&cfg, utc, 0, nil, day0+24*3600e3+60e3)
	if s.Exhausted || s.DayStartMs != day0+24*3600e3 {
		t.Fatalf("unexpected state on the next day: %+v", s)
	}
}

// TestPacingClosedLoop: a campaign whose spend rate is proportional to the
// factor, with 3x the budget's worth of traffic and a burst, spends within
// 2% of the budget (minus the reserve) and never more.
func TestPacingClosedLoop(t *testing.T) {
	utc := time.UTC
	cfg := DefaultPacing()
	cfg.DailyBudget = 1000
	cfg.Plan = PlanEven
	day0 := time.Date(2025, 3, 3, 0, 0, 0, 0, utc).UnixMilli()
	var s PacingState
	spent := 0.0
	for m := 0; m < 24*60; m++ {
		now := day0 + int64(m)*60e3
		s.Step(&cfg, utc, uint64(spent), nil, now)
		rate := 3 * cfg.DailyBudget * 1e6 / (24 * 60) // per minute at factor 1
		if m >= 600 && m < 720 {
			rate *= 4 // a burst
		}
		spent += rate * s.Factor(now)
	}
	share := spent / (cfg.DailyBudget * 1e6)
	if share > 1 || math.Abs(share-(1-cfg.Reserve)) > 0.02 {
		t.Fatalf("unexpected spend; got %.4f of the budget; want %.2f +- 0.02 and at most 1", share, 1-cfg.Reserve)
	}
}

func TestPacingConfigValidate(t *testing.T) {
	f := func(mutate func(*PacingConfig), want string) {
		t.Helper()
		c := DefaultPacing()
		mutate(&c)
		err := c.Validate()
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("unexpected error; got %v; want one containing %q", err, want)
		}
	}
	f(func(c *PacingConfig) { c.DailyBudget = -1 }, "pacing.daily_budget")
	f(func(c *PacingConfig) { c.Plan = "smooth" }, "pacing.plan")
	f(func(c *PacingConfig) { c.ProfileFloor = 2 }, "pacing.profile_floor")
	f(func(c *PacingConfig) { c.Reserve = 0.5 }, "pacing.reserve")
	f(func(c *PacingConfig) { c.Kp = math.NaN() }, "pacing.kp")
	f(func(c *PacingConfig) { c.Ki = -1 }, "pacing.ki")
	f(func(c *PacingConfig) { c.Kd = -1 }, "pacing.kd")
	f(func(c *PacingConfig) { c.RateSmoothing = -time.Second }, "pacing.rate_smoothing")
	f(func(c *PacingConfig) { c.MinFactor = 0 }, "pacing.min_factor")
	f(func(c *PacingConfig) { c.MaxFactor = 0.9 }, "pacing.max_factor")
	f(func(c *PacingConfig) { c.MaxStepDt = 0 }, "pacing.max_step_dt")
	c := DefaultPacing()
	if err := c.Validate(); err != nil || c.Enabled() {
		t.Fatalf("unexpected default: error %v, enabled %v", err, c.Enabled())
	}
}
