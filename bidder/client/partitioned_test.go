package client_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/bidpulse/bidpulse/bidder/client"
	"github.com/bidpulse/bidpulse/bidder/partition"
)

// partitionedServer starts an embedded JetStream server with a stream EV partitioned by campaign
// into 8 partitions under bidpulse.events, as the service's partitioned mode creates it.
func partitionedServer(t *testing.T) (*nats.Conn, jetstream.Stream) {
	t.Helper()
	tr, err := partition.StreamTransform(8, "bidpulse.events")
	if err != nil {
		t.Fatal(err)
	}
	cfg := jetstream.StreamConfig{Name: "EV", Storage: jetstream.MemoryStorage}
	tr.Apply(&cfg)
	nc, _, st := streamServer(t, cfg)
	return nc, st
}

// storedEvent is one event read back from the stream, with the message that held it.
type storedEvent struct {
	seq      uint64
	subject  string
	id       string
	campaign string
}

// storedEvents reads every message of st and returns its events in stream order. It fails
// the test on a message that is not a JSON array of objects.
func storedEvents(t *testing.T, st jetstream.Stream) []storedEvent {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []storedEvent
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && seq > 0; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if err != nil {
			t.Fatalf("cannot read message %d: %v", seq, err)
		}
		var evs []struct{ ID, Campaign string }
		if err := json.Unmarshal(m.Data, &evs); err != nil {
			t.Fatalf("unexpected message %d on %s: %v: %.200s", seq, m.Subject, err, m.Data)
		}
		for _, ev := range evs {
			out = append(out, storedEvent{seq: seq, subject: m.Subject, id: ev.ID, campaign: ev.Campaign})
		}
	}
	return out
}

// checkPartitioned checks that every stored message holds the events of one campaign, under
// the subject the stream's transform gives that campaign and producer, and that the stored ids
// are exactly want, each once, in publish order (ids "e<n>", increasing) within a campaign.
func checkPartitioned(t *testing.T, got []storedEvent, producer string, want map[string]string) {
	t.Helper()
	seen := map[string]bool{}
	msgCampaign := map[uint64]string{}
	last := map[string]int{}
	for _, ev := range got {
		if c, ok := msgCampaign[ev.seq]; ok && c != ev.campaign {
			t.Fatalf("unexpected message %d holding campaigns %q and %q", ev.seq, c, ev.campaign)
		}
		msgCampaign[ev.seq] = ev.campaign
		if subj := fmt.Sprintf("%d.bidpulse.events.%s.%s", partition.OfString(8, ev.campaign), ev.campaign, producer); ev.subject != subj {
			t.Fatalf("unexpected stored subject of event %s of campaign %q; got %q; want %q", ev.id, ev.campaign, ev.subject, subj)
		}
		if seen[ev.id] {
			t.Fatalf("unexpected event %s stored twice", ev.id)
		}
		seen[ev.id] = true
		if c, ok := want[ev.id]; !ok || c != ev.campaign {
			t.Fatalf("unexpected event %s of campaign %q; want campaign %q (known: %v)", ev.id, ev.campaign, c, ok)
		}
		n, _ := strconv.Atoi(strings.TrimPrefix(ev.id, "e"))
		if prev, ok := last[ev.campaign]; ok && n <= prev {
			t.Fatalf("unexpected order in campaign %q: e%d stored after e%d", ev.campaign, n, prev)
		}
		last[ev.campaign] = n
	}
	if len(seen) != len(want) {
		t.Fatalf("unexpected stored events; got %d; want %d", len(seen), len(want))
	}
}

// TestPublisherPartitioned publishes 200 events of 20 campaigns, interleaved and in runs, to a
// partitioned stream: each message holds one campaign and lands in its partition.
func TestPublisherPartitioned(t *testing.T) {
	nc, st := partitionedServer(t)
	var settled []client.Settled // appended by the Publisher's goroutine, read after Close
	p, err := client.NewPublisher(nc, client.PublisherOptions{PartitionedBase: "bidpulse.events", MaxEvents: 7,
		OnSettled: func(s client.Settled) { settled = append(settled, s) }})
	if err != nil {
		t.Fatal(err)
	}
	if !p.JetStream() {
		t.Fatal("unexpected core publisher: the partitioned stream binds bidpulse.events.*.>")
	}
	want := map[string]string{}
	for i := range 200 {
		c := i % 20 // interleaved
		if i >= 100 {
			c = (i / 9) % 20 // in runs
		}
		ev := client.Event{ID: "e" + strconv.Itoa(i), Type: client.Impression, Campaign: "camp-" + strconv.Itoa(c)}
		if err := p.Publish(&ev); err != nil {
			t.Fatal(err)
		}
		want[ev.ID] = ev.Campaign
	}
	// A raw message of the caller's, after campaign camp-3's open batch.
	if err := p.PublishRawTo("camp-3", []byte(`[{"id":"e200","type":"click","campaign":"camp-3"}]`), 1, "", "raw"); err != nil {
		t.Fatal(err)
	}
	want["e200"] = "camp-3"
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := p.Close(ctx); err != nil {
		t.Fatalf("unexpected error on close: %v", err)
	}
	if s := p.Stats(); s.AckedEvents != 201 || s.FailedEvents != 0 || uint64(len(settled)) != s.Messages {
		t.Fatalf("unexpected stats %+v (%d settled); want 201 events acknowledged", s, len(settled))
	}
	checkPartitioned(t, storedEvents(t, st), "client", want)
}

