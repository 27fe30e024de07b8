package bidder

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// fillKeys applies events until the store holds about keys live keys: each
// (campaign, creative, placement) cell adds 4 keys by default (the campaign
// and creative keys are shared by 100 cells).
func fillKeys(tb testing.TB, svc *Service, keys int) {
	tb.Helper()
	cells := keys / 2
	buf := make([]byte, 0, 64<<10)
	for i := 0; i < cells; {
		buf = append(buf[:0], '[')
		for j := 0; j < 100 && i < cells; j++ {
			if j > 0 {
				buf = append(buf, ',')
			}
			buf = appendCellEvent(buf, "fill", i, i)
			i++
		}
		buf = append(buf, ']')
		svc.ingest.Apply(buf, testNow)
	}
	if n := svc.store.Len(); n < keys*9/10 {
		tb.Fatalf("BUG: filled %d keys; want about %d", n, keys)
	}
}

// appendCellEvent appends an impression with a unique id in cell cell of
// a grid of 100 creatives per campaign.
func appendCellEvent(b []byte, prefix string, id, cell int) []byte {
	b = append(b, `{"id":"`...)
	b = append(b, prefix...)
	b = strconv.AppendInt(b, int64(id), 36)
	b = append(b, `","type":"impression","ts":`...)
	b = strconv.AppendInt(b, testNow, 10)
	b = append(b, `,"campaign":"c`...)
	b = strconv.AppendInt(b, int64(cell/100), 10)
	b = append(b, `","creative":"cr`...)
	b = strconv.AppendInt(b, int64(cell%100/10), 10)
	b = append(b, `","placement":"site`...)
	b = strconv.AppendInt(b, int64(cell), 10)
	b = append(b, `.example/slot","device":"mobile","country":"FR","cost":0.0021}`...)
	return b
}

// benchPayloads builds n messages of size events each, with ids unique
// under prefix, on cells spread over the existing ones.
func benchPayloads(prefix string, n, size, cells int) [][]byte {
	out := make([][]byte, n)
	id := 0
	for i := range out {
		var b []byte
		if size > 1 {
			b = append(b, '[')
		}
		for j := 0; j < size; j++ {
			if j > 0 {
				b = append(b, ',')
			}
			b = appendCellEvent(b, prefix, id, (id*7919)%cells)
			id++
		}
		if size > 1 {
			b = append(b, ']')
		}
		out[i] = b
	}
	return out
}

// benchRun numbers benchmark runs, so ids stay new when -count repeats one
// on the same service.
var benchRun atomic.Int64

func newBenchService(b *testing.B, maxKeys int) *Service {
	b.Helper()
	svc, err := New(Options{Clock: NewManualClock(testNow), Logger: zerolog.Nop(), DedupSize: 256 << 20, MaxKeys: maxKeys})
	if err != nil {
		b.Fatal(err)
	}
	return svc
}

// BenchmarkIngestApply measures parse + validate + dedup + window writes
// (4 rollup keys per event) of new events on existing keys, by message
// size and live keys, in events/s on one core (the applier is one
// goroutine).
func BenchmarkIngestApply(b *testing.B) {
	for _, keys := range []int{10_000, 1_000_000} {
		if keys > 100_000 && testing.Short() {
			continue
		}
		svc := newBenchService(b, 2*keys)
		fillKeys(b, svc, keys)
		for _, size := range []int{1, 100} {
			const events = 100_000
			b.Run(fmt.Sprintf("keys=%d/batch=%d", keys, size), func(b *testing.B) {
				b.ReportAllocs()
				var applied time.Duration
				for i := 0; i < b.N; i++ {
					// Every iteration applies new ids (never duplicates, also
					// when -count repeats the benchmark on the same service).
					payloads := benchPayloads(fmt.Sprintf("%d-%d-%d-", size, i, benchRun.Add(1)), events/size, size, keys/2)
					runtime.GC()
					before := svc.ingest.Stats().Counted.Get()
					t0 := time.Now()
					for _, p := range payloads {
						svc.ingest.Apply(p, testNow)
					}
					applied += time.Since(t0)
					if got := svc.ingest.Stats().Counted.Get() - before; got != events {
						b.Fatalf("counted %d of %d events", got, events)
					}
				}
				b.ReportMetric(float64(b.N*events)/applied.Seconds(), "events/s")
				b.ReportMetric(float64(applied.Nanoseconds())/float64(b.N*events), "ns/event")
			})
		}
	}
}

