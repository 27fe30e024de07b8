package bidder

import (
	"fmt"
	"runtime"
	"runtime/metrics"
	"slices"
	"time"
)

// soakSample is the process's goroutines and live heap at one moment of the
// soak. The NATS server runs in the process too, so its goroutines and
// memory are in the figures: a leak there shows as well.
type soakSample struct {
	at         time.Duration // since the load started
	goroutines int
	heap       uint64 // live heap bytes, right after a forced collection
}

// sampleResources takes a sample every interval from start until stop is
// closed (and at most one per interval of limit).
func sampleResources(start time.Time, every, limit time.Duration, stop <-chan struct{}) []soakSample {
	var out []soakSample
	live := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	tick := time.NewTicker(every)
	defer tick.Stop()
	for i := 0; i <= int(limit/every); i++ {
		select {
		case <-stop:
			return out
		case <-tick.C:
		}
		runtime.GC()
		metrics.Read(live)
		out = append(out, soakSample{at: time.Since(start), goroutines: runtime.NumGoroutine(), heap: live[0].Value.Uint64()})
	}
	return out
}

// soakWindow summarises the samples taken in [from, to): their medians and
// maxima. The medians are what is compared: a leak grows every sample, while
// one 8 MiB message in flight, or a checkpoint's buffers, lifts one or two.
type soakWindow struct {
	n                         int
	goroutines, maxGoroutines int
	heap, maxHeap             uint64
	from, to                  time.Duration
}

func summarise(samples []soakSample, from, to time.Duration) soakWindow {
	w := soakWindow{from: from, to: to}
	var g []int
	var h []uint64
	for _, s := range samples {
		if s.at >= from && s.at < to {
			g, h = append(g, s.goroutines), append(h, s.heap)
		}
	}
	w.n = len(g)
	if w.n == 0 {
		return w
	}
	slices.Sort(g)
	slices.Sort(h)
	w.goroutines, w.maxGoroutines = g[len(g)/2], g[len(g)-1]
	w.heap, w.maxHeap = h[len(h)/2], h[len(h)-1]
	return w
}

func (w soakWindow) String() string {
	return fmt.Sprintf("%s-%s: %d samples, goroutines median %d max %d, live heap median %.1f MiB max %.1f MiB",
		w.from.Round(time.Second), w.to.Round(time.Second), w.n, w.goroutines, w.maxGoroutines,
		float64(w.heap)/(1<<20), float64(w.maxHeap)/(1<<20))
}

// Bounds on growth from the baseline (after the warm-up, before the NATS
// restart) to the last quarter of the soak, between medians about 32 s
// apart. Measured on two shared cores with -race (the same without): the
// median goroutines stay within 111..116 but during the outage, the live
// heap's samples move between 75 and 96 MiB (one 8 MiB message in flight is
// three copies: producer, server, dead letter) around a median of about
// 90 MiB that does not move.
//   - goroutines: what varies without a leak is what is in flight: a
//     fasthttp worker per busy connection and the client's connections
//     (soakMaxConns each), a publish in its back-off. 25 covers that. A leak
//     of one goroutine per operation outgrows it between the medians for any
//     operation done more than once a second: bids, publishes, admin calls,
//     SSE streams (one a second).
//   - live heap: 24 MiB plus an eighth of the baseline (about 35 MiB) covers
//     the spread of the samples. In one minute it catches a leak of about
//     1 KiB per event applied (~1,000/s), 8 KiB per HTTP request (~150/s
//     under -race) or a copy of each 8 MiB message kept; a longer -soak
//     makes a smaller leak outgrow the same bound.
const (
	soakGoroutineGrowth = 25
	soakHeapGrowth      = 24 << 20
)
