package bidder

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bidpulse/bidpulse/bidder/ingest"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// jsPublish publishes each payload with an acknowledged JetStream publish
// (Nats-Msg-Id = idPrefix and the index), retrying until acknowledged.
func jsPublish(t *testing.T, nc *nats.Conn, idPrefix string, payloads [][]byte) {
	t.Helper()
	if err := jsPublishErr(nc, idPrefix, payloads); err != nil {
		t.Fatal(err)
	}
}

// jsPublishErr is jsPublish for use off the test goroutine.
func jsPublishErr(nc *nats.Conn, idPrefix string, payloads [][]byte) error {
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	type pending struct {
		f jetstream.PubAckFuture
		m *nats.Msg
	}
	inFlight := make([]pending, 0, len(payloads))
	for i, p := range payloads {
		m := &nats.Msg{Subject: "bidpulse.events.test", Data: p, Header: nats.Header{}}
		m.Header.Set(jetstream.MsgIDHeader, fmt.Sprintf("%s-%d", idPrefix, i))
		f, err := js.PublishMsgAsync(m)
		if err != nil {
			if err := retryPublish(js, m, err); err != nil {
				return err
			}
			continue
		}
		inFlight = append(inFlight, pending{f, m})
	}
	for _, p := range inFlight {
		select {
		case <-p.f.Ok():
		case err := <-p.f.Err():
			if err := retryPublish(js, p.m, err); err != nil {
				return err
			}
		case <-time.After(10 * time.Second):
			if err := retryPublish(js, p.m, fmt.Errorf("no ack after 10s")); err != nil {
				return err
			}
		}
	}
	return nil
}

