package bench

import (
	"fmt"
	"io"

	"github.com/bidpulse/bidpulse/bidder/event"
)

// Check is one reconciliation line: a figure the bench knows from what it published against the
// change of the service's /v1/stats over the run.
type Check struct {
	Name string `json:"name"`
	// Want is what the published events imply; Got is the /v1/stats delta.
	Want int64 `json:"want"`
	Got  int64 `json:"got"`
	// Slack is how far above Want Got may be and still pass: the events of publishes that were
	// never acknowledged, which the stream may or may not have stored.
	Slack int64  `json:"slack,omitempty"`
	OK    bool   `json:"ok"`
	Note  string `json:"note,omitempty"`
}

// Verdict returns "PASS" or "FAIL".
func (c *Check) Verdict() string {
	if c.OK {
		return "PASS"
	}
	return "FAIL"
}

// Reconciliation is the verdict of a run's ingest: did the service count exactly what was
// published?
type Reconciliation struct {
	// Mode is the publish mode: "jetstream" (acknowledged) or "core".
	Mode string `json:"mode"`
	// Published is what was acknowledged (JetStream) or handed to NATS (core); Unacked what
	// JetStream never acknowledged despite the retries.
	Published Tally `json:"published"`
	Unacked   Tally `json:"unacked"`
	// Drained says whether the service received every published event before the deadline.
	Drained bool    `json:"drained"`
	Checks  []Check `json:"checks"`
	OK      bool    `json:"ok"`
}

func delta(after, before uint64) int64 { return int64(after) - int64(before) }

// reconcile compares what was published (sent: acknowledged or, in core mode, handed over;
// unacked: given up) with the /v1/stats change from base to final. It assumes the bench was the
// only producer while it ran.
func reconcile(mode string, sent, unacked Tally, base, final ServiceStats, drained bool) Reconciliation {
	r := Reconciliation{Mode: mode, Published: sent, Unacked: unacked, Drained: drained, OK: true}
	add := func(name string, want uint64, got int64, slack uint64, note string) {
		c := Check{Name: name, Want: int64(want), Got: got, Slack: int64(slack), Note: note}
		c.OK = got >= c.Want && got <= c.Want+c.Slack
		r.OK = r.OK && c.OK
		r.Checks = append(r.Checks, c)
	}
	lossNote := ""
	if d := delta(final.DroppedMessages, base.DroppedMessages); d > 0 {
		lossNote = fmt.Sprintf("%d NATS messages dropped for a slow consumer (core NATS is at-most-once)", d)
	} else if !drained {
		lossNote = "the service did not receive every published event before the drain deadline"
	}
	add("received", sent.Events, delta(final.Received, base.Received), unacked.Events, lossNote)
	add("counted", sent.Counted(), delta(final.Counted, base.Counted), unacked.Counted(), "")
	types := []struct {
		name string
		n    uint64
		u    uint64
	}{{"impression", sent.Impressions, unacked.Impressions}, {"click", sent.Clicks, unacked.Clicks}, {"conversion", sent.Conversions, unacked.Conversions}}
	if final.CountedByType != nil {
		for _, ty := range types {
			add("counted "+ty.name, ty.n, delta(final.CountedByType[ty.name], base.CountedByType[ty.name]), ty.u, "")
		}
	}
	add("duplicates", sent.Duplicates, delta(final.Duplicates, base.Duplicates), unacked.Duplicates, "")
	for r := event.Reason(1); r < event.NumReasons; r++ {
		name := event.ReasonNames[r]
		got := delta(final.Rejected[name], base.Rejected[name])
		if sent.Rejected[r] == 0 && got == 0 && unacked.Rejected[r] == 0 {
			continue
		}
		add("rejected "+name, sent.Rejected[r], got, unacked.Rejected[r], "")
	}
	add("late", 0, delta(final.Late, base.Late), 0, "")
	add("future", 0, delta(final.Future, base.Future), 0, "")
	add("overflow", 0, delta(final.Overflow, base.Overflow), 0, "")
	add("dropped_messages", 0, delta(final.DroppedMessages, base.DroppedMessages), 0, "")

	// The service's own balance over the run: every received event has exactly one outcome.
	var rejected int64
	for name, n := range final.Rejected {
		rejected += delta(n, base.Rejected[name])
	}
	outcomes := delta(final.Counted, base.Counted) + delta(final.Duplicates, base.Duplicates) + rejected +
		delta(final.Late, base.Late) + delta(final.Future, base.Future) + delta(final.Overflow, base.Overflow)
	bal := Check{Name: "balance", Want: delta(final.Received, base.Received), Got: outcomes,
		Note: "received = counted + duplicates + rejected + late + future + overflow"}
	bal.OK = bal.Want == bal.Got
	r.OK = r.OK && bal.OK
	r.Checks = append(r.Checks, bal)
	if mode == PublishJetStream {
		ack := Check{Name: "acknowledged", Want: int64(sent.Events + unacked.Events), Got: int64(sent.Events)}
		ack.OK = unacked.Events == 0
		if !ack.OK {
			ack.Note = "publishes never acknowledged despite retries"
		}
		r.OK = r.OK && ack.OK
		r.Checks = append(r.Checks, ack)
	}
	return r
}

// WriteText writes one verdict line per check and an overall line.
func (r *Reconciliation) WriteText(w io.Writer) {
	fmt.Fprintf(w, "reconciliation (%s publish; the /v1/stats change over the run against what was published):\n", r.Mode)
	for i := range r.Checks {
		c := &r.Checks[i]
		want := fmtInt(c.Want)
		if c.Slack > 0 {
			want += " (+" + fmtInt(c.Slack) + " unacked)"
		}
		fmt.Fprintf(w, "  %s  %-25s want %-14s got %s", c.Verdict(), c.Name, want, fmtInt(c.Got))
		if c.Note != "" {
			fmt.Fprintf(w, "  (%s)", c.Note)
		}
		fmt.Fprintln(w)
	}
	verdict := "PASS: every published event is accounted for exactly once"
	if !r.OK {
		verdict = "FAIL: see the lines above"
	}
	fmt.Fprintf(w, "  %s\n", verdict)
}

// fmtInt formats n with thousands separators.
func fmtInt(n int64) string {
	neg := n < 0
	if neg {
		n = -n
	}
	s := fmt.Sprint(n)
	out := make([]byte, 0, len(s)+len(s)/3+1)
	if neg {
		out = append(out, '-')
	}
	for i := range len(s) {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	return string(out)
}
