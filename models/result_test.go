package models

import (
	"math"
	"testing"
)

func TestResultFinish(t *testing.T) {
	f := func(min, max float64, factors []float64, wantBefore, wantMultiplier float64, wantClamped bool) {
		t.Helper()
		var r Result
		r.Reset()
		r.Min, r.Max = min, max
		for _, v := range factors {
			r.AddFactor("f", v)
		}
		r.Finish()
		if r.BeforeClamp != wantBefore && !almostEqual(r.BeforeClamp, wantBefore) && !(math.IsNaN(wantBefore) && math.IsNaN(r.BeforeClamp)) {
			t.Fatalf("unexpected BeforeClamp for %v; got %v; want %v", factors, r.BeforeClamp, wantBefore)
		}
		if !almostEqual(r.Multiplier, wantMultiplier) {
			t.Fatalf("unexpected Multiplier for %v; got %v; want %v", factors, r.Multiplier, wantMultiplier)
		}
		if r.Clamped != wantClamped {
			t.Fatalf("unexpected Clamped for %v; got %v; want %v", factors, r.Clamped, wantClamped)
		}
	}
	// No factors: the empty product 1.
	f(0.5, 2, nil, 1, 1, false)
	// 1.5 * 1.2 = 1.8, inside [0.5, 2].
	f(0.5, 2, []float64{1.5, 1.2}, 1.8, 1.8, false)
	// 1.5 * 1.5 = 2.25 > 2: clamped down.
	f(0.5, 2, []float64{1.5, 1.5}, 2.25, 2, true)
	// 0.5 * 0.5 = 0.25 < 0.5: clamped up.
	f(0.5, 2, []float64{0.5, 0.5}, 0.25, 0.5, true)
	// On the bounds: not clamped.
	f(0.5, 2, []float64{2}, 2, 2, false)
	f(0.5, 2, []float64{0.5}, 0.5, 0.5, false)
	// A factor of exactly 0 is an opt-out: 0, the clamp skipped.
	f(0.5, 2, []float64{1.5, 0}, 0, 0, false)
	f(0.5, 2, []float64{0, 3, 0.1}, 0, 0, false)
	// A tiny but non-zero factor is not an opt-out.
	f(0.5, 2, []float64{1e-300, 1e-300}, 0, 0.5, true)
	// +Inf clamps to Max.
	f(0.5, 2, []float64{math.Inf(1)}, math.Inf(1), 2, true)
	// NaN (a broken factor) gives the neutral 1, clamped.
	f(0.5, 2, []float64{math.NaN()}, math.NaN(), 1, true)
	f(1.5, 2, []float64{math.NaN(), 2}, math.NaN(), 1.5, true)
	// The clamp of a Reset Result lets everything through.
	f(0, math.MaxFloat64, []float64{7, 3}, 21, 21, false)

	// Without setting a clamp: Reset's widest one.
	var r Result
	r.Reset()
	r.AddFactor("f", 1e6)
	r.Finish()
	if r.Multiplier != 1e6 || r.Clamped {
		t.Fatalf("unexpected result without a clamp; got %v, clamped %v; want 1e6 unclamped", r.Multiplier, r.Clamped)
	}
}

func TestResultFinishAgain(t *testing.T) {
	var r Result
	r.Reset()
	r.Min, r.Max = 0.5, 2
	r.AddFactor("a", 1.5)
	r.Finish()
	if r.Multiplier != 1.5 {
		t.Fatalf("unexpected Multiplier; got %v; want 1.5", r.Multiplier)
	}
	r.AddFactor("b", 2)
	r.Finish()
	if r.Multiplier != 2 || r.BeforeClamp != 3 || !r.Clamped {
		t.Fatalf("unexpected result; got %v (before clamp %v, clamped %v); want 2 (3, true)", r.Multiplier, r.BeforeClamp, r.Clamped)
	}
	r.Factors[1].Value = 1
	r.Finish()
	if r.Multiplier != 1.5 || r.Clamped {
		t.Fatalf("unexpected result; got %v (clamped %v); want 1.5 (false)", r.Multiplier, r.Clamped)
	}
}

func TestResultReset(t *testing.T) {
	var r Result
	r.Min, r.Max, r.Clamped, r.Multiplier = 0.5, 2, true, 7
	fa := r.AddFactor("a", 3)
	fa.AddInput("x", 1)
	r.Reset()
	// Only the visible state is reset; the arrays keep stale slots.
	r.Factors = [MaxFactors]Factor{}
	want := Result{Multiplier: 1, BeforeClamp: 1, Min: 0, Max: math.MaxFloat64}
	if r != want {
		t.Fatalf("unexpected Result after Reset; got %+v; want %+v", r, want)
	}
}

func TestResultAddAndLookUp(t *testing.T) {
	var r Result
	r.Reset()
	a := r.AddFactor("a", 2)
	a.AddInput("x", 1)
	a.AddInput("y", 2)
	r.AddFactor("b", 3)
	if r.NFactors != 2 || r.Factors[0].NInputs != 2 || r.Factors[1].NInputs != 0 {
		t.Fatalf("unexpected counts; got %d factors, %d and %d inputs; want 2, 2 and 0",
			r.NFactors, r.Factors[0].NInputs, r.Factors[1].NInputs)
	}
	if fa, ok := r.Factor("b"); !ok || fa.Value != 3 {
		t.Fatalf("unexpected factor b; got %v, %v; want value 3", fa, ok)
	}
	if _, ok := r.Factor("c"); ok {
		t.Fatalf("unexpected factor c")
	}
	if v, ok := a.Input("y"); !ok || v != 2 {
		t.Fatalf("unexpected input y; got %v, %v; want 2, true", v, ok)
	}
	if _, ok := a.Input("z"); ok {
		t.Fatalf("unexpected input z")
	}
	// A factor added after a Reset starts without the inputs of the
	// factor that held its slot before.
	r.Reset()
	if fa := r.AddFactor("c", 1); fa.NInputs != 0 {
		t.Fatalf("unexpected inputs; got %d; want 0", fa.NInputs)
	}
}

func TestResultOverflowPanics(t *testing.T) {
	f := func(name string, fn func()) {
		t.Helper()
		defer func() {
			t.Helper()
			if recover() == nil {
				t.Fatalf("%s: expecting a panic", name)
			}
		}()
		fn()
	}
	f("factors", func() {
		var r Result
		for range len(r.Factors) + 1 {
			r.AddFactor("f", 1)
		}
	})
	f("inputs", func() {
		var fa Factor
		for range len(fa.Inputs) + 1 {
			fa.AddInput("x", 1)
		}
	})
}