// retryPublish publishes m until acknowledged (the same Nats-Msg-Id makes
// a retry of a stored message a duplicate), for at most 20 s.
func retryPublish(js jetstream.JetStream, m *nats.Msg, cause error) error {
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := js.PublishMsg(ctx, m)
		cancel()
		if err == nil {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("publish not acknowledged after 20s: %v", cause)
}

// keyedPayloads returns n batches of size events: impressions, with a click
// for every fifth, spread over campaigns c0..c(campaigns-1) and placements
// p0..p(places-1). want counts impressions and clicks per (campaign,
// placement).
func keyedPayloads(prefix string, n, size, campaigns, places int, ts int64, want map[string][2]int) [][]byte {
	out := make([][]byte, 0, n)
	k := 0
	for i := 0; i < n; i++ {
		var sb strings.Builder
		sb.WriteByte('[')
		for j := 0; j < size; j++ {
			if j > 0 {
				sb.WriteByte(',')
			}
			c, p := fmt.Sprintf("c%d", k%campaigns), fmt.Sprintf("p%d", (k/campaigns)%places)
			typ := "impression"
			if k%5 == 4 {
				typ = "click"
			}
			sb.WriteString(ev(fmt.Sprintf("%s-%d", prefix, k), typ, ts, c, "", p))
			w := want[c+"/"+p]
			if typ == "impression" {
				w[0]++
			} else {
				w[1]++
			}
			want[c+"/"+p] = w
			k++
		}
		sb.WriteByte(']')
		out = append(out, []byte(sb.String()))
	}
	return out
}

// checkKeyCounts compares every (campaign, placement) count in /v1/rates
// with want.
func checkKeyCounts(t *testing.T, e *testEnv, want map[string][2]int) {
	t.Helper()
	for key, w := range want {
		cp := strings.SplitN(key, "/", 2)
		m := e.getJSON(t, "/v1/rates?campaign="+cp[0]+"&placement="+cp[1], 200)
		if got := num(t, m, "windows.1h.impressions"); got != float64(w[0]) {
			t.Fatalf("unexpected impressions of %s; got %v; want %d", key, got, w[0])
		}
		if got := num(t, m, "windows.1h.clicks"); got != float64(w[1]) {
			t.Fatalf("unexpected clicks of %s; got %v; want %d", key, got, w[1])
		}
	}
}

func waitCounted(t *testing.T, e *testEnv, n uint64) {
	t.Helper()
	checkFor(t, 30*time.Second, 10*time.Millisecond, func() error {
		if got := e.svc.ingest.Stats().Counted.Get(); got != n {
			return fmt.Errorf("counted %d events; want %d", got, n)
		}
		return nil
	})
}

func balanced(t *testing.T, e *testEnv) map[string]any {
	t.Helper()
	st := e.getJSON(t, "/v1/stats", 200)
	sum := num(t, st, "counted") + num(t, st, "duplicates") + num(t, st, "rejected_total") +
		num(t, st, "late") + num(t, st, "future") + num(t, st, "overflow")
	if sum != num(t, st, "received") {
		t.Fatalf("stats do not balance: %v", st)
	}
	return st
}

func TestJetStream100kEventsExact(t *testing.T) {
	e := startTestService(t, nil)
	if e.svc.Mode() != "jetstream" {
		t.Fatalf("unexpected mode %q; want jetstream (auto with the embedded server)", e.svc.Mode())
	}
	want := map[string][2]int{}
	payloads := keyedPayloads("k", 1000, 100, 20, 100, testNow-60_000, want)
	jsPublish(t, e.nc, "batch", payloads)
	waitCounted(t, e, 100_000)
	if len(want) != 2000 {
		t.Fatalf("BUG: test spreads over %d keys; want 2000", len(want))
	}
	checkKeyCounts(t, e, want)
	st := balanced(t, e)
	if got := num(t, st, "stream.applied_seq"); got != 1000 {
		t.Fatalf("unexpected applied_seq; got %v; want 1000", got)
	}
	if st["mode"] != "jetstream" || num(t, st, "replay.progress") != 1 {
		t.Fatalf("unexpected stats: %v", st)
	}
	// The same messages again (same ids): the stream drops them.
	jsPublish(t, e.nc, "batch", payloads[:10])
	time.Sleep(100 * time.Millisecond)
	if got := e.svc.ingest.Stats().Received.Get(); got != 100_000 {
		t.Fatalf("unexpected received after re-publishing with the same ids; got %d; want 100000", got)
	}
}

func TestJetStreamRestartUsesCheckpoint(t *testing.T) {
	dir := t.TempDir()
	opts := func(o *Options) { o.DataDir = dir }
	e := startTestService(t, opts)
	want := map[string][2]int{}
	jsPublish(t, e.nc, "a", keyedPayloads("a", 50, 100, 5, 10, testNow-120_000, want))
	waitCounted(t, e, 5000)
	e.nc.Close()
	if err := e.svc.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(e.svc.checkpointPath()); err != nil {
		t.Fatalf("no checkpoint after Stop: %v", err)
	}

	// The same data dir: the embedded server keeps the stream, the
	// checkpoint holds the windows.
	e2 := startTestService(t, opts)
	st := balanced(t, e2)
	if st["checkpoint"].(map[string]any)["loaded"] != true || num(t, st, "counted") != 5000 {
		t.Fatalf("checkpoint not used: %v", st)
	}
	jsPublish(t, e2.nc, "b", keyedPayloads("b", 10, 100, 5, 10, testNow-60_000, want))
	waitCounted(t, e2, 6000)
	checkKeyCounts(t, e2, want)
	// Nothing was replayed twice: the consumer started after the
	// checkpoint's sequence.
	if got := num(t, st, "stream.applied_seq"); got != 50 {
		t.Fatalf("unexpected applied_seq after restart; got %v; want 50", got)
	}
	if got := num(t, st, "replay.start_seq"); got != 51 {
		t.Fatalf("unexpected replay start after restart; got %v; want 51", got)
	}
}

func TestJetStreamReplayAfterKill(t *testing.T) {
	dir := t.TempDir()
	e := startTestService(t, func(o *Options) { o.DataDir = dir; o.noFinalCheckpoint = true })
	want := map[string][2]int{}
	// Three different minutes, each in its own bucket.
	jsPublish(t, e.nc, "m1", keyedPayloads("m1", 20, 50, 3, 4, testNow-3*60_000, want))
	waitCounted(t, e, 1000)
	if err := e.svc.writeCheckpoint(); err != nil {
		t.Fatal(err)
	}
	jsPublish(t, e.nc, "m2", keyedPayloads("m2", 20, 50, 3, 4, testNow-2*60_000, want))
	jsPublish(t, e.nc, "m3", keyedPayloads("m3", 20, 50, 3, 4, testNow-1*60_000, want))
	waitCounted(t, e, 3000)
	// Stopped without a final checkpoint, as if killed: 2000 events were
	// applied after the last checkpoint.
	e.nc.Close()
	e.svc.Stop(context.Background())

	e2 := startTestService(t, func(o *Options) { o.DataDir = dir })
	waitCounted(t, e2, 3000)
	checkFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if !e2.svc.isReady() {
			return fmt.Errorf("not ready")
		}
		return nil
	})
	checkKeyCounts(t, e2, want)
	st := balanced(t, e2)
	// The checkpoint of sequence 20 was loaded and the replay began after it.
	if st["checkpoint"].(map[string]any)["loaded"] != true || num(t, st, "replay.start_seq") != 21 {
		t.Fatalf("restart did not start from the checkpoint: %v", st)
	}
	// Each minute is in its own bucket: the 1m span (now minus 60 s and
	// less) holds none of the three minutes, the 5m span holds them all.
	m := e2.getJSON(t, "/v1/rates?campaign=c0", 200)
	if num(t, m, "windows.1m.impressions") != 0 || num(t, m, "windows.5m.impressions") != num(t, m, "windows.1h.impressions") {
		t.Fatalf("event times not kept on replay: %v", m)
	}
	// Two minutes later the 5m span holds the last two minutes only: each
	// minute has the same traffic, so two thirds of it.
	hour := num(t, m, "windows.1h.impressions")
	e2.clock.Set(testNow + 2*60_000)
	m = e2.getJSON(t, "/v1/rates?campaign=c0", 200)
	if got := num(t, m, "windows.5m.impressions"); got != hour*2/3 {
		t.Fatalf("unexpected 5m impressions two minutes later; got %v; want %v: %v", got, hour*2/3, m)
	}
}

