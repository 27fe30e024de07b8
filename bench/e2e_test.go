package bench

import (
	"bytes"
	"context"
	"net"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"

	"github.com/bidpulse/bidpulse/bidder"
)

// syncWriter lets the run's output be read after it while the test logs it.
type syncWriter struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (w *syncWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.Write(p)
}

func (w *syncWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// startService starts a bidpulse in this process: embedded NATS and HTTP on random loopback
// ports, the given ingest mode, the process clock (the bench's events carry real times).
func startService(t *testing.T, jetstream string) *bidder.Service {
	t.Helper()
	return startServiceWith(t, jetstream, 0)
}

// startServiceWith is startService with the service's partitions (bidder.Options.Partitions).
func startServiceWith(t *testing.T, jetstream string, partitions uint32) *bidder.Service {
	t.Helper()
	clock := bidder.NewCachedClock(time.Millisecond)
	t.Cleanup(clock.Stop)
	svc, err := bidder.New(bidder.Options{
		HTTPAddr:   "127.0.0.1:0",
		NATSAddr:   "127.0.0.1:-1",
		DataDir:    t.TempDir(),
		Instance:   "bench-test",
		DedupSize:  32 << 20,
		JetStream:  jetstream,
		Partitions: partitions,
		Logger:     zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel),
		Clock:      clock,
	})
	if err != nil {
		t.Fatalf("cannot create the service: %v", err)
	}
	if err := svc.Start(); err != nil {
		t.Fatalf("cannot start the service: %v", err)
	}
	t.Cleanup(func() {
		if err := svc.Stop(context.Background()); err != nil {
			t.Errorf("unexpected error on stop: %v", err)
		}
	})
	return svc
}

// TestRunEndToEnd runs a short, low-rate steady scenario against a real service, with
// duplicates and malformed events, and requires an exact reconciliation.
func TestRunEndToEnd(t *testing.T) {
	for _, mode := range []string{"true", "false"} {
		t.Run("jetstream="+mode, func(t *testing.T) {
			svc := startService(t, mode)
			var out syncWriter
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			rep, err := Run(ctx, Options{
				Target: "http://" + svc.HTTPAddr(), NATSURL: svc.NATSURL(),
				Scenario: ScenarioSteady, Duration: 1500 * time.Millisecond,
				BidRate: 200, EventRate: 1000, EventBatch: 50, Preload: 500,
				DupRate: 0.02, BadRate: 0.01, Campaigns: 5, Creatives: 2, Placements: 4, Skew: 1,
				// A timeout far above any answer time: this test checks the
				// bench's counting, not the machine's speed, and shares the
				// machine with the rest of the suite (the soak included).
				Timeout: 2 * time.Second, Conns: 16, Pin: PinOff, DrainTimeout: 30 * time.Second, Out: &out,
			})
			t.Log(out.String())
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			wantPublish := PublishCore
			if mode == "true" {
				wantPublish = PublishJetStream
			}
			if rep.Publish != wantPublish {
				t.Fatalf("unexpected publish mode; got %s; want %s", rep.Publish, wantPublish)
			}
			rc := rep.Reconciliation
			if rc == nil || !rc.OK || !rc.Drained {
				t.Fatalf("unexpected reconciliation %+v", rc)
			}
			if rc.Published.Duplicates == 0 || rc.Published.RejectedTotal() == 0 || rc.Published.Events < 2000 {
				t.Fatalf("unexpected published tally %+v: want events, duplicates and malformed ones", rc.Published)
			}
			if len(rep.Phases) != 1 {
				t.Fatalf("unexpected phases %+v", rep.Phases)
			}
			p := rep.Phases[0]
			if p.Requests != 300 || p.Outcomes["ok"] < 270 || p.Latency.Count < 270 || p.Latency.P50 <= 0 {
				t.Fatalf("unexpected bid phase %+v", p)
			}
			if len(rep.Series) < 2 || !strings.Contains(out.String(), "PASS: every published event") {
				t.Fatalf("unexpected live output or series (%d seconds)", len(rep.Series))
			}
			// The CPU figures are shares of the machine's cores; the host's stolen time is
			// apart from other processes'.
			maxCPU := 100 * float64(runtime.NumCPU())
			for _, s := range rep.Series {
				if s.StealCPU < 0 || s.StealCPU > maxCPU || s.OtherCPU < 0 || s.OtherCPU > maxCPU {
					t.Fatalf("unexpected CPU figures of second %v: other %v, steal %v (want 0..%v)", s.T, s.OtherCPU, s.StealCPU, maxCPU)
				}
			}
			if p.StealCPU < 0 || p.StealCPU > maxCPU || !strings.Contains(out.String(), "steal%") {
				t.Fatalf("unexpected steal figure %v of the phase", p.StealCPU)
			}
			// The service's runtime (this process's: it runs in it) over the phase, read
			// from its GET /debug/runtime.
			rt := p.Runtime
			if rt == nil || rt.SchedSamples == 0 || rt.SchedLatencyMaxMs <= 0 || rt.SchedLatencyP99Ms > rt.SchedLatencyMaxMs ||
				rt.GCPauses < rt.GCCycles || rt.GCPauseP99Ms > rt.GCPauseMaxMs || rt.HeapLiveMB <= 0 {
				t.Fatalf("unexpected runtime figures of the phase %+v", rt)
			}
			if !strings.Contains(out.String(), "service by phase") {
				t.Fatalf("unexpected text report without the service's figures by phase")
			}
			// Checkpoints are of JetStream mode (every 30 s by default: none in the run).
			if mode == "true" && (p.Checkpoints == nil || *p.Checkpoints != 0) || mode == "false" && p.Checkpoints != nil {
				t.Fatalf("unexpected checkpoints of the phase %v in jetstream=%s", p.Checkpoints, mode)
			}
		})
	}
}

