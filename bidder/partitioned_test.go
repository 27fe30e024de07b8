package bidder

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/bidpulse/bidpulse/bidder/event"
	"github.com/bidpulse/bidpulse/bidder/ingest"
	"github.com/bidpulse/bidpulse/bidder/partition"
)

// jsPublishTo publishes each payload to its subject with an acknowledged
// JetStream publish (Nats-Msg-Id = idPrefix and the index).
func jsPublishTo(t *testing.T, nc *nats.Conn, idPrefix string, subjects []string, payloads [][]byte) {
	t.Helper()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	for i, p := range payloads {
		m := &nats.Msg{Subject: subjects[i], Data: p, Header: nats.Header{}}
		m.Header.Set(jetstream.MsgIDHeader, fmt.Sprintf("%s-%d", idPrefix, i))
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err := js.PublishMsg(ctx, m)
		cancel()
		if err != nil {
			t.Fatalf("cannot publish to %s: %v", subjects[i], err)
		}
	}
}

// partitionedTraffic returns, for campaigns c0..c(n-1), two messages per
// campaign on bidpulse.events.<campaign>.t (a batch of 3 impressions and 1
// click, then a lone impression), and the impressions and clicks sent per
// campaign.
func partitionedTraffic(prefix string, n int) (subjects []string, payloads [][]byte, want map[string][2]int) {
	want = map[string][2]int{}
	for c := 0; c < n; c++ {
		camp := "c" + strconv.Itoa(c)
		subj := "bidpulse.events." + camp + ".t"
		id := func(k int) string { return fmt.Sprintf("%s-%s-%d", prefix, camp, k) }
		batch := "[" + ev(id(0), "impression", testNow-60_000, camp, "", "p1") + "," +
			ev(id(1), "impression", testNow-60_000, camp, "", "p2") + "," +
			ev(id(2), "impression", testNow-60_000, camp, "", "p1") + "," +
			ev(id(3), "click", testNow-60_000, camp, "", "p1") + "]"
		subjects = append(subjects, subj, subj)
		payloads = append(payloads, []byte(batch), []byte(ev(id(4), "impression", testNow-30_000, camp, "", "p2")))
		want[camp] = [2]int{4, 1}
	}
	return subjects, payloads, want
}

// checkCampaignCounts compares each campaign's 1h impressions and clicks in
// /v1/rates with want.
func checkCampaignCounts(t *testing.T, e *testEnv, want map[string][2]int) {
	t.Helper()
	for camp, w := range want {
		m := e.getJSON(t, "/v1/rates?campaign="+camp, 200)
		if got := num(t, m, "windows.1h.impressions"); got != float64(w[0]) {
			t.Fatalf("unexpected impressions of %s; got %v; want %d", camp, got, w[0])
		}
		if got := num(t, m, "windows.1h.clicks"); got != float64(w[1]) {
			t.Fatalf("unexpected clicks of %s; got %v; want %d", camp, got, w[1])
		}
	}
}

