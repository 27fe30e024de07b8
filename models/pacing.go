package models

import (
	"fmt"
	"math"
	"time"
)

// Factor and input names of pacing.
const (
	FactorPacing = "pacing"

	InputBudget    = "budget"
	InputSpent     = "spent"
	InputPlanned   = "planned"
	InputPlanShare = "plan_share"
	InputRate      = "rate"
	InputExhausted = "exhausted"
	InputDayEndMs  = "day_end_ms"
)

// Spend plans (PacingConfig.Plan).
const (
	// PlanEven spends the budget evenly over the day's hours.
	PlanEven = "even"
	// PlanTraffic spends it in proportion to the traffic profile by local
	// hour of day (yesterday's shape, from the 24h window's hourly buckets).
	PlanTraffic = "traffic"
)

// PacingConfig configures daily budget pacing: a spend plan over the
// campaign's local day and a PID controller that steers the spend toward it.
type PacingConfig struct {
	// DailyBudget is the budget per local day, in account currency; 0
	// turns pacing off.
	DailyBudget float64 `yaml:"daily_budget"`
	// Plan is "even" or "traffic".
	Plan string `yaml:"plan"`
	// ProfileFloor is the share of the even plan mixed into the traffic
	// plan, so that an hour without traffic yesterday still gets budget.
	ProfileFloor float64 `yaml:"profile_floor"`
	// Reserve is the share of the budget the plan leaves unspent at the end
	// of the day, a margin against overshooting it between two ticks.
	Reserve float64 `yaml:"reserve"`
	// Kp (per unit of budget share behind the plan), Ki (per share and
	// hour) and Kd (per share per hour of rate error, in hours) are the
	// PID gains on the log factor.
	Kp float64 `yaml:"kp"`
	Ki float64 `yaml:"ki"`
	Kd float64 `yaml:"kd"`
	// RateSmoothing is the time constant of the low-pass filter on the
	// derivative term.
	RateSmoothing time.Duration `yaml:"rate_smoothing"`
	// MinFactor and MaxFactor bound the pacing factor (MaxFactor above 1
	// lets pacing bid up to spend a budget traffic does not fill).
	MinFactor float64 `yaml:"min_factor"`
	MaxFactor float64 `yaml:"max_factor"`
	// MaxStepDt caps the time one step integrates.
	MaxStepDt time.Duration `yaml:"max_step_dt"`
}

// DefaultPacing returns the default pacing: off (no budget), the traffic
// plan with a 10% even floor, a 1% reserve, Kp 20, Ki 10/h, Kd 2 h, a
// 10-minute rate filter, the factor in [0.05, 1], and steps of at most 5
// minutes.
func DefaultPacing() PacingConfig {
	return PacingConfig{
		Plan:          PlanTraffic,
		ProfileFloor:  0.1,
		Reserve:       0.01,
		Kp:            20,
		Ki:            10,
		Kd:            2,
		RateSmoothing: 10 * time.Minute,
		MinFactor:     0.05,
		MaxFactor:     1,
		MaxStepDt:     5 * time.Minute,
	}
}

// Enabled reports whether pacing is on (a budget is set).
func (c *PacingConfig) Enabled() bool {
	return c.DailyBudget > 0
}

