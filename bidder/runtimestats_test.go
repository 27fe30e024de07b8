package bidder

import (
	"encoding/json"
	"math"
	"runtime"
	"runtime/metrics"
	"testing"
)

// runtimeAnswer is the shape of GET /debug/runtime.
type runtimeAnswer struct {
	Metrics map[string]json.RawMessage `json:"metrics"`
}

type runtimeBuckets struct {
	Buckets []struct {
		Lo *float64 `json:"lo"`
		Hi *float64 `json:"hi"`
		N  uint64   `json:"n"`
	} `json:"buckets"`
}

func TestRuntimeStatsEndpoint(t *testing.T) {
	e := startTestService(t, nil)
	read := func() runtimeAnswer {
		t.Helper()
		code, b := e.do(t, "GET", runtimeStatsPath, "", "")
		if code != 200 {
			t.Fatalf("unexpected status of GET %s; got %d; want 200; body %s", runtimeStatsPath, code, b)
		}
		var a runtimeAnswer
		if err := json.Unmarshal(b, &a); err != nil {
			t.Fatalf("unexpected invalid JSON: %v: %s", err, b)
		}
		for _, name := range runtimeStatsMetrics {
			if _, ok := a.Metrics[name]; !ok {
				t.Fatalf("unexpected answer without %q: %s", name, b)
			}
		}
		return a
	}
	cycles := func(a runtimeAnswer) uint64 {
		t.Helper()
		var n uint64
		if err := json.Unmarshal(a.Metrics["/gc/cycles/total:gc-cycles"], &n); err != nil {
			t.Fatalf("unexpected GC cycles %s: %v", a.Metrics["/gc/cycles/total:gc-cycles"], err)
		}
		return n
	}
	a := read()
	runtime.GC()
	b := read()
	if ca, cb := cycles(a), cycles(b); cb < ca+1 {
		t.Fatalf("unexpected GC cycles across a runtime.GC(); got %d then %d; want at least one more", ca, cb)
	}
	for _, name := range []string{"/sched/latencies:seconds", "/sched/pauses/total/gc:seconds"} {
		var h runtimeBuckets
		if err := json.Unmarshal(b.Metrics[name], &h); err != nil {
			t.Fatalf("unexpected %s %s: %v", name, b.Metrics[name], err)
		}
		if len(h.Buckets) == 0 {
			t.Fatalf("unexpected empty %s after a GC", name)
		}
		prev := math.Inf(-1)
		for _, bk := range h.Buckets {
			if bk.N == 0 || bk.Lo == nil || bk.Hi == nil || *bk.Lo >= *bk.Hi || *bk.Lo < prev {
				t.Fatalf("unexpected bucket of %s: %+v (lo %v, hi %v)", name, bk, bk.Lo, bk.Hi)
			}
			prev = *bk.Hi
		}
	}
	if code, _ := e.do(t, "POST", runtimeStatsPath, "", "{}"); code != 405 {
		t.Fatalf("unexpected status of POST %s; got %d; want 405", runtimeStatsPath, code)
	}
}

func TestRuntimeStatsHistogram(t *testing.T) {
	h := &metrics.Float64Histogram{
		Counts:  []uint64{1, 0, 5, 0, 2},
		Buckets: []float64{math.Inf(-1), 0, 1e-6, 2e-6, 3e-6, math.Inf(1)},
	}
	got := string(appendRuntimeHistogram(nil, h))
	want := `{"buckets":[{"lo":null,"hi":0,"n":1},{"lo":1e-06,"hi":2e-06,"n":5},{"lo":3e-06,"hi":null,"n":2}]}`
	if got != want {
		t.Fatalf("unexpected histogram; got %s; want %s", got, want)
	}
	if got := string(appendRuntimeHistogram(nil, &metrics.Float64Histogram{Counts: []uint64{0}, Buckets: []float64{0, 1}})); got != `{"buckets":[]}` {
		t.Fatalf("unexpected empty histogram; got %s", got)
	}
}

func TestRuntimeStatsAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under -race (sync.Pool drops items on purpose); `make test` runs this test without -race too")
	}
	buf := appendRuntimeStats(nil)
	n := testing.AllocsPerRun(100, func() {
		buf = appendRuntimeStats(buf[:0])
	})
	if n != 0 {
		t.Fatalf("unexpected allocations per read; got %v; want 0", n)
	}
}
