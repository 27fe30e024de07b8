package bench

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

// TestPublisherTallies publishes tallied messages through the client's Publisher to a real
// service, in JetStream and core mode: finish returns every message's tally as acknowledged,
// the service receives every event, and a publisher abandoned without finish stops (TestMain
// fails on a goroutine left behind).
func TestPublisherTallies(t *testing.T) {
	for _, c := range []struct{ jetstream, mode string }{{"true", PublishJetStream}, {"false", PublishCore}} {
		t.Run(c.mode, func(t *testing.T) {
			svc := startService(t, c.jetstream)
			nc, err := nats.Connect(svc.NATSURL())
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			p, err := newPublisher(ctx, nc, "bidpulse.events.bench", "tally-"+c.mode, c.mode, false)
			if err != nil {
				t.Fatalf("cannot create the publisher: %v", err)
			}
			st0, err := newStatsClient("http://" + svc.HTTPAddr())
			if err != nil {
				t.Fatal(err)
			}
			base, err := st0.get()
			if err != nil {
				t.Fatal(err)
			}
			g := newEventGen(NewSynthetic(SyntheticConfig{Seed: 1, RunID: "tally-" + c.mode}), 0.05, 0.05, 1)
			var want Tally
			for range 20 {
				data, tl := g.next(50, time.Now().UnixMilli())
				want.Add(&tl)
				if err := p.publish(data, &tl); err != nil {
					t.Fatalf("cannot publish: %v", err)
				}
			}
			acked, unacked, err := p.finish(ctx)
			if err != nil || acked != want || unacked != (Tally{}) || p.ackedEvents() != want.Events {
				t.Fatalf("unexpected finish: acked %+v, unacked %+v (%v); want acked %+v", acked, unacked, err, want)
			}
			if _, ok, err := st0.waitDrained(ctx, base, want.Events, 5*time.Second); !ok {
				t.Fatalf("the service did not receive the %d events: %v", want.Events, err)
			}

			// A publisher that a failed run never finishes stops with the run.
			q, err := newPublisher(ctx, nc, "bidpulse.events.bench", "abandoned-"+c.mode, c.mode, false)
			if err != nil {
				t.Fatal(err)
			}
			data, tl := g.next(10, time.Now().UnixMilli())
			if err := q.publish(data, &tl); err != nil {
				t.Fatal(err)
			}
			q.abandon()
		})
	}
}
