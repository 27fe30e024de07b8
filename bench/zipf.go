package bench

import (
	"fmt"
	"math"
)

// Zipf draws ranks 0..n-1 with probability proportional to 1/(rank+1)^s: a few very popular
// items and a long tail, the shape of campaign and placement traffic. Unlike math/rand's Zipf,
// any exponent s >= 0 is allowed (s = 0 is uniform, s = 1 is the classic 1/rank law).
//
// A Zipf is immutable after NewZipf and safe for concurrent use; callers bring their own random
// numbers, so each goroutine can use its own generator.
type Zipf struct {
	cum []float64 // cumulative probabilities, the last one exactly 1
}

// NewZipf returns the distribution over n ranks with exponent s.
func NewZipf(n int, s float64) (*Zipf, error) {
	if n <= 0 {
		return nil, fmt.Errorf("invalid Zipf size %d: must be positive", n)
	}
	if s < 0 || math.IsNaN(s) || math.IsInf(s, 0) {
		return nil, fmt.Errorf("invalid Zipf exponent %v: must be a finite number >= 0", s)
	}
	z := &Zipf{cum: make([]float64, n)}
	total := 0.0
	for i := range n {
		total += math.Pow(float64(i+1), -s)
		z.cum[i] = total
	}
	for i := range z.cum {
		z.cum[i] /= total
	}
	z.cum[n-1] = 1
	return z, nil
}

// Len returns the number of ranks.
func (z *Zipf) Len() int { return len(z.cum) }

// Prob returns the probability of rank i.
func (z *Zipf) Prob(i int) float64 {
	if i == 0 {
		return z.cum[0]
	}
	return z.cum[i] - z.cum[i-1]
}

// Rank maps u, uniform in [0, 1), to a rank (inverse transform sampling, O(log n)).
func (z *Zipf) Rank(u float64) int {
	return pickCum(z.cum, u)
}