// BenchmarkJetStreamConsume compares, for single-event messages from an
// embedded server, the raw consume rate of a consumer that does nothing
// with the rate of a bidpulse instance catching up with the same stream
// (pull consumer + parse + validate + dedup + window writes).
func BenchmarkJetStreamConsume(b *testing.B) {
	const msgs = 50_000
	e := startBenchService(b, nil)
	js, _ := jetstream.New(e.nc)
	for _, p := range benchPayloads("js", msgs, 1, 5000) {
		if _, err := js.PublishAsync("bidpulse.events.bench", p); err != nil {
			b.Fatal(err)
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(60 * time.Second):
		b.Fatal("publish not complete")
	}
	// events/s counts from the consumer's creation (bidpulse: from Start,
	// which also sets up its control plane); flowing-events/s from the
	// first message delivered to the last applied, the rate once messages
	// flow.
	var flowing time.Duration
	b.Run("raw", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			cons, err := js.CreateOrUpdateConsumer(context.Background(), "BIDPULSE_EVENTS", jetstream.ConsumerConfig{
				AckPolicy: jetstream.AckAllPolicy, DeliverPolicy: jetstream.DeliverAllPolicy,
			})
			if err != nil {
				b.Fatal(err)
			}
			done := make(chan struct{})
			n := 0
			var first time.Time
			cc, err := cons.Consume(func(m jetstream.Msg) {
				if n++; n == 1 {
					first = time.Now()
				}
				if n%1000 == 0 {
					m.Ack()
				}
				if n == msgs {
					flowing += time.Since(first)
					close(done)
				}
			}, jetstream.PullMaxMessages(1000))
			if err != nil {
				b.Fatal(err)
			}
			<-done
			cc.Stop()
		}
		b.ReportMetric(float64(b.N*msgs)/b.Elapsed().Seconds(), "events/s")
		b.ReportMetric(float64(b.N*msgs)/flowing.Seconds(), "flowing-events/s")
		flowing = 0
	})
	// "bidpulse" is the steady state: the keys the messages touch exist
	// (filled before the timer runs, with other ids). "bidpulse-cold"
	// starts from an empty store, so a fifth of its window writes create a
	// key (10 messages per cell).
	for _, warm := range []bool{true, false} {
		name := "bidpulse"
		if !warm {
			name = "bidpulse-cold"
		}
		b.Run(name, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				// Building the service (its memory) is not consuming: the
				// timer runs from Start, which creates the consumer.
				b.StopTimer()
				var first atomic.Int64
				svc, err := New(Options{
					HTTPAddr: "127.0.0.1:0", NATSURL: e.svc.NATSURL(), DataDir: b.TempDir(), Instance: fmt.Sprintf("bench-%s-%d-%d", name, b.N, i),
					DedupSize: 64 << 20, Logger: zerolog.Nop(), Clock: NewManualClock(testNow), CheckpointInterval: time.Hour,
					applyHook: func(uint64) {
						if first.Load() == 0 {
							first.Store(time.Now().UnixNano())
						}
					},
				})
				if err != nil {
					b.Fatal(err)
				}
				if warm {
					fillKeys(b, svc, 10_000)
					for _, c := range svc.ingest.Stats().Counters() {
						c.Set(0)
					}
				}
				b.StartTimer()
				if err := svc.Start(); err != nil {
					b.Fatal(err)
				}
				for svc.ingest.Stats().Counted.Get() < msgs {
					time.Sleep(100 * time.Microsecond)
				}
				flowing += time.Since(time.Unix(0, first.Load()))
				b.StopTimer()
				if got := svc.ingest.Stats().Received.Get(); got != msgs {
					b.Fatalf("received %d; want %d", got, msgs)
				}
				svc.opts.noFinalCheckpoint = true
				svc.Stop(context.Background())
				b.StartTimer()
			}
			b.ReportMetric(float64(b.N*msgs)/b.Elapsed().Seconds(), "events/s")
			b.ReportMetric(float64(b.N*msgs)/flowing.Seconds(), "flowing-events/s")
			flowing = 0
		})
	}
}

