package client_test

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/bidpulse/bidpulse/bidder/client"
	"github.com/bidpulse/bidpulse/bidder/event"
)

// TestPublisherBatches checks the batching by count, by size and by time,
// the order of raw messages, and that every event is counted once.
func TestPublisherBatches(t *testing.T) {
	svc := startService(t)
	nc := connect(t, svc)
	var mu sync.Mutex
	var settled []client.Settled
	p, err := client.NewPublisher(nc, client.PublisherOptions{
		Subject: "bidpulse.events.batches", MaxEvents: 10, MaxBytes: 2000, Linger: 30 * time.Millisecond,
		OnSettled: func(s client.Settled) {
			mu.Lock()
			settled = append(settled, s)
			mu.Unlock()
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if !p.JetStream() {
		t.Fatal("unexpected core publisher: the service's stream captures bidpulse.events.>")
	}
	ev := func(i int, pad int) *client.Event {
		return &client.Event{ID: "b" + string(rune('a'+i/26)) + string(rune('a'+i%26)), Type: client.Impression,
			Campaign: "c1", Placement: strings.Repeat("p", pad), Creative: strings.Repeat("r", pad)}
	}
	// 25 small events: two full batches of 10, then 5 sent by the linger.
	for i := range 25 {
		if err := p.Publish(ev(i, 1)); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for p.Stats().Events < 25 {
		if time.Now().After(deadline) {
			t.Fatalf("the open batch was not sent after its linger: %+v", p.Stats())
		}
		time.Sleep(5 * time.Millisecond)
	}
	small := int(p.Stats().Messages)
	// Events of about 330 bytes: a 2000-byte message holds 6 of them.
	for i := 25; i < 45; i++ {
		if err := p.Publish(ev(i, 128)); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.PublishRaw([]byte(`{"id":"raw1","type":"click","campaign":"c1"}`), 1, "", "tag1"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := p.Close(ctx); err != nil {
		t.Fatalf("unexpected error on close: %v", err)
	}
	st := p.Stats()
	if st.Events != 46 || st.AckedEvents != 46 || st.FailedEvents != 0 || st.Messages < 8 {
		t.Fatalf("unexpected stats %+v; want 46 events acknowledged in at least 8 messages (10, 10, 5 by linger, 6, 6, 6, 2, the raw one; more if a pause let the linger cut a batch)", st)
	}
	mu.Lock()
	defer mu.Unlock()
	total := 0
	for i, s := range settled {
		if s.Err != nil || s.Events > 10 {
			t.Fatalf("unexpected settled message %d: %+v", i, s)
		}
		if i >= small && s.Events > 6 {
			t.Fatalf("unexpected message %d of %d events: 2000 bytes hold 6", i, s.Events)
		}
		total += s.Events
	}
	if last := settled[len(settled)-1]; last.Tag != "tag1" || total != 46 || uint64(len(settled)) != st.Messages {
		t.Fatalf("unexpected settled messages: %d messages, %d events, last %+v", len(settled), total, last)
	}
	waitCounted(t, svc, 46)
	if err := p.Publish(ev(99, 1)); err != client.ErrPublisherClosed {
		t.Fatalf("unexpected error of a publish after close: %v", err)
	}
}

// TestPublisherRefuses checks that events bidpulse would dead-letter are
// refused at once, with the field named.
func TestPublisherRefuses(t *testing.T) {
	svc := startService(t)
	p, err := client.NewPublisher(connect(t, svc), client.PublisherOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close(context.Background())
	for _, c := range []struct {
		ev   client.Event
		want string
	}{
		{client.Event{Type: client.Impression, Campaign: "c1"}, "id is required"},
		{client.Event{ID: "1", Campaign: "c1"}, "invalid type"},
		{client.Event{ID: "1", Type: client.Click}, "campaign is required"},
		{client.Event{ID: "1", Type: client.Click, Campaign: strings.Repeat("c", 129)}, "campaign longer than 128"},
		{client.Event{ID: "1", Type: client.Click, Campaign: "c1", Country: "\xff"}, "country is not valid UTF-8"},
		{client.Event{ID: "1", Type: client.Click, Campaign: "c1", Cost: -1}, "cost -1 outside"},
		{client.Event{ID: "1", Type: client.Click, Campaign: "c1", TS: 1767323045}, "ts 1767323045 is not Unix milliseconds"},
		{client.Event{ID: "1", Type: client.Click, Campaign: "c1", ClickTS: 1767323045000}, "click_ts on a click"},
	} {
		if err := p.Publish(&c.ev); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Fatalf("unexpected error of %+v; got %v; want one containing %q", c.ev, err, c.want)
		}
	}
	if st := p.Stats(); st.Events != 0 {
		t.Fatalf("unexpected events sent: %+v", st)
	}
}

// TestPublisherCore checks core mode, where no stream captures the
// subject: at most once, flushed on Close.
func TestPublisherCore(t *testing.T) {
	svc := startService(t)
	nc := connect(t, svc)
	got := make(chan *nats.Msg, 16)
	sub, err := nc.ChanSubscribe("outside.events", got)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if _, err := client.NewPublisher(nc, client.PublisherOptions{Subject: "outside.events", Mode: client.ModeJetStream}); err == nil {
		t.Fatal("unexpected JetStream publisher on a subject no stream captures")
	}
	p, err := client.NewPublisher(nc, client.PublisherOptions{Subject: "outside.events"})
	if err != nil {
		t.Fatal(err)
	}
	if p.JetStream() {
		t.Fatal("unexpected JetStream mode on a subject no stream captures")
	}
	for i := range 3 {
		if err := p.Publish(&client.Event{ID: string(rune('a' + i)), Type: client.Impression, Campaign: "c1"}); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-got:
		var evs []map[string]any
		if err := json.Unmarshal(m.Data, &evs); err != nil || len(evs) != 3 {
			t.Fatalf("unexpected message %s (%v); want a batch of 3", m.Data, err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no message received")
	}
}

// TestEventJSON checks that the client's encoding parses back, through
// bidpulse's own parser, to the same event.
func TestEventJSON(t *testing.T) {
	in := client.Event{ID: `e"1\`, Type: client.Conversion, TS: 1767323045123, Campaign: "c1", Creative: "cr\u2028",
		Placement: "news.example/top", Device: "Mobile", Country: "fr", Site: "News.Example", Cost: 0.0021, Value: 12.5, ClickTS: 1767323040000}
	b := in.AppendJSON(nil)
	var p event.Parser
	n := 0
	p.Parse(b, func(ev *event.Event, reason event.Reason, _ []byte) {
		n++
		if reason != event.OK {
			t.Fatalf("unexpected rejection of %s: %s", b, reason)
		}
		if string(ev.ID) != in.ID || ev.Type != event.Conversion || ev.TS != in.TS || !ev.HasTS ||
			string(ev.Dims[0]) != "c1" || string(ev.Dims[1]) != in.Creative || string(ev.Dims[3]) != "mobile" ||
			string(ev.Dims[4]) != "FR" || string(ev.Dims[5]) != "News.Example" || ev.CostMicros != 2100 || ev.ValueMicros != 12_500_000 || ev.ClickTS != in.ClickTS {
			t.Fatalf("unexpected event parsed from %s: %+v", b, ev)
		}
	})
	if n != 1 {
		t.Fatalf("unexpected events parsed from %s: %d", b, n)
	}
}
