package bidder

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// Backlog shape: a tracker flushing big batches, 4,000 and 10,000 events
// per message (0.6 to 2 MB each), 120 of them in all.
const (
	backlogMsgs      = 120
	backlogSmall     = 4_000
	backlogLarge     = 10_000
	backlogEvents    = backlogMsgs/2*backlogSmall + backlogMsgs/2*backlogLarge
	backlogCampaigns = 5
)

// startBigNATS starts a nats-server with JetStream on a random loopback
// port, its store in storeDir, accepting messages of 8 MiB as the embedded
// server does. Its warnings and errors (a slow consumer, say) go to the test
// log.
func startBigNATS(t *testing.T, name, storeDir string) *server.Server {
	t.Helper()
	srv, err := server.NewServer(&server.Options{
		ServerName: name,
		Host:       "127.0.0.1",
		Port:       -1,
		JetStream:  true,
		StoreDir:   storeDir,
		NoSigs:     true,
		MaxPayload: 8 << 20,
	})
	if err != nil {
		t.Fatalf("cannot create NATS server: %v", err)
	}
	log := zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)
	srv.SetLoggerV2(slowConsumerLogger{natsLogger{log: log.With().Str("component", "nats-server "+name).Logger()}}, false, false, false)
	srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		srv.Shutdown()
		t.Fatalf("NATS server %s not ready after 10s", name)
	}
	t.Cleanup(func() {
		srv.Shutdown()
		srv.WaitForShutdown()
	})
	return srv
}

// slowConsumerLogger is natsLogger with the server's notices of a slow
// consumer ("Slow Consumer Detected: MaxPending of ... Exceeded") raised to
// warnings: natsLogger logs notices at debug level, where they are hidden.
type slowConsumerLogger struct{ natsLogger }

func (l slowConsumerLogger) Noticef(format string, v ...any) {
	if msg := fmt.Sprintf(format, v...); strings.Contains(msg, "Slow Consumer") {
		l.log.Warn().Msg(msg)
	}
}

// appendBacklogBatch appends message i of the backlog to dst: a JSON array
// of size events, ~150-200 bytes each, with ids unique over the backlog,
// event times in the ten minutes before testNow, spread over
// backlogCampaigns campaigns.
func appendBacklogBatch(dst []byte, prefix string, i, size int) []byte {
	dst = append(dst, '[')
	for j := 0; j < size; j++ {
		if j > 0 {
			dst = append(dst, ',')
		}
		k := i*backlogLarge + j
		typ := "impression"
		if k%5 == 4 {
			typ = "click"
		}
		dst = append(dst, `{"id":"`...)
		dst = append(dst, prefix...)
		dst = append(dst, '-')
		dst = strconv.AppendInt(dst, int64(i), 10)
		dst = append(dst, '-')
		dst = strconv.AppendInt(dst, int64(j), 10)
		dst = append(dst, `","type":"`...)
		dst = append(dst, typ...)
		dst = append(dst, `","ts":`...)
		dst = strconv.AppendInt(dst, testNow-int64(k%600_000), 10)
		dst = append(dst, `,"campaign":"campaign-`...)
		dst = strconv.AppendInt(dst, int64(k%backlogCampaigns), 10)
		dst = append(dst, `","creative":"creative-`...)
		dst = strconv.AppendInt(dst, int64(k%7), 10)
		dst = append(dst, `","placement":"placement-`...)
		dst = strconv.AppendInt(dst, int64(k%3), 10)
		dst = append(dst, `","device":"mobile","country":"FR","cost":0.0125}`...)
	}
	return append(dst, ']')
}

// publishBacklog publishes the backlog with acknowledged JetStream
// publishes (Nats-Msg-Id set), one message built at a time, and returns
// the events published and the stream sequence of the last message.
func publishBacklog(t *testing.T, url, prefix string) (events int, lastSeq uint64) {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatalf("cannot connect the publisher to %s: %v", url, err)
	}
	defer nc.Close()
	if mp := nc.MaxPayload(); mp < 8<<20 {
		t.Fatalf("unexpected server max payload; got %d; want at least %d", mp, 8<<20)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatalf("cannot use JetStream: %v", err)
	}
	var buf []byte
	var bytes int
	for i := 0; i < backlogMsgs; i++ {
		size := backlogSmall
		if i%2 == 1 {
			size = backlogLarge
		}
		buf = appendBacklogBatch(buf[:0], prefix, i, size)
		if i < 2 && (len(buf)/size < 150 || len(buf)/size > 200) {
			t.Fatalf("BUG: backlog events average %d bytes; want 150-200", len(buf)/size)
		}
		m := &nats.Msg{Subject: "bidpulse.events.test", Data: buf, Header: nats.Header{}}
		m.Header.Set(jetstream.MsgIDHeader, prefix+"-"+strconv.Itoa(i))
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		ack, err := js.PublishMsg(ctx, m)
		cancel()
		if err != nil {
			t.Fatalf("cannot publish backlog message %d (%d bytes): %v", i, len(buf), err)
		}
		if ack.Duplicate {
			t.Fatalf("BUG: backlog message %d taken for a duplicate", i)
		}
		events += size
		bytes += len(buf)
		lastSeq = ack.Sequence
	}
	t.Logf("published a backlog of %d messages, %d events, %.1f MB, last sequence %d", backlogMsgs, events, float64(bytes)/1e6, lastSeq)
	return events, lastSeq
}

