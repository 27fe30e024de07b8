package models

import "math"

// Result is the outcome of a policy: the multiplier and the factors that
// explain it.
//
// A Result is plain data of fixed size (no pointers but the factor and
// input names, which are constants), meant to be reused: the bid path keeps
// one per request or per worker and passes it to a policy, which Resets it
// first. It is not safe for concurrent use.
//
// Invariant after Finish: Multiplier is 0 when some factor is exactly 0
// (an opt-out), else BeforeClamp clamped to [Min, Max].
type Result struct {
	// Multiplier is the bid multiplier: the answer.
	Multiplier float64
	// BeforeClamp is the product of the factor values.
	BeforeClamp float64
	// Min and Max are the clamp applied to BeforeClamp.
	Min, Max float64
	// Clamped reports that the clamp changed the value.
	Clamped bool
	// Policy names the policy that produced the Result ("performance",
	// "target_cpa", "target_roas"); empty for Performance, whose caller
	// knows it. A constant, so that setting it allocates nothing.
	Policy string
	// CampaignMax is the campaign's own upper clamp, and HardMax the global
	// hard cap; Max is the lower of the two. Both are 0 when the policy set
	// no such clamp (Performance).
	CampaignMax, HardMax float64
	// Factors[:NFactors] are the multiplicative terms, in the order they
	// were added.
	Factors  [MaxFactors]Factor
	NFactors int
}

// MaxFactors is the number of factors a Result can hold: ctr, cvr and up
// to ten more (performance clamp, guard, exploration, goal, pacing, device,
// country, hour, season, and one spare for the caller).
const MaxFactors = 12

// Reset empties r: no factors, the neutral multiplier 1, and the widest
// clamp [0, math.MaxFloat64], so that a Result whose policy set no clamp is
// left unclamped rather than clamped to 0.
//
// Reset does not clear the arrays: the slots past NFactors and the inputs
// past a factor's NInputs keep stale values, which readers must ignore.
// Clearing all ~3 KB of them per bid would double the cost of Performance.
func (r *Result) Reset() {
	r.Multiplier = 1
	r.BeforeClamp = 1
	r.Min = 0
	r.Max = math.MaxFloat64
	r.Clamped = false
	r.Policy = ""
	r.CampaignMax, r.HardMax = 0, 0
	r.NFactors = 0
}

// AddFactor appends a factor called name with the given value and no
// inputs, and returns it so that the caller can add its inputs. The pointer
// is into r and is valid until r is Reset.
//
// It panics if r already holds len(r.Factors) factors: policies add a fixed
// number of factors, so running out is a programming error.
func (r *Result) AddFactor(name string, value float64) *Factor {
	if r.NFactors >= len(r.Factors) {
		panic("BUG: too many factors; cannot add " + name)
	}
	f := &r.Factors[r.NFactors]
	f.Name = name
	f.Value = value
	f.NInputs = 0
	r.NFactors++
	return f
}

// Factor returns the factor called name, and whether r has it. The pointer
// is into r and is valid until r is Reset.
func (r *Result) Factor(name string) (*Factor, bool) {
	for i := 0; i < r.NFactors; i++ {
		if r.Factors[i].Name == name {
			return &r.Factors[i], true
		}
	}
	return nil, false
}

// Finish multiplies the factors into BeforeClamp, and sets Multiplier: 0
// when any factor is exactly 0 (opt-out: the clamp is skipped), else
// BeforeClamp clamped to [Min, Max].
//
// Finish only reads Factors, Min and Max, so it may be called again after a
// caller adds a factor (a budget or opt-out factor, say) to a finished
// Result. A NaN product, which only a broken factor can give, yields the
// neutral 1 clamped to [Min, Max] with Clamped set, so that a bug never
// becomes a NaN bid.
func (r *Result) Finish() {
	p := 1.0
	optOut := false
	for i := 0; i < r.NFactors; i++ {
		v := r.Factors[i].Value
		if v == 0 {
			optOut = true
		}
		p *= v
	}
	r.BeforeClamp = p
	r.Clamped = false
	if optOut {
		r.Multiplier = 0
		return
	}
	m := p
	if math.IsNaN(m) {
		m = 1
		r.Clamped = true
	}
	if m < r.Min {
		m = r.Min
	}
	if m > r.Max {
		m = r.Max
	}
	if m != p {
		r.Clamped = true
	}
	r.Multiplier = m
}
