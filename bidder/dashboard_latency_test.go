package bidder

import (
	"math/rand/v2"
	"testing"
	"time"
)

func TestLatencyBuckets(t *testing.T) {
	f := func(ns uint64) {
		t.Helper()
		i := latencyBucket(ns)
		if i < 0 || i >= latencyBuckets {
			t.Fatalf("unexpected bucket of %d; got %d; want 0..%d", ns, i, latencyBuckets-1)
		}
		lo, hi := latencyBucketBounds(i)
		if ns < lo || (hi > lo && ns >= hi) {
			t.Fatalf("unexpected bounds of bucket %d for %d; got [%d, %d)", i, ns, lo, hi)
		}
		if hi > lo && lo >= latencySub && float64(hi-lo)/float64(lo) > 1.0/latencySub+1e-12 {
			t.Fatalf("bucket %d too wide: [%d, %d)", i, lo, hi)
		}
	}
	for ns := uint64(0); ns < 5000; ns++ {
		f(ns)
	}
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 100000; i++ {
		f(r.Uint64() >> r.UintN(64))
	}
	f(1<<63 - 1)
}

func TestLatencyQuantiles(t *testing.T) {
	var r latencyRecorder
	var before, after [latencyBuckets]uint64
	r.record(time.Hour) // before the interval
	r.read(&before)
	for us := 1; us <= 1000; us++ {
		r.record(time.Duration(us) * time.Microsecond)
	}
	r.read(&after)
	var li latencyInterval
	li.diff(&after, &before)
	if li.total != 1000 {
		t.Fatalf("unexpected total; got %d; want 1000", li.total)
	}
	f := func(q float64, want time.Duration) {
		t.Helper()
		got := li.quantile(q)
		if d := float64(got-want) / float64(want); d < -0.125 || d > 0.125 {
			t.Fatalf("unexpected quantile %v; got %s; want %s within 12.5%%", q, got, want)
		}
	}
	f(0.5, 500*time.Microsecond)
	f(0.9, 900*time.Microsecond)
	f(0.99, 990*time.Microsecond)
	f(0, time.Microsecond)
	f(1, time.Millisecond)
	var empty latencyInterval
	if got := empty.quantile(0.99); got != 0 {
		t.Fatalf("unexpected quantile of an empty interval; got %s; want 0", got)
	}
}

func TestLatencyRecordAllocatesNothing(t *testing.T) {
	var r latencyRecorder
	if n := testing.AllocsPerRun(1000, func() { r.record(42 * time.Microsecond) }); n != 0 {
		t.Fatalf("unexpected allocations per record; got %v; want 0", n)
	}
}
