package bench

import (
	"bytes"
	"context"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

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
	clock := bidder.NewCachedClock(time.Millisecond)
	t.Cleanup(clock.Stop)
	svc, err := bidder.New(bidder.Options{
		HTTPAddr:  "127.0.0.1:0",
		NATSAddr:  "127.0.0.1:-1",
		DataDir:   t.TempDir(),
		Instance:  "bench-test",
		DedupSize: 32 << 20,
		JetStream: jetstream,
		Logger:    zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel),
		Clock:     clock,
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

// TestHTTPBidsEndpoints sends single, batch and mixed requests to a real service: every one
// answered 200 with the expected body (a GET after a POST on the same worker included).
func TestHTTPBidsEndpoints(t *testing.T) {
	svc := startService(t, "false")
	keys := newKeySpace(NewSynthetic(SyntheticConfig{Campaigns: 2, Creatives: 2, Placements: 2}))
	for _, endpoint := range []string{EndpointSingle, EndpointBatch, EndpointMix} {
		h, err := newHTTPBids("http://"+svc.HTTPAddr(), 1, keys, endpoint, 10, 1)
		if err != nil {
			t.Fatalf("unexpected error: %v", err)
		}
		for i := range 3 * mixBatchEvery {
			if o := h.do(0, time.Now().Add(5*time.Second)); o != OK {
				t.Fatalf("unexpected outcome of %s request %d; got %s; want ok (status %d, body %.200s)",
					endpoint, i, o, h.workers[0].resp.StatusCode(), h.workers[0].resp.Body())
			}
		}
		h.close()
	}
}
