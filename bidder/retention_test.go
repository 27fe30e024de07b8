package bidder

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bidpulse/bidpulse/bidder/ingest"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// A stream with small limits: traffic far beyond what it could hold is
// consumed and trimmed away behind the checkpoints, so no publish is
// refused while bidpulse keeps up; with bidpulse stopped, the backlog past
// the limit is refused at the producer, and every acknowledged event is
// counted after the restart.
func TestStreamBuffersInsteadOfArchiving(t *testing.T) {
	if testing.Short() {
		t.Skip("publishes 12 MiB through a 2 MiB stream; skipped under -short")
	}
	dir := t.TempDir()
	opts := func(o *Options) {
		o.DataDir = dir
		o.StreamMaxBytes = 2 << 20
		o.CheckpointInterval = 50 * time.Millisecond
		o.RemoteCheckpointInterval = 50 * time.Millisecond
	}
	e := startTestService(t, opts)
	js, err := jetstream.New(e.nc)
	if err != nil {
		t.Fatal(err)
	}
	// 6,000 events of ~200 bytes = ~1.2 MB per round, 10 rounds: six times
	// the stream's limit. Each round waits until counted, as a service that
	// keeps up would.
	want := map[string][2]int{}
	total := 0
	for round := 0; round < 10; round++ {
		payloads := keyedPayloads(fmt.Sprintf("r%d", round), 60, 100, 3, 3, testNow, want)
		for i, p := range payloads {
			m := &nats.Msg{Subject: "bidpulse.events.test", Data: p, Header: nats.Header{}}
			m.Header.Set(jetstream.MsgIDHeader, fmt.Sprintf("r%d-%d", round, i))
			if _, err := js.PublishMsg(context.Background(), m); err != nil {
				t.Fatalf("publish refused while bidpulse keeps up (round %d, message %d): %v", round, i, err)
			}
		}
		total += 6000
		waitCounted(t, e, uint64(total))
		// The trim follows the next checkpoint kept in NATS.
		checkFor(t, 10*time.Second, 20*time.Millisecond, func() error {
			if seq := e.svc.ckpt.remoteSeq.Load(); seq < e.svc.ingest.Applied() {
				return fmt.Errorf("checkpoint kept in NATS at %d, applied %d", seq, e.svc.ingest.Applied())
			}
			return nil
		})
	}
	st := balanced(t, e)
	stream := st["stream"].(map[string]any)
	if stream["trims"].(float64) == 0 || stream["lost_messages"].(float64) != 0 {
		t.Fatalf("stream not trimmed, or messages lost: %v", stream)
	}
	checkKeyCounts(t, e, want)
	if err := e.svc.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	e.nc.Close()

	// Stopped: a backlog builds up in the stream until it is full, and the
	// next publish is refused at the producer.
	srv := startExternalNATSDir(t, dir)
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	js, err = jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	acked, refused := 0, 0
	for i := 0; i < 400 && refused == 0; i++ {
		p := keyedPayloads(fmt.Sprintf("b%d", i), 1, 100, 3, 3, testNow, map[string][2]int{})[0]
		m := &nats.Msg{Subject: "bidpulse.events.test", Data: p, Header: nats.Header{}}
		m.Header.Set(jetstream.MsgIDHeader, fmt.Sprintf("b-%d", i))
		_, err := js.PublishMsg(context.Background(), m)
		switch {
		case err == nil:
			acked++
			keyedPayloads(fmt.Sprintf("b%d", i), 1, 100, 3, 3, testNow, want)
		case strings.Contains(err.Error(), "maximum bytes"):
			refused++
		default:
			t.Fatalf("unexpected publish error: %v", err)
		}
	}
	if refused == 0 || acked == 0 {
		t.Fatalf("unexpected backlog: %d acknowledged, %d refused; want some of each", acked, refused)
	}
	nc.Close()
	srv.Shutdown()
	srv.WaitForShutdown()

	e2 := startTestService(t, opts)
	waitCounted(t, e2, uint64(total+acked*100))
	st = balanced(t, e2)
	if ck := st["checkpoint"].(map[string]any); ck["loaded"] != true {
		t.Fatalf("checkpoint not loaded: %v", ck)
	}
	if num(t, st, "counted") != float64(total+acked*100) || num(t, st, "duplicates") != 0 {
		t.Fatalf("unexpected counts after the backlog: %v", st)
	}
	checkKeyCounts(t, e2, want)
}

