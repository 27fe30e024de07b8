package bidder

import (
	"math"
	"runtime/metrics"
	"strconv"
	"sync"

	"github.com/valyala/fasthttp"
)

// runtimeStatsPath answers GET with the Go runtime's scheduler and GC figures of the process,
// as JSON. The histograms and counters are cumulative since the process started, so a
// reader takes two answers and subtracts them: a load test reads it at each phase's start
// and end, to tell which phase the GC pauses and the scheduler delays fell in.
//
//	{"metrics":{
//	  "/gc/cycles/total:gc-cycles":12,
//	  "/gc/heap/live:bytes":123456, ...,
//	  "/sched/latencies:seconds":{"buckets":[{"lo":6.4e-08,"hi":1.28e-07,"n":2979}, ...]},
//	  "/sched/pauses/total/gc:seconds":{"buckets":[...]}}}
//
// Each name is a runtime/metrics name, with its meaning and unit there. A histogram lists
// only its non-empty buckets, each with its bounds in the metric's unit ([lo, hi); null for
// an infinite bound) and its count. The runtime's time buckets are 4 per power of two, so a
// quantile read from them is known within 25%. GC pauses are the stop-the-world pauses of
// the GC (two per cycle), under the name that replaces the deprecated /gc/pauses:seconds.
// A metric the running Go version does not have is left out.
const runtimeStatsPath = "/debug/runtime"

// runtimeStatsMetrics are the runtime/metrics of runtimeStatsPath, in the order written.
var runtimeStatsMetrics = []string{
	"/gc/cycles/total:gc-cycles",
	"/gc/heap/allocs:bytes",
	"/gc/heap/goal:bytes",
	"/gc/heap/live:bytes",
	"/memory/classes/heap/objects:bytes",
	"/memory/classes/total:bytes",
	"/sched/gomaxprocs:threads",
	"/sched/goroutines:goroutines",
	"/sched/latencies:seconds",
	"/sched/pauses/total/gc:seconds",
}

// runtimeStatsReaders keep the samples between reads: metrics.Read fills a histogram
// sample's slices in place once they exist, so a read allocates nothing after the first.
// metrics.Read does not stop the world (runtime.ReadMemStats would).
var runtimeStatsReaders = sync.Pool{New: func() any {
	s := make([]metrics.Sample, len(runtimeStatsMetrics))
	for i, name := range runtimeStatsMetrics {
		s[i].Name = name
	}
	return &s
}}

// serveRuntimeStats answers GET runtimeStatsPath (the route table checked
// the method).
func (s *Service) serveRuntimeStats(ctx *fasthttp.RequestCtx) {
	// 4 KiB holds a typical answer: a few dozen non-empty buckets.
	writeJSON(ctx, fasthttp.StatusOK, appendRuntimeStats(make([]byte, 0, 4<<10)))
}

// appendRuntimeStats reads the runtime's figures and appends them as the JSON object of
// runtimeStatsPath to dst. Safe for concurrent use.
func appendRuntimeStats(dst []byte) []byte {
	sp := runtimeStatsReaders.Get().(*[]metrics.Sample)
	defer runtimeStatsReaders.Put(sp)
	samples := *sp
	metrics.Read(samples)
	dst = append(dst, `{"metrics":{`...)
	first := true
	for i := range samples {
		v := &samples[i].Value
		if v.Kind() == metrics.KindBad {
			continue
		}
		if !first {
			dst = append(dst, ',')
		}
		first = false
		// The names are plain ASCII with nothing to escape.
		dst = append(dst, '"')
		dst = append(dst, samples[i].Name...)
		dst = append(dst, '"', ':')
		switch v.Kind() {
		case metrics.KindUint64:
			dst = strconv.AppendUint(dst, v.Uint64(), 10)
		case metrics.KindFloat64:
			dst = appendRuntimeFloat(dst, v.Float64())
		case metrics.KindFloat64Histogram:
			dst = appendRuntimeHistogram(dst, v.Float64Histogram())
		}
	}
	return append(dst, "}}"...)
}

// appendRuntimeHistogram appends h's non-empty buckets as {"buckets":[{"lo":..,"hi":..,"n":..}]}.
func appendRuntimeHistogram(dst []byte, h *metrics.Float64Histogram) []byte {
	dst = append(dst, `{"buckets":[`...)
	first := true
	for i, n := range h.Counts {
		if n == 0 {
			continue
		}
		if !first {
			dst = append(dst, ',')
		}
		first = false
		dst = append(dst, `{"lo":`...)
		dst = appendRuntimeFloat(dst, h.Buckets[i])
		dst = append(dst, `,"hi":`...)
		dst = appendRuntimeFloat(dst, h.Buckets[i+1])
		dst = append(dst, `,"n":`...)
		dst = strconv.AppendUint(dst, n, 10)
		dst = append(dst, '}')
	}
	return append(dst, "]}"...)
}

// appendRuntimeFloat appends f exactly, or null for what JSON cannot carry (infinite bounds).
func appendRuntimeFloat(dst []byte, f float64) []byte {
	if math.IsInf(f, 0) || math.IsNaN(f) {
		return append(dst, "null"...)
	}
	return strconv.AppendFloat(dst, f, 'g', -1, 64)
}
