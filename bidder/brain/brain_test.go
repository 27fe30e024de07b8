package brain

import (
	"fmt"
	"runtime"
	"testing"

	"github.com/bidpulse/bidpulse/models"
	"github.com/bidpulse/bidpulse/windows"
)

const testNow = int64(1_767_322_445_000)

// newTestBrain returns a brain over an empty store with the default
// rollups and policies.
func newTestBrain(tb testing.TB, o Options) (*Brain, *windows.Store) {
	tb.Helper()
	r, err := windows.ParseRollups(windows.DefaultRollupNames())
	if err != nil {
		tb.Fatal(err)
	}
	st, err := windows.NewStore(windows.Config{Resolutions: windows.DefaultResolutions(), MaxKeys: 4_000_000})
	if err != nil {
		tb.Fatal(err)
	}
	pol := models.DefaultPolicies()
	o.Store, o.Rollups = st, r
	o.Policies = func() *models.Policies { return &pol }
	o.Now = func() int64 { return testNow }
	return New(o), st
}

// placementKey returns the campaign/placement key of campaign c, placement p.
func placementKey(b *Brain, vals *windows.Values, c, p int) []byte {
	vals.Reset()
	vals[windows.DimCampaign] = fmt.Appendf(nil, "campaign-%d", c)
	vals[windows.DimPlacement] = fmt.Appendf(nil, "placement-%d", p)
	lvl, _ := b.opts.Rollups.ByMask(vals.Mask())
	return windows.AppendKey(nil, lvl, b.opts.Rollups, vals)
}

func TestLifecycle(t *testing.T) {
	b, st := newTestBrain(t, Options{})
	var vals windows.Values
	key := placementKey(b, &vals, 1, 1)
	st.Add(key, testNow, testNow, windows.Counts{Impressions: 10, Clicks: 1})

	if b.Key(key, testNow, true) != nil || b.Campaign([]byte("campaign-1"), testNow, true) != nil {
		t.Fatal("an untracked key or campaign has a state")
	}
	if s := b.Stats(); s.KeysPending != 1 || s.CampaignsPending != 1 {
		t.Fatalf("the first answers did not add pending entries: %+v", s)
	}
	b.Publish(testNow)
	if b.Campaign([]byte("campaign-1"), testNow, true) == nil {
		t.Fatal("Publish did not give the new campaign its first tick")
	}
	if s := b.Stats(); s.Keys != 1 || s.Campaigns != 1 || s.CampaignStates != 1 || s.KeysPending != 0 {
		t.Fatalf("unexpected stats after Publish: %+v", s)
	}
	b.Tick(testNow + 60_000)
	if ks := b.Key(key, testNow+60_000, true); ks == nil || ks.AtMs != testNow+60_000 {
		t.Fatalf("the tick did not advance the key: %+v", ks)
	}

	// Unanswered for an hour: the campaign loses its state, the key goes.
	later := testNow + 60_000 + KeyIdle.Milliseconds() + 1
	b.Tick(later)
	if s := b.Stats(); s.Keys != 0 || s.CampaignStates != 0 || s.Campaigns != 1 {
		t.Fatalf("unexpected stats after an idle hour: %+v", s)
	}
	if b.Campaign([]byte("campaign-1"), later, false) != nil {
		t.Fatal("an idle campaign kept its state")
	}
	// A learned delay keeps the entry; a day without either forgets it.
	b.opts.Now = func() int64 { return later }
	b.RecordDelay([]byte("campaign-1"), later-1000, later)
	b.Tick(later + CampaignForget.Milliseconds())
	if s := b.Stats(); s.Campaigns != 1 {
		t.Fatalf("the entry of a campaign with a learned delay went: %+v", s)
	}
	b.Tick(later + CampaignForget.Milliseconds() + 1)
	if s := b.Stats(); s.Campaigns != 0 {
		t.Fatalf("a campaign idle for a day was kept: %+v", s)
	}
}

// TestLearnedDelayBeforeFirstAnswer: a campaign whose entry came from a
// learned conversion delay gets its controller state within a Publish of
// its first answer, like a campaign first seen in a bid.
func TestLearnedDelayBeforeFirstAnswer(t *testing.T) {
	b, _ := newTestBrain(t, Options{})
	b.RecordDelay([]byte("c1"), testNow-60_000, testNow)
	b.Publish(testNow)
	if _, h, ok := b.CampaignEntry("c1"); !ok || h.N != 1 {
		t.Fatalf("the learned delay made no entry: tracked %v, %d delays", ok, h.N)
	}
	if b.Campaign([]byte("c1"), testNow, true) != nil {
		t.Fatal("a campaign never answered has a state")
	}
	b.Publish(testNow)
	if b.Campaign([]byte("c1"), testNow, true) == nil {
		t.Fatal("Publish did not tick an answered campaign whose entry came from a learned delay")
	}
	if s := b.Stats(); s.CampaignStates != 1 || b.wanting.Load() != 0 {
		t.Fatalf("unexpected stats after its first tick: %+v, %d waiting", s, b.wanting.Load())
	}
}

