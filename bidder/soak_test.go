package bidder

import (
	"context"
	"flag"
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/bidpulse/bidpulse/bidder/event"
	"github.com/bidpulse/bidpulse/bidder/ingest"
)

var soakDuration = flag.Duration("soak", 60*time.Second,
	"how long TestSoak loads the service (make test runs the default; go test -run TestSoak ./bidder/ -soak=10m runs it longer)")

// soakNATS is the soak's NATS server: outside the service (it connects with
// Options.NATSURL) but in this process, with JetStream, on a fixed port and
// store directory, so that it can be shut down and started again at the same
// address with the same streams.
type soakNATS struct {
	t    *testing.T
	port int // -1 until the first start picks one
	dir  string
	srv  *server.Server
}

func (n *soakNATS) start() {
	n.t.Helper()
	srv, err := server.NewServer(&server.Options{
		ServerName: "soak",
		Host:       "127.0.0.1",
		Port:       n.port,
		JetStream:  true,
		StoreDir:   n.dir,
		NoSigs:     true,
		// Larger than the event stream's limit, so a message over it
		// reaches the stream, which refuses it: the refusal an external
		// server with a larger max_payload gives. (With the embedded
		// server, max_payload is the limit: the client refuses first.)
		MaxPayload: 2 * ingest.MaxMessageBytes,
	})
	if err != nil {
		n.t.Fatalf("cannot create the NATS server: %v", err)
	}
	log := zerolog.New(zerolog.NewTestWriter(n.t)).Level(zerolog.WarnLevel)
	srv.SetLoggerV2(natsLogger{log: log.With().Str("component", "nats-server").Logger()}, false, false, false)
	srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		srv.Shutdown()
		n.t.Fatalf("NATS server on port %d not ready after 10s", n.port)
	}
	n.srv, n.port = srv, srv.Addr().(*net.TCPAddr).Port
}

func (n *soakNATS) stop() {
	n.srv.Shutdown()
	n.srv.WaitForShutdown()
}

// restart shuts the server down, keeps it down until the service has seen
// the outage, the producers have had publishes fail and an admin call has
// been answered 503 (else the outage tests nothing; the service's NATS
// writes time out after 5 s), and starts it again on the same port and
// store.
func (n *soakNATS) restart(svc *Service, ledger *soakLedger, h *soakHTTP, outage *soakOutage) {
	t := n.t
	t.Helper()
	failed := ledger.retried()
	outage.begin()
	n.stop()
	checkFor(t, 30*time.Second, 10*time.Millisecond, func() error {
		if svc.nc.IsConnected() {
			return fmt.Errorf("the service is still connected")
		}
		if ledger.retried() == failed {
			return fmt.Errorf("no publish has failed yet")
		}
		if h.outage503s() == 0 {
			return fmt.Errorf("no admin call has been answered 503 yet")
		}
		return nil
	})
	n.start()
	checkFor(t, 30*time.Second, 10*time.Millisecond, func() error {
		if !svc.nc.IsConnected() {
			return fmt.Errorf("the service has not reconnected")
		}
		return nil
	})
	outage.end()
}

