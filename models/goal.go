package models

import (
	"fmt"
	"math"
	"time"

	"github.com/bidpulse/bidpulse/windows"
)

// Policy names: the goal a campaign bids for. Pacing, modifiers and
// guardrails apply under every policy.
const (
	PolicyPerformance = "performance"
	PolicyTargetCPA   = "target_cpa"
	PolicyTargetROAS  = "target_roas"
)

// Factor and input names of the goal controller.
const (
	FactorTargetCPA  = PolicyTargetCPA
	FactorTargetROAS = PolicyTargetROAS

	InputTarget       = "target"
	InputObserved     = "observed"
	InputError        = "error"
	InputIntegral     = "integral"
	InputExpectedConv = "expected_conversions"
	InputCost         = "cost"
	InputActive       = "active"
)

// GoalConfig configures the target_cpa and target_roas controllers: a PI
// controller per campaign, in log space, stepped on the control tick.
type GoalConfig struct {
	// Target is the CPA to hold (account currency per conversion) under
	// target_cpa, or the ROAS (conversion value / cost) under target_roas.
	Target float64 `yaml:"target"`
	// Window is the span of the cost and clicks the observed CPA or ROAS is
	// computed from.
	Window windows.Span `yaml:"window"`
	// CVRWindow is the span of the (delay-corrected) conversion rate and
	// value per conversion that turn the window's clicks into expected
	// conversions and value.
	CVRWindow windows.Span `yaml:"cvr_window"`
	// Kp is the proportional gain (log factor per unit of log error).
	Kp float64 `yaml:"kp"`
	// Ki is the integral gain, per hour (log factor per unit of log error
	// and hour).
	Ki float64 `yaml:"ki"`
	// MinFactor and MaxFactor bound the controller's factor; the integral
	// stops accumulating at the bounds (anti-windup).
	MinFactor float64 `yaml:"min_factor"`
	MaxFactor float64 `yaml:"max_factor"`
	// MinConversions is the number of expected conversions in Window below
	// which the controller does not act on the observation (too little
	// evidence): a factor at or above 1 holds, one below 1 relaxes toward
	// 1 over Window (its own low bids may be what starves it of evidence).
	MinConversions float64 `yaml:"min_conversions"`
	// PriorConversions smooths the observed CPA or ROAS toward the target
	// with this many pseudo-conversions at the target.
	PriorConversions float64 `yaml:"prior_conversions"`
	// MaxStepDt caps the time one step integrates (after a pause of the
	// ticks, a step integrates at most this).
	MaxStepDt time.Duration `yaml:"max_step_dt"`
}

// DefaultGoal returns the default controller: no target (to be set), the
// 1h window, a 24h CVR window, Kp 0.3, Ki 0.6/h, the factor in [0.2, 5],
// 5 expected conversions to act, 5 pseudo-conversions of smoothing, and
// steps of at most 5 minutes.
func DefaultGoal() GoalConfig {
	return GoalConfig{
		Window:           windows.Span1h,
		CVRWindow:        windows.Span24h,
		Kp:               0.3,
		Ki:               0.6,
		MinFactor:        0.2,
		MaxFactor:        5,
		MinConversions:   5,
		PriorConversions: 5,
		MaxStepDt:        5 * time.Minute,
	}
}

// Validate reports the first invalid field of c, named as in YAML.
func (c *GoalConfig) Validate() error {
	if !(c.Target > 0 && c.Target <= 1e12) {
		return fmt.Errorf("invalid goal.target %v; want a number > 0", c.Target)
	}
	if c.Window >= windows.NumSpans {
		return fmt.Errorf("invalid goal.window %v; want one of 1m, 5m, 15m, 1h, 24h", c.Window)
	}
	if c.CVRWindow >= windows.NumSpans {
		return fmt.Errorf("invalid goal.cvr_window %v; want one of 1m, 5m, 15m, 1h, 24h", c.CVRWindow)
	}
	if !(c.Kp >= 0 && c.Kp <= 10) {
		return fmt.Errorf("invalid goal.kp %v; want a number in [0, 10]", c.Kp)
	}
	if !(c.Ki >= 0 && c.Ki <= 100) {
		return fmt.Errorf("invalid goal.ki %v; want a number in [0, 100]", c.Ki)
	}
	if !(c.MinFactor > 0 && c.MinFactor <= 1) {
		return fmt.Errorf("invalid goal.min_factor %v; want a number in (0, 1]", c.MinFactor)
	}
	if !(c.MaxFactor >= 1 && c.MaxFactor <= 100) {
		return fmt.Errorf("invalid goal.max_factor %v; want a number in [1, 100]", c.MaxFactor)
	}
	if !(c.MinConversions >= 0 && c.MinConversions <= 1e9) {
		return fmt.Errorf("invalid goal.min_conversions %v; want a number >= 0", c.MinConversions)
	}
	if !(c.PriorConversions >= 0 && c.PriorConversions <= 1e9) {
		return fmt.Errorf("invalid goal.prior_conversions %v; want a number >= 0", c.PriorConversions)
	}
	if c.MaxStepDt <= 0 || c.MaxStepDt > 24*time.Hour {
		return fmt.Errorf("invalid goal.max_step_dt %s; want a duration in (0, 24h]", c.MaxStepDt)
	}
	return nil
}