// Validate reports the first invalid field of c, named as in YAML.
func (c *PacingConfig) Validate() error {
	if !(c.DailyBudget >= 0 && c.DailyBudget <= 9e12) {
		return fmt.Errorf("invalid pacing.daily_budget %v; want a number in [0, 9e12] (0: no pacing)", c.DailyBudget)
	}
	if c.Plan != PlanEven && c.Plan != PlanTraffic {
		return fmt.Errorf("invalid pacing.plan %q; want even or traffic", c.Plan)
	}
	if !(c.ProfileFloor >= 0 && c.ProfileFloor <= 1) {
		return fmt.Errorf("invalid pacing.profile_floor %v; want a number in [0, 1]", c.ProfileFloor)
	}
	if !(c.Reserve >= 0 && c.Reserve < 0.5) {
		return fmt.Errorf("invalid pacing.reserve %v; want a number in [0, 0.5)", c.Reserve)
	}
	if !(c.Kp >= 0 && c.Kp <= 1000) {
		return fmt.Errorf("invalid pacing.kp %v; want a number in [0, 1000]", c.Kp)
	}
	if !(c.Ki >= 0 && c.Ki <= 1000) {
		return fmt.Errorf("invalid pacing.ki %v; want a number in [0, 1000]", c.Ki)
	}
	if !(c.Kd >= 0 && c.Kd <= 1000) {
		return fmt.Errorf("invalid pacing.kd %v; want a number in [0, 1000]", c.Kd)
	}
	if c.RateSmoothing < 0 || c.RateSmoothing > 24*time.Hour {
		return fmt.Errorf("invalid pacing.rate_smoothing %s; want a duration in [0, 24h]", c.RateSmoothing)
	}
	if !(c.MinFactor > 0 && c.MinFactor <= 1) {
		return fmt.Errorf("invalid pacing.min_factor %v; want a number in (0, 1]", c.MinFactor)
	}
	if !(c.MaxFactor >= 1 && c.MaxFactor <= 100) {
		return fmt.Errorf("invalid pacing.max_factor %v; want a number in [1, 100]", c.MaxFactor)
	}
	if c.MaxStepDt <= 0 || c.MaxStepDt > 24*time.Hour {
		return fmt.Errorf("invalid pacing.max_step_dt %s; want a duration in (0, 24h]", c.MaxStepDt)
	}
	return nil
}

// DayBounds returns the start and end (Unix ms) of the local day of loc
// that contains nowMs: local midnight to the next local midnight, 23 or 25
// hours long on daylight-saving days.
func DayBounds(nowMs int64, loc *time.Location) (startMs, endMs int64) {
	t := time.UnixMilli(nowMs).In(loc)
	y, m, d := t.Date()
	return time.Date(y, m, d, 0, 0, 0, 0, loc).UnixMilli(), time.Date(y, m, d+1, 0, 0, 0, 0, loc).UnixMilli()
}

// PlanShare returns the share of the day's budget the plan of cfg spends by
// nowMs, in [0, 1], for the local day [startMs, endMs) of loc and the
// traffic profile by local hour (any scale; all zero: even). Each hour of
// the day weighs (1-floor)*profile[h]/mean(profile) + floor; the share
// grows linearly within an hour.
func PlanShare(cfg *PacingConfig, loc *time.Location, profile *[24]float64, startMs, endMs, nowMs int64) float64 {
	if nowMs <= startMs {
		return 0
	}
	if nowMs >= endMs {
		return 1
	}
	sum := 0.0
	if cfg.Plan == PlanTraffic && profile != nil {
		for _, v := range profile {
			if v > 0 && v <= math.MaxFloat64 {
				sum += v
			}
		}
	}
	if !(sum > 0) {
		return float64(nowMs-startMs) / float64(endMs-startMs)
	}
	mean := sum / 24
	total, done := 0.0, 0.0
	for t := startMs; t < endMs; t += 3600e3 {
		seg := math.Min(float64(endMs-t), 3600e3)
		p := profile[time.UnixMilli(t).In(loc).Hour()]
		if !(p > 0 && p <= math.MaxFloat64) {
			p = 0
		}
		w := ((1-cfg.ProfileFloor)*p/mean + cfg.ProfileFloor) * seg / 3600e3
		total += w
		switch {
		case nowMs >= t+int64(seg):
			done += w
		case nowMs > t:
			done += w * float64(nowMs-t) / seg
		}
	}
	if !(total > 0) {
		return float64(nowMs-startMs) / float64(endMs-startMs)
	}
	return math.Min(done/total, 1)
}

