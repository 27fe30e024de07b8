package bench

import (
	"strings"
	"testing"

	"github.com/bidpulse/bidpulse/bidder/event"
)

// TestBatchSplitter splits eventGen's batches, with duplicates and malformed events, by
// campaign: every campaign part holds only its campaign's events (what a partitioned service
// checks), the injected events go last to InjectedCampaign, the parts' tallies add up to the
// batch's, and the parts applied in send order give the reference outcome of the batches.
func TestBatchSplitter(t *testing.T) {
	f := func(dupRate, badRate float64, n int) {
		t.Helper()
		g := newEventGen(NewSynthetic(SyntheticConfig{RunID: "split", Seed: 3, Campaigns: 7}), dupRate, badRate, 3)
		var s batchSplitter
		var p event.Parser
		var want, sum Tally
		var sent [][]byte
		for i := range 200 {
			b, tally := g.next(n, testNowMs+int64(i))
			want.Add(&tally)
			parts, injected, err := s.split(b, &tally)
			if err != nil {
				t.Fatalf("unexpected error splitting batch %d: %v", i, err)
			}
			seen := map[string]bool{}
			for _, pt := range parts {
				if seen[pt.campaign] {
					t.Fatalf("unexpected second part of campaign %s in batch %d", pt.campaign, i)
				}
				seen[pt.campaign] = true
				events := 0
				p.Parse(pt.data, func(ev *event.Event, reason event.Reason, _ []byte) {
					events++
					if reason != event.OK || string(ev.Dims[0]) != pt.campaign {
						t.Fatalf("unexpected event %s (%s) in the part of %s", ev.ID, reason, pt.campaign)
					}
				})
				if uint64(events) != pt.t.Events || pt.t.Messages != 1 {
					t.Fatalf("unexpected part tally %+v of %d events", pt.t, events)
				}
				sum.Add(&pt.t)
				sent = append(sent, append([]byte(nil), pt.data...))
			}
			if injected != nil {
				if injected.campaign != InjectedCampaign || tally.Duplicates+tally.RejectedTotal() == 0 {
					t.Fatalf("unexpected injected part of campaign %s for batch tally %+v", injected.campaign, tally)
				}
				sum.Add(&injected.t)
				sent = append(sent, append([]byte(nil), injected.data...))
			} else if tally.Duplicates+tally.RejectedTotal() != 0 {
				t.Fatalf("unexpected batch without its injected part: tally %+v", tally)
			}
		}
		// A batch is sent in several messages: one per part.
		if sum.Messages != uint64(len(sent)) || sum.Messages <= want.Messages {
			t.Fatalf("unexpected %d messages for %d parts of %d batches over 7 campaigns", sum.Messages, len(sent), want.Messages)
		}
		want.Messages = sum.Messages
		if sum != want {
			t.Fatalf("unexpected sum of the parts' tallies;\ngot  %+v\nwant %+v", sum, want)
		}
		if ref := applyReference(t, sent); ref != want {
			t.Fatalf("unexpected reference outcome of the parts;\ngot  %+v\nwant %+v", ref, want)
		}
	}
	f(0, 0, 100)
	f(0.05, 0.05, 100)
	f(0.5, 0.5, 3)
}

// TestPartitionedSubject derives the base and the producer of partitioned subjects.
func TestPartitionedSubject(t *testing.T) {
	base, name, err := PartitionedSubject("bidpulse.events.bench")
	if err != nil || base != "bidpulse.events" || name != "bench" {
		t.Fatalf("unexpected split %q %q %v", base, name, err)
	}
	for _, s := range []string{"bench", "bidpulse.events.", ".bench", ""} {
		if _, _, err := PartitionedSubject(s); err == nil || !strings.Contains(err.Error(), "invalid subject") {
			t.Fatalf("unexpected error of %q; got %v", s, err)
		}
	}
}
