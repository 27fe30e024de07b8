package bidder

import "testing"

func TestSubjectMatches(t *testing.T) {
	f := func(filter, subject string, want bool) {
		t.Helper()
		if got := subjectMatches(filter, subject); got != want {
			t.Fatalf("unexpected subjectMatches(%q, %q); got %v; want %v", filter, subject, got, want)
		}
	}
	f("bidpulse.events.>", "bidpulse.dlq", false)
	f("bidpulse.>", "bidpulse.dlq", true)
	f(">", "bidpulse.dlq", true)
	f("bidpulse.*", "bidpulse.dlq", true)
	f("*.dlq", "bidpulse.dlq", true)
	f("bidpulse.dlq", "bidpulse.dlq", true)
	f("bidpulse.dlq.>", "bidpulse.dlq", false)
	f("bidpulse.events", "bidpulse.dlq", false)
}

func TestCheckSubject(t *testing.T) {
	f := func(subject string, ok bool) {
		t.Helper()
		if err := checkSubject(subject); (err == nil) != ok {
			t.Fatalf("unexpected checkSubject(%q): %v; want ok=%v", subject, err, ok)
		}
	}
	f("bidpulse.events.>", true)
	f("tracker.*.events", true)
	f("bidpulse.>", false)
	f(">", false)
	f("", false)
	f("a..b", false)
	f("a.>.b", false)
	f("a b", false)
}

func TestOptionsDefaults(t *testing.T) {
	if _, err := (Options{}).withDefaults(); err == nil {
		t.Fatalf("expected an error without a clock")
	}
	o, err := (Options{Clock: NewManualClock(0)}).withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if o.HTTPAddr != ":8080" || o.NATSAddr != "127.0.0.1:4222" || o.Subject != "bidpulse.events.>" ||
		o.MaxKeys != 1_000_000 || o.DedupSize != 64<<20 || o.Config.Policy.Name != "performance" {
		t.Fatalf("unexpected defaults: %+v", o)
	}
	if _, err := (Options{Clock: NewManualClock(0), DedupSize: 1 << 20}).withDefaults(); err == nil {
		t.Fatalf("expected an error for a tiny dedup cache")
	}
	if _, err := (Options{Clock: NewManualClock(0), Subject: "bidpulse.*"}).withDefaults(); err == nil {
		t.Fatalf("expected an error for a subject matching the DLQ")
	}
}

func TestParseConfig(t *testing.T) {
	c, err := parseConfig([]byte("rollups: [campaign, campaign/device]\npolicy:\n  window: 15m\n  elasticity: 0.5\n"))
	if err != nil {
		t.Fatalf("unexpected error: %v", err)
	}
	if len(c.Rollups) != 2 || c.Policy.Window != "15m" || c.Policy.Elasticity != 0.5 || c.Policy.Max != 2 {
		t.Fatalf("unexpected config: %+v", c)
	}
	bad := []string{
		"rollups: [campaign/device]\n",
		"rollups: [placement]\n",
		"policy:\n  window: 2h\n",
		"policy:\n  name: magic\n",
		"policy:\n  min: 3\n",
		"resolutions: [{width: 0s, buckets: 3}]\n",
		"resolutions: [{width: 5s, buckets: 12}]\n",
		"colour: red\n",
		"rollups: {a: b}\n",
	}
	for _, b := range bad {
		if _, err := parseConfig([]byte(b)); err == nil {
			t.Fatalf("expected an error for config %q", b)
		}
	}
	if _, err := parseConfig(nil); err != nil {
		t.Fatalf("an empty config must give the defaults: %v", err)
	}
}
