package models

import (
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

func decodePolicies(t *testing.T, doc string) (Policies, error) {
	t.Helper()
	p := DefaultPolicies()
	dec := yaml.NewDecoder(strings.NewReader(doc))
	dec.KnownFields(true)
	err := dec.Decode(&p)
	return p, err
}

func TestPoliciesYAML(t *testing.T) {
	p, err := decodePolicies(t, `
hard_max: 5
default:
  time_zone: Europe/Paris
  guard: {max_step_per_minute: 0.1}
campaigns:
  c42:
    policy: target_cpa
    goal: {target: 20, window: 15m}
    pacing: {daily_budget: 5000, plan: even}
    modifiers:
      device: {mobile: 1.3}
      country: {FR: 1.2}
      hour: {0: 0.5}
      seasons: [{name: bf, start: 2025-11-28T00:00:00+01:00, end: 2025-12-01T00:00:00+01:00, factor: 1.5}]
  c43:
    time_zone: America/New_York
    max: 3
    delay: {min_samples: 1000}
  c44:
`)
	if err != nil {
		t.Fatalf("cannot decode: %s", err)
	}
	if err := p.Validate(); err != nil {
		t.Fatalf("unexpected error: %s", err)
	}
	if p.HardMax != 5 || p.Default.HardMax != 5 || p.Default.TimeZone != "Europe/Paris" || p.Default.Location.String() != "Europe/Paris" {
		t.Fatalf("unexpected default: %+v", p.Default)
	}
	c := p.For([]byte("c42"))
	if c.Policy != PolicyTargetCPA || c.Goal.Target != 20 || c.Goal.Kp != DefaultGoal().Kp || c.Goal.Window.String() != "15m" {
		t.Fatalf("unexpected goal of c42: %+v", c.Goal)
	}
	// Blocks absent from the entry come from the default, blocks present
	// start from the built-in defaults.
	if c.Guard.MaxStepPerMinute != 0.1 || c.TimeZone != "Europe/Paris" || c.HardMax != 5 {
		t.Fatalf("unexpected inherited fields of c42: guard %+v, tz %s, hard max %v", c.Guard, c.TimeZone, c.HardMax)
	}
	if c.Pacing.DailyBudget != 5000 || c.Pacing.Plan != PlanEven || c.Pacing.Kp != DefaultPacing().Kp {
		t.Fatalf("unexpected pacing of c42: %+v", c.Pacing)
	}
	if c.Modifiers.Device["mobile"] != 1.3 || c.Modifiers.Hour[0] != 0.5 || len(c.Modifiers.Seasons) != 1 ||
		!c.Modifiers.Seasons[0].Start.Equal(time.Date(2025, 11, 27, 23, 0, 0, 0, time.UTC)) {
		t.Fatalf("unexpected modifiers of c42: %+v", c.Modifiers)
	}
	c = p.For([]byte("c43"))
	if c.Location.String() != "America/New_York" || c.Max != 3 || c.Delay.MinSamples != 1000 || len(c.Delay.Fallback) != 4 || !c.Delay.Enabled {
		t.Fatalf("unexpected c43: %+v", c)
	}
	if c := p.For([]byte("c44")); c.Guard.MaxStepPerMinute != 0.1 {
		t.Fatalf("unexpected empty entry c44: %+v", c)
	}
	if c := p.For([]byte("unknown")); c != &p.Default {
		t.Fatalf("unexpected policy of an unknown campaign")
	}
	if n := testing.AllocsPerRun(100, func() { p.For([]byte("c42")) }); n != 0 {
		t.Fatalf("unexpected allocations in For; got %v; want 0", n)
	}
}

func TestPoliciesYAMLErrors(t *testing.T) {
	f := func(doc, want string) {
		t.Helper()
		p, err := decodePolicies(t, doc)
		if err == nil {
			err = p.Validate()
		}
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("unexpected error for %q; got %v; want one containing %q", doc, err, want)
		}
	}
	f("defualt: {}\n", "defualt")
	f("campaigns: {c1: {pacing: {budget: 10}}}\n", "budget")
	f("campaigns: {c1: {time_zone: Mars/Olympus}}\n", "campaigns.c1: invalid time_zone")
	f("default: {time_zone: Nowhere}\n", "invalid time_zone")
	f("campaigns: {c1: {goal: {window: 2h}}}\n", "goal.window")
	f("campaigns: {c1: {policy: target_cpa}}\n", "campaigns.c1: invalid goal.target")
	f("campaigns: {c1: {pacing: {plan: smooth}}}\n", "campaigns.c1: invalid pacing.plan")
	f("campaigns: {c1: {modifiers: {device: {mobile: 20}}}}\n", "modifiers.device.mobile")
	f("hard_max: 0.5\n", "hard_max")
	f("default: {policy: max_clicks}\n", "default: invalid policy")
	f("default: {min: 0}\n", "invalid min")
}