// startExternalNATSDir starts, on a random port, a nats-server over the
// JetStream store an embedded one kept under dataDir.
func startExternalNATSDir(t *testing.T, dataDir string) interface {
	ClientURL() string
	Shutdown()
	WaitForShutdown()
} {
	t.Helper()
	srv, err := startEmbeddedNATS(embeddedNATS{addr: "127.0.0.1:-1", dataDir: dataDir, name: "test", log: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	return srv
}

// A new instance with an empty data dir starts with the windows of the
// checkpoint kept in NATS, and replays the stream only after it.
func TestFreshInstanceRestoresFromNATS(t *testing.T) {
	srv := startExternalNATS(t, -1, t.TempDir())
	t.Cleanup(srv.Shutdown) // after the services' own cleanups
	url := srv.ClientURL()
	e := startTestService(t, func(o *Options) { o.NATSURL = url; o.Instance = "a" })
	want := map[string][2]int{}
	jsPublish(t, e.nc, "x", keyedPayloads("x", 20, 100, 2, 2, testNow, want))
	waitCounted(t, e, 2000)
	if err := e.svc.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	// After the stop the stream holds nothing the checkpoint covers; 500
	// more events arrive while no instance runs.
	jsPublish(t, e.nc, "y", keyedPayloads("y", 5, 100, 2, 2, testNow, want))
	e.nc.Close()

	e2 := startTestService(t, func(o *Options) { o.NATSURL = url; o.Instance = "b" })
	waitCounted(t, e2, 2500)
	st := balanced(t, e2)
	ck := st["checkpoint"].(map[string]any)
	if ck["loaded"] != true || ck["loaded_from_nats"] != "bidpulse_a" {
		t.Fatalf("checkpoint in NATS not loaded: %v", ck)
	}
	replay := st["replay"].(map[string]any)
	if replay["start_seq"].(float64) != 21 {
		t.Fatalf("unexpected replay start %v; want 21 (after the checkpoint of sequence 20)", replay)
	}
	if num(t, st, "counted") != 2500 || num(t, st, "duplicates") != 0 {
		t.Fatalf("unexpected counts: %v", st)
	}
	checkKeyCounts(t, e2, want)
}

// The consumer deleted from outside while events flow: it is re-created
// after the last applied message and nothing is lost or counted twice.
func TestConsumerDeletedFromOutside(t *testing.T) {
	e := startTestService(t, nil)
	js, err := jetstream.New(e.nc)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][2]int{}
	payloads := keyedPayloads("d", 100, 50, 3, 3, testNow, want)
	done := make(chan error, 1)
	go func() { done <- jsPublishErr(e.nc, "d", payloads) }()
	checkFor(t, 10*time.Second, time.Millisecond, func() error {
		if n := e.svc.ingest.Stats().Counted.Get(); n == 0 {
			return errors.New("nothing counted yet")
		}
		return nil
	})
	if err := js.DeleteConsumer(context.Background(), e.svc.opts.Stream, ingest.ConsumerName(e.svc.opts.Instance)); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// Published after the consumer was deleted: the stream keeps them for
	// the re-created one.
	jsPublish(t, e.nc, "e", keyedPayloads("e", 100, 50, 3, 3, testNow, want))
	waitCounted(t, e, 10000)
	checkFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if n := e.svc.ingest.Stats().ConsumerRecreated.Get(); n == 0 {
			return errors.New("consumer not re-created")
		}
		return nil
	})
	st := balanced(t, e)
	stream := st["stream"].(map[string]any)
	if stream["lost_messages"].(float64) != 0 || num(t, st, "counted") != 10000 || num(t, st, "duplicates") != 0 {
		t.Fatalf("messages lost or counted twice: %v", st)
	}
	checkKeyCounts(t, e, want)
}

