package bench

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/bidpulse/bidpulse/bidder/event"
)

func TestMalformedEvents(t *testing.T) {
	// Each template is rejected with its reason by the service's own parser.
	var p event.Parser
	seen := map[event.Reason]bool{}
	g := newEventGen(NewSynthetic(SyntheticConfig{RunID: "r"}), 0, 0, 1)
	for i := range malformedEvents {
		m := &malformedEvents[i]
		raw := g.appendMalformed(nil, m)
		var got []event.Reason
		p.Parse(append(append([]byte("["), raw...), ']'), func(_ *event.Event, reason event.Reason, _ []byte) {
			got = append(got, reason)
		})
		if len(got) != 1 || got[0] != m.reason {
			t.Fatalf("unexpected outcome of %s; got %v; want [%s]", raw, got, m.reason)
		}
		seen[m.reason] = true
	}
	if len(seen) != len(malformedEvents) {
		t.Fatalf("unexpected repeated reasons among the templates")
	}
}

// applyReference is a minimal model of the service's ingest: parse, then dedup by (type, id).
// It returns what the service should count.
func applyReference(t *testing.T, batches [][]byte) Tally {
	t.Helper()
	var p event.Parser
	var got Tally
	dedup := map[string]bool{}
	for _, b := range batches {
		got.Messages++
		p.Parse(b, func(ev *event.Event, reason event.Reason, _ []byte) {
			got.Events++
			if reason != event.OK {
				got.Rejected[reason]++
				return
			}
			key := ev.Type.String() + "/" + string(ev.ID)
			if dedup[key] {
				got.Duplicates++
				return
			}
			dedup[key] = true
			switch ev.Type {
			case event.Impression:
				got.Impressions++
			case event.Click:
				got.Clicks++
			case event.Conversion:
				got.Conversions++
			}
		})
	}
	return got
}

func TestEventGenTally(t *testing.T) {
	f := func(dupRate, badRate float64, n int) {
		t.Helper()
		g := newEventGen(NewSynthetic(SyntheticConfig{RunID: "run7", Seed: 7}), dupRate, badRate, 7)
		var want Tally
		var batches [][]byte
		for i := range 300 {
			b, tally := g.next(n, testNowMs+int64(i))
			batches = append(batches, append([]byte(nil), b...))
			want.Add(&tally)
		}
		got := applyReference(t, batches)
		if got != want {
			t.Fatalf("unexpected reference outcome for dup %v, bad %v, batches of %d;\ngot  %+v\nwant %+v", dupRate, badRate, n, got, want)
		}
		synthetic := want.Events - want.Duplicates - want.RejectedTotal()
		if d := float64(want.Duplicates) - dupRate*float64(synthetic); d < -1 || d > 1 {
			t.Fatalf("unexpected duplicates; got %d; want %v of %d", want.Duplicates, dupRate, synthetic)
		}
		if d := float64(want.RejectedTotal()) - badRate*float64(synthetic); d < -1 || d > 1 {
			t.Fatalf("unexpected malformed events; got %d; want %v of %d", want.RejectedTotal(), badRate, synthetic)
		}
	}
	f(0, 0, 100)
	f(0.01, 0.005, 100)
	f(0.2, 0.1, 7)
	f(0.5, 0.5, 1)

	// Batches stay valid JSON arrays whatever is injected.
	g := newEventGen(NewSynthetic(SyntheticConfig{RunID: "x"}), 1, 1, 1)
	for i := range 20 {
		b, _ := g.next(i%3, testNowMs)
		var v []json.RawMessage
		if err := json.Unmarshal(b, &v); err != nil {
			t.Fatalf("unexpected invalid batch %s: %v", b, err)
		}
	}
}

func TestTallyJSON(t *testing.T) {
	var tl Tally
	tl.Impressions, tl.Clicks, tl.Events = 10, 2, 14
	tl.Rejected[event.BadType] = 2
	b, err := json.Marshal(tl)
	if err != nil {
		t.Fatalf("unexpected error: %v", err)
	}
	for _, want := range []string{`"impressions":10`, `"counted":12`, `"rejected":{"bad_type":2}`, `"events":14`} {
		if !strings.Contains(string(b), want) {
			t.Fatalf("unexpected tally JSON %s; want it to contain %s", b, want)
		}
	}
}
