package client_test

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"

	"github.com/bidpulse/bidpulse/bidder"
	"github.com/bidpulse/bidpulse/bidder/client"
)

// Example publishes events and asks for multipliers over HTTP and NATS,
// against a bidpulse started in this process (with `make run`, the base
// URL is http://127.0.0.1:8080 and NATS nats://127.0.0.1:4222).
func Example() {
	dir, _ := os.MkdirTemp("", "bidpulse-example")
	defer os.RemoveAll(dir)
	_ = os.Chmod(dir, 0o700)
	clock := bidder.NewCachedClock(time.Millisecond)
	defer clock.Stop()
	svc, err := bidder.New(bidder.Options{HTTPAddr: "127.0.0.1:0", NATSAddr: "127.0.0.1:-1", DataDir: dir,
		Logger: zerolog.Nop(), Clock: clock})
	if err != nil || svc.Start() != nil {
		fmt.Println("cannot start bidpulse:", err)
		return
	}
	defer svc.Stop(context.Background())
	nc, err := nats.Connect(svc.NATSURL())
	if err != nil {
		fmt.Println(err)
		return
	}
	defer nc.Close()
	ctx := context.Background()

	// A producer: impressions on two placements, clicks on one of them.
	p, err := client.NewPublisher(nc, client.PublisherOptions{Subject: "bidpulse.events.example"})
	if err != nil {
		fmt.Println(err)
		return
	}
	for i := range 400 {
		pl := []string{"news.example/top", "blog.example/footer"}[i%2]
		ev := client.Event{ID: fmt.Sprint("imp-", i), Type: client.Impression, Campaign: "c1", Placement: pl, Device: "Mobile"}
		_ = p.Publish(&ev)
		if pl == "news.example/top" && i%10 == 0 {
			ev.Type = client.Click
			_ = p.Publish(&ev)
		}
	}
	if err := p.Close(ctx); err != nil { // waits for every acknowledgement
		fmt.Println(err)
		return
	}
	fmt.Println("acknowledged events:", p.Stats().AckedEvents)

	// A bidder over HTTP. An ad server gives each call a few milliseconds
	// of its auction budget (Timeout, or a context deadline); this example
	// allows a second, as it also runs on busy test machines.
	c, err := client.NewHTTP("http://"+svc.HTTPAddr(), client.Options{Timeout: time.Second})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()
	top := client.Key{Campaign: "c1", Placement: "news.example/top", Device: "mobile"}
	var a client.Answer
	for range 500 { // the events are applied within milliseconds
		if a, err = c.Multiplier(ctx, top); err == nil && a.Level != "campaign" && a.Level != "none" {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	fmt.Println("top:", a.Level, a.Multiplier > 1)
	answers, _ := c.Multipliers(ctx, []client.Key{top, {Campaign: "c1", Placement: "blog.example/footer"}}, nil)
	fmt.Println("footer:", answers[1].Level, answers[1].Multiplier < 1)

	// The same over NATS.
	n, _ := client.NewNATS(nc, client.Options{Timeout: time.Second})
	b, err := n.Multiplier(ctx, top)
	fmt.Println("same over NATS:", b == a, err)

	// Fail open: a stopped bidpulse answers 1, and the client counts it.
	_ = svc.Stop(ctx)
	a, err = c.Multiplier(ctx, top)
	fmt.Println("stopped:", a.Multiplier, a.FailOpen, err != nil, c.Stats().FailOpen[client.FailUnavailable])
	// Output:
	// acknowledged events: 440
	// top: campaign/placement true
	// footer: campaign/placement true
	// same over NATS: true <nil>
	// stopped: 1 unavailable true 1
}