func TestCampaignPolicyDefaults(t *testing.T) {
	c := DefaultCampaignPolicy()
	if err := c.Validate(); err != nil {
		t.Fatalf("unexpected error: %s", err)
	}
	lo, hi := c.clamp()
	if lo != 0.1 || hi != 10 {
		t.Fatalf("unexpected default clamp [%v, %v]", lo, hi)
	}
	c.HardMax = 0.05 + 1
	c.Min = 1
	if lo, hi := c.clamp(); lo != 1 || hi != 1.05 {
		t.Fatalf("unexpected clamp under the hard cap [%v, %v]", lo, hi)
	}
	c = DefaultCampaignPolicy()
	c.Location = nil
	c.TimeZone = "Asia/Tokyo"
	if err := c.Validate(); err == nil {
		t.Fatalf("expecting an error for a time zone not loaded")
	}
	if err := c.SetTimeZone(""); err != nil || c.Location != time.UTC {
		t.Fatalf("unexpected SetTimeZone(\"\"): %v, %v", err, c.Location)
	}
}

// TestCampaignPolicyYAMLRoundTrip: a policy written as YAML (what GET
// /v1/policies may show) reads back the same.
func TestCampaignPolicyYAMLRoundTrip(t *testing.T) {
	c := DefaultCampaignPolicy()
	if err := c.SetTimeZone("Europe/Paris"); err != nil {
		t.Fatalf("unexpected error: %s", err)
	}
	c.Policy = PolicyTargetROAS
	c.Goal.Target = 4
	c.Pacing.DailyBudget = 5000
	c.Modifiers = ModifierConfig{Device: map[string]float64{"mobile": 1.3}, Hour: map[int]float64{3: 0.5},
		Seasons: []Season{{Name: "bf", Start: time.Date(2025, 11, 28, 0, 0, 0, 0, time.UTC), End: time.Date(2025, 12, 1, 0, 0, 0, 0, time.UTC), Factor: 1.5}}}
	b, err := yaml.Marshal(&c)
	if err != nil {
		t.Fatalf("cannot marshal: %s", err)
	}
	var got CampaignPolicy
	if err := yaml.Unmarshal(b, &got); err != nil {
		t.Fatalf("cannot unmarshal %s: %s", b, err)
	}
	if got.Location.String() != "Europe/Paris" || got.Goal != c.Goal || got.Pacing != c.Pacing || got.Guard != c.Guard ||
		got.Performance != c.Performance || got.Modifiers.Device["mobile"] != 1.3 || !got.Modifiers.Seasons[0].End.Equal(c.Modifiers.Seasons[0].End) ||
		len(got.Delay.Fallback) != len(c.Delay.Fallback) || got.Delay.Fallback[1] != c.Delay.Fallback[1] {
		t.Fatalf("unexpected round trip of\n%s\ngot %+v", b, got)
	}
	if !strings.Contains(string(b), "window: 1h") || !strings.Contains(string(b), "hold_for: 1h0m0s") {
		t.Fatalf("unexpected YAML:\n%s", b)
	}
}
