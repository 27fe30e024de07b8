// Package allocbound checks, in tests and fuzz targets, that a decoder's
// allocations follow the input it was given, not the lengths that input
// claims: a header that says 2^40 keys must be refused, not believed.
//
// It reads the runtime's cumulative allocation counter
// (/gc/heap/allocs:bytes), which runtime/metrics keeps without stopping
// the world, so a fuzz target can check every input. The counter is
// process-wide: goroutines allocating meanwhile count too, so a bound is a
// generous budget (megabytes), never an exact figure.
package allocbound

import (
	"runtime/metrics"
	"testing"
)

const allocsMetric = "/gc/heap/allocs:bytes"

// Allocated returns the bytes fn allocated (with whatever ran beside it).
func Allocated(fn func()) uint64 {
	s := []metrics.Sample{{Name: allocsMetric}}
	metrics.Read(s)
	before := s[0].Value.Uint64()
	fn()
	metrics.Read(s)
	return s[0].Value.Uint64() - before
}

// Check runs fn and fails tb when it allocated more than fixed bytes plus
// perByte for each of the inputLen bytes it decoded.
func Check(tb testing.TB, what string, inputLen int, fixed, perByte uint64, fn func()) {
	tb.Helper()
	limit := fixed + perByte*uint64(inputLen)
	if got := Allocated(fn); got > limit {
		tb.Fatalf("unexpected allocation by %s of %d bytes of input; got %d bytes; want at most %d", what, inputLen, got, limit)
	}
}