func TestJetStreamRedeliveryCountsOnce(t *testing.T) {
	var slow atomic.Bool
	slow.Store(true)
	e := startTestService(t, func(o *Options) {
		o.AckWait = 300 * time.Millisecond
		o.applyHook = func(seq uint64) {
			if seq == 1 && slow.CompareAndSwap(true, false) {
				time.Sleep(time.Second) // past AckWait: the server redelivers
			}
		}
	})
	want := map[string][2]int{}
	jsPublish(t, e.nc, "r", keyedPayloads("r", 30, 10, 2, 2, testNow, want))
	waitCounted(t, e, 300)
	checkFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		if e.svc.ingest.Stats().Redelivered.Get() == 0 {
			return fmt.Errorf("no redelivery seen yet")
		}
		return nil
	})
	time.Sleep(500 * time.Millisecond)
	checkKeyCounts(t, e, want)
	if got := e.svc.ingest.Stats().Counted.Get(); got != 300 {
		t.Fatalf("unexpected counted after redelivery; got %d; want 300", got)
	}
	balanced(t, e)
}

func TestJetStreamPoisonMessages(t *testing.T) {
	e := startTestService(t, func(o *Options) { o.AckWait = 300 * time.Millisecond })
	var payloads [][]byte
	for i := 0; i < 20; i++ {
		payloads = append(payloads, []byte(ev(fmt.Sprintf("ok%d", i), "impression", testNow, "c1", "", "p1")))
		payloads = append(payloads, []byte(fmt.Sprintf(`{"id":"bad%d","type":"view","campaign":"c1"}`, i)))
	}
	payloads = append(payloads, []byte(`not json`))
	jsPublish(t, e.nc, "p", payloads)
	e.waitReceived(t, 41)
	// Several AckWaits later, nothing came back.
	time.Sleep(time.Second)
	if got := e.svc.ingest.Stats().Received.Get(); got != 41 {
		t.Fatalf("unexpected received; got %d; want 41 (a redelivery loop?)", got)
	}
	if got := e.svc.ingest.Stats().Counted.Get(); got != 20 {
		t.Fatalf("unexpected counted; got %d; want 20", got)
	}
	if got := e.svc.ingest.Stats().Redelivered.Get(); got != 0 {
		t.Fatalf("unexpected redeliveries skipped; got %d; want 0 (poison messages acknowledged once their dead letters are stored)", got)
	}
	js, _ := jetstream.New(e.nc)
	st, err := js.Stream(context.Background(), DLQStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 21 {
		t.Fatalf("unexpected dead letters in %s; got %d; want 21", DLQStream, info.State.Msgs)
	}
	msg, err := st.GetMsg(context.Background(), info.State.LastSeq)
	if err != nil || msg.Header.Get(ingest.RejectHeader) != "bad_json" || string(msg.Data) != "{}" ||
		msg.Header.Get(ingest.PayloadBytesHeader) != "8" || !strings.HasPrefix(msg.Header.Get(ingest.PayloadHashHeader), "hmac-sha256:") {
		t.Fatalf("unexpected last dead letter %+v: %v", msg, err)
	}
}

func TestCoreModeCountsDrops(t *testing.T) {
	e := startTestService(t, func(o *Options) {
		o.JetStream = JetStreamFalse
		o.PendingMsgs = 10
		o.applyHook = func(uint64) { time.Sleep(5 * time.Millisecond) }
	})
	const n = 300
	for i := 0; i < n; i++ {
		if err := e.nc.Publish("bidpulse.events.x", []byte(ev(fmt.Sprintf("d%d", i), "impression", testNow, "c1", "", ""))); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	// The service keeps answering while it is behind.
	if m := e.getJSON(t, "/v1/multiplier?campaign=c1", 200); m["level"] == nil {
		t.Fatalf("unexpected answer: %v", m)
	}
	checkFor(t, 20*time.Second, 20*time.Millisecond, func() error {
		applied := e.svc.ingest.Stats().Messages.Get()
		dropped := uint64(e.svc.ingest.Dropped())
		if applied+dropped != n {
			return fmt.Errorf("applied %d + dropped %d != %d", applied, dropped, n)
		}
		return nil
	})
	st := e.getJSON(t, "/v1/stats", 200)
	if num(t, st, "dropped_messages") == 0 || num(t, st, "dropped_messages")+num(t, st, "counted") != n || st["mode"] != "core" {
		t.Fatalf("unexpected stats: %v", st)
	}
}

// pausableConn is a real in-process connection to the embedded server
// whose reads can be held: the client then stops reading, as a starved
// process would, and the server's outbound buffer for it backs up.
type pausableConn struct {
	net.Conn
	gate atomic.Pointer[chan struct{}] // closed: reads flow
}

func (c *pausableConn) Read(b []byte) (int, error) {
	<-*c.gate.Load()
	return c.Conn.Read(b)
}

// TestCoreModeCountsServerDrops stalls the service's connection to the
// embedded server until the server closes it as a slow consumer (write
// deadline), and checks that dropped_messages holds what the server
// dropped: received + dropped equals published, and the service keeps
// answering and reconnects.
func TestCoreModeCountsServerDrops(t *testing.T) {
	var mu sync.Mutex
	var conns []*pausableConn
	e := startTestService(t, func(o *Options) {
		o.JetStream = JetStreamFalse
		// The burst below must be queued for the service before the
		// server gives up on it: what is published after the server closed
		// the connection, and before the client is back, finds no
		// subscription and is lost uncounted (core NATS is at most once).
		// 2 s holds on a loaded machine under the race detector; 300 ms
		// did not.
		o.natsServerHook = func(so *server.Options) { so.WriteDeadline = 2 * time.Second }
		o.wrapNATSConn = func(c net.Conn) net.Conn {
			pc := &pausableConn{Conn: c}
			open := make(chan struct{})
			close(open)
			pc.gate.Store(&open)
			mu.Lock()
			conns = append(conns, pc)
			mu.Unlock()
			return pc
		}
	})
	publish := func(prefix string, n int) {
		for i := 0; i < n; i++ {
			if err := e.nc.Publish("bidpulse.events.x", []byte(ev(fmt.Sprintf("%s%d", prefix, i), "impression", testNow, "c1", "", ""))); err != nil {
				t.Fatal(err)
			}
		}
		if err := e.nc.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	publish("a", 100)
	checkFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if got := e.svc.ingest.Stats().Counted.Get(); got != 100 {
			return fmt.Errorf("counted %d; want 100", got)
		}
		return nil
	})
	// Stall the service's reads, then publish: the server queues for it
	// until the write deadline passes and closes the connection.
	mu.Lock()
	stalled := conns[len(conns)-1]
	mu.Unlock()
	gate := make(chan struct{})
	stalled.gate.Store(&gate)
	slow := e.svc.natsSrv.NumSlowConsumersClients()
	const burst = 5000
	publish("b", burst)
	checkFor(t, 20*time.Second, 20*time.Millisecond, func() error {
		if e.svc.natsSrv.NumSlowConsumersClients() == slow {
			return errors.New("no slow consumer yet")
		}
		return nil
	})
	// The service keeps answering while its connection is down.
	if m := e.getJSON(t, "/v1/multiplier?campaign=c1", 200); m["level"] == nil {
		t.Fatalf("unexpected answer: %v", m)
	}
	close(gate)
	checkFor(t, 20*time.Second, 20*time.Millisecond, func() error {
		if !e.svc.nc.IsConnected() {
			return errors.New("not reconnected")
		}
		got, dropped := e.svc.ingest.Stats().Received.Get(), uint64(e.svc.ingest.Dropped())
		if dropped == 0 || got+dropped != 100+burst {
			return fmt.Errorf("received %d + dropped %d != %d", got, dropped, 100+burst)
		}
		return nil
	})
	st := e.getJSON(t, "/v1/stats", 200)
	if d := num(t, st, "dropped_messages"); d == 0 || d+num(t, st, "counted") != 100+burst {
		t.Fatalf("unexpected stats: %v", st)
	}
	// After the reconnection events flow again.
	publish("c", 10)
	checkFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if got, d := e.svc.ingest.Stats().Counted.Get(), uint64(e.svc.ingest.Dropped()); got+d != 110+burst {
			return fmt.Errorf("counted %d + dropped %d != %d", got, d, 110+burst)
		}
		return nil
	})
}

