package brain

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/bidpulse/bidpulse/models"
	"github.com/bidpulse/bidpulse/windows"
)

// fuzzPolicies turns every controller on for the campaigns c0..c2 (goal, pacing, delay,
// guardrails), so a restored state reaches every piece of code that reads one.
const fuzzPolicies = `
default:
  guard: {max_step_per_minute: 0.1}
  delay: {enabled: true}
campaigns:
  c0: {policy: target_cpa, goal: {target: 20}, pacing: {daily_budget: 5000, plan: traffic}, delay: {enabled: true}}
  c1: {policy: target_roas, goal: {target: 3}, pacing: {daily_budget: 10}, time_zone: Europe/Paris}
`

// newFuzzBrain returns a brain under fuzzPolicies over a store holding a little traffic of
// the campaigns c0..c2 and their placements.
func newFuzzBrain(tb testing.TB) (*Brain, *models.Policies) {
	tb.Helper()
	var pol models.Policies
	if err := yaml.Unmarshal([]byte(fuzzPolicies), &pol); err != nil {
		tb.Fatal(err)
	}
	if err := pol.Validate(); err != nil {
		tb.Fatal(err)
	}
	r, err := windows.ParseRollups(windows.DefaultRollupNames())
	if err != nil {
		tb.Fatal(err)
	}
	st, err := windows.NewStore(windows.Config{Resolutions: windows.DefaultResolutions(), MaxKeys: 64})
	if err != nil {
		tb.Fatal(err)
	}
	b := New(Options{Store: st, Rollups: r, Policies: func() *models.Policies { return &pol }, Now: func() int64 { return testNow }, MaxKeys: 16, MaxCampaigns: 8})
	var vals windows.Values
	for c := range 3 {
		for p := range 2 {
			key := placementKey(b, &vals, c, p)
			st.Add(key, testNow-90_000, testNow-90_000, windows.Counts{Impressions: 200, Clicks: 9, Conversions: 1, CostMicros: 4e6, ValueMicros: 9e6})
			st.Add(windows.AppendKey(nil, r.Campaign, r, &vals), testNow-90_000, testNow-90_000, windows.Counts{Impressions: 200, Clicks: 9, Conversions: 1, CostMicros: 4e6})
		}
	}
	return b, &pol
}

// FuzzRestore checks that Restore never panics, that what it accepts is safe to use (bids
// evaluated on the restored states, and a control tick over them, give finite multipliers),
// and that a restored brain snapshots to what restores to itself.
func FuzzRestore(f *testing.F) {
	// A snapshot of a brain that ticked with traffic.
	b, _ := newFuzzBrain(f)
	var vals windows.Values
	for c := range 3 {
		b.Campaign(fmt.Appendf(nil, "campaign-%d", c), testNow, true)
		b.Key(placementKey(b, &vals, c, 0), testNow, true)
	}
	b.RecordDelay([]byte("c0"), testNow-3_600_000, testNow)
	b.Campaign([]byte("c0"), testNow, true)
	b.Publish(testNow)
	b.Tick(testNow + 60_000)
	var real bytes.Buffer
	b.Snapshot(&real)
	f.Add(real.Bytes())
	// States the tick made are in range: none is left out.
	b2, _ := newFuzzBrain(f)
	if err := b2.Restore(real.Bytes(), testNow); err != nil || b2.Stats().CampaignStates == 0 || b2.Stats().CampaignStates != b.Stats().CampaignStates || b2.Stats().Keys != b.Stats().Keys {
		f.Fatalf("unexpected restore of a real snapshot; got error %v, %+v; want %+v", err, b2.Stats(), b.Stats())
	}
	for _, s := range []string{
		``, `{}`, `null`, `[]`, `{"campaigns":null,"keys":null}`,
		`{"campaigns":{"c0":{"state":{"clicks":{"head":-5,"n":40,"end_ms":1}}}}}`,
		`{"campaigns":{"c1":{"state":{"clicks":{"head":99,"n":-3},"delay":{"window":77,"ready":true,"cdf":[2]}}}}}`,
		`{"campaigns":{"c0":{"state":{"hour_now_ms":-9223372036854775808,"goal":{},"pacing":{}},"delays":{"n":18446744073709551615,"start_ms":-1,"weights":[-1,1e308]}}}}`,
		`{"keys":{"AAA":{"value":-1,"good":1e308},"":{},"!!":{}}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		b, pol := newFuzzBrain(t)
		err := b.Restore(raw, testNow)
		var parsed snapshot
		if len(raw) > 0 && json.Unmarshal(raw, &parsed) != nil {
			if s := b.Stats(); err == nil || s.Campaigns != 0 || s.Keys != 0 {
				t.Fatalf("unexpected restore of invalid JSON; got error %v, %+v", err, s)
			}
			return
		}
		// Valid JSON: the states out of range are left out (an error says so), the others kept.
		if err != nil && !strings.Contains(err.Error(), "left out") {
			t.Fatalf("unexpected error restoring valid JSON: %v", err)
		}
		checkRestoredBids(t, b, pol, testNow)
		// A restored brain snapshots to what restores to the same snapshot.
		var s1, s2 bytes.Buffer
		if res := b.Snapshot(&s1); res.LeftOut > 0 {
			t.Fatalf("unexpected states left out of the snapshot of a restored brain: %+v", res)
		}
		b2, _ := newFuzzBrain(t)
		if err := b2.Restore(s1.Bytes(), testNow); err != nil {
			t.Fatalf("unexpected error restoring a snapshot: %v: %s", err, s1.Bytes())
		}
		b2.Snapshot(&s2)
		var d1, d2 snapshot
		if err := json.Unmarshal(s1.Bytes(), &d1); err != nil {
			t.Fatalf("unexpected invalid snapshot: %v: %s", err, s1.Bytes())
		}
		if err := json.Unmarshal(s2.Bytes(), &d2); err != nil {
			t.Fatalf("unexpected invalid snapshot: %v: %s", err, s2.Bytes())
		}
		if !reflect.DeepEqual(d1, d2) {
			t.Fatalf("unexpected round trip; got %s; want %s", s2.Bytes(), s1.Bytes())
		}
		// The control tick advances restored states, then bids read them.
		b.Tick(testNow + 60_000)
		b.Publish(testNow + 60_000)
		checkRestoredBids(t, b, pol, testNow+60_000)
	})
}

// checkRestoredBids evaluates a bid of every tracked campaign and key of b, as the bid path
// does without data, and checks the multiplier is a finite number in [0, hard max].
func checkRestoredBids(t *testing.T, b *Brain, pol *models.Policies, nowMs int64) {
	t.Helper()
	var rng models.Rand
	var res models.Result
	check := func(what, name string, cs *models.CampaignState, ks *models.KeyState) {
		cfg := pol.For([]byte(name))
		in := models.Input{NowMs: nowMs, Device: []byte("mobile"), Country: []byte("FR")}
		res.Reset()
		models.Evaluate(cfg, &in, cs, ks, &rng, &res)
		if m := res.Multiplier; math.IsNaN(m) || m < 0 || m > math.Max(pol.HardMax, 10) {
			t.Fatalf("unexpected multiplier of restored %s %q; got %v", what, name, m)
		}
	}
	b.campaigns.Range(func(name string, c *campaign) bool {
		check("campaign", name, c.state.Load(), nil)
		return true
	}, nil)
	b.keys.Range(func(key string, k *keyCtl) bool {
		check("key", "c0", nil, k.state.Load())
		return true
	}, nil)
}
