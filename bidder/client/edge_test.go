package client_test

import (
	"context"
	"errors"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/valyala/fasthttp"

	"github.com/bidpulse/bidpulse/bidder/client"
	"github.com/bidpulse/bidpulse/bidder/event"
)

// jsServer starts an embedded JetStream server with a stream EV on ev.>.
func jsServer(t *testing.T) (*nats.Conn, jetstream.JetStream) {
	nc, js, _ := streamServer(t, jetstream.StreamConfig{Name: "EV", Subjects: []string{"ev.>"}})
	return nc, js
}

// TestClientHTTPSScheme checks that an https client dials (here: a port
// nobody listens on) rather than refusing its own request's scheme.
func TestClientHTTPSScheme(t *testing.T) {
	c, err := client.NewHTTP("https://127.0.0.1:1", client.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	a, err := c.Multiplier(context.Background(), client.Key{Campaign: "c1"})
	if errors.Is(err, fasthttp.ErrHostClientRedirectToDifferentScheme) || !errors.Is(err, syscall.ECONNREFUSED) || a.FailOpen != client.FailUnavailable {
		t.Fatalf("unexpected answer %+v (%v); want a dial refused by the closed port", a, err)
	}
}

// TestPublisherMaxPayload checks that a message of max_payload bytes (its
// headers would push it over) is refused up front, and that one the
// stream refuses for good (above its max_msg_size) is given up at once
// instead of holding every later message until RetryFor.
func TestPublisherMaxPayload(t *testing.T) {
	nc, _ := jsServer(t)
	p, err := client.NewPublisher(nc, client.PublisherOptions{Subject: "ev.x", Mode: client.ModeJetStream, RetryFor: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	big := make([]byte, nc.MaxPayload())
	if err := p.PublishRaw(big, 1, "", nil); err == nil || !strings.Contains(err.Error(), "max_payload") {
		t.Fatalf("unexpected error of a message of max_payload bytes: %v; want a refusal naming max_payload", err)
	}
	// The stream takes at most 1,000 bytes a message: 2,000 are refused by
	// the stream, for good.
	js, _ := jetstream.New(nc)
	if _, err := js.UpdateStream(context.Background(), jetstream.StreamConfig{Name: "EV", Subjects: []string{"ev.>"}, MaxMsgSize: 1000}); err != nil {
		t.Fatal(err)
	}
	if err := p.PublishRaw(make([]byte, 2000), 1, "", nil); err != nil {
		t.Fatal(err)
	}
	if err := p.PublishRaw([]byte(`{"id":"a","type":"impression","campaign":"c"}`), 1, "", nil); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = p.Flush(ctx)
	st := p.Stats()
	if err != nil || st.FailedEvents != 1 || st.AckedEvents != 1 || st.Resent != 0 {
		t.Fatalf("unexpected flush %v, stats %+v; want the large message given up at once and the small one acknowledged", err, st)
	}
}

// TestPublisherTinyLinger checks that a Linger of 1 ns works (a ticker of
// Linger/2 would have been 0, and panicked).
func TestPublisherTinyLinger(t *testing.T) {
	nc, _ := jsServer(t)
	p, err := client.NewPublisher(nc, client.PublisherOptions{Subject: "ev.x", Mode: client.ModeCore, Linger: time.Nanosecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Publish(&client.Event{ID: "a", Type: client.Impression, Campaign: "c"}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for p.Stats().Messages == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the batch was not sent by its linger")
		}
		time.Sleep(time.Millisecond)
	}
	if err := p.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// TestPublisherOutageBacklog checks that a backlog published while the
// stream is gone (1 s) is resent and acknowledged once it is back, within
// a RetryFor of 3 s: each message counts its RetryFor from its own turn.
func TestPublisherOutageBacklog(t *testing.T) {
	nc, js := jsServer(t)
	p, err := client.NewPublisher(nc, client.PublisherOptions{Subject: "ev.x", Mode: client.ModeJetStream, RetryFor: 3 * time.Second, AckTimeout: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := js.DeleteStream(context.Background(), "EV"); err != nil {
		t.Fatal(err)
	}
	for range 100 {
		if err := p.PublishRaw([]byte(`{"id":"a","type":"impression","campaign":"c"}`), 1, "", nil); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(time.Second)
	if _, err := js.CreateStream(context.Background(), jetstream.StreamConfig{Name: "EV", Subjects: []string{"ev.>"}}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err = p.Close(ctx)
	st := p.Stats()
	if err != nil || st.FailedEvents > 0 || st.AckedEvents != 100 {
		t.Fatalf("unexpected close %v, stats %+v: want all 100 acknowledged, the stream was back 2 s before RetryFor", err, st)
	}
}

// TestPublisherCloseBounded checks that Close ends with its context while
// a Publish waits for room and nothing is acknowledged (the stream gone),
// and that the waiting Publish returns.
func TestPublisherCloseBounded(t *testing.T) {
	nc, js := jsServer(t)
	p, err := client.NewPublisher(nc, client.PublisherOptions{Subject: "ev.x", Mode: client.ModeJetStream, RetryFor: 8 * time.Second, MaxPendingBytes: 100, AckTimeout: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	_ = js.DeleteStream(context.Background(), "EV")
	msg := []byte(`{"id":"a","type":"impression","campaign":"c","placement":"` + strings.Repeat("p", 80) + `"}`)
	published := make(chan error, 1)
	go func() {
		var err error
		for range 3 {
			if err = p.PublishRaw(msg, 1, "", nil); err != nil {
				break
			}
		}
		published <- err
	}()
	deadline := time.Now().Add(5 * time.Second)
	for p.Stats().Messages == 0 { // the first is sent, the second waits for room
		if time.Now().After(deadline) {
			t.Fatal("nothing published")
		}
		time.Sleep(time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	t0 := time.Now()
	err = p.Close(ctx)
	if d := time.Since(t0); d > 3*time.Second || err == nil {
		t.Fatalf("Close with a 300 ms context took %s (err %v); want about 300 ms and an error naming the lost events", d, err)
	}
	select {
	case err := <-published:
		if !errors.Is(err, client.ErrPublisherClosed) {
			t.Fatalf("unexpected error of the Publish waiting for room: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the Publish waiting for room did not return")
	}
}

// TestPublisherTSAhead checks that the client refuses an event time the
// service (its parser with its clock) refuses, and takes one it takes.
func TestPublisherTSAhead(t *testing.T) {
	nc, _ := jsServer(t)
	p, _ := client.NewPublisher(nc, client.PublisherOptions{Subject: "ev.x", Mode: client.ModeCore})
	defer p.Close(context.Background())
	now := time.Now().UnixMilli()
	for _, c := range []struct {
		ahead time.Duration
		ok    bool
	}{{48 * time.Hour, false}, {23 * time.Hour, true}, {0, true}} {
		ev := client.Event{ID: "x", Type: client.Impression, Campaign: "c", TS: now + c.ahead.Milliseconds()}
		err := p.Publish(&ev)
		var ps event.Parser
		ps.NowMs = now
		var got event.Reason
		ps.Parse(ev.AppendJSON(nil), func(_ *event.Event, r event.Reason, _ []byte) { got = r })
		if (err == nil) != c.ok || (got == event.OK) != c.ok {
			t.Fatalf("ts %s ahead: client %v, service %s; want both to take it: %v", c.ahead, err, got, c.ok)
		}
	}
}

// TestClientBatchInvalidUTF8 checks that a key that is not UTF-8 is
// refused in a batch as in a single call, and the others answered.
func TestClientBatchInvalidUTF8(t *testing.T) {
	svc := startService(t)
	c, _ := client.NewHTTP("http://"+svc.HTTPAddr(), client.Options{Timeout: time.Second})
	defer c.Close()
	k := client.Key{Campaign: "c1", Placement: "top\xff"}
	a1, err1 := c.Multiplier(context.Background(), k)
	as, err2 := c.Multipliers(context.Background(), []client.Key{{Campaign: "c1"}, k}, nil)
	if err1 == nil || a1.FailOpen != client.FailRejected || err2 == nil || len(as) != 2 ||
		as[0].FailOpen != client.Answered || as[1].FailOpen != client.FailRejected {
		t.Fatalf("unexpected answers: single %+v (%v), batch %+v (%v); want the key refused in both, c1 answered", a1, err1, as, err2)
	}
	if st := c.Stats(); st.FailOpen[client.FailRejected] != 2 {
		t.Fatalf("unexpected stats %+v; want 2 refusals", st)
	}
}
