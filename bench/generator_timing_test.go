package bench

import (
	"testing"
	"time"
)

// newBaselineBids returns an httpBids against an in-process baseline server.
func newBaselineBids(tb testing.TB, endpoint string) *httpBids {
	tb.Helper()
	srv, err := StartBaseline("127.0.0.1:0", 170)
	if err != nil {
		tb.Fatalf("cannot start the baseline server: %v", err)
	}
	tb.Cleanup(func() { srv.Close() })
	keys := newKeySpace(NewSynthetic(SyntheticConfig{Campaigns: 20, Creatives: 5, Placements: 10, Skew: 1}))
	h, err := newHTTPBids("http://"+srv.Addr(), 1, keys, endpoint, 10, 1)
	if err != nil {
		tb.Fatalf("unexpected error: %v", err)
	}
	tb.Cleanup(h.close)
	return h
}

func TestHTTPBidsAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under the race detector (sync.Pool drops items)")
	}
	// The baseline answers every path with {"multiplier":...}: the batch endpoint's answer is
	// a BadBody, which is fine here, the request path is what is measured.
	for _, endpoint := range []string{EndpointSingle, EndpointBatch} {
		h := newBaselineBids(t, endpoint)
		want := OK
		if endpoint == EndpointBatch {
			want = BadBody
		}
		for range 100 { // warm-up: connection, buffers
			if o := h.do(0, time.Now().Add(time.Second)); o != want {
				t.Fatalf("unexpected outcome %s; want %s", o, want)
			}
		}
		deadline := time.Now().Add(time.Minute)
		if allocs := testing.AllocsPerRun(200, func() { h.do(0, deadline) }); allocs != 0 {
			t.Fatalf("unexpected allocations per %s request; got %v; want 0", endpoint, allocs)
		}
	}
}

func TestEventGenAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under the race detector")
	}
	g := newEventGen(NewSynthetic(SyntheticConfig{Seed: 1, RunID: "a"}), 0.01, 0.01, 1)
	g.next(1000, testNowMs)
	if allocs := testing.AllocsPerRun(100, func() { g.next(100, testNowMs) }); allocs != 0 {
		t.Fatalf("unexpected allocations per batch; got %v; want 0", allocs)
	}
}

// BenchmarkHTTPBids measures the generator's cost per request against a bare in-process
// server, one connection: the load generator's own ceiling per core.
func BenchmarkHTTPBids(b *testing.B) {
	h := newBaselineBids(b, EndpointSingle)
	b.ReportAllocs()
	for b.Loop() {
		h.do(0, time.Now().Add(time.Second))
	}
}

// BenchmarkEventGen measures building a batch of 100 events with 1% duplicates and 0.5%
// malformed ones.
func BenchmarkEventGen(b *testing.B) {
	g := newEventGen(NewSynthetic(SyntheticConfig{Seed: 1, RunID: "bench"}), 0.01, 0.005, 1)
	b.ReportAllocs()
	for b.Loop() {
		g.next(100, testNowMs)
	}
	b.ReportMetric(float64(b.N*100)/b.Elapsed().Seconds(), "events/s")
}
