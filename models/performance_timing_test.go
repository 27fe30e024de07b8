package models

import (
	"math"
	"testing"

	"github.com/bidpulse/bidpulse/windows"
)

// BenchmarkPerformance measures the policy on the bid path, for a
// campaign-level key and for keys one and two levels below their campaign,
// each goroutine with its own Result as the service has.
func BenchmarkPerformance(b *testing.B) {
	f := func(name string, chain []windows.Counts) {
		b.Run(name, func(b *testing.B) {
			cfg := DefaultPerformance()
			in := &Input{Chain: chain}
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				var res Result
				var sink float64
				for pb.Next() {
					Performance(&cfg, in, &res)
					sink += res.Multiplier
				}
				if math.IsNaN(sink) {
					b.Errorf("unexpected NaN")
				}
			})
		})
	}
	f("campaign", []windows.Counts{campaign})
	f("placement", []windows.Counts{campaign, counts(2000, 80, 6)})
	f("creative_placement", []windows.Counts{campaign, counts(4000, 100, 6), counts(500, 10, 1)})

	// With elasticity != 1 the policy pays for math.Pow.
	b.Run("creative_placement_elasticity_0.5", func(b *testing.B) {
		cfg := DefaultPerformance()
		cfg.Elasticity = 0.5
		in := &Input{Chain: []windows.Counts{campaign, counts(4000, 100, 6), counts(500, 10, 1)}}
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			var res Result
			for pb.Next() {
				Performance(&cfg, in, &res)
			}
		})
	})
}

// BenchmarkPerformanceExplain adds the explain encoding, which only
// /v1/multiplier?explain=1 pays for.
func BenchmarkPerformanceExplain(b *testing.B) {
	cfg := DefaultPerformance()
	in := &Input{Chain: []windows.Counts{campaign, counts(4000, 100, 6), counts(500, 10, 1)}}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		var res Result
		buf := make([]byte, 0, 1024)
		for pb.Next() {
			Performance(&cfg, in, &res)
			buf = res.AppendJSON(buf[:0])
		}
	})
}

// resultSink keeps the benchmarked Results on the heap, so that the
// compiler cannot drop the stores to them.
var resultSink *Result

// BenchmarkResultReset compares Reset with the baseline it beats: clearing
// the whole fixed-size Result.
func BenchmarkResultReset(b *testing.B) {
	b.Run("reset", func(b *testing.B) {
		r := new(Result)
		resultSink = r
		b.ReportAllocs()
		for b.Loop() {
			r.Reset()
		}
	})
	b.Run("clear_all", func(b *testing.B) {
		r := new(Result)
		resultSink = r
		b.ReportAllocs()
		for b.Loop() {
			*r = Result{Multiplier: 1, BeforeClamp: 1, Max: math.MaxFloat64}
		}
	})
}
