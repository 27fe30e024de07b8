package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"time"

	"github.com/valyala/fasthttp"
)

// runtimePath is the service's endpoint of its Go runtime's cumulative figures (see
// bidder's runtimestats.go).
const runtimePath = "/debug/runtime"

// runtimeSample is one answer of GET /debug/runtime: the service process's Go runtime since it
// started. The names are runtime/metrics names.
type runtimeSample struct {
	Metrics struct {
		GCCycles uint64 `json:"/gc/cycles/total:gc-cycles"`
		HeapLive uint64 `json:"/gc/heap/live:bytes"`
		// SchedLatencies are the times goroutines waited, runnable, for a thread; GCPauses
		// the GC's stop-the-world pauses (two per cycle). In seconds.
		SchedLatencies runtimeHist `json:"/sched/latencies:seconds"`
		GCPauses       runtimeHist `json:"/sched/pauses/total/gc:seconds"`
	} `json:"metrics"`
}

// runtimeHist is a histogram of /debug/runtime: its non-empty buckets, in ascending order.
type runtimeHist struct {
	Buckets []runtimeBucket `json:"buckets"`
}

// runtimeBucket is one bucket [Lo, Hi) with its count; a nil bound is infinite.
type runtimeBucket struct {
	Lo *float64 `json:"lo"`
	Hi *float64 `json:"hi"`
	N  uint64   `json:"n"`
}

// lo returns the lower bound, -Inf when there is none.
func (b *runtimeBucket) lo() float64 {
	if b.Lo == nil {
		return math.Inf(-1)
	}
	return *b.Lo
}

// upper returns the bucket's upper bound, or its lower bound for the open top bucket.
func (b *runtimeBucket) upper() float64 {
	if b.Hi == nil {
		return b.lo()
	}
	return *b.Hi
}

// sub returns h minus an earlier reading e of the same process's histogram. ok is false when
// e is not an earlier reading of it (a count went down: the service restarted in between).
func (h runtimeHist) sub(e runtimeHist) (d runtimeHist, ok bool) {
	earlier := make(map[float64]uint64, len(e.Buckets))
	for i := range e.Buckets {
		earlier[e.Buckets[i].lo()] = e.Buckets[i].N
	}
	for _, b := range h.Buckets {
		n, seen := earlier[b.lo()]
		if n > b.N {
			return runtimeHist{}, false
		}
		delete(earlier, b.lo())
		if seen && n == b.N {
			continue
		}
		b.N -= n
		d.Buckets = append(d.Buckets, b)
	}
	return d, len(earlier) == 0
}

// add adds o's counts to h (both of the same runtime, so with the same bucket bounds).
func (h *runtimeHist) add(o runtimeHist) {
	at := make(map[float64]int, len(h.Buckets))
	for i := range h.Buckets {
		at[h.Buckets[i].lo()] = i
	}
	for _, b := range o.Buckets {
		if i, ok := at[b.lo()]; ok {
			h.Buckets[i].N += b.N
			continue
		}
		at[b.lo()] = len(h.Buckets)
		h.Buckets = append(h.Buckets, b)
	}
	// Keep the ascending order: insertion sort, the lists are a few dozen buckets.
	for i := 1; i < len(h.Buckets); i++ {
		for j := i; j > 0 && h.Buckets[j].lo() < h.Buckets[j-1].lo(); j-- {
			h.Buckets[j], h.Buckets[j-1] = h.Buckets[j-1], h.Buckets[j]
		}
	}
}

// count returns the number of values in h.
func (h runtimeHist) count() uint64 {
	var n uint64
	for _, b := range h.Buckets {
		n += b.N
	}
	return n
}

// quantile returns the upper bound of the bucket holding quantile q (0..1) of h: a value at
// least as high as the true quantile, and under 25% above it with the runtime's time buckets.
// 0 for an empty histogram.
func (h runtimeHist) quantile(q float64) float64 {
	total := h.count()
	if total == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(total)))
	rank = min(max(rank, 1), total)
	var cum uint64
	for i := range h.Buckets {
		cum += h.Buckets[i].N
		if cum >= rank {
			return h.Buckets[i].upper()
		}
	}
	return h.Buckets[len(h.Buckets)-1].upper()
}

// max returns the upper bound of the highest non-empty bucket (0 for an empty histogram).
func (h runtimeHist) max() float64 {
	for i := len(h.Buckets) - 1; i >= 0; i-- {
		if h.Buckets[i].N > 0 {
			return h.Buckets[i].upper()
		}
	}
	return 0
}

// runtimeDelta is what the service's runtime did between two samples.
type runtimeDelta struct {
	gcCycles uint64
	gcPauses runtimeHist
	sched    runtimeHist
	heapLive uint64 // at the later sample
}

