package windows

import (
	"math"
	"math/bits"
)

// divider divides non-negative int64s by a constant with a multiplication
// and one correction, instead of a hardware division (tens of cycles, and
// three rings need several per Add). m = floor((2^64-1)/d) underestimates
// 2^64/d by less than n/2^64 < 1/2 for n < 2^63, so the estimate is the
// quotient or one less.
type divider struct {
	d, m uint64
}

func newDivider(d int64) divider {
	if d <= 0 {
		panic("BUG: windows: divider of a non-positive number")
	}
	return divider{d: uint64(d), m: math.MaxUint64 / uint64(d)}
}

// div returns n / d for n >= 0.
func (v divider) div(n int64) int64 {
	q, _ := bits.Mul64(uint64(n), v.m)
	if uint64(n)-q*v.d >= v.d {
		q++
	}
	return int64(q)
}

// mod returns n % d for n >= 0.
func (v divider) mod(n int64) int64 {
	q, _ := bits.Mul64(uint64(n), v.m)
	r := uint64(n) - q*v.d
	if r >= v.d {
		r -= v.d
	}
	return int64(r)
}
