package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/bidpulse/bidpulse/bench"
	"github.com/bidpulse/bidpulse/bidder/partition"
)

// partitionedStream creates on the server at url a stream EV partitioned by campaign into 8
// partitions under bidpulse.events, as the service's partitioned mode creates it.
func partitionedStream(t *testing.T, url string) jetstream.Stream {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	tr, err := partition.StreamTransform(8, "bidpulse.events")
	if err != nil {
		t.Fatal(err)
	}
	cfg := jetstream.StreamConfig{Name: "EV", Storage: jetstream.MemoryStorage}
	tr.Apply(&cfg)
	st, err := js.CreateStream(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// readPartitioned reads every message of st, checks that each holds the events of one campaign
// under the subject <Of(8,c)>.bidpulse.events.<c>.<name>, and returns the stored events as
// "type/id/campaign", each once (a second copy fails the test), and the message count.
func readPartitioned(t *testing.T, st jetstream.Stream, name string) (map[string]bool, uint64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && seq > 0; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if err != nil {
			t.Fatalf("cannot read message %d: %v", seq, err)
		}
		var evs []struct{ ID, Type, Campaign string }
		if err := json.Unmarshal(m.Data, &evs); err != nil || len(evs) == 0 {
			t.Fatalf("unexpected message %d on %s (%v): %.200s", seq, m.Subject, err, m.Data)
		}
		c := evs[0].Campaign
		if want := fmt.Sprintf("%d.bidpulse.events.%s.%s", partition.OfString(8, c), c, name); m.Subject != want {
			t.Fatalf("unexpected subject of message %d of campaign %q; got %q; want %q", seq, c, m.Subject, want)
		}
		for _, ev := range evs {
			if ev.Campaign != c {
				t.Fatalf("unexpected message %d holding campaigns %q and %q", seq, c, ev.Campaign)
			}
			k := ev.Type + "/" + ev.ID + "/" + ev.Campaign
			if got[k] {
				t.Fatalf("unexpected event %s stored twice", k)
			}
			got[k] = true
		}
	}
	return got, info.State.Msgs
}

// TestPublishPartitionedFile publishes a file of mixed campaigns with --partitioned: every
// message holds one campaign under its subject, every valid event is stored once, the events
// with no campaign token are refused and named, and publishing the file again stores nothing
// (the message ids derive from the content).
func TestPublishPartitionedFile(t *testing.T) {
	srv := startNATS(t)
	st := partitionedStream(t, srv.ClientURL())
	var lines []string
	want := map[string]bool{}
	campaigns := []string{"c1", "c2", "news-fr", "c\u00e9", "c1x", "q", "zz9"}
	for i := range 60 {
		c := campaigns[(i*i+i/7)%len(campaigns)] // interleaved, with runs
		id := fmt.Sprintf("f%d", i)
		lines = append(lines, fmt.Sprintf(`{"id":%q,"type":"impression","campaign":%q,"unknown":[1,2]}`, id, c))
		want["impression/"+id+"/"+c] = true
	}
	lines = append(lines[:10], append([]string{
		`{"id":"dot","type":"click","campaign":"a.b"}`,
		`{"id":"none","type":"click"}`,
		`not json`,
	}, lines[10:]...)...)
	file := filepath.Join(t.TempDir(), "events.ndjson")
	if err := os.WriteFile(file, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	args := []string{"--nats-url", srv.ClientURL(), "--partitioned", "--file", file, "--batch", "4", "--jetstream", "true"}
	err := runPublish(args)
	if err == nil || !strings.Contains(err.Error(), "3 events") {
		t.Fatalf("unexpected error; got %v; want one naming the 3 refused events", err)
	}
	got, msgs := readPartitioned(t, st, "publish")
	if len(got) != len(want) {
		t.Fatalf("unexpected stored events; got %d; want %d", len(got), len(want))
	}
	for k := range want {
		if !got[k] {
			t.Fatalf("event %s not stored", k)
		}
	}
	if err := runPublish(args); err == nil {
		t.Fatal("unexpected success of the second publish: the 3 events are refused again")
	}
	if _, again := readPartitioned(t, st, "publish"); again != msgs {
		t.Fatalf("unexpected messages after publishing the file again; got %d; want %d (same content, same ids)", again, msgs)
	}
	for _, subj := range []string{"events", "bidpulse.events.", ".x"} {
		err := runPublish([]string{"--nats-url", srv.ClientURL(), "--partitioned", "--subject", subj, "--file", file})
		if err == nil || !strings.Contains(err.Error(), "--subject") {
			t.Fatalf("unexpected error of --subject %q with --partitioned; got %v; want one naming --subject", subj, err)
		}
	}
}

// TestPublishPartitionedSynthetic publishes synthetic traffic with --partitioned for 1 s: every
// message holds one campaign under its subject, and the stored events are exactly those the
// generator makes for that count.
func TestPublishPartitionedSynthetic(t *testing.T) {
	srv := startNATS(t)
	st := partitionedStream(t, srv.ClientURL())
	if err := runPublish([]string{"--nats-url", srv.ClientURL(), "--partitioned", "--subject", "bidpulse.events.syn",
		"--synthetic", "--rate", "2000", "--duration", "1s", "--batch", "50", "--run-id", "p", "--campaigns", "6", "--jetstream", "true"}); err != nil {
		t.Fatalf("cannot publish: %v", err)
	}
	got, _ := readPartitioned(t, st, "syn")
	if len(got) < 2000 || len(got) > 2002 {
		t.Fatalf("unexpected stored events; got %d; want 2000 (up to 2 more: an impression keeps its click and conversion)", len(got))
	}
	// The generator's events do not depend on how they were cut into batches: the same config
	// makes the same events, in one batch of the stored count.
	syn := bench.NewSynthetic(bench.SyntheticConfig{Campaigns: 6, Creatives: bench.DefaultSyntheticCreatives,
		Placements: bench.DefaultSyntheticPlacements, Seed: 1, RunID: "p"})
	var evs []struct{ ID, Type, Campaign string }
	if err := json.Unmarshal(syn.AppendBatch(nil, len(got), 0), &evs); err != nil {
		t.Fatal(err)
	}
	if len(evs) != len(got) {
		t.Fatalf("unexpected stored events; got %d; the generator makes %d for that count", len(got), len(evs))
	}
	for _, ev := range evs {
		if k := ev.Type + "/" + ev.ID + "/" + ev.Campaign; !got[k] {
			t.Fatalf("event %s not stored", k)
		}
	}
}
