package models

import (
	"math"
	"math/bits"
)

// Rand is a small seeded pseudo-random generator (xoshiro256**), for
// Thompson sampling on the bid path and for the simulator.
//
// It is plain data (32 bytes, no pointers), allocates nothing, and is
// deterministic: the same seed gives the same sequence on every platform
// for Uint64 and Float64 (the samplers built on them also call math.Log,
// math.Sqrt, math.Pow and math.Cos, identical within one binary). It is not
// safe for concurrent use: keep one per worker or per request scratch, and
// seed it from something the caller controls (a worker number, a request
// hash) when answers must be reproducible.
type Rand struct {
	S [4]uint64
}

// NewRand returns a Rand seeded with seed.
func NewRand(seed uint64) Rand {
	var r Rand
	r.Seed(seed)
	return r
}

// Seed resets r to the sequence of seed. The state is expanded from the
// seed with splitmix64, so that nearby seeds give unrelated sequences and
// the state is never all zero.
func (r *Rand) Seed(seed uint64) {
	for i := range r.S {
		seed += 0x9e3779b97f4a7c15
		z := seed
		z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
		z = (z ^ z>>27) * 0x94d049bb133111eb
		r.S[i] = z ^ z>>31
	}
}

// Uint64 returns the next 64 pseudo-random bits.
func (r *Rand) Uint64() uint64 {
	s := &r.S
	if s[0]|s[1]|s[2]|s[3] == 0 {
		// The zero Rand would only ever return 0: seed it.
		r.Seed(0)
	}
	res := bits.RotateLeft64(s[1]*5, 7) * 9
	t := s[1] << 17
	s[2] ^= s[0]
	s[3] ^= s[1]
	s[1] ^= s[2]
	s[0] ^= s[3]
	s[2] ^= t
	s[3] = bits.RotateLeft64(s[3], 45)
	return res
}

// Float64 returns a uniform number in [0, 1) with 53 random bits.
func (r *Rand) Float64() float64 {
	return float64(r.Uint64()>>11) * 0x1p-53
}

// open01 returns a uniform number in (0, 1), safe for math.Log.
func (r *Rand) open01() float64 {
	return (float64(r.Uint64()>>11) + 0.5) * 0x1p-53
}

// NormFloat64 returns a standard normal number (Box-Muller, one of the
// pair: a fixed number of draws per call keeps sequences easy to reason
// about).
func (r *Rand) NormFloat64() float64 {
	u1, u2 := r.open01(), r.Float64()
	return math.Sqrt(-2*math.Log(u1)) * math.Cos(2*math.Pi*u2)
}

// ExpFloat64 returns an exponential number of mean 1.
func (r *Rand) ExpFloat64() float64 {
	return -math.Log(r.open01())
}

// Gamma returns a Gamma(shape, 1) number, shape > 0 (Marsaglia and Tsang,
// 2000; shape < 1 is boosted to shape+1 and scaled by U^(1/shape)). It
// returns 0 for shape <= 0 or NaN.
func (r *Rand) Gamma(shape float64) float64 {
	if !(shape > 0) {
		return 0
	}
	boost := 1.0
	if shape < 1 {
		boost = math.Pow(r.open01(), 1/shape)
		shape++
	}
	d := shape - 1.0/3
	c := 1 / math.Sqrt(9*d)
	for {
		x := r.NormFloat64()
		v := 1 + c*x
		if v <= 0 {
			continue
		}
		v = v * v * v
		u := r.open01()
		x2 := x * x
		if u < 1-0.0331*x2*x2 || math.Log(u) < 0.5*x2+d*(1-v+math.Log(v)) {
			return d * v * boost
		}
	}
}

// Beta returns a Beta(a, b) number in [0, 1], a, b > 0, as X/(X+Y) with X
// and Y Gamma(a) and Gamma(b). With a or b not > 0 it returns the limit the
// other parameter points to (0 or 1), and 0.5 when both are degenerate.
func (r *Rand) Beta(a, b float64) float64 {
	aok, bok := a > 0, b > 0
	switch {
	case !aok && !bok:
		return 0.5
	case !aok:
		return 0
	case !bok:
		return 1
	}
	x := r.Gamma(a)
	y := r.Gamma(b)
	if s := x + y; s > 0 {
		return x / s
	}
	return a / (a + b)
}
