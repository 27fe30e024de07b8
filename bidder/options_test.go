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
		o.MaxKeys != 1_000_000 || o.DedupSize != 64<<20 || o.Config.Policies.Default.Policy != "performance" {
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
	c, err := parseConfig([]byte("rollups: [campaign, campaign/device]\npolicies:\n  default:\n    performance: {window: 15m, elasticity: 0.5}\n  campaigns:\n    c1: {policy: target_cpa, goal: {target: 20}}\n"))
	if err != nil {
		t.Fatalf("unexpected error: %v", err)
	}
	perf := c.Policies.Default.Performance
	if len(c.Rollups) != 2 || perf.Window.String() != "15m" || perf.Elasticity != 0.5 || perf.Max != 2 {
		t.Fatalf("unexpected config: %+v", c)
	}
	if c1 := c.Policies.For([]byte("c1")); c1.Policy != "target_cpa" || c1.Performance.Elasticity != 0.5 {
		t.Fatalf("unexpected campaign policy: %+v", c1)
	}
	bad := []string{
		"rollups: [campaign/device]\n",
		"rollups: [placement]\n",
		"policies:\n  default:\n    performance: {window: 2h}\n",
		"policies:\n  default: {policy: magic}\n",
		"policies:\n  default: {min: 3}\n",
		"policies:\n  campaigns:\n    c1: {policy: target_cpa}\n",
		"policies:\n  default: {time_zone: Mars/Olympus}\n",
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
