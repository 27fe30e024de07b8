package ingest

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/bidpulse/bidpulse/bidder/partition"
	"github.com/bidpulse/bidpulse/windows"
)

type fixedClock struct{}

func (fixedClock) NowMs() int64 { return 1767323045000 }

// gapTestMsg is a delivered message: only what handle reads.
type gapTestMsg struct {
	jetstream.Msg
	reply, subject string
	data           []byte
}

func (m *gapTestMsg) Reply() string        { return m.reply }
func (m *gapTestMsg) Subject() string      { return m.subject }
func (m *gapTestMsg) Data() []byte         { return m.data }
func (m *gapTestMsg) Headers() nats.Header { return nil }
func (m *gapTestMsg) Ack() error           { return nil }
func (m *gapTestMsg) InProgress() error    { return nil }

func gapTestIngest(t *testing.T, js jetstream.JetStream, one bool, p uint32) *jsIngest {
	rollups, err := windows.ParseRollups([]string{"campaign"})
	if err != nil {
		t.Fatal(err)
	}
	store, err := windows.NewStore(windows.Config{MaxKeys: 1000})
	if err != nil {
		t.Fatal(err)
	}
	in := New(Options{Store: store, Rollups: rollups, Clock: fixedClock{}, Log: zerolog.Nop(), Metrics: metrics.NewSet(), DedupSize: 1 << 20,
		Subject: "bidpulse.events.>", Stream: "BIDPULSE_EVENTS", Partitions: 8, OnePartition: one, Partition: p,
		StreamMaxBytes: 1 << 30, DLQMaxBytes: 1 << 20})
	j := &jsIngest{ing: in, js: js, name: "x", restart: make(chan string, 1)}
	if err := j.ensureStreams(context.Background()); err != nil {
		t.Fatal(err)
	}
	return j
}

// TestOnePartitionFirstDeliveryDropped: a unit restarted from a checkpoint
// at seq 1 (or a consumer re-created after a gap) gets its first delivery
// dropped on the way (consumer seq 1 = stream seq 2, still held): the next
// delivery (consumer seq 2 = stream seq 3) must be seen as a gap, as it is
// without OnePartition, and not applied over the missing message.
func TestOnePartitionFirstDeliveryDropped(t *testing.T) {
	for _, one := range []bool{false, true} {
		t.Run("OnePartition="+strconv.FormatBool(one), func(t *testing.T) {
			nc := partServer(t)
			js, _ := jetstream.New(nc)
			ctx := context.Background()
			p := partition.OfString(8, "c1")
			j := gapTestIngest(t, js, one, p)
			for range 3 {
				if _, err := js.Publish(ctx, "bidpulse.events.c1.t", []byte(`[]`)); err != nil {
					t.Fatal(err)
				}
			}
			stored := strconv.FormatUint(uint64(p), 10) + ".bidpulse.events.c1.t"
			j.applied.Store(1) // restored from a checkpoint of seq 1
			// consumer seq 1 (stream seq 2) was dropped on the way; deliver consumer seq 2 = stream seq 3
			reply := "$JS.ACK.BIDPULSE_EVENTS.x.1.3.2." + strconv.FormatInt(time.Now().UnixNano(), 10) + ".0"
			j.handle(&gapTestMsg{reply: reply, subject: stored, data: []byte(`[]`)}, j.gen.Load())
			if got := j.applied.Load(); got != 1 {
				t.Fatalf("applied seq %d after a delivery that skipped stream seq 2 (still held); want 1 and a consumer restart (delivery gaps %d)",
					got, j.ing.stats.DeliveryGaps.Get())
			}
			t.Logf("gap detected: delivery gaps %d, restart queued %d", j.ing.stats.DeliveryGaps.Get(), len(j.restart))
		})
	}
}