// PacingState is the state of a campaign's pacing controller. Plain data;
// the zero value is a fresh controller with the factor 1.
type PacingState struct {
	// DayStartMs and DayEndMs bound the local day the state is about.
	DayStartMs int64 `json:"day_start_ms"`
	DayEndMs   int64 `json:"day_end_ms"`
	// LogFactor is the natural log of the pacing factor.
	LogFactor float64 `json:"log_factor"`
	// Integral of the error, in budget share x hours.
	Integral float64 `json:"integral"`
	// Error is the last (planned - spent) / budget (positive: behind the
	// plan, bid up), Rate its filtered derivative per hour.
	Error float64 `json:"error"`
	Rate  float64 `json:"rate"`
	// SpentMicros, PlannedMicros and PlanShare of the last step.
	SpentMicros   uint64  `json:"spent_micros"`
	PlannedMicros float64 `json:"planned_micros"`
	PlanShare     float64 `json:"plan_share"`
	// Exhausted says the day's budget is spent: the factor is 0 until
	// DayEndMs.
	Exhausted bool `json:"exhausted"`
	// LastMs is the time of the last step.
	LastMs int64 `json:"last_ms"`
}

// Factor returns the pacing factor at nowMs: 0 when the budget of the
// state's day is spent, exp(LogFactor) otherwise (also once the day is
// over and the next step has not yet opened the next one).
func (s *PacingState) Factor(nowMs int64) float64 {
	if s.Exhausted && nowMs < s.DayEndMs {
		return 0
	}
	return math.Exp(s.LogFactor)
}

// Step advances the controller to nowMs with the campaign's spend since
// the start of its current local day (loc), in micros of account currency,
// and the traffic profile by local hour (nil or all zero: even plan).
//
// On a new local day the error, its rate and Exhausted are reset; the
// integral and factor carry over as a warm start. With B the budget, the
// plan P = (1-Reserve)*B*PlanShare(now), the error e = (P - spent)/B, its
// rate r (low-pass filtered de/dt per hour), the integral I += e*dt:
//
//	u = Kp*e + Ki*I + Kd*r,  bounded to [ln MinFactor, ln MaxFactor]
//
// with the same anti-windup as the goal controller. Once spent >= B the
// state is Exhausted: the factor is 0 until the day ends.
func (s *PacingState) Step(cfg *PacingConfig, loc *time.Location, spentMicros uint64, profile *[24]float64, nowMs int64) {
	start, end := DayBounds(nowMs, loc)
	newDay := s.DayStartMs != start
	if newDay {
		s.DayStartMs, s.DayEndMs = start, end
		s.Exhausted = false
		s.Error, s.Rate = 0, 0
	}
	dt := 0.0
	if s.LastMs > 0 && nowMs > s.LastMs {
		dt = math.Min(float64(nowMs-s.LastMs), float64(cfg.MaxStepDt.Milliseconds())) / 3600e3
	}
	if nowMs > s.LastMs {
		s.LastMs = nowMs
	}
	budget := cfg.DailyBudget * 1e6
	s.SpentMicros = spentMicros
	s.PlanShare = PlanShare(cfg, loc, profile, start, end, nowMs)
	s.PlannedMicros = (1 - cfg.Reserve) * budget * s.PlanShare
	if !(budget > 0) {
		return
	}
	if float64(spentMicros) >= budget {
		s.Exhausted = true
		return
	}
	e := (s.PlannedMicros - float64(spentMicros)) / budget
	if dt > 0 && !newDay {
		raw := (e - s.Error) / dt
		tau := cfg.RateSmoothing.Hours()
		s.Rate += dt / (tau + dt) * (raw - s.Rate)
	}
	s.Error = e
	lo, hi := math.Log(cfg.MinFactor), math.Log(cfg.MaxFactor)
	s.Integral, s.LogFactor = piStep(s.Integral, e, dt, cfg.Kp, cfg.Ki, lo-cfg.Kd*s.Rate, hi-cfg.Kd*s.Rate)
	s.LogFactor = math.Min(math.Max(s.LogFactor+cfg.Kd*s.Rate, lo), hi)
}