// A second instance with the same name against the same NATS refuses to
// start, naming the first; with Takeover it starts and the first stops
// consuming and says why.
func TestSameInstanceNameRefused(t *testing.T) {
	srv := startExternalNATS(t, -1, t.TempDir())
	t.Cleanup(srv.Shutdown) // after the services' own cleanups
	url := srv.ClientURL()
	e := startTestService(t, func(o *Options) { o.NATSURL = url; o.Instance = "same" })
	o2 := Options{HTTPAddr: "127.0.0.1:0", NATSURL: url, DataDir: t.TempDir(), Instance: "same",
		DedupSize: 32 << 20, Logger: testLogger(t), Clock: NewManualClock(testNow)}
	s2, err := New(o2)
	if err != nil {
		t.Fatal(err)
	}
	err = s2.Start()
	if !errors.Is(err, errNameInUse) || !strings.Contains(err.Error(), `instance "same" is running on host`) {
		t.Fatalf("unexpected error; got %v; want the name in use, naming the first", err)
	}
	// The first goes on counting.
	jsPublish(t, e.nc, "s", keyedPayloads("s", 2, 10, 1, 1, testNow, map[string][2]int{}))
	waitCounted(t, e, 20)

	o2.Takeover = true
	o2.DataDir = t.TempDir()
	s3, err := New(o2)
	if err != nil {
		t.Fatal(err)
	}
	if err := s3.Start(); err != nil {
		t.Fatalf("cannot take over: %v", err)
	}
	defer s3.Stop(context.Background())
	checkFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		code, rz := e.do(t, "GET", "/readyz", "", "")
		if code != 503 || !strings.Contains(string(rz), "taken over") {
			return fmt.Errorf("unexpected readyz %d %s", code, rz)
		}
		return nil
	})
}

func testLogger(t *testing.T) zerolog.Logger {
	return zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)
}

// A bad batch of 1,000 events while the DLQ stream does not answer: good
// messages go on being counted, every dead letter is stored once the DLQ is
// back, and nothing is redelivered.
func TestDeadLettersWhileDLQDown(t *testing.T) {
	e := startTestService(t, nil)
	js, dlqCfg := deleteDLQ(t, e)
	var bad strings.Builder
	bad.WriteByte('[')
	for i := 0; i < 1000; i++ {
		if i > 0 {
			bad.WriteByte(',')
		}
		fmt.Fprintf(&bad, `{"id":"bad%d","type":"view","campaign":"c1"}`, i)
	}
	bad.WriteByte(']')
	jsPublish(t, e.nc, "bad", [][]byte{[]byte(bad.String())})
	want := map[string][2]int{}
	jsPublish(t, e.nc, "good", keyedPayloads("good", 20, 50, 2, 2, testNow, want))
	waitCounted(t, e, 1000)
	checkFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		rz := e.getJSON(t, "/readyz", 200)
		if num(t, rz, "dlq.pending") != 1000 || rz["dlq"].(map[string]any)["answering"] != false {
			return fmt.Errorf("a DLQ that does not answer is not reported: %v", rz)
		}
		return nil
	})
	if _, err := js.CreateStream(context.Background(), dlqCfg); err != nil {
		t.Fatal(err)
	}
	checkFor(t, 30*time.Second, 10*time.Millisecond, func() error {
		info, err := js.Stream(context.Background(), DLQStream)
		if err != nil {
			return err
		}
		if n := info.CachedInfo().State.Msgs; n != 1000 {
			return fmt.Errorf("%d dead letters stored; want 1000", n)
		}
		return nil
	})
	checkFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if n := e.svc.ingest.DLQ().Pending; n != 0 {
			return fmt.Errorf("%d dead letters pending", n)
		}
		return nil
	})
	// Acknowledged once stored: the consumer has nothing left pending.
	checkFor(t, 10*time.Second, 50*time.Millisecond, func() error {
		ci, err := js.Consumer(context.Background(), e.svc.opts.Stream, ingest.ConsumerName(e.svc.opts.Instance))
		if err != nil {
			return err
		}
		if info := ci.CachedInfo(); info.NumAckPending != 0 {
			return fmt.Errorf("%d messages not acknowledged", info.NumAckPending)
		}
		return nil
	})
	st := balanced(t, e)
	if num(t, st, "rejected.bad_type") != 1000 || num(t, st, "stream.redelivered_skipped") != 0 || num(t, st, "dlq.errors") == 0 {
		t.Fatalf("unexpected stats: %v", st)
	}
	checkKeyCounts(t, e, want)
}

