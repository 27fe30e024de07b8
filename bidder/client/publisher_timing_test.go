package client_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/bidpulse/bidpulse/bidder"
	"github.com/bidpulse/bidpulse/bidder/client"
)

// BenchmarkPublisher measures events through Publish to their JetStream
// acknowledgement, into the stream of a service in this process (which
// applies them meanwhile): one event per op, events of 170-200 bytes in
// batches of MaxEvents, single and partitioned (--partitions 8, 20
// campaigns).
func BenchmarkPublisher(b *testing.B) {
	for _, c := range []struct {
		name       string
		partitions uint32
	}{{"single", 0}, {"partitioned-8", 8}} {
		b.Run(c.name, func(b *testing.B) {
			svc := startService(b, func(o *bidder.Options) { o.Partitions = c.partitions })
			nc := connect(b, svc)
			o := client.PublisherOptions{Mode: client.ModeJetStream, Subject: "bidpulse.events.bench"}
			if c.partitions > 0 {
				o = client.PublisherOptions{Mode: client.ModeJetStream, PartitionedBase: "bidpulse.events", Producer: "bench"}
			}
			p, err := client.NewPublisher(nc, o)
			if err != nil {
				b.Fatal(err)
			}
			campaigns := make([]string, 20)
			for i := range campaigns {
				campaigns[i] = "campaign-" + strconv.Itoa(i)
			}
			ts := time.Now().UnixMilli()
			ev := client.Event{Type: client.Impression, TS: ts, Creative: "cr7", Placement: "news.example/top",
				Device: "mobile", Country: "FR", Cost: 0.0021}
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				ev.ID = "e" + strconv.Itoa(i)
				ev.Campaign = campaigns[i%len(campaigns)]
				if err := p.Publish(&ev); err != nil {
					b.Fatal(err)
				}
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			if err := p.Close(ctx); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			if st := p.Stats(); st.AckedEvents != uint64(b.N) {
				b.Fatalf("unexpected stats %+v; want %d acknowledged", st, b.N)
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
		})
	}
}