func TestPartitionedIngestCountsEveryPartitionOnce(t *testing.T) {
	const p = 8
	dir := t.TempDir()
	opts := func(o *Options) { o.DataDir = dir; o.Partitions = p }
	e := startTestService(t, opts)
	if e.svc.Mode() != "jetstream" {
		t.Fatalf("unexpected mode %q; want jetstream", e.svc.Mode())
	}
	subjects, payloads, want := partitionedTraffic("a", 50)
	jsPublishTo(t, e.nc, "a", subjects, payloads)
	waitCounted(t, e, 250)
	checkCampaignCounts(t, e, want)
	st := balanced(t, e)
	if got := num(t, st, "stream.applied_seq"); got != 100 {
		t.Fatalf("unexpected applied_seq; got %v; want 100", got)
	}

	// Each stored subject starts with its campaign's partition, and the
	// campaigns cover several partitions.
	js, _ := jetstream.New(e.nc)
	stream, err := js.Stream(context.Background(), "BIDPULSE_EVENTS")
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for seq := uint64(1); seq <= 100; seq++ {
		m, err := stream.GetMsg(context.Background(), seq)
		if err != nil {
			t.Fatalf("cannot read message %d: %v", seq, err)
		}
		camp := strings.Split(subjects[seq-1], ".")[2]
		wantSubj := strconv.Itoa(int(partition.OfString(p, camp))) + "." + subjects[seq-1]
		if m.Subject != wantSubj {
			t.Fatalf("unexpected stored subject of message %d; got %q; want %q", seq, m.Subject, wantSubj)
		}
		seen[strings.SplitN(m.Subject, ".", 2)[0]] = true
	}
	if len(seen) < 2 {
		t.Fatalf("BUG: the campaigns fall in %d partition(s); the test needs several", len(seen))
	}

	// A restart with the same data dir and partitions restores the
	// checkpoint and goes on: no count changes, new events count once.
	e.nc.Close()
	if err := e.svc.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	e2 := startTestService(t, opts)
	st = balanced(t, e2)
	if st["checkpoint"].(map[string]any)["loaded"] != true || num(t, st, "counted") != 250 || num(t, st, "replay.start_seq") != 101 {
		t.Fatalf("restart did not restore the checkpoint: %v", st)
	}
	checkCampaignCounts(t, e2, want)
	subjects2, payloads2, want2 := partitionedTraffic("b", 50)
	jsPublishTo(t, e2.nc, "b", subjects2, payloads2)
	waitCounted(t, e2, 500)
	for camp, w := range want2 {
		want[camp] = [2]int{want[camp][0] + w[0], want[camp][1] + w[1]}
	}
	checkCampaignCounts(t, e2, want)
	balanced(t, e2)
}

func TestPartitionedReplayWithoutCheckpoint(t *testing.T) {
	// Killed before any checkpoint: the restart replays the whole stream,
	// every partition, from the first sequence.
	dir := t.TempDir()
	e := startTestService(t, func(o *Options) { o.DataDir = dir; o.Partitions = 4; o.noFinalCheckpoint = true })
	subjects, payloads, want := partitionedTraffic("r", 20)
	jsPublishTo(t, e.nc, "r", subjects, payloads)
	waitCounted(t, e, 100)
	e.nc.Close()
	e.svc.Stop(context.Background())

	e2 := startTestService(t, func(o *Options) { o.DataDir = dir; o.Partitions = 4 })
	waitCounted(t, e2, 100)
	checkCampaignCounts(t, e2, want)
	st := balanced(t, e2)
	if st["checkpoint"].(map[string]any)["loaded"] == true || num(t, st, "stream.applied_seq") != 40 {
		t.Fatalf("unexpected replay: %v", st)
	}
}

