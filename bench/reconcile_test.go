package bench

import (
	"bytes"
	"strings"
	"testing"

	"github.com/bidpulse/bidpulse/bidder/event"
)

// statsAfter returns base plus the outcomes of t, as a service that counted t exactly would
// report.
func statsAfter(base ServiceStats, t Tally) ServiceStats {
	s := base
	s.Received += t.Events
	s.Counted += t.Counted()
	s.Duplicates += t.Duplicates
	s.Rejected = map[string]uint64{}
	for name, n := range base.Rejected {
		s.Rejected[name] = n
	}
	for r, n := range t.Rejected {
		if r > 0 {
			s.Rejected[event.ReasonNames[r]] += n
		}
	}
	s.CountedByType = map[string]uint64{
		"impression": base.CountedByType["impression"] + t.Impressions,
		"click":      base.CountedByType["click"] + t.Clicks,
		"conversion": base.CountedByType["conversion"] + t.Conversions,
	}
	return s
}

func testTally() Tally {
	t := Tally{Events: 1000, Messages: 10, Impressions: 950, Clicks: 30, Conversions: 2, Duplicates: 10}
	t.Rejected[event.BadType] = 5
	t.Rejected[event.BadTS] = 3
	return t
}

func checkNamed(t *testing.T, r Reconciliation, name string) Check {
	t.Helper()
	for _, c := range r.Checks {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("no check %q in %+v", name, r.Checks)
	return Check{}
}

func TestReconcileExact(t *testing.T) {
	// A service that had already received traffic before the run: only deltas count.
	base := ServiceStats{Received: 507, Counted: 480, Duplicates: 20, Rejected: map[string]uint64{"bad_type": 7},
		CountedByType: map[string]uint64{"impression": 480}}
	sent := testTally()
	r := reconcile(PublishJetStream, sent, Tally{}, base, statsAfter(base, sent), true)
	if !r.OK {
		var b bytes.Buffer
		r.WriteText(&b)
		t.Fatalf("unexpected failed reconciliation:\n%s", b.String())
	}
	names := []string{}
	for _, c := range r.Checks {
		names = append(names, c.Name)
	}
	want := "received counted counted impression counted click counted conversion duplicates rejected bad_type rejected bad_ts late future overflow dropped_messages balance acknowledged"
	if got := strings.Join(names, " "); got != want {
		t.Fatalf("unexpected checks; got %q; want %q", got, want)
	}
	var b bytes.Buffer
	r.WriteText(&b)
	for _, line := range []string{"PASS  received                  want 1,000", "PASS  rejected bad_type         want 5", "PASS: every published event"} {
		if !strings.Contains(b.String(), line) {
			t.Fatalf("unexpected text; want a line with %q in:\n%s", line, b.String())
		}
	}
}

func TestReconcileFailures(t *testing.T) {
	sent := testTally()
	base := ServiceStats{}

	// A lost message in core mode: received and counted short, dropped_messages says why.
	final := statsAfter(base, sent)
	final.Received -= 100
	final.Counted -= 100
	final.CountedByType["impression"] -= 100
	final.DroppedMessages = 1
	r := reconcile(PublishCore, sent, Tally{}, base, final, false)
	if r.OK {
		t.Fatalf("unexpected pass with a loss")
	}
	c := checkNamed(t, r, "received")
	if c.OK || c.Want != 1000 || c.Got != 900 || !strings.Contains(c.Note, "1 NATS messages dropped") {
		t.Fatalf("unexpected received check %+v", c)
	}
	if c := checkNamed(t, r, "dropped_messages"); c.OK || c.Got != 1 {
		t.Fatalf("unexpected dropped check %+v", c)
	}
	if c := checkNamed(t, r, "balance"); !c.OK {
		t.Fatalf("unexpected balance failure %+v: the service's own books still balance", c)
	}
	for _, ch := range r.Checks {
		if ch.Name == "acknowledged" {
			t.Fatalf("unexpected acknowledged check in core mode")
		}
	}
	var b bytes.Buffer
	r.WriteText(&b)
	if !strings.Contains(b.String(), "FAIL  received") || !strings.Contains(b.String(), "FAIL: see the lines above") {
		t.Fatalf("unexpected text:\n%s", b.String())
	}

	// Counted twice (a replay applied again): counted over, duplicates fine.
	final = statsAfter(base, sent)
	final.Received += 50
	final.Counted += 50
	final.CountedByType["click"] += 50
	r = reconcile(PublishJetStream, sent, Tally{}, base, final, true)
	if c := checkNamed(t, r, "counted click"); r.OK || c.OK || c.Got != 80 {
		t.Fatalf("unexpected pass with double counting: %+v", c)
	}

	// A rejection the bench did not send shows as its own failing line.
	final = statsAfter(base, sent)
	final.Received++
	final.Rejected["bad_json"] = 1
	r = reconcile(PublishJetStream, sent, Tally{}, base, final, true)
	if c := checkNamed(t, r, "rejected bad_json"); r.OK || c.OK || c.Want != 0 || c.Got != 1 {
		t.Fatalf("unexpected check of an unexpected rejection: %+v", c)
	}

	// Books that do not balance.
	final = statsAfter(base, sent)
	final.Received += 3
	r = reconcile(PublishJetStream, sent, Tally{}, base, final, true)
	if c := checkNamed(t, r, "balance"); c.OK || c.Want != 1003 || c.Got != 1000 {
		t.Fatalf("unexpected balance check %+v", c)
	}
}

func TestReconcileUnacked(t *testing.T) {
	// Publishes never acknowledged may or may not have been stored: the checks accept either.
	sent := testTally()
	unacked := Tally{Events: 100, Messages: 1, Impressions: 100}
	both := sent
	both.Add(&unacked)
	for _, final := range []ServiceStats{statsAfter(ServiceStats{}, sent), statsAfter(ServiceStats{}, both)} {
		r := reconcile(PublishJetStream, sent, unacked, ServiceStats{}, final, true)
		if c := checkNamed(t, r, "counted"); !c.OK || c.Slack != 100 {
			t.Fatalf("unexpected counted check with unacked publishes: %+v", c)
		}
		if c := checkNamed(t, r, "acknowledged"); c.OK {
			t.Fatalf("unexpected pass of the acknowledged check: %+v", c)
		}
	}
}

func TestFmtInt(t *testing.T) {
	f := func(n int64, want string) {
		t.Helper()
		if got := fmtInt(n); got != want {
			t.Fatalf("unexpected fmtInt(%d); got %q; want %q", n, got, want)
		}
	}
	f(0, "0")
	f(999, "999")
	f(1000, "1,000")
	f(-1234567, "-1,234,567")
}
