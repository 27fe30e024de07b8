package bench

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// newFixedBids returns an httpBids against an in-process server that answers every request
// with body.
func newFixedBids(tb testing.TB, endpoint string, body []byte) *httpBids {
	tb.Helper()
	srv, err := startFixed("127.0.0.1:0", body)
	if err != nil {
		tb.Fatalf("cannot start the server: %v", err)
	}
	tb.Cleanup(func() { srv.Close() })
	keys := newKeySpace(NewSynthetic(SyntheticConfig{Campaigns: 20, Creatives: 5, Placements: 10, Skew: 1}))
	h, err := newHTTPBids("http://"+srv.Addr(), 1, keys, bidShape{endpoint: endpoint, batch: 10, imps: 5, candidates: 3}, 1)
	if err != nil {
		tb.Fatalf("unexpected error: %v", err)
	}
	tb.Cleanup(h.close)
	return h
}

// batchAnswer returns an answer of POST /v1/multipliers with n items as the service writes
// them.
func batchAnswer(n int) []byte {
	item := `{"multiplier":1.18,"level":"campaign/creative/placement","window":"1h","ctr":0.0123,"cvr":0.045,"impressions":1520,"clicks":19,"conversions":1}`
	return []byte("[" + strings.Repeat(item+",", n-1) + item + "]")
}

// openRTBAnswer returns an answer of POST /v1/openrtb/multipliers with imps impressions of
// cands candidates, as the service writes them when every candidate has data at its cell.
func openRTBAnswer(imps, cands int) []byte {
	b := []byte(`{"id":"7","imp":[`)
	for i := range imps {
		if i > 0 {
			b = append(b, ',')
		}
		b = fmt.Appendf(b, `{"id":"%d","key":{"placement":"news.example/top"},"candidates":[`, i+1)
		for j := range cands {
			if j > 0 {
				b = append(b, ',')
			}
			b = fmt.Appendf(b, `{"campaign":"c%d","creative":"cr%d","multiplier":1.18,"level":"campaign/creative/placement",`+
				`"key":{"campaign":"c%[1]d","creative":"cr%[2]d","placement":"news.example/top"}}`, j+1, i+1)
		}
		b = append(b, "]}"...)
	}
	return append(b, "]}"...)
}

func TestHTTPBidsAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under the race detector (sync.Pool drops items)")
	}
	// The baseline answers every path with {"multiplier":1,"pad":..} and no level: a single
	// GET takes it as an answer. Batches get a server that answers 10 items, OpenRTB requests
	// one that answers 5 impressions of 3 candidates.
	for _, c := range []struct {
		endpoint string
		body     []byte
	}{{EndpointSingle, baselineBody(170)}, {EndpointBatch, batchAnswer(10)}, {EndpointOpenRTB, openRTBAnswer(5, 3)}} {
		h := newFixedBids(t, c.endpoint, c.body)
		h.countItems = true
		for range 100 { // warm-up: connection, buffers, the client's pools
			if o := h.do(0, time.Now().Add(time.Second)); o != OK {
				t.Fatalf("unexpected outcome of a %s request %s; want ok (%v)", c.endpoint, o, h.workers[0].err)
			}
		}
		if want := map[string]uint64{EndpointSingle: 0, EndpointBatch: 100 * 10, EndpointOpenRTB: 100 * 5 * 3}[c.endpoint]; h.items() != want {
			t.Fatalf("unexpected answered items of %s requests; got %d; want %d", c.endpoint, h.items(), want)
		}
		deadline := time.Now().Add(time.Minute)
		if allocs := testing.AllocsPerRun(200, func() { h.do(0, deadline) }); allocs != 0 {
			t.Fatalf("unexpected allocations per %s request; got %v; want 0", c.endpoint, allocs)
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
	h := newFixedBids(b, EndpointSingle, baselineBody(170))
	b.ReportAllocs()
	for b.Loop() {
		h.do(0, time.Now().Add(time.Second))
	}
}

// BenchmarkHTTPBidsSameWork measures the generator's cost per request of the capacity's
// OpenRTB comparison (--bid-openrtb): an OpenRTB request of 5 impressions with 3 candidates,
// its answer decoded by the client (encoding/json), against a batch of the same 15 keys (the
// client's fastjson), each against a bare in-process server answering what the service would.
func BenchmarkHTTPBidsSameWork(b *testing.B) {
	for _, c := range []struct {
		endpoint string
		body     []byte
	}{{EndpointOpenRTB, openRTBAnswer(5, 3)}, {EndpointBatch, batchAnswer(15)}} {
		b.Run(c.endpoint, func(b *testing.B) {
			srv, err := startFixed("127.0.0.1:0", c.body)
			if err != nil {
				b.Fatal(err)
			}
			defer srv.Close()
			keys := newKeySpace(NewSynthetic(SyntheticConfig{Campaigns: 20, Creatives: 5, Placements: 10, Skew: 1}))
			h, err := newHTTPBids("http://"+srv.Addr(), 1, keys, bidShape{endpoint: c.endpoint, batch: 15, imps: 5, candidates: 3}, 1)
			if err != nil {
				b.Fatal(err)
			}
			defer h.close()
			h.countItems = true
			b.ReportAllocs()
			for b.Loop() {
				if o := h.do(0, time.Now().Add(time.Second)); o != OK {
					b.Fatalf("unexpected outcome %s (%v)", o, h.workers[0].err)
				}
			}
			b.ReportMetric(float64(h.items())/b.Elapsed().Seconds(), "multipliers/s")
		})
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