func TestPartitionedWrongCampaignDeadLettered(t *testing.T) {
	e := startTestService(t, func(o *Options) { o.Partitions = 8 })
	batch := "[" + ev("w1", "impression", testNow, "c1", "", "p1") + "," +
		ev("w2", "impression", testNow, "c2", "", "p1") + "]"
	jsPublishTo(t, e.nc, "w", []string{"bidpulse.events.c1.t"}, [][]byte{[]byte(batch)})
	e.waitReceived(t, 2)
	st := balanced(t, e)
	if num(t, st, "counted") != 1 || num(t, st, "rejected.wrong_partition") != 1 || num(t, st, "rejected_total") != 1 {
		t.Fatalf("unexpected outcomes; want c1 counted, c2 rejected wrong_partition: %v", st)
	}
	if got := num(t, e.getJSON(t, "/v1/rates?campaign=c2", 200), "windows.1h.impressions"); got != 0 {
		t.Fatalf("unexpected impressions of c2; got %v; want 0 (never applied)", got)
	}
	if got := num(t, e.getJSON(t, "/v1/rates?campaign=c1", 200), "windows.1h.impressions"); got != 1 {
		t.Fatalf("unexpected impressions of c1; got %v; want 1", got)
	}
	js, _ := jetstream.New(e.nc)
	dlq, err := js.Stream(context.Background(), DLQStream)
	if err != nil {
		t.Fatal(err)
	}
	var letter *jetstream.RawStreamMsg
	checkFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		letter, err = dlq.GetMsg(context.Background(), 1)
		return err
	})
	if got := letter.Header.Get(ingest.RejectHeader); got != "wrong_partition" {
		t.Fatalf("unexpected reason of the dead letter; got %q; want wrong_partition", got)
	}
	// The letter names the subject the producer published to (so `bidpulse
	// dlq replay` can publish there again), and the event as read.
	if got := letter.Header.Get(ingest.SubjectHeader); got != "bidpulse.events.c1.t" {
		t.Fatalf("unexpected subject of the dead letter; got %q; want bidpulse.events.c1.t", got)
	}
	if !strings.Contains(string(letter.Data), `"id":"w2"`) || !strings.Contains(string(letter.Data), `"campaign":"c2"`) {
		t.Fatalf("unexpected body of the dead letter: %s", letter.Data)
	}
	_, b := e.do(t, "GET", "/metrics", "", "")
	if !strings.Contains(string(b), `bidpulse_ingest_events_total{outcome="rejected",reason="wrong_partition"} 1`) {
		t.Fatal("no wrong_partition rejection in /metrics")
	}
	// The short subject <base>.<campaign> has no stream: the producer is told.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := js.Publish(ctx, "bidpulse.events.c1", []byte(ev("w3", "impression", testNow, "c1", "", ""))); err == nil {
		t.Fatal("a JetStream publish to bidpulse.events.c1 was acknowledged; want no stream")
	}
}

// startErr starts a service with o's data dir and partitions and returns
// Start's error (nil: it started, and is stopped).
func startErr(t *testing.T, edit func(o *Options)) error {
	t.Helper()
	o := Options{HTTPAddr: "127.0.0.1:0", NATSAddr: "127.0.0.1:-1", Instance: "test",
		DedupSize: 32 << 20, Logger: testLogger(t), Clock: NewManualClock(testNow)}
	edit(&o)
	s, err := New(o)
	if err != nil {
		return err
	}
	if err := s.Start(); err != nil {
		return err
	}
	return s.Stop(context.Background())
}

func TestPartitionsFixedAtStreamCreation(t *testing.T) {
	dir := t.TempDir()
	e := startTestService(t, func(o *Options) { o.DataDir = dir; o.Partitions = 8 })
	subjects, payloads, _ := partitionedTraffic("f", 5)
	jsPublishTo(t, e.nc, "f", subjects, payloads)
	waitCounted(t, e, 25)
	e.nc.Close()
	if err := e.svc.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	refused := func(p uint32, want ...string) {
		t.Helper()
		err := startErr(t, func(o *Options) { o.DataDir = dir; o.Partitions = p })
		if err == nil {
			t.Fatalf("start with partitions %d over a stream made with 8 succeeded; want refused", p)
		}
		for _, w := range append(want, "BIDPULSE_EVENTS", "another --stream name", "delete stream") {
			if !strings.Contains(err.Error(), w) {
				t.Fatalf("unexpected error with partitions %d; got %q; want it to say %q", p, err, w)
			}
		}
	}
	refused(16, "fixed when the stream is created", "partition(8,1)")
	refused(0, "--partitions is 0")
	// The stream was left as it was: the same P starts and counts the same.
	e2 := startTestService(t, func(o *Options) { o.DataDir = dir; o.Partitions = 8 })
	if st := balanced(t, e2); num(t, st, "counted") != 25 {
		t.Fatalf("unexpected counted after refused starts; got %v; want 25", st["counted"])
	}
	e2.nc.Close()
	if err := e2.svc.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}

	// A stream made without partitions refuses them.
	plain := t.TempDir()
	if err := startErr(t, func(o *Options) { o.DataDir = plain }); err != nil {
		t.Fatal(err)
	}
	err := startErr(t, func(o *Options) { o.DataDir = plain; o.Partitions = 4 })
	if err == nil || !strings.Contains(err.Error(), "exists without partitions") || !strings.Contains(err.Error(), "delete stream") {
		t.Fatalf("unexpected error with partitions over a stream made without; got %v", err)
	}
}