// TestPublisherMaxOpenBatches checks that a new campaign beyond MaxOpenBatches sends the oldest
// open batch: 10 campaigns in turn with 4 open batches send every event alone, and all arrive.
func TestPublisherMaxOpenBatches(t *testing.T) {
	nc, st := partitionedServer(t)
	p, err := client.NewPublisher(nc, client.PublisherOptions{PartitionedBase: "bidpulse.events", Producer: "bounded",
		Mode: client.ModeJetStream, MaxOpenBatches: 4, Linger: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{}
	for i := range 100 {
		ev := client.Event{ID: "e" + strconv.Itoa(i), Type: client.Click, Campaign: "c" + strconv.Itoa(i%10)}
		if err := p.Publish(&ev); err != nil {
			t.Fatal(err)
		}
		want[ev.ID] = ev.Campaign
	}
	// The 4 open batches (6 to 9) are still open: no linger within the hour.
	if s := p.Stats(); s.Messages != 96 {
		t.Fatalf("unexpected messages before Flush; got %d; want 96 (each event but the 4 open ones, alone)", s.Messages)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := p.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if s := p.Stats(); s.Messages != 100 || s.AckedEvents != 100 {
		t.Fatalf("unexpected stats after Flush %+v; want 100 messages, 100 events acknowledged", s)
	}
	if err := p.Close(ctx); err != nil {
		t.Fatal(err)
	}
	checkPartitioned(t, storedEvents(t, st), "bounded", want)
}

// TestPublisherPartitionedLinger checks that each campaign's batch is sent after its linger,
// without Flush.
func TestPublisherPartitionedLinger(t *testing.T) {
	nc, _ := partitionedServer(t)
	p, err := client.NewPublisher(nc, client.PublisherOptions{PartitionedBase: "bidpulse.events", Linger: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close(context.Background())
	for _, c := range []string{"a", "b", "a"} {
		if err := p.Publish(&client.Event{ID: c + "1", Type: client.Impression, Campaign: c}); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for p.Stats().AckedMessages < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("the open batches were not sent after their linger: %+v", p.Stats())
		}
		time.Sleep(5 * time.Millisecond)
	}
	if s := p.Stats(); s.Messages != 2 || s.Events != 3 {
		t.Fatalf("unexpected stats %+v; want 3 events in 2 messages, one per campaign", s)
	}
}

// TestPublisherPartitionedRefuses checks the campaigns and options that partitioned mode
// refuses, with the culprit named.
func TestPublisherPartitionedRefuses(t *testing.T) {
	nc, st := partitionedServer(t)
	for _, o := range []client.PublisherOptions{
		{PartitionedBase: "bidpulse.events", Subject: "bidpulse.events.x"},
		{PartitionedBase: "bidpulse.events.>"},
		{PartitionedBase: "bidpulse.events", Producer: "a.b"},
		{PartitionedBase: "bidpulse.events", Producer: "*"},
	} {
		if _, err := client.NewPublisher(nc, o); err == nil {
			t.Fatalf("unexpected publisher with options %+v", o)
		}
	}
	p, err := client.NewPublisher(nc, client.PublisherOptions{PartitionedBase: "bidpulse.events", Mode: client.ModeJetStream})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []string{"a.b", " ", "*", ">", "c\t1"} {
		err := p.Publish(&client.Event{ID: "x", Type: client.Impression, Campaign: c})
		if err == nil || !strings.Contains(err.Error(), strconv.Quote(c)) {
			t.Fatalf("unexpected error of campaign %q; got %v; want one naming it", c, err)
		}
		if err := p.PublishRawTo(c, []byte(`{}`), 1, "", nil); err == nil || !strings.Contains(err.Error(), strconv.Quote(c)) {
			t.Fatalf("unexpected error of a raw message to campaign %q; got %v; want one naming it", c, err)
		}
	}
	if err := p.PublishRaw([]byte(`{}`), 1, "", nil); err == nil || !strings.Contains(err.Error(), "PublishRawTo") {
		t.Fatalf("unexpected error of PublishRaw in partitioned mode: %v", err)
	}
	if err := p.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if s := p.Stats(); s.Messages != 0 {
		t.Fatalf("unexpected messages sent: %+v", s)
	}
	if got := storedEvents(t, st); len(got) != 0 {
		t.Fatalf("unexpected stored events: %+v", got)
	}
	// Outside partitioned mode, PublishRawTo has no subject to build.
	single, err := client.NewPublisher(nc, client.PublisherOptions{Subject: "elsewhere", Mode: client.ModeCore})
	if err != nil {
		t.Fatal(err)
	}
	defer single.Close(context.Background())
	if err := single.PublishRawTo("c1", []byte(`{}`), 1, "", nil); err == nil {
		t.Fatal("unexpected PublishRawTo outside partitioned mode")
	}
}
