package bench

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/bidpulse/bidpulse/bidder/client"
)

func TestZipf(t *testing.T) {
	z, err := NewZipf(5, 1)
	if err != nil {
		t.Fatalf("unexpected error: %v", err)
	}
	h := 1 + 1.0/2 + 1.0/3 + 1.0/4 + 1.0/5
	for i := range 5 {
		if got, want := z.Prob(i), 1/float64(i+1)/h; math.Abs(got-want) > 1e-12 {
			t.Fatalf("unexpected probability of rank %d; got %v; want %v", i, got, want)
		}
	}
	if z.Rank(0) != 0 || z.Rank(0.999999) != 4 || z.Rank(z.Prob(0)) != 1 {
		t.Fatalf("unexpected ranks at the edges: %d %d %d", z.Rank(0), z.Rank(0.999999), z.Rank(z.Prob(0)))
	}

	// Sampled frequencies match the probabilities within 4 standard deviations.
	sample := func(n int, s float64) {
		t.Helper()
		z, err := NewZipf(n, s)
		if err != nil {
			t.Fatalf("unexpected error: %v", err)
		}
		rng := rand.New(rand.NewPCG(1, 2))
		const draws = 200_000
		counts := make([]int, n)
		for range draws {
			counts[z.Rank(rng.Float64())]++
		}
		for i, c := range counts {
			p := z.Prob(i)
			sigma := math.Sqrt(p * (1 - p) / draws)
			if got := float64(c) / draws; math.Abs(got-p) > 4*sigma+1e-9 {
				t.Fatalf("unexpected frequency of rank %d of Zipf(%d, %v); got %.5f; want %.5f +- %.5f", i, n, s, got, p, 4*sigma)
			}
		}
	}
	sample(10, 1)
	sample(50, 1.2)
	sample(7, 0) // uniform
	sample(1, 3)

	for _, c := range []struct {
		n int
		s float64
	}{{0, 1}, {-1, 1}, {3, -0.5}, {3, math.NaN()}, {3, math.Inf(1)}} {
		if _, err := NewZipf(c.n, c.s); err == nil {
			t.Fatalf("unexpected success of NewZipf(%d, %v)", c.n, c.s)
		}
	}
}

func TestSyntheticSkewAndKeySpace(t *testing.T) {
	s := NewSynthetic(SyntheticConfig{Campaigns: 4, Creatives: 3, Placements: 5, Skew: 1.1, Seed: 3})
	zc, _ := NewZipf(4, 1.1)
	zk, _ := NewZipf(3, 1.1)
	zp, _ := NewZipf(5, 1.1)
	cells := s.Cells()
	for i, c := range cells {
		want := zc.Prob(i/15) * zk.Prob(i/5%3) * zp.Prob(i%5)
		if math.Abs(c.Share-want) > 1e-12 {
			t.Fatalf("unexpected share of %s/%s/%s; got %v; want %v", c.Campaign, c.Creative, c.Placement, c.Share, want)
		}
	}

	// Bid keys are drawn with the cells' shares.
	ks := newKeySpace(s)
	if ks.len() != len(cells) {
		t.Fatalf("unexpected key space size; got %d; want %d", ks.len(), len(cells))
	}
	rng := rand.New(rand.NewPCG(5, 6))
	const draws = 300_000
	counts := make([]int, ks.len())
	for range draws {
		counts[ks.pick(rng.Float64())]++
	}
	for i, c := range cells {
		sigma := math.Sqrt(c.Share * (1 - c.Share) / draws)
		if got := float64(counts[i]) / draws; math.Abs(got-c.Share) > 4*sigma {
			t.Fatalf("unexpected frequency of cell %d; got %.5f; want %.5f +- %.5f", i, got, c.Share, 4*sigma)
		}
	}
	// The keys the client asks for are the cells'.
	for i, c := range cells {
		if got, want := ks.keys[i], (client.Key{Campaign: c.Campaign, Creative: c.Creative, Placement: c.Placement}); got != want {
			t.Fatalf("unexpected key of cell %d; got %+v; want %+v", i, got, want)
		}
	}
	if got, want := ks.keys[1], (client.Key{Campaign: "c1", Creative: "cr1", Placement: "sports.example/side"}); got != want {
		t.Fatalf("unexpected key of cell 1; got %+v; want %+v", got, want)
	}
}