// An applier that does not advance while the stream holds messages past it
// is reported: stats, /readyz 503 with the reason; it recovers by itself
// once the applier moves again, and nothing is lost or counted twice.
func TestIngestStallReported(t *testing.T) {
	var block atomic.Bool
	release := make(chan struct{})
	var once sync.Once
	unblock := func() { once.Do(func() { block.Store(false); close(release) }) }
	e := startTestService(t, func(o *Options) {
		o.StallAfter = 300 * time.Millisecond
		o.applyHook = func(seq uint64) {
			if seq > 0 && block.Load() {
				<-release
			}
		}
	})
	t.Cleanup(unblock) // before the service's own cleanup
	want := map[string][2]int{}
	jsPublish(t, e.nc, "s1", keyedPayloads("s1", 5, 10, 1, 1, testNow, want))
	waitCounted(t, e, 50)
	block.Store(true)
	jsPublish(t, e.nc, "s2", keyedPayloads("s2", 5, 10, 1, 1, testNow, want))
	checkFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		code, rz := e.do(t, "GET", "/readyz", "", "")
		if code != 503 || !strings.Contains(string(rz), "ingest stalled") {
			return fmt.Errorf("unexpected readyz %d %s", code, rz)
		}
		return nil
	})
	st := e.getJSON(t, "/v1/stats", 200)
	if st["stream"].(map[string]any)["stalled"] != true || num(t, st, "stream.stalls") != 1 {
		t.Fatalf("stall not in the stats: %v", st["stream"])
	}
	unblock()
	waitCounted(t, e, 100)
	checkFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		if code, rz := e.do(t, "GET", "/readyz", "", ""); code != 200 {
			return fmt.Errorf("not ready again: %d %s", code, rz)
		}
		return nil
	})
	st = balanced(t, e)
	if num(t, st, "counted") != 100 || num(t, st, "duplicates") != 0 {
		t.Fatalf("unexpected counts after the stall: %v", st)
	}
	checkKeyCounts(t, e, want)
}