func TestPartitionsRefusedWithoutJetStreamOrWildcard(t *testing.T) {
	f := func(edit func(o *Options), want string) {
		t.Helper()
		err := startErr(t, func(o *Options) { o.DataDir = t.TempDir(); o.Partitions = 8; edit(o) })
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("unexpected error; got %v; want one saying %q", err, want)
		}
	}
	f(func(o *Options) { o.JetStream = JetStreamFalse }, "partitions need JetStream")
	f(func(o *Options) { o.Subject = "bidpulse.events.*" }, `must end in ".>"`)
	f(func(o *Options) { o.Subject = "bidpulse.*.events.>" }, "not a literal subject token")
	f(func(o *Options) { o.Partitions = 1 << 31 }, "want 1..")

	// An external server without JetStream, with --jetstream auto.
	srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, NoSigs: true, NoLog: true})
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	t.Cleanup(srv.Shutdown)
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("NATS server not ready")
	}
	f(func(o *Options) { o.NATSURL = srv.ClientURL() }, "needs JetStream")
}

func TestPartitionCheckAllocations(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under -race; `make test` runs this test without -race too")
	}
	svc, err := New(Options{Clock: NewManualClock(testNow), Logger: testLogger(t), DedupSize: 32 << 20, Partitions: 8})
	if err != nil {
		t.Fatal(err)
	}
	subject := strconv.Itoa(int(partition.OfString(8, "c1"))) + ".bidpulse.events.c1.t"
	for i := 0; i < 50; i++ {
		svc.ingest.ApplyOn(subject, batchPayload(fmt.Sprintf("warm%d", i), 100, 10), testNow)
	}
	payloads := make([][]byte, 50)
	for i := range payloads {
		payloads[i] = batchPayload(fmt.Sprintf("b%d", i), 100, 10)
	}
	i := 0
	allocs := testing.AllocsPerRun(len(payloads)-1, func() {
		svc.ingest.ApplyOn(subject, payloads[i], testNow)
		i++
	})
	// The subject's parse and the campaign check of every event allocate
	// nothing.
	if allocs != 0 {
		t.Fatalf("unexpected allocations per partitioned message of 110 events; got %v; want 0", allocs)
	}
	st := svc.ingest.Stats()
	if got, want := st.Counted.Get(), uint64(110*(50+len(payloads))); got != want || st.RejectedTotal() != 0 {
		t.Fatalf("unexpected outcomes; got %d counted, %d rejected; want %d counted, none rejected", got, st.RejectedTotal(), want)
	}
	// The same events under c2's subject, or a subject naming the wrong
	// partition for c1, are all rejected.
	c2 := strconv.Itoa(int(partition.OfString(8, "c2"))) + ".bidpulse.events.c2.t"
	wrongP := strconv.Itoa(int(partition.OfString(8, "c1")+1)%8) + ".bidpulse.events.c1.t"
	for _, subj := range []string{c2, wrongP, "bidpulse.events.c1.t"} {
		before := st.Rejected[event.WrongPartition].Get()
		svc.ingest.ApplyOn(subj, batchPayload("x-"+subj, 10, 2), testNow)
		if got := st.Rejected[event.WrongPartition].Get() - before; got != 11 {
			t.Fatalf("unexpected wrong_partition rejections under %s; got %d; want 11", subj, got)
		}
	}
}
