package bidder

import (
	"math/bits"
	"sync/atomic"
	"time"
)

// latencySubBits is the number of mantissa bits kept per power of two: 8
// sub-buckets, so a bucket's width is at most 1/8 of its lower bound and a
// reported percentile is within 12.5% of the true value.
const latencySubBits = 3

const (
	latencySub     = 1 << latencySubBits
	latencyBuckets = (64 - latencySubBits + 1) * latencySub
)

// latencyRecorder counts request durations in log-linear buckets of
// nanoseconds. record is one atomic add and allocates nothing, so it sits on
// the bid path; the SSE hub reads every bucket once per tick and turns the
// difference between two reads into the percentiles of that interval. Safe
// for concurrent use; the zero value is ready.
type latencyRecorder struct {
	counts [latencyBuckets]atomic.Uint64
}

// latencyBucket returns the bucket of a duration of ns nanoseconds.
func latencyBucket(ns uint64) int {
	if ns < latencySub {
		return int(ns)
	}
	e := bits.Len64(ns) - 1 // ns in [2^e, 2^(e+1)), e >= latencySubBits
	sub := (ns >> (e - latencySubBits)) & (latencySub - 1)
	return (e-latencySubBits+1)*latencySub + int(sub)
}

// latencyBucketBounds returns the nanoseconds [lo, hi) a bucket holds.
func latencyBucketBounds(i int) (lo, hi uint64) {
	if i < latencySub {
		return uint64(i), uint64(i) + 1
	}
	e := i/latencySub + latencySubBits - 1
	sub := uint64(i % latencySub)
	shift := uint(e - latencySubBits)
	lo = (latencySub + sub) << shift
	return lo, lo + 1<<shift
}

// record counts one request of duration d (negative durations count as 0).
func (r *latencyRecorder) record(d time.Duration) {
	if d < 0 {
		d = 0
	}
	r.counts[latencyBucket(uint64(d))].Add(1)
}

// read copies every bucket into dst. Buckets are read one by one while
// requests go on, so a read is not an atomic picture; the counts of a bucket
// never go down, which is all the interval arithmetic needs.
func (r *latencyRecorder) read(dst *[latencyBuckets]uint64) {
	for i := range r.counts {
		dst[i] = r.counts[i].Load()
	}
}

// latencyInterval is the requests of one interval: per-bucket differences of
// two reads.
type latencyInterval struct {
	counts [latencyBuckets]uint64
	total  uint64
}

// diff sets li to cur - prev.
func (li *latencyInterval) diff(cur, prev *[latencyBuckets]uint64) {
	li.total = 0
	for i := range cur {
		d := cur[i] - prev[i]
		li.counts[i] = d
		li.total += d
	}
}

// quantile returns the duration under which a fraction q of the interval's
// requests fell: the midpoint of the bucket holding the rank. It returns 0
// when the interval has no request.
func (li *latencyInterval) quantile(q float64) time.Duration {
	if li.total == 0 {
		return 0
	}
	rank := uint64(q*float64(li.total) + 0.5)
	if rank < 1 {
		rank = 1
	}
	if rank > li.total {
		rank = li.total
	}
	var seen uint64
	for i, n := range li.counts {
		seen += n
		if seen >= rank {
			lo, hi := latencyBucketBounds(i)
			return time.Duration(lo + (hi-lo)/2)
		}
	}
	return 0
}

// observeBid records one GET /v1/multiplier answered since start in the
// Prometheus histogram and in the dashboard's recorder; one clock read.
func (s *Service) observeBid(start time.Time) {
	d := time.Since(start)
	s.http.bid.Update(d.Seconds())
	s.sse.bidLatency.record(d)
}

// observeBatch is observeBid for POST /v1/multipliers.
func (s *Service) observeBatch(start time.Time) {
	d := time.Since(start)
	s.http.batch.Update(d.Seconds())
	s.sse.batchLatency.record(d)
}
