package windows

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"runtime"
	"testing"
)

// checkpointStores caches the filled stores by key count, so the write and
// read benchmarks share one (slow) setup.
var checkpointStores = map[int]*Store{}

// checkpointStore returns a store of n keys shaped like a day of ad traffic:
// one key in ten is busy (an event every 2 minutes for 24 hours: every bucket
// of every ring holds data), the others saw 3 events.
func checkpointStore(b *testing.B, n int) *Store {
	if s := checkpointStores[n]; s != nil {
		return s
	}
	s := mustStore(b, Config{MaxKeys: n})
	keys := benchKeys(b, n)
	rng := rand.New(rand.NewPCG(1, 2))
	c := Counts{Impressions: 1, CostMicros: 2100}
	for now := t0; now < t0+24*hourMs; now += 2 * minuteMs {
		for i := 0; i < n; i += 10 {
			s.Add(keys[i], now, now, c)
		}
	}
	end := t0 + 24*hourMs
	for i, k := range keys {
		if i%10 == 0 {
			continue
		}
		for j := 0; j < 3; j++ {
			s.Add(k, end-rng.Int64N(24*hourMs), end, Counts{Impressions: 1, Clicks: uint64(j & 1), CostMicros: 1800})
		}
	}
	checkpointStores[n] = s
	runtime.GC()
	return s
}

func benchWriteCheckpoint(b *testing.B, n int) {
	s := checkpointStore(b, n)
	var buf bytes.Buffer
	size, err := s.WriteCheckpoint(&buf)
	if err != nil {
		b.Fatalf("unexpected error: %s", err)
	}
	b.SetBytes(size)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := s.WriteCheckpoint(io.Discard); err != nil {
			b.Fatalf("unexpected error: %s", err)
		}
	}
	b.ReportMetric(float64(size)/float64(n), "bytes/key")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/key")
}

func benchReadCheckpoint(b *testing.B, n int) {
	var buf bytes.Buffer
	if _, err := checkpointStore(b, n).WriteCheckpoint(&buf); err != nil {
		b.Fatalf("unexpected error: %s", err)
	}
	data := buf.Bytes()
	s := mustStore(b, Config{MaxKeys: n})
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if err := s.ReadCheckpoint(bytes.NewReader(data)); err != nil {
			b.Fatalf("unexpected error: %s", err)
		}
	}
	if s.Len() != n {
		b.Fatalf("unexpected Len; got %d; want %d", s.Len(), n)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/key")
}

func BenchmarkWriteCheckpoint(b *testing.B) {
	for _, n := range []int{100_000, 1_000_000} {
		b.Run(fmt.Sprintf("keys=%d", n), func(b *testing.B) { benchWriteCheckpoint(b, n) })
	}
}

func BenchmarkReadCheckpoint(b *testing.B) {
	for _, n := range []int{100_000, 1_000_000} {
		b.Run(fmt.Sprintf("keys=%d", n), func(b *testing.B) { benchReadCheckpoint(b, n) })
		delete(checkpointStores, n)
		runtime.GC()
	}
}