func TestBoundsCounted(t *testing.T) {
	b, _ := newTestBrain(t, Options{MaxKeys: 3, MaxCampaigns: 2})
	var vals windows.Values
	for i := range 5 {
		b.Key(placementKey(b, &vals, 1, i), testNow, true)
		b.Campaign(fmt.Appendf(nil, "c%d", i), testNow, true)
	}
	b.RecordDelay([]byte("c9"), testNow-1, testNow)
	b.Publish(testNow)
	s := b.Stats()
	if s.Keys != 3 || s.KeysFull != 2 || s.Campaigns != 2 || s.CampaignsFull != 4 {
		t.Fatalf("unexpected stats past the bounds: %+v", s)
	}
}

func TestBidReadsAllocateNothing(t *testing.T) {
	b, st := newTestBrain(t, Options{})
	var vals windows.Values
	key := placementKey(b, &vals, 1, 1)
	st.Add(key, testNow, testNow, windows.Counts{Impressions: 10, Clicks: 1})
	b.Key(key, testNow, true)
	b.Campaign([]byte("campaign-1"), testNow, true)
	b.Publish(testNow)
	b.Tick(testNow)
	in := &Input{}
	pol := b.opts.Policies()
	lvl, _ := b.opts.Rollups.ByMask(vals.Mask())
	in.Vals = vals
	a := testing.AllocsPerRun(1000, func() {
		_ = b.Campaign(vals[windows.DimCampaign], testNow, true)
		b.BuildInput(in, lvl, pol.For(vals[windows.DimCampaign]), testNow)
		_ = b.Key(in.Key, testNow, true)
	})
	if a != 0 {
		t.Fatalf("a bid's reads of the brain allocate %v times", a)
	}
}

// BenchmarkMemory reports the heap held per key state and per campaign
// with controller state, at the default bounds: the budget stated in
// docs/MODELS.md.
func BenchmarkMemory(b *testing.B) {
	for b.Loop() {
		br, _ := newTestBrain(b, Options{})
		var vals windows.Values
		keys := make([][]byte, DefaultMaxKeys)
		for i := range keys {
			keys[i] = placementKey(br, &vals, i%DefaultMaxCampaigns, i)
		}
		runtime.GC()
		var m0, m1, m2 runtime.MemStats
		runtime.ReadMemStats(&m0)
		for i := range keys {
			br.Key(keys[i], testNow, true)
		}
		br.Publish(testNow)
		br.Tick(testNow) // every key gets a state
		runtime.GC()
		runtime.ReadMemStats(&m1)
		for i := range DefaultMaxCampaigns {
			br.Campaign(fmt.Appendf(nil, "campaign-%d", i), testNow, true)
		}
		br.Publish(testNow) // every campaign gets its first tick
		runtime.GC()
		runtime.ReadMemStats(&m2)
		if s := br.Stats(); s.Keys != DefaultMaxKeys || s.CampaignStates != DefaultMaxCampaigns {
			b.Fatalf("unexpected stats: %+v", s)
		}
		b.ReportMetric(float64(m1.HeapAlloc-m0.HeapAlloc)/DefaultMaxKeys, "B/key-state")
		b.ReportMetric(float64(m2.HeapAlloc-m1.HeapAlloc)/DefaultMaxCampaigns, "B/campaign-state")
		b.ReportMetric(float64(m2.HeapAlloc-m0.HeapAlloc)/(1<<20), "MiB-at-bounds")
		runtime.KeepAlive(keys)
	}
}

// BenchmarkTickMillionKeys ticks a brain over a million live keys (500,000
// campaigns with two placements each, at campaign and campaign/placement),
// with the default bounds of answered keys and campaigns tracked: the
// tick's time and the heap it allocates (the prior fits' groups are most
// of it).
func BenchmarkTickMillionKeys(b *testing.B) {
	br, st := newTestBrain(b, Options{})
	var vals windows.Values
	r := br.opts.Rollups
	campLvl, _ := r.ByMask(1 << windows.DimCampaign)
	for c := range 500_000 {
		for p := range 2 {
			key := placementKey(br, &vals, c, p)
			st.Add(key, testNow, testNow, windows.Counts{Impressions: 10, Clicks: uint64(c % 3)})
			if p == 0 {
				st.Add(windows.AppendKey(nil, campLvl, r, &vals), testNow, testNow, windows.Counts{Impressions: 20, Clicks: uint64(c % 3)})
			}
			if c*2+p < DefaultMaxKeys {
				br.Key(key, testNow, true)
			}
		}
		if c < DefaultMaxCampaigns {
			br.Campaign(vals[windows.DimCampaign], testNow, true)
		}
	}
	br.Publish(testNow)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		br.Tick(testNow + int64(i+1)*60_000)
	}
}