// startBenchService starts a JetStream-mode service on loopback for a
// benchmark.
func startBenchService(b *testing.B, edit func(o *Options)) *testEnv {
	b.Helper()
	clock := NewManualClock(testNow)
	o := Options{
		HTTPAddr: "127.0.0.1:0", NATSAddr: "127.0.0.1:-1", DataDir: b.TempDir(), Instance: "bench",
		DedupSize: 64 << 20, Logger: zerolog.Nop(), Clock: clock,
	}
	if edit != nil {
		edit(&o)
	}
	svc, err := New(o)
	if err != nil {
		b.Fatal(err)
	}
	if err := svc.Start(); err != nil {
		b.Fatal(err)
	}
	nc, err := nats.Connect(svc.NATSURL())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		nc.Close()
		svc.Stop(context.Background())
	})
	return &testEnv{svc: svc, nc: nc, clock: clock}
}

// BenchmarkCheckpoint measures a checkpoint of keys live keys: its size,
// its duration, the pause of ingest it causes (the applier lock held), and
// what ingest feels meanwhile: a goroutine applies messages of 100 new
// events on existing keys (taking the applier lock, as the consumer does)
// while the checkpoint is written, and reports its slowest message during
// the checkpoint against its slowest over as many messages without one, in
// the same run. Bid answers are not paused. Run with a small -benchtime,
// e.g. -benchtime=3x.
func BenchmarkCheckpoint(b *testing.B) {
	for _, keys := range []int{100_000, 1_000_000} {
		if keys > 100_000 && testing.Short() {
			continue
		}
		b.Run(fmt.Sprintf("keys=%d", keys), func(b *testing.B) {
			// A started service (JetStream mode, so it checkpoints); no
			// periodic checkpoint or remote copy runs during the benchmark.
			svc := startBenchService(b, func(o *Options) {
				o.MaxKeys, o.DedupSize = 2*keys, 256<<20
				o.CheckpointInterval, o.RemoteCheckpointInterval = time.Hour, -1
			}).svc
			fillKeys(b, svc, keys)
			next := 0
			prefix := fmt.Sprintf("ck%d-", benchRun.Add(1))
			var msg []byte
			// ingest applies messages until stop closes (or n are applied)
			// and returns how many and the slowest.
			ingest := func(stop <-chan struct{}, n int) (int, time.Duration) {
				var slowest time.Duration
				k := 0
				for ; k < n; k++ {
					select {
					case <-stop:
						return k, slowest
					default:
					}
					msg = append(msg[:0], '[')
					for j := range 100 {
						if j > 0 {
							msg = append(msg, ',')
						}
						id := next*100 + j
						msg = appendCellEvent(msg, prefix, id, (id*7919)%(keys/2))
					}
					msg = append(msg, ']')
					next++
					t0 := time.Now()
					svc.ingest.Apply(msg, testNow)
					slowest = max(slowest, time.Since(t0))
				}
				return k, slowest
			}
			var maxPause, slowDuring, slowIdle time.Duration
			during := 0
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				svc.ckpt.lastAtMs.Store(0) // the same sequence: checkpoint it again
				stop := make(chan struct{})
				res := make(chan [2]int64, 1)
				go func() {
					n, slow := ingest(stop, 1<<30)
					res <- [2]int64{int64(n), int64(slow)}
				}()
				if err := svc.writeCheckpoint(); err != nil {
					b.Fatal(err)
				}
				close(stop)
				r := <-res
				during += int(r[0])
				slowDuring = max(slowDuring, time.Duration(r[1]))
				b.StopTimer()
				_, slow := ingest(nil, int(r[0]))
				slowIdle = max(slowIdle, slow)
				b.StartTimer()
				maxPause = max(maxPause, time.Duration(svc.ckpt.lastPauseUs.Load())*time.Microsecond)
			}
			b.StopTimer()
			fi, err := os.Stat(svc.checkpointPath())
			if err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(fi.Size())/float64(svc.store.Len()), "file-bytes/key")
			b.ReportMetric(float64(fi.Size())/(1<<20), "file-MiB")
			b.ReportMetric(float64(maxPause.Microseconds())/1e3, "pause-ms")
			b.ReportMetric(float64(during)/float64(b.N), "msgs-during")
			b.ReportMetric(float64(slowDuring.Microseconds())/1e3, "slowest-msg-during-ms")
			b.ReportMetric(float64(slowIdle.Microseconds())/1e3, "slowest-msg-idle-ms")
		})
	}
}
