package bench

import (
	"encoding/json"
	"math"
	"testing"
)

// testHist builds a histogram of consecutive buckets [i µs, i+1 µs) with the given counts
// (zero counts left out, as the service leaves them out).
func testHist(counts ...uint64) runtimeHist {
	var h runtimeHist
	for i, n := range counts {
		if n == 0 {
			continue
		}
		lo, hi := float64(i)/1e6, float64(i+1)/1e6
		h.Buckets = append(h.Buckets, runtimeBucket{Lo: &lo, Hi: &hi, N: n})
	}
	return h
}

func TestRuntimeHistSubQuantile(t *testing.T) {
	earlier := testHist(5, 0, 1, 0)
	later := testHist(7, 0, 1, 0, 2)
	d, ok := later.sub(earlier)
	if !ok {
		t.Fatalf("unexpected reset between %+v and %+v", earlier, later)
	}
	if got := d.count(); got != 4 {
		t.Fatalf("unexpected count of the difference; got %d; want 4 (2 in the first bucket, 2 in the fifth)", got)
	}
	if len(d.Buckets) != 2 {
		t.Fatalf("unexpected buckets of the difference; got %d; want 2 (unchanged ones left out)", len(d.Buckets))
	}
	q := func(h runtimeHist, q, want float64) {
		t.Helper()
		if got := h.quantile(q); math.Abs(got-want) > 1e-12 {
			t.Fatalf("unexpected quantile %v; got %v; want %v (the bucket's upper bound)", q, got, want)
		}
	}
	q(d, 0.5, 1e-6)
	q(d, 0.51, 5e-6)
	q(d, 0.99, 5e-6)
	q(d, 0, 1e-6)
	q(runtimeHist{}, 0.99, 0)
	if d.max() != 5e-6 || (runtimeHist{}).max() != 0 {
		t.Fatalf("unexpected max %v", d.max())
	}
	// 100 values, one of them high: p99 stays low, the max does not.
	tail := testHist(99, 0, 0, 0, 0, 0, 0, 0, 0, 1)
	q(tail, 0.99, 1e-6)
	if tail.max() != 10e-6 {
		t.Fatalf("unexpected max of the tail; got %v; want 1e-05", tail.max())
	}

	// A count that went down, or a bucket gone: another process.
	if _, ok := earlier.sub(later); ok {
		t.Fatalf("unexpected difference of an earlier histogram")
	}
	if _, ok := testHist(9).sub(testHist(1, 1)); ok {
		t.Fatalf("unexpected difference without a bucket of the earlier histogram")
	}

	// An open top bucket counts at its lower bound.
	lo := 1.0
	open := runtimeHist{Buckets: []runtimeBucket{{Lo: &lo, N: 1}}}
	if open.quantile(0.99) != 1 || open.max() != 1 {
		t.Fatalf("unexpected figures of an open bucket: %v, %v", open.quantile(0.99), open.max())
	}

	// add merges the rounds, keeping the order.
	sum := testHist(0, 0, 3)
	sum.add(testHist(1, 0, 1, 0, 4))
	if sum.count() != 9 || len(sum.Buckets) != 3 || *sum.Buckets[0].Lo != 0 || sum.Buckets[1].N != 4 || sum.max() != 5e-6 {
		t.Fatalf("unexpected sum %+v", sum)
	}
}

func TestRuntimeBetween(t *testing.T) {
	// A service's answer, as bidder writes it (infinite bounds are null).
	parse := func(s string) *runtimeSample {
		t.Helper()
		var r runtimeSample
		if err := json.Unmarshal([]byte(s), &r); err != nil {
			t.Fatalf("unexpected error: %v", err)
		}
		return &r
	}
	a := parse(`{"metrics":{"/gc/cycles/total:gc-cycles":3,"/gc/heap/live:bytes":1048576,"/sched/gomaxprocs:threads":2,` +
		`"/sched/latencies:seconds":{"buckets":[{"lo":null,"hi":0,"n":1},{"lo":1e-06,"hi":2e-06,"n":100}]},` +
		`"/sched/pauses/total/gc:seconds":{"buckets":[{"lo":2e-05,"hi":2.4e-05,"n":6}]}}}`)
	b := parse(`{"metrics":{"/gc/cycles/total:gc-cycles":5,"/gc/heap/live:bytes":2097152,` +
		`"/sched/latencies:seconds":{"buckets":[{"lo":null,"hi":0,"n":1},{"lo":1e-06,"hi":2e-06,"n":198},{"lo":0.004,"hi":0.005,"n":2}]},` +
		`"/sched/pauses/total/gc:seconds":{"buckets":[{"lo":2e-05,"hi":2.4e-05,"n":9},{"lo":0.001,"hi":0.00125,"n":1}]}}}`)
	d, ok := runtimeBetween(a, b)
	if !ok {
		t.Fatalf("unexpected reset")
	}
	r := d.report()
	if r.GCCycles != 2 || r.GCPauses != 4 || r.GCPauseMaxMs != 1.25 || math.Abs(r.GCPauseP99Ms-1.25) > 1e-9 ||
		r.SchedSamples != 100 || r.SchedLatencyP99Ms != 5 || r.SchedLatencyMaxMs != 5 || r.HeapLiveMB != 2 {
		t.Fatalf("unexpected runtime report %+v", r)
	}
	if _, ok := runtimeBetween(b, a); ok {
		t.Fatalf("unexpected difference backwards (a restarted service)")
	}
	if _, ok := runtimeBetween(nil, b); ok {
		t.Fatalf("unexpected difference without a start")
	}
	var sum runtimeDelta
	sum.add(d)
	sum.add(d)
	if r := sum.report(); r.GCCycles != 4 || r.GCPauses != 8 || r.SchedSamples != 200 {
		t.Fatalf("unexpected sum of two rounds %+v", r)
	}
}