// TestSoak runs a real Service against a NATS server in this process for
// -soak (a minute by default) under every kind of traffic at once, with the
// NATS server restarted at half-time:
//   - event producers with acknowledged JetStream publishes: valid events
//     and batches, invalid payloads of every reject reason, batches mixing
//     both, duplicates (for the service's dedup set and for the stream's),
//     messages at the stream's size limit and one byte over it. Publishes
//     that fail during the outage are retried with the same message id
//     until acknowledged.
//   - HTTP clients: bids (single and batch, valid and invalid), dashboard
//     reads (snapshot, stats, metrics, the snapshot stream), admin calls
//     (overrides, the kill switch, bad bodies and tokens).
//
// Then, once the service has applied everything, the counts must be exact:
// counted events per type, duplicates, late, future, rejections per reason
// and the dead letters stored equal what the stream acknowledged; window
// counts of every key sent to equal the events counted; every HTTP answer
// had a documented status; goroutines and the live heap stayed flat.
func TestSoak(t *testing.T) {
	if testing.Short() {
		t.Skip("soak: a minute of mixed load against a real service and NATS server, restarted half-way (-short skips it)")
	}
	d := *soakDuration
	if d < 20*time.Second {
		t.Fatalf("-soak=%s: want at least 20s (a warm-up, the NATS restart at half-time, a second half to compare)", d)
	}
	ns := &soakNATS{t: t, port: -1, dir: t.TempDir()}
	ns.start()
	t.Cleanup(func() { ns.stop() }) // the server of the moment, after the service

	const token = "soak-admin-token"
	clock := NewCachedClock(time.Millisecond)
	t.Cleanup(clock.Stop)
	svc, err := New(Options{
		HTTPAddr:    "127.0.0.1:0",
		NATSURL:     ns.srv.ClientURL(),
		DataDir:     t.TempDir(),
		Instance:    "soak",
		DedupSize:   32 << 20,
		AdminToken:  token,
		SSEInterval: 200 * time.Millisecond,
		Logger:      zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel),
		Clock:       clock,
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
	if svc.Mode() != "jetstream" {
		t.Fatalf("unexpected mode %q; want jetstream", svc.Mode())
	}
	e := &testEnv{svc: svc, base: "http://" + svc.HTTPAddr()}

	ledger, errs, outage := newSoakLedger(), &soakErrs{}, &soakOutage{}
	start := time.Now()
	end := start.Add(d)
	// Every loop stops by itself at end (a publish being retried at the
	// latest 30 s later), or at once when the test ends early.
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() }) // before the service stops
	run := func(f func()) {
		wg.Add(1)
		go func() { defer wg.Done(); f() }()
	}
	giveUp := end.Add(30 * time.Second)
	prod := &soakProducers{ctx: ctx, ledger: ledger, errs: errs, end: end}
	for _, prefix := range []string{"v0", "v1"} {
		pub := newSoakPublisher(t, ctx, ns.srv.ClientURL(), ledger, errs, giveUp)
		run(func() { prod.valid(pub, prefix) })
	}
	pubInvalid := newSoakPublisher(t, ctx, ns.srv.ClientURL(), ledger, errs, giveUp)
	run(func() { prod.invalid(pubInvalid) })
	pubDup := newSoakPublisher(t, ctx, ns.srv.ClientURL(), ledger, errs, giveUp)
	run(func() { prod.duplicates(pubDup) })
	pubBig := newSoakPublisher(t, ctx, ns.srv.ClientURL(), ledger, errs, giveUp)
	run(func() { prod.big(pubBig, d/soakBigMessages) })
	h := newSoakHTTP(ctx, e.base, token, errs, outage)
	t.Cleanup(h.client.CloseIdleConnections)
	admin := &soakAdmin{h: h}
	run(func() { h.bids(end, 0) })
	run(func() { h.bids(end, 1) })
	run(func() { h.dashboard(end) })
	run(func() { admin.run(end) })
	stopSampling := make(chan struct{})
	sampled := make(chan []soakSample, 1)
	go func() { sampled <- sampleResources(start, time.Second, d, stopSampling) }()

	select { // the soak's schedule: the restart at half-time
	case <-time.After(time.Until(start.Add(d / 2))):
	case <-ctx.Done():
	}
	ns.restart(svc, ledger, h, outage)
	wg.Wait()
	close(stopSampling)
	samples := <-sampled
	errs.flush(t, "during the load")

	want, keys, messages, refused, streamDups, retries := ledger.snapshot()
	t.Logf("load: %s; %d messages acknowledged (%d events), %d refused as too large, %d re-publishes dropped by the stream, %d publish attempts retried; NATS down %s",
		d, messages, want.events(), refused, streamDups, retries, outage.up.Sub(outage.down).Round(time.Millisecond))
	t.Logf("HTTP answers (%d 503s while NATS was down):\n  %s", h.outage503s(), h.report())
	// The soak must have done what it names.
	if refused == 0 || streamDups == 0 || retries == 0 || want.duplicates == 0 || want.late == 0 || want.future == 0 {
		t.Errorf("the soak missed a case: refused %d, stream duplicates %d, retries %d, duplicates %d, late %d, future %d; want each > 0",
			refused, streamDups, retries, want.duplicates, want.late, want.future)
	}

	loaded := time.Now()
	st := waitApplied(t, e, ns, want)
	t.Logf("everything applied %s after the load ended (%s after its planned end)",
		time.Since(loaded).Round(time.Millisecond), time.Since(end).Round(time.Millisecond))
	checkSoakCounts(t, e, st, want, keys)
	if keys := admin.check(); len(keys) > 0 {
		t.Logf("left as a write answered 503 during the outage set them (sent when NATS came back): %s", strings.Join(keys, ", "))
	}
	errs.flush(t, "after the load")
	if m := e.getJSON(t, "/healthz", 200); m["status"] != "ok" {
		t.Errorf("unexpected healthz: %v", m)
	}
	checkFlat(t, samples, d)
}

