package models

import (
	"math"
	"testing"
)

func TestRandDeterministic(t *testing.T) {
	a, b := NewRand(42), NewRand(42)
	c := NewRand(43)
	same := 0
	for i := 0; i < 1000; i++ {
		x, y, z := a.Uint64(), b.Uint64(), c.Uint64()
		if x != y {
			t.Fatalf("unexpected difference at draw %d; got %d and %d from the same seed", i, x, y)
		}
		if x == z {
			same++
		}
	}
	if same > 0 {
		t.Fatalf("unexpected equal draws from seeds 42 and 43; got %d", same)
	}
	// The zero Rand seeds itself rather than returning zeros forever.
	var r Rand
	if a, b := r.Uint64(), r.Uint64(); a == 0 && b == 0 {
		t.Fatalf("unexpected zeros from the zero Rand")
	}
}

func TestRandDistributions(t *testing.T) {
	r := NewRand(1)
	const n = 50000
	f := func(name string, draw func() float64, mean, sd float64) {
		t.Helper()
		var s, s2 float64
		for i := 0; i < n; i++ {
			x := draw()
			if math.IsNaN(x) || math.IsInf(x, 0) {
				t.Fatalf("unexpected %s draw %v", name, x)
			}
			s += x
			s2 += x * x
		}
		m := s / n
		v := s2/n - m*m
		if math.Abs(m-mean) > 4*sd/math.Sqrt(n)+1e-9 {
			t.Fatalf("unexpected mean of %s; got %v; want %v", name, m, mean)
		}
		if math.Abs(math.Sqrt(v)-sd) > 0.02*sd+1e-9 {
			t.Fatalf("unexpected standard deviation of %s; got %v; want %v", name, math.Sqrt(v), sd)
		}
	}
	f("Float64", r.Float64, 0.5, math.Sqrt(1.0/12))
	f("NormFloat64", r.NormFloat64, 0, 1)
	f("ExpFloat64", r.ExpFloat64, 1, 1)
	f("Gamma(0.5)", func() float64 { return r.Gamma(0.5) }, 0.5, math.Sqrt(0.5))
	f("Gamma(7)", func() float64 { return r.Gamma(7) }, 7, math.Sqrt(7))
	beta := func(a, b float64) {
		m := a / (a + b)
		sd := math.Sqrt(a * b / ((a + b) * (a + b) * (a + b + 1)))
		f("Beta", func() float64 { return r.Beta(a, b) }, m, sd)
	}
	beta(2, 5)
	beta(0.5, 0.5)
	beta(30, 970) // a CTR posterior of 30 clicks in 1000 impressions
	for i := 0; i < 1000; i++ {
		if x := r.Float64(); x < 0 || x >= 1 {
			t.Fatalf("unexpected Float64 %v outside [0, 1)", x)
		}
	}
	if r.Beta(0, 1) != 0 || r.Beta(1, 0) != 1 || r.Beta(0, 0) != 0.5 || r.Gamma(-1) != 0 || r.Gamma(math.NaN()) != 0 {
		t.Fatalf("unexpected degenerate Beta or Gamma")
	}
}