// runtimeBetween returns the runtime's activity from sample a to the later sample b; ok is false
// when either is missing or they are not of the same process.
func runtimeBetween(a, b *runtimeSample) (runtimeDelta, bool) {
	if a == nil || b == nil || b.Metrics.GCCycles < a.Metrics.GCCycles {
		return runtimeDelta{}, false
	}
	pauses, ok1 := b.Metrics.GCPauses.sub(a.Metrics.GCPauses)
	sched, ok2 := b.Metrics.SchedLatencies.sub(a.Metrics.SchedLatencies)
	if !ok1 || !ok2 {
		return runtimeDelta{}, false
	}
	return runtimeDelta{gcCycles: b.Metrics.GCCycles - a.Metrics.GCCycles, gcPauses: pauses, sched: sched,
		heapLive: b.Metrics.HeapLive}, true
}

// add sums o into d (the rounds of a capacity measurement); the heap is o's.
func (d *runtimeDelta) add(o runtimeDelta) {
	d.gcCycles += o.gcCycles
	d.gcPauses.add(o.gcPauses)
	d.sched.add(o.sched)
	d.heapLive = o.heapLive
}

// RuntimeReport is what the service's Go runtime did over a phase (or a capacity
// measurement), from its GET /debug/runtime at the start and at the end. Percentiles and
// maxima are the upper bounds of the runtime's histogram buckets (4 per power of two): at
// least the true figure, and less than 25% above it.
type RuntimeReport struct {
	GCCycles uint64 `json:"gc_cycles"`
	// GCPauses counts the GC's stop-the-world pauses (two per cycle); GCPauseP99Ms and
	// GCPauseMaxMs are over them.
	GCPauses     uint64  `json:"gc_pauses"`
	GCPauseP99Ms float64 `json:"gc_pause_p99_ms"`
	GCPauseMaxMs float64 `json:"gc_pause_max_ms"`
	// SchedSamples counts the scheduling delays the runtime sampled: how long a goroutine
	// that could run waited for a thread (a handler woken by its connection included).
	SchedSamples      uint64  `json:"sched_samples"`
	SchedLatencyP99Ms float64 `json:"sched_latency_p99_ms"`
	SchedLatencyMaxMs float64 `json:"sched_latency_max_ms"`
	// HeapLiveMB is the heap marked live by the last GC, at the end.
	HeapLiveMB float64 `json:"heap_live_mb"`
}

// report summarises d.
func (d *runtimeDelta) report() *RuntimeReport {
	return &RuntimeReport{
		GCCycles: d.gcCycles, GCPauses: d.gcPauses.count(),
		GCPauseP99Ms: 1000 * d.gcPauses.quantile(0.99), GCPauseMaxMs: 1000 * d.gcPauses.max(),
		SchedSamples:      d.sched.count(),
		SchedLatencyP99Ms: 1000 * d.sched.quantile(0.99), SchedLatencyMaxMs: 1000 * d.sched.max(),
		HeapLiveMB: float64(d.heapLive) / (1 << 20),
	}
}

// runtime reads the service's GET /debug/runtime.
func (c *statsClient) runtime() (*runtimeSample, error) {
	code, body, err := getBody(c.hc, runtimePath, 2*time.Second)
	if err != nil {
		return nil, fmt.Errorf("cannot GET %s: %w", runtimePath, err)
	}
	if code != fasthttp.StatusOK {
		return nil, fmt.Errorf("cannot GET %s: status %d: %.200s", runtimePath, code, body)
	}
	var s runtimeSample
	if err := json.Unmarshal(body, &s); err != nil {
		return nil, fmt.Errorf("cannot parse %s: %w", runtimePath, err)
	}
	return &s, nil
}

// scrapeRuntime reads the service's runtime figures at each phase boundary of sched from start
// into samples (len(phases)+1 of them: samples[i] at phase i's start, the last at the run's
// end; nil where the read failed). When ctx ends first, the next boundary's read is made at
// once and the scrape ends. It runs in its own goroutine.
func (r *runner) scrapeRuntime(ctx context.Context, sched *Schedule, start time.Time, samples []*runtimeSample) {
	n := len(sched.Phases())
	warned := false
	for i := 0; i <= n; i++ {
		at := start.Add(sched.Duration())
		if i < n {
			at = start.Add(sched.PhaseStart(i))
		}
		stopped := false
		select {
		case <-ctx.Done():
			stopped = true
		case <-time.After(time.Until(at)):
		}
		s, err := r.stats.runtime()
		if err != nil && !warned && i == 0 {
			r.notice("warning: no per-phase GC and scheduler figures: %v", err)
			warned = true
		}
		samples[i] = s
		if stopped {
			return
		}
	}
}
