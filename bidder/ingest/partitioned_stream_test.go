package ingest

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/bidpulse/bidpulse/bidder/partition"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// infoTimesOut answers Stream (the stream-info request) with a timeout, as a
// JetStream API request does before a cluster has a meta leader; every
// other request goes to the real server.
type infoTimesOut struct{ jetstream.JetStream }

func (infoTimesOut) Stream(context.Context, string) (jetstream.Stream, error) {
	return nil, context.DeadlineExceeded
}

func partServer(t *testing.T) *nats.Conn {
	srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoSigs: true, NoLog: true})
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	t.Cleanup(srv.Shutdown)
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("not ready")
	}
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

func partIngest(t *testing.T, js jetstream.JetStream, p uint32) *jsIngest {
	in := New(Options{Log: zerolog.Nop(), Metrics: metrics.NewSet(), DedupSize: 1 << 20,
		Subject: "bidpulse.events.>", Stream: "BIDPULSE_EVENTS", Partitions: p, StreamMaxBytes: 1 << 30, DLQMaxBytes: 1 << 20})
	return &jsIngest{ing: in, js: js, name: "x"}
}

// TestPartitionsNotRewrittenWhenInfoFails: a start with --partitions 0 over
// a stream created with 8 must be refused,
// and the stream left as it was, even when the stream-info look-up fails.
func TestPartitionsNotRewrittenWhenInfoFails(t *testing.T) {
	nc := partServer(t)
	js, _ := jetstream.New(nc)
	ctx := context.Background()
	if err := partIngest(t, js, 8).ensureStreams(ctx); err != nil {
		t.Fatal(err)
	}
	if err := partIngest(t, js, 0).ensureStreams(ctx); err == nil {
		t.Fatal("P=0 over a P=8 stream started")
	}
	err := partIngest(t, infoTimesOut{js}, 0).ensureStreams(ctx)
	st, _ := js.Stream(ctx, "BIDPULSE_EVENTS")
	cfg := st.CachedInfo().Config
	if err == nil || cfg.SubjectTransform == nil {
		t.Fatalf("P=0 over a P=8 stream: err %v; the stream is now subjects %v transform %v (rewritten: no partitions)", err, cfg.Subjects, cfg.SubjectTransform)
	}
}

// TestClassifyGapPartitioned checks the gap look-up on a partitioned stream:
// messages deleted from it are lost, messages it still holds are not.
func TestClassifyGapPartitioned(t *testing.T) {
	nc := partServer(t)
	js, _ := jetstream.New(nc)
	ctx := context.Background()
	j := partIngest(t, js, 8)
	if err := j.ensureStreams(ctx); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 6; i++ {
		if _, err := js.Publish(ctx, "bidpulse.events.c"+string(rune('0'+i))+".t", []byte("{}")); err != nil {
			t.Fatal(err)
		}
	}
	if err := j.stream.DeleteMsg(ctx, 2); err != nil {
		t.Fatal(err)
	}
	if err := j.stream.DeleteMsg(ctx, 3); err != nil {
		t.Fatal(err)
	}
	if lost, held := j.classifyGap(2, 3); lost != 2 || held {
		t.Fatalf("gap 2..3 deleted: lost %d held %v; want 2 false", lost, held)
	}
	if lost, held := j.classifyGap(4, 5); lost != 0 || !held {
		t.Fatalf("gap 4..5 held: lost %d held %v; want 0 true", lost, held)
	}
}

// TestSetSubjectStripsPartition checks that the dead letters of a message
// name the subject as published, without the partition token, also when
// its campaign is refused (every event of it is then rejected).
func TestSetSubjectStripsPartition(t *testing.T) {
	in := New(Options{Log: zerolog.Nop(), Metrics: metrics.NewSet(), DedupSize: 1 << 20,
		Subject: "bidpulse.events.>", Stream: "BIDPULSE_EVENTS", Partitions: 8, StreamMaxBytes: 1 << 30, DLQMaxBytes: 1 << 20})
	a := in.applier
	f := func(stored, subject, campaign string) {
		t.Helper()
		a.setSubject(stored)
		if a.subject != subject || a.campaign != campaign {
			t.Fatalf("setSubject(%q): subject %q, campaign %q; want %q, %q", stored, a.subject, a.campaign, subject, campaign)
		}
	}
	p := strconv.FormatUint(uint64(partition.OfString(8, "c1")), 10)
	f(p+".bidpulse.events.c1.t", "bidpulse.events.c1.t", "c1")
	f("3.bidpulse.events.c\x00.t", "bidpulse.events.c\x00.t", "") // campaign refused
	f("9.bidpulse.events.c1.t", "bidpulse.events.c1.t", "")       // p >= P
	f("other.subject", "other.subject", "")                       // no partition token
	f("12x.bidpulse.events.c1.t", "12x.bidpulse.events.c1.t", "") // not a partition token
}
