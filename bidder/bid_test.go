package bidder

import (
	"fmt"
	"strings"
	"testing"

	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"
)

// newTestService builds a Service that is not started: ingest is driven by
// calling the ingester directly and requests by calling the handler.
func newTestService(t testing.TB) (*Service, *ManualClock) {
	t.Helper()
	clock := NewManualClock(testNow)
	svc, err := New(Options{Clock: clock, Logger: zerolog.Nop(), DedupSize: 32 << 20})
	if err != nil {
		t.Fatal(err)
	}
	return svc, clock
}

// batchPayload returns a JSON array of n impressions (and a click for every
// tenth) spread over placements.
func batchPayload(prefix string, n, placements int) []byte {
	var sb strings.Builder
	sb.WriteByte('[')
	for i := 0; i < n; i++ {
		if i > 0 {
			sb.WriteByte(',')
		}
		p := fmt.Sprintf("p%d", i%placements)
		sb.WriteString(ev(fmt.Sprintf("%s-%d", prefix, i), "impression", testNow, "c1", "cr1", p))
		if i%10 == 0 {
			sb.WriteByte(',')
			sb.WriteString(ev(fmt.Sprintf("%s-%d", prefix, i), "click", testNow, "c1", "cr1", p))
		}
	}
	sb.WriteByte(']')
	return []byte(sb.String())
}

func requestCtx(uri string) *fasthttp.RequestCtx {
	var ctx fasthttp.RequestCtx
	ctx.Request.SetRequestURI(uri)
	ctx.Request.Header.SetMethod("GET")
	return &ctx
}

func TestBidPathAllocatesNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under -race (sync.Pool drops items on purpose); `make test` runs this test without -race too")
	}
	svc, _ := newTestService(t)
	svc.ingest.Apply(batchPayload("a", 1000, 10), testNow)
	ctx := requestCtx("/v1/multiplier?campaign=c1&creative=cr1&placement=p3&device=Mobile&country=fr")
	svc.serveHTTP(ctx) // warm the pools
	if ctx.Response.StatusCode() != 200 {
		t.Fatalf("unexpected status %d: %s", ctx.Response.StatusCode(), ctx.Response.Body())
	}
	allocs := testing.AllocsPerRun(1000, func() {
		ctx.Response.Reset()
		svc.serveHTTP(ctx)
	})
	if allocs != 0 {
		t.Fatalf("unexpected allocations per bid request; got %v; want 0", allocs)
	}
	ctx = requestCtx("/v1/multiplier?campaign=c1&placement=p3&explain=1")
	svc.serveHTTP(ctx)
	allocs = testing.AllocsPerRun(1000, func() {
		ctx.Response.Reset()
		svc.serveHTTP(ctx)
	})
	if allocs != 0 {
		t.Fatalf("unexpected allocations per explained bid request; got %v; want 0", allocs)
	}
}

func TestIngestAllocations(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under -race; `make test` runs this test without -race too")
	}
	svc, _ := newTestService(t)
	// Keys exist after the first batches, and the parser's buffers have
	// grown; later batches carry new ids.
	for i := 0; i < 50; i++ {
		svc.ingest.Apply(batchPayload(fmt.Sprintf("warm%d", i), 100, 10), testNow)
	}
	payloads := make([][]byte, 50)
	for i := range payloads {
		payloads[i] = batchPayload(fmt.Sprintf("b%d", i), 100, 10)
	}
	i := 0
	allocs := testing.AllocsPerRun(len(payloads)-1, func() {
		svc.ingest.Apply(payloads[i], testNow)
		i++
	})
	// Parsing, validation, the dedup set and the window writes allocate
	// nothing.
	if allocs != 0 {
		t.Fatalf("unexpected allocations with new ids; got %v per message of 110 events; want 0", allocs)
	}
	if got, want := svc.ingest.Stats().Counted.Get(), uint64(110*(50+len(payloads))); got != want {
		t.Fatalf("unexpected counted; got %d; want %d", got, want)
	}
	// The same batches again are all duplicates: nothing grows, nothing is
	// allocated.
	i = 0
	allocs = testing.AllocsPerRun(len(payloads)-1, func() {
		svc.ingest.Apply(payloads[i], testNow)
		i++
	})
	if allocs != 0 {
		t.Fatalf("unexpected allocations per batch of duplicates; got %v; want 0", allocs)
	}
	if got := svc.ingest.Stats().Duplicates.Get(); got != uint64(110*len(payloads)) {
		t.Fatalf("unexpected duplicates; got %d; want %d", got, 110*len(payloads))
	}
}

func TestLevelChoice(t *testing.T) {
	svc, _ := newTestService(t)
	// A key with only clicks in the window has no impressions: it does not
	// answer, its parent does.
	svc.ingest.Apply([]byte(`[`+ev("i", "impression", testNow, "c1", "cr1", "")+`,`+ev("k", "click", testNow, "c1", "cr1", "p1")+`]`), testNow)
	f := func(uri, wantLevel string) {
		t.Helper()
		ctx := requestCtx(uri)
		svc.serveHTTP(ctx)
		if !strings.Contains(string(ctx.Response.Body()), `"level":"`+wantLevel+`"`) {
			t.Fatalf("unexpected answer to %s; got %s; want level %s", uri, ctx.Response.Body(), wantLevel)
		}
	}
	f("/v1/multiplier?campaign=c1&creative=cr1&placement=p1", "campaign/creative")
	f("/v1/multiplier?campaign=c1&placement=p1", "campaign")
	f("/v1/multiplier?campaign=c2", "none")
}