// Dead letters past the queue's bound while the DLQ stream is gone: the
// applier waits, but Stop does not hang, the letters left are saved in the
// final checkpoint, the next Start does not hang on them, and once the DLQ
// is back every letter is stored once.
func TestFullDeadLetterQueueDoesNotHang(t *testing.T) {
	if testing.Short() {
		t.Skip("publishes 22 MiB of rejected payloads; skipped under -short")
	}
	dir := t.TempDir()
	// With the payloads kept in the letters: they are what can fill the queue.
	opts := func(o *Options) { o.DataDir = dir; o.ShutdownTimeout = 3 * time.Second; o.DLQRaw = true }
	e := startTestService(t, opts)
	_, dlqCfg := deleteDLQ(t, e)
	const n = 24
	bad := make([][]byte, n)
	for i := range bad {
		bad[i] = append([]byte(fmt.Sprintf("not json %d ", i)), make([]byte, 900<<10)...)
	}
	jsPublish(t, e.nc, "big", bad)
	checkFor(t, 20*time.Second, 10*time.Millisecond, func() error {
		if d := e.svc.ingest.DLQ(); d.PendingBytes < 15<<20 {
			return fmt.Errorf("%d bytes of dead letters queued", d.PendingBytes)
		}
		return nil
	})
	stopped := make(chan error, 1)
	go func() { stopped <- e.svc.Stop(context.Background()) }()
	select {
	case <-stopped:
	case <-time.After(20 * time.Second):
		t.Fatalf("Stop hangs with the dead-letter queue full")
	}
	e.nc.Close()

	started := make(chan *testEnv, 1)
	go func() { started <- startTestService(t, opts) }()
	var e2 *testEnv
	select {
	case e2 = <-started:
	case <-time.After(30 * time.Second):
		t.Fatalf("Start hangs on the dead letters of the checkpoint")
	}
	js2, err := jetstream.New(e2.nc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js2.CreateOrUpdateStream(context.Background(), dlqCfg); err != nil {
		t.Fatal(err)
	}
	checkFor(t, 60*time.Second, 50*time.Millisecond, func() error {
		st, err := js2.Stream(context.Background(), DLQStream)
		if err != nil {
			return err
		}
		if got := st.CachedInfo().State.Msgs; got != n {
			return fmt.Errorf("%d dead letters stored; want %d", got, n)
		}
		return nil
	})
	st := balanced(t, e2)
	if num(t, st, "rejected.bad_json") != n || num(t, st, "received") != n {
		t.Fatalf("unexpected counts: %v", st)
	}
}

// A stream made by an earlier bidpulse (limits retention with a 26 h max
// age: an archive of a day of traffic) is migrated at start to the buffer's
// settings, keeping its messages.
func TestStreamRetentionMigrated(t *testing.T) {
	srv := startExternalNATS(t, -1, t.TempDir())
	t.Cleanup(srv.Shutdown)
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateStream(context.Background(), jetstream.StreamConfig{
		Name: "BIDPULSE_EVENTS", Subjects: []string{"bidpulse.events.>"}, Storage: jetstream.FileStorage,
		Retention: jetstream.LimitsPolicy, Discard: jetstream.DiscardNew, MaxAge: 26 * time.Hour, MaxBytes: 8 << 30,
	}); err != nil {
		t.Fatal(err)
	}
	jsPublish(t, nc, "old", keyedPayloads("old", 3, 10, 1, 1, testNow, map[string][2]int{}))
	e := startTestService(t, func(o *Options) { o.NATSURL = srv.ClientURL() })
	waitCounted(t, e, 30)
	st, err := js.Stream(context.Background(), "BIDPULSE_EVENTS")
	if err != nil {
		t.Fatal(err)
	}
	if cfg := st.CachedInfo().Config; cfg.MaxAge != 0 || cfg.Discard != jetstream.DiscardNew || cfg.Retention != jetstream.LimitsPolicy {
		t.Fatalf("stream not migrated: max age %s, discard %s, retention %s", cfg.MaxAge, cfg.Discard, cfg.Retention)
	}
}

// Without checkpoints kept in NATS the stream is trimmed up to the local
// checkpoint: it still buffers instead of filling up.
func TestStreamTrimmedWithoutRemoteCheckpoints(t *testing.T) {
	e := startTestService(t, func(o *Options) {
		o.RemoteCheckpointInterval = -1
		o.CheckpointInterval = 50 * time.Millisecond
	})
	jsPublish(t, e.nc, "n", keyedPayloads("n", 20, 10, 1, 1, testNow, map[string][2]int{}))
	waitCounted(t, e, 200)
	checkFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		st := e.getJSON(t, "/v1/stats", 200)
		if num(t, st, "stream.trims") == 0 || num(t, st, "buffer.messages") != 0 {
			return fmt.Errorf("stream not trimmed: %v", st["stream"])
		}
		return nil
	})
}

// deleteDLQ deletes the DLQ stream (no stream answers dead letters until it
// is created again with the config returned).
func deleteDLQ(t *testing.T, e *testEnv) (jetstream.JetStream, jetstream.StreamConfig) {
	t.Helper()
	js, err := jetstream.New(e.nc)
	if err != nil {
		t.Fatal(err)
	}
	dlq, err := js.Stream(context.Background(), DLQStream)
	if err != nil {
		t.Fatal(err)
	}
	cfg := dlq.CachedInfo().Config
	if err := js.DeleteStream(context.Background(), DLQStream); err != nil {
		t.Fatal(err)
	}
	return js, cfg
}