// TestLargeBatchBacklogDrainsExactly stops the service, lets a backlog of
// big batch messages (~840,000 events, ~150 MB) build up in the stream,
// restarts it and checks every event is counted exactly once: catching up
// must not fetch so much at once that the server cuts the connection as a
// slow consumer, which leaves a sequence gap read as messages lost.
func TestLargeBatchBacklogDrainsExactly(t *testing.T) {
	if testing.Short() {
		t.Skip("publishes and replays ~150 MB of events; skipped with -short")
	}
	if backlogEvents != 840_000 {
		t.Fatalf("BUG: backlog of %d events; want 840000", backlogEvents)
	}
	// f runs the scenario. backlog is called with the service stopped and
	// returns the events published and the last message's sequence; slow
	// reads the slow consumers the server has seen.
	f := func(t *testing.T, opts func(o *Options), backlog func() (int, uint64), slow func(e *testEnv) uint64) {
		t.Helper()
		e := startTestService(t, opts)
		if e.svc.Mode() != "jetstream" {
			t.Fatalf("unexpected mode %q; want jetstream", e.svc.Mode())
		}
		want := map[string][2]int{}
		jsPublish(t, e.nc, "warm", keyedPayloads("warm", 5, 100, backlogCampaigns, 2, testNow-60_000, want))
		waitCounted(t, e, 500)
		e.nc.Close()
		if err := e.svc.Stop(context.Background()); err != nil {
			t.Fatalf("unexpected error on stop: %v", err)
		}
		if _, err := os.Stat(e.svc.checkpointPath()); err != nil {
			t.Fatalf("no checkpoint after Stop: %v", err)
		}

		t0 := time.Now()
		events, lastSeq := backlog()
		t.Logf("backlog published in %s", time.Since(t0).Round(time.Millisecond))
		total := uint64(500 + events)

		t0 = time.Now()
		e2 := startTestService(t, opts)
		if got := e2.svc.ingest.Stats().Counted.Get(); got != 500 {
			t.Fatalf("unexpected counted after restart (checkpoint not loaded?); got %d; want 500", got)
		}
		// Wait until every event is received, or until the consumer has
		// applied the last message: whatever is missing then was skipped
		// for good.
		checkFor(t, 3*time.Minute, 50*time.Millisecond, func() error {
			got, applied := e2.svc.ingest.Stats().Received.Get(), e2.svc.ingest.Applied()
			if got == total || applied >= lastSeq {
				return nil
			}
			return fmt.Errorf("received %d events of %d; applied sequence %d of %d; lost messages %d",
				got, total, applied, lastSeq, e2.svc.ingest.Stats().StreamGap.Get())
		})
		t.Logf("backlog drained in %s; server slow consumers: %d", time.Since(t0).Round(time.Millisecond), slow(e2))
		st := balanced(t, e2)
		if got := num(t, st, "stream.lost_messages"); got != 0 {
			t.Errorf("unexpected lost_messages; got %v; want 0", got)
		}
		if got := num(t, st, "duplicates"); got != 0 {
			t.Errorf("unexpected duplicates; got %v; want 0", got)
		}
		if got := num(t, st, "counted"); got != float64(total) {
			t.Errorf("unexpected counted; got %v; want %d (%d short)", got, total, int64(total)-int64(got))
		}
		if got := num(t, st, "stream.applied_seq"); got != float64(lastSeq) {
			t.Errorf("unexpected applied_seq; got %v; want %d", got, lastSeq)
		}
		if t.Failed() {
			t.Logf("stats: %v", st)
		}
	}

	t.Run("embedded", func(t *testing.T) {
		dir := t.TempDir()
		opts := func(o *Options) { o.DataDir = dir }
		// The embedded server stops with the service. The backlog is
		// published to a server of its own on the same store, shut down
		// before the restart: the restarted embedded server finds it there.
		backlog := func() (int, uint64) {
			srv := startBigNATS(t, "test", filepath.Join(dir, "nats"))
			defer func() {
				srv.Shutdown()
				srv.WaitForShutdown()
			}()
			return publishBacklog(t, srv.ClientURL(), "bl")
		}
		f(t, opts, backlog, func(e *testEnv) uint64 { return e.svc.natsSrv.NumSlowConsumersClients() })
	})

	t.Run("external", func(t *testing.T) {
		srv := startBigNATS(t, "external", t.TempDir())
		dir := t.TempDir()
		opts := func(o *Options) { o.DataDir = dir; o.NATSURL = srv.ClientURL() }
		backlog := func() (int, uint64) { return publishBacklog(t, srv.ClientURL(), "bl") }
		f(t, opts, backlog, func(*testEnv) uint64 { return srv.NumSlowConsumersClients() })
	})
}