// GoalState is the state of a campaign's goal controller. Plain data; the
// zero value is a fresh controller with the neutral factor 1.
type GoalState struct {
	// LogFactor is the natural log of the controller's factor.
	LogFactor float64 `json:"log_factor"`
	// Integral is the integral of the log error, in hours.
	Integral float64 `json:"integral"`
	// Observed is the smoothed CPA or ROAS of the last step, Error its log
	// error (positive: bid up).
	Observed float64 `json:"observed"`
	Error    float64 `json:"error"`
	// ExpectedConversions and Cost (account currency) of the last step's
	// window.
	ExpectedConversions float64 `json:"expected_conversions"`
	Cost                float64 `json:"cost"`
	// Active says the last step had the evidence to act.
	Active bool `json:"active"`
	// LastMs is the time of the last step.
	LastMs int64 `json:"last_ms"`
}

// Factor returns the controller's factor, exp(LogFactor).
func (s *GoalState) Factor() float64 {
	return math.Exp(s.LogFactor)
}

// GoalObservation is what one step of the goal controller observes, in
// account currency: the cost of the window, the conversions its clicks are
// expected to bring (clicks x delay-corrected CVR) and their value.
//
// Conversions is the evidence behind ExpectedConversions: the conversions
// counted in the CVR window, which the delay correction scales up (young
// clicks have not converted yet) and the window's clicks scale to the
// expected conversions. Their noise is that of a count of Conversions, not
// of ExpectedConversions: 2 arrived conversions extrapolated to 5 expected
// ones are 2 conversions' worth of evidence. 0 (unknown): the expected
// conversions are the evidence.
type GoalObservation struct {
	Cost, ExpectedConversions, ExpectedValue float64
	Conversions                              float64
}

// evidenceScale returns expected conversions per conversion of evidence
// (1 when the evidence is unknown or the expected conversions are).
func (o *GoalObservation) evidenceScale() float64 {
	if o.Conversions > 0 && o.ExpectedConversions > 0 {
		return o.ExpectedConversions / o.Conversions
	}
	return 1
}