// startExternalNATS starts a nats-server with JetStream on a fixed port and
// store, as an external server the service connects to.
func startExternalNATS(t *testing.T, port int, storeDir string) *server.Server {
	t.Helper()
	srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: port, JetStream: true, StoreDir: storeDir, NoSigs: true, NoLog: true})
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatalf("external NATS server not ready")
	}
	return srv
}

func TestJetStreamSurvivesNATSRestart(t *testing.T) {
	store := t.TempDir()
	srv := startExternalNATS(t, -1, store)
	p := srv.Addr().(*net.TCPAddr).Port
	e := startTestService(t, func(o *Options) { o.NATSURL = srv.ClientURL() })

	pub, err := nats.Connect(srv.ClientURL(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	want := map[string][2]int{}
	all := keyedPayloads("o", 200, 50, 4, 5, testNow, want)
	jsPublish(t, pub, "o", all[:100])
	// Stop the server mid-stream; the publisher retries while it is down.
	srv.Shutdown()
	srv.WaitForShutdown()
	done := make(chan error, 1)
	go func() { done <- jsPublishErr(pub, "o2", all[100:]) }()
	time.Sleep(300 * time.Millisecond)
	// Bid answers continue from the windows held.
	if code, _ := e.do(t, "GET", "/v1/multiplier?campaign=c0", "", ""); code != 200 {
		t.Fatalf("unexpected status during the outage: %d", code)
	}
	if m := e.getJSON(t, "/readyz", 200); m["nats"].(map[string]any)["connected"] != false {
		t.Fatalf("readyz must stay 200 and report the outage: %v", m)
	}
	srv2 := startExternalNATS(t, p, store)
	defer srv2.Shutdown()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	waitCounted(t, e, 10_000)
	checkKeyCounts(t, e, want)
	balanced(t, e)
	e.nc.Close()
	if err := e.svc.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestCorruptCheckpointIgnored(t *testing.T) {
	dir := t.TempDir()
	e := startTestService(t, func(o *Options) { o.DataDir = dir })
	want := map[string][2]int{}
	jsPublish(t, e.nc, "c", keyedPayloads("c", 10, 100, 2, 2, testNow, want))
	waitCounted(t, e, 1000)
	e.nc.Close()
	e.svc.Stop(context.Background())
	path := e.svc.checkpointPath()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)/2] ^= 0xff
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	// The corrupt checkpoint is reported and set aside; the one kept in
	// NATS at stop is loaded instead (the stream was trimmed up to it, so
	// a replay of the stream alone would not find the events).
	e2 := startTestService(t, func(o *Options) { o.DataDir = dir })
	waitCounted(t, e2, 1000)
	st := balanced(t, e2)
	ck := st["checkpoint"].(map[string]any)
	if ck["loaded"] != true || ck["loaded_from_nats"] != "bidpulse_test" || !strings.Contains(fmt.Sprint(ck["load_error"]), "checksum") {
		t.Fatalf("corrupt checkpoint not reported, or the one in NATS not loaded: %v", ck)
	}
	if _, err := os.Stat(path + ".bad"); err != nil {
		t.Fatalf("corrupt checkpoint not kept aside: %v", err)
	}
	checkKeyCounts(t, e2, want)
}