// waitApplied waits until the service has received every event the stream
// acknowledged, stored every dead letter and applied the stream's last
// message, and returns its stats then.
func waitApplied(t *testing.T, e *testEnv, ns *soakNATS, want soakOutcome) map[string]any {
	t.Helper()
	nc, err := nats.Connect(ns.srv.ClientURL())
	if err != nil {
		t.Fatalf("cannot connect to NATS: %v", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	received, rejected := float64(want.events()), 0
	for _, r := range want.rejected {
		rejected += r
	}
	var st map[string]any
	var why string
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		st = e.getJSON(t, "/v1/stats", 200)
		got := num(t, st, "received")
		if got > received {
			t.Fatalf("received %v events; want %v: more than the stream acknowledged: %v", got, received, st)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		info, err := js.Stream(ctx, DLQStream)
		var letters uint64
		if err == nil {
			letters = info.CachedInfo().State.Msgs
		}
		cancel()
		applied, last := num(t, st, "stream.applied_seq"), num(t, st, "stream.last_seq")
		switch {
		case got < received:
			why = fmt.Sprintf("received %v events; want %v", got, received)
		case err != nil:
			why = fmt.Sprintf("cannot read stream %s: %v", DLQStream, err)
		case letters > uint64(rejected):
			t.Fatalf("%d dead letters stored; want %d, the rejections", letters, rejected)
		case letters < uint64(rejected):
			why = fmt.Sprintf("%d dead letters stored; want %d", letters, rejected)
		case applied != last:
			why = fmt.Sprintf("applied up to sequence %v; the stream's last is %v", applied, last)
		default:
			return st
		}
		time.Sleep(100 * time.Millisecond) // poll step
	}
	t.Fatalf("not everything applied after 2 minutes: %s; stats %v", why, st)
	return nil
}

// checkSoakCounts compares the service's figures with the ledger's.
func checkSoakCounts(t *testing.T, e *testEnv, st map[string]any, want soakOutcome, keys map[soakKey][event.NumTypes]int) {
	t.Helper()
	f := func(path string, want int) {
		t.Helper()
		if got := num(t, st, path); got != float64(want) {
			t.Errorf("unexpected %s; got %v; want %d", path, got, want)
		}
	}
	counted, rejected := 0, 0
	for ty := event.Type(1); ty < event.NumTypes; ty++ {
		f("counted_by_type."+ty.String(), want.counted[ty])
		counted += want.counted[ty]
	}
	for r := event.Reason(1); r < event.NumReasons; r++ {
		f("rejected."+r.String(), want.rejected[r])
		rejected += want.rejected[r]
	}
	f("counted", counted)
	f("rejected_total", rejected)
	f("duplicates", want.duplicates)
	f("late", want.late)
	f("future", want.future)
	f("overflow", 0)
	f("received", want.events())
	f("dropped_messages", 0)
	f("stream.lost_messages", 0)
	f("dlq.pending", 0)
	// The window counts of every key sent to, over the 24h span (every
	// counted event is within it).
	for k, w := range keys {
		q := "campaign=" + url.QueryEscape(k.campaign)
		if k.placement != "" {
			q += "&placement=" + url.QueryEscape(k.placement)
		}
		m := e.getJSON(t, "/v1/rates?"+q, 200)
		for ty := event.Type(1); ty < event.NumTypes; ty++ {
			name := ty.String() + "s"
			if got := num(t, m, "windows.24h."+name); got != float64(w[ty]) {
				t.Errorf("unexpected %s of %s in 24h; got %v; want %d", name, q, got, w[ty])
			}
		}
	}
	if len(keys) != len(soakCampaigns)*(1+len(soakPlacements)) {
		t.Errorf("the soak counted events on %d keys; want %d", len(keys), len(soakCampaigns)*(1+len(soakPlacements)))
	}
}

// checkFlat compares the goroutines and the live heap of the last quarter of
// the soak with those of the baseline, after the warm-up (the first sixth:
// connections, pools, the parser's buffers at the size of the largest
// message, the first checkpoint) and before the restart at half-time.
func checkFlat(t *testing.T, samples []soakSample, d time.Duration) {
	t.Helper()
	base, late := summarise(samples, d/6, d/2), summarise(samples, d*3/4, d+time.Minute)
	t.Logf("resources: baseline %s; last quarter %s", base, late)
	if base.n < 3 || late.n < 3 {
		t.Fatalf("too few resource samples: %d in the baseline, %d in the last quarter", base.n, late.n)
	}
	if late.goroutines > base.goroutines+soakGoroutineGrowth {
		t.Errorf("goroutines grew from a median of %d to %d; the bound is +%d", base.goroutines, late.goroutines, soakGoroutineGrowth)
	}
	if bound := base.heap + base.heap/8 + soakHeapGrowth; late.heap > bound {
		t.Errorf("live heap grew from a median of %.1f MiB to %.1f MiB; the bound is %.1f MiB",
			float64(base.heap)/(1<<20), float64(late.heap)/(1<<20), float64(bound)/(1<<20))
	}
}