// Step advances the controller to nowMs with the observation obs: roas
// selects target_roas (else target_cpa). It is a pure function of the
// previous state, cfg, obs and the time since the last step.
//
// The smoothed observation is
//
//	CPA  = (cost + P*target) / (conv + P)
//	ROAS = (value + P*target*cpa) / (cost + P*cpa),   cpa = cost/conv
//
// with P = PriorConversions x ExpectedConversions / Conversions: the
// pseudo-conversions weigh against the conversions the observation rests
// on (with a delay correction of 2, 3 conversions counted as 6 expected
// meet 10 expected pseudo-ones, not 5); the log error e = ln(target/CPA) or
// ln(ROAS/target) (positive: bid up); the integral I += e*dt (hours, dt
// at most MaxStepDt) and the log factor u = Kp*e + Ki*I, bounded to
// [ln MinFactor, ln MaxFactor]. Anti-windup: I is bounded so that Ki*I
// alone stays within the bounds, and it does not grow while u is at a
// bound in the direction of e. With fewer than MinConversions expected
// conversions the step records the time and observation (Active false)
// and does not act on them: a factor at or above 1 holds; a factor below
// 1 relaxes toward 1, u and I both multiplied by exp(-dt/Window). A
// factor below 1 cuts the traffic that brings the evidence, so holding it
// could pin it, at its floor, on evidence that left the window long ago;
// relaxing over the window lets the traffic, and the evidence, come back.
// A factor above 1 buys evidence and starves nothing.
func (s *GoalState) Step(cfg *GoalConfig, roas bool, obs GoalObservation, nowMs int64) {
	dt := 0.0
	if s.LastMs > 0 && nowMs > s.LastMs {
		dt = math.Min(float64(nowMs-s.LastMs), float64(cfg.MaxStepDt.Milliseconds())) / 3600e3
	}
	if nowMs > s.LastMs {
		s.LastMs = nowMs
	}
	s.Cost, s.ExpectedConversions = obs.Cost, obs.ExpectedConversions
	if !(obs.ExpectedConversions >= cfg.MinConversions && obs.ExpectedConversions > 0 && obs.Cost > 0) {
		s.Active = false
		if w := cfg.Window.Duration().Hours(); s.LogFactor < 0 && dt > 0 && w > 0 {
			k := math.Exp(-dt / w)
			s.LogFactor *= k
			s.Integral *= k
		}
		return
	}
	T, P := cfg.Target, cfg.PriorConversions*obs.evidenceScale()
	var e float64
	if roas {
		cpa := obs.Cost / obs.ExpectedConversions
		s.Observed = (obs.ExpectedValue + P*T*cpa) / (obs.Cost + P*cpa)
		e = math.Log(s.Observed / T)
	} else {
		s.Observed = (obs.Cost + P*T) / (obs.ExpectedConversions + P)
		e = math.Log(T / s.Observed)
	}
	if math.IsNaN(e) || math.IsInf(e, 0) {
		// A zero value under target_roas: the largest error the bounds
		// allow, never a NaN state.
		e = math.Log(cfg.MinFactor)
		if s.Observed > 0 {
			e = math.Log(cfg.MaxFactor)
		}
	}
	s.Error = e
	s.Active = true
	lo, hi := math.Log(cfg.MinFactor), math.Log(cfg.MaxFactor)
	s.Integral, s.LogFactor = piStep(s.Integral, e, dt, cfg.Kp, cfg.Ki, lo, hi)
}

// piStep advances a PI controller: it returns the new integral and the
// output, bounded to [lo, hi], with anti-windup (the integral alone stays
// within the bounds, and does not grow past a saturated output).
func piStep(integral, e, dt, kp, ki, lo, hi float64) (float64, float64) {
	next := integral + e*dt
	if ki > 0 {
		next = math.Min(math.Max(next, lo/ki), hi/ki)
	} else {
		next = 0
	}
	u := kp*e + ki*next
	if (u > hi && e > 0) || (u < lo && e < 0) {
		// Saturated in the direction of the error: stop integrating.
		if math.Abs(integral) < math.Abs(next) {
			next = integral
		}
		u = kp*e + ki*next
	}
	return next, math.Min(math.Max(u, lo), hi)
}

// goalObservation turns a campaign's spans into a goal observation: cost
// and clicks of cfg.Window, and the conversion rate and value per
// conversion of cfg.CVRWindow, both corrected for delays by d (nil or not
// ready: uncorrected) for a campaign first seen ageMs ago (< 0: unknown)
// with the hourly buckets (nil: unknown) and click history h (nil or
// empty: the last day's rate continued).
func goalObservation(cfg *GoalConfig, sp *Spans, hourly *[24]windows.Counts, d *DelayState, maxCorr float64, ageMs int64, h *ClickHistory, nowMs int64) GoalObservation {
	w := &sp[cfg.Window]
	cv := &sp[cfg.CVRWindow]
	trials := float64(cv.Clicks)
	if d != nil && d.Ready && maxCorr >= 1 {
		var t delayTable
		d.table(cfg.CVRWindow, d.AtClick, &t)
		old, tail := -1.0, -1.0
		if h != nil && h.N > 0 {
			tail = d.historyTail(h, cfg.CVRWindow, d.AtClick, nowMs, dayMs)
		}
		if hourly != nil {
			old = d.oldEffective(hourly, h, cfg.CVRWindow, d.AtClick, ageMs, nowMs, -1)
		}
		trials = effectiveClicks(&t, cfg.CVRWindow, sp, ageMs, old, tail, maxCorr)
	}
	obs := GoalObservation{Cost: float64(w.CostMicros) / 1e6}
	if trials > 0 {
		clicks := float64(w.Clicks)
		obs.ExpectedConversions = clicks * math.Min(float64(cv.Conversions)/trials, 1)
		obs.ExpectedValue = clicks * float64(cv.ValueMicros) / 1e6 / trials
		obs.Conversions = float64(cv.Conversions)
	}
	return obs
}
