package bidder

import (
	"math"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/bidpulse/bidpulse/models"
	"github.com/bidpulse/bidpulse/windows"
)

// FuzzParseConfig checks the --config YAML loader on any bytes: it never panics, and a config
// it accepts is one the service can run: its parts build, and every policy in it (the default
// and each campaign's), which Evaluate and Tick trust once validated, gives finite multipliers
// in [0, hard_max] on a control tick and a bid.
func FuzzParseConfig(f *testing.F) {
	// The examples of the docs, as an operator starts from them.
	for _, doc := range []string{"../docs/CONFIGURATION.md", "../docs/MODELS.md"} {
		b, err := os.ReadFile(doc)
		if err != nil {
			f.Fatal(err)
		}
		for _, m := range regexp.MustCompile("(?s)```yaml\n(.*?)```").FindAllSubmatch(b, -1) {
			f.Add(m[1])
		}
	}
	for _, s := range []string{
		``, `{}`, `rollups: [campaign]`, `rollups: [creative]`, `resolutions: []`, `policies: {hard_max: -1}`,
		"resolutions:\n" + strings.Repeat("  - {width: 1ms, buckets: 65536}\n", 17),
		"resolutions:\n  - {width: 1s, buckets: 60}\n  - {width: 1h, buckets: 8784}\n",
		"policies:\n  default: {policy: target_roas, goal: {target: 0.000001}, pacing: {daily_budget: 1e300}, delay: {enabled: true, fallback: [{after: 1ns, share: 1}]}}\n",
		"policies:\n  campaigns:\n    a: &x {policy: target_cpa, goal: {target: 20}}\n    b: *x\n",
		"policies: {default: {time_zone: ../../etc/passwd}}", "unknown: 1", "rollups: !!binary aGVsbG8=",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := parseConfig(data)
		if err != nil {
			return
		}
		rollups, res, pol, err := c.build()
		if err != nil {
			t.Fatalf("unexpected error building an accepted config: %v", err)
		}
		if _, ok := rollups.ByName("campaign"); !ok {
			t.Fatalf("unexpected accepted config without the campaign level: %v", rollups.Names())
		}
		// No resolutions: the store's defaults.
		if _, err := windows.NewStore(windows.Config{Resolutions: res, MaxKeys: 1}); err != nil {
			t.Fatalf("unexpected resolutions %v in an accepted config: %v", res, err)
		}
		checkPolicy(t, pol, &pol.Default, "default")
		for name, cfg := range pol.Campaigns {
			checkPolicy(t, pol, cfg, name)
		}
	})
}

// checkPolicy runs a control tick and a bid under cfg and checks the multiplier.
func checkPolicy(t *testing.T, pol *models.Policies, cfg *models.CampaignPolicy, name string) {
	t.Helper()
	now := testNow
	var sp models.Spans
	for s := range sp {
		n := uint64(s + 1)
		sp[s] = windows.Counts{Impressions: 1000 * n, Clicks: 30 * n, Conversions: 3 * n, CostMicros: 5e6 * n, ValueMicros: 9e6 * n}
	}
	var cs models.CampaignState
	cs.Tick(cfg, &models.TickInput{NowMs: now, Campaign: sp, SpentTodayMicros: 7e6})
	key := []windows.Counts{sp[windows.Span1h], {Impressions: 200, Clicks: 9, Conversions: 1, CostMicros: 1e6}}
	var ks models.KeyState
	rng := models.NewRand(1)
	var r models.Result
	for _, in := range []models.Input{
		{NowMs: now, Chain: key, Spans: []models.Spans{sp, sp}, Device: []byte("mobile"), Country: []byte("FR")},
		{NowMs: now + 60_000, Chain: key[:1], Device: []byte("tv")},
		{NowMs: now},
	} {
		ks.Tick(cfg, &in, &cs)
		r.Reset()
		models.Evaluate(cfg, &in, &cs, &ks, &rng, &r)
		if m := r.Multiplier; math.IsNaN(m) || m < 0 || math.IsInf(m, 0) || pol.HardMax > 0 && m > pol.HardMax {
			t.Fatalf("unexpected multiplier of policy %q; got %v (hard max %v)", name, m, pol.HardMax)
		}
	}
}