// TestHTTPBidsEndpoints sends single, batch, mixed and OpenRTB requests to a real service
// through the client: every one answered, every key of a batch and every candidate of an
// OpenRTB request counted.
func TestHTTPBidsEndpoints(t *testing.T) {
	svc := startService(t, "false")
	keys := newKeySpace(NewSynthetic(SyntheticConfig{Campaigns: 2, Creatives: 2, Placements: 2}))
	for _, endpoint := range []string{EndpointSingle, EndpointBatch, EndpointMix, EndpointOpenRTB} {
		h, err := newHTTPBids("http://"+svc.HTTPAddr(), 1, keys, bidShape{endpoint: endpoint, batch: 10, imps: 5, candidates: 3}, 1)
		if err != nil {
			t.Fatalf("unexpected error: %v", err)
		}
		h.countItems = true
		want := uint64(0)
		for i := range 3 * mixBatchEvery {
			switch {
			case endpoint == EndpointBatch, endpoint == EndpointMix && (i+1)%mixBatchEvery == 0:
				want += 10
			case endpoint == EndpointOpenRTB:
				want += 5 * 3
			}
			if o := h.do(0, time.Now().Add(5*time.Second)); o != OK {
				t.Fatalf("unexpected outcome of %s request %d; got %s; want ok (%v)", endpoint, i, o, h.workers[0].err)
			}
		}
		if h.items() != want {
			t.Fatalf("unexpected multipliers answered in %s requests; got %d; want %d", endpoint, h.items(), want)
		}
		h.close()
	}
}

// TestHTTPBidsOutcomes checks how the client's failures become outcomes, against a fasthttp
// server on loopback answering what each case needs: a 4xx, a 5xx, a 200 that is not an
// answer, no answer before the deadline, and nothing listening.
func TestHTTPBidsOutcomes(t *testing.T) {
	var status atomic.Int64
	var body atomic.Value // string
	var silent atomic.Bool
	srv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		if silent.Load() {
			time.Sleep(300 * time.Millisecond) // past the request's deadline below
		}
		ctx.SetStatusCode(int(status.Load()))
		ctx.SetBodyString(body.Load().(string))
	}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	defer func() {
		srv.Shutdown()
		<-done
	}()
	keys := newKeySpace(NewSynthetic(SyntheticConfig{Campaigns: 2, Creatives: 2, Placements: 2}))
	f := func(endpoint string, code int, answer string, want Outcome) {
		t.Helper()
		status.Store(int64(code))
		body.Store(answer)
		h, err := newHTTPBids("http://"+ln.Addr().String(), 1, keys, bidShape{endpoint: endpoint, batch: 2, imps: 1, candidates: 2}, 1)
		if err != nil {
			t.Fatal(err)
		}
		defer h.close()
		if o := h.do(0, time.Now().Add(100*time.Millisecond)); o != want {
			t.Fatalf("unexpected outcome of a %s request answered %d %q; got %s; want %s (%v)", endpoint, code, answer, o, want, h.workers[0].err)
		}
	}
	one := `{"multiplier":1.2,"level":"campaign"}`
	f(EndpointSingle, 200, one, OK)
	f(EndpointSingle, 400, `{"error":"bad key"}`, HTTP4xx)
	f(EndpointSingle, 503, `{"error":"stopping"}`, HTTP5xx)
	f(EndpointSingle, 200, `not json`, BadBody)
	f(EndpointSingle, 200, `{"level":"campaign"}`, BadBody)
	f(EndpointSingle, 302, ``, OtherError)
	f(EndpointBatch, 200, "["+one+","+one+"]", OK)
	// A key refused alone: the request was answered.
	f(EndpointBatch, 200, "["+one+`,{"error":"bad key"}]`, OK)
	f(EndpointBatch, 200, "["+one+"]", BadBody)
	f(EndpointBatch, 413, `{"error":"too large"}`, HTTP4xx)
	f(EndpointBatch, 500, `{"error":"BUG"}`, HTTP5xx)
	f(EndpointOpenRTB, 200, `{"id":"1","imp":[{"id":"1","candidates":[`+one+","+one+`]}]}`, OK)
	f(EndpointOpenRTB, 200, `[`+one+`]`, BadBody)
	f(EndpointOpenRTB, 400, `{"error":"imp[0]: missing id"}`, HTTP4xx)
	f(EndpointOpenRTB, 503, `{"error":"stopping"}`, HTTP5xx)
	silent.Store(true)
	f(EndpointSingle, 200, one, Timeout)
	silent.Store(false)

	free, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := free.Addr().String()
	free.Close()
	h, err := newHTTPBids("http://"+addr, 1, keys, singleShape, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer h.close()
	if o := h.do(0, time.Now().Add(time.Second)); o != ConnRefused {
		t.Fatalf("unexpected outcome with nothing listening; got %s; want conn_refused (%v)", o, h.workers[0].err)
	}
}
