package bench

import (
	"bytes"
	"cmp"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/bidpulse/bidpulse/bidder/event"
	"github.com/bidpulse/bidpulse/windows"
)

const testNowMs = 1764345600000

// observed accumulates what a stream of synthetic events shows.
type observed struct {
	impressions, clicks, conversions int
}

func TestSyntheticTraffic(t *testing.T) {
	s := NewSynthetic(SyntheticConfig{Seed: 42, RunID: "run1"})
	cells := s.Cells()
	if len(cells) != 3*3*4 {
		t.Fatalf("unexpected number of cells; got %d; want 36", len(cells))
	}

	// Expected rates per placement: the share-weighted mix of its cells.
	type expect struct{ share, clicks, convs float64 }
	want := map[string]*expect{}
	for _, c := range cells {
		e := want[c.Placement]
		if e == nil {
			e = &expect{}
			want[c.Placement] = e
		}
		e.share += c.Share
		e.clicks += c.Share * c.CTR
		e.convs += c.Share * c.CTR * c.CVR
	}

	const total = 200_000
	var p event.Parser
	got := map[string]*observed{}
	seen := map[string]event.Type{} // id -> last type seen
	var events, impressions, batches int
	var costMicros, valueMicros uint64
	devices := map[string]bool{}
	countries := map[string]bool{}
	var buf []byte
	for now := int64(testNowMs); events < total; now += 100 {
		const n = 500
		buf = s.AppendBatch(buf[:0], n, now)
		batches++
		k := p.Parse(buf, func(ev *event.Event, reason event.Reason, raw []byte) {
			if reason != event.OK {
				t.Fatalf("unexpected rejection; got %s for %s", reason, raw)
			}
			if !ev.HasTS || ev.TS != now {
				t.Fatalf("unexpected ts; got %d (%v); want %d", ev.TS, ev.HasTS, now)
			}
			id := string(ev.ID)
			if !strings.HasPrefix(id, "run1-") {
				t.Fatalf("unexpected id %q; want the prefix run1-", id)
			}
			// Ids: an impression id is new; a click follows its impression and a conversion its
			// click, so (type, id) is unique.
			prev, ok := seen[id]
			if ev.Type == event.Impression && ok || ev.Type != event.Impression && prev != ev.Type-1 {
				t.Fatalf("unexpected %s with id %q after %v", ev.Type, id, prev)
			}
			seen[id] = ev.Type

			placement := string(ev.Dims[windows.DimPlacement])
			o := got[placement]
			if o == nil {
				o = &observed{}
				got[placement] = o
			}
			if _, _, ok := s.Truth(string(ev.Dims[windows.DimCampaign]), string(ev.Dims[windows.DimCreative]), placement); !ok {
				t.Fatalf("unexpected cell of %s", event.AppendJSON(nil, ev))
			}
			devices[string(ev.Dims[windows.DimDevice])] = true
			countries[string(ev.Dims[windows.DimCountry])] = true
			switch ev.Type {
			case event.Impression:
				o.impressions++
				impressions++
				costMicros += ev.CostMicros
				if ev.ValueMicros != 0 || ev.HasClickTS {
					t.Fatalf("unexpected impression %s", event.AppendJSON(nil, ev))
				}
			case event.Click:
				o.clicks++
				if ev.CostMicros != 0 || ev.ValueMicros != 0 || ev.HasClickTS {
					t.Fatalf("unexpected click %s", event.AppendJSON(nil, ev))
				}
			case event.Conversion:
				o.conversions++
				valueMicros += ev.ValueMicros
				if ev.ValueMicros < 20e6 || ev.ValueMicros > 80e6 || ev.ValueMicros%10000 != 0 || !ev.HasClickTS || ev.ClickTS != now {
					t.Fatalf("unexpected conversion %s", event.AppendJSON(nil, ev))
				}
			}
		})
		if k < n || k > n+2 {
			t.Fatalf("unexpected batch size; got %d; want %d..%d", k, n, n+2)
		}
		events += k
		if s.Events() != uint64(events) {
			t.Fatalf("unexpected Events(); got %d; want %d", s.Events(), events)
		}
	}

	if got, want := float64(costMicros)/float64(impressions)/1e6, 0.002; math.Abs(got-want) > 0.0001 {
		t.Fatalf("unexpected mean cost per impression; got %.5f; want about %.3f", got, want)
	}
	var convs int
	for _, o := range got {
		convs += o.conversions
	}
	if got := float64(valueMicros) / float64(convs) / 1e6; got < 45 || got > 55 {
		t.Fatalf("unexpected mean value per conversion; got %.2f; want about 50", got)
	}
	if len(devices) != 4 || len(countries) != 8 {
		t.Fatalf("unexpected device and country sets; got %d and %d values; want 4 and 8", len(devices), len(countries))
	}

	// Observed rates per placement against the truth, within 4 standard deviations of a
	// binomial proportion (a few percent of the rate on the busy placements).
	within := func(what, placement string, obs, trials int, p float64) {
		t.Helper()
		rate := float64(obs) / float64(trials)
		sigma := math.Sqrt(p * (1 - p) / float64(trials))
		t.Logf("%-22s %-4s observed %.5f, true %.5f (%+.1f%%, %+.1f sigma, n=%d)",
			placement, what, rate, p, 100*(rate-p)/p, (rate-p)/sigma, trials)
		if math.Abs(rate-p) > 4*sigma {
			t.Fatalf("unexpected %s of %s; got %.5f; want %.5f +- %.5f", what, placement, rate, p, 4*sigma)
		}
	}
	for placement, e := range want {
		o := got[placement]
		if o == nil {
			t.Fatalf("unexpected placement without traffic: %s", placement)
		}
		within("CTR", placement, o.clicks, o.impressions, e.clicks/e.share)
		within("CVR", placement, o.conversions, o.clicks, e.convs/e.clicks)
		within("share", placement, o.impressions, impressions, e.share)
	}

	// Placements are clearly apart: ordered by observed CTR as by true CTR.
	order := func(rate func(string) float64) []string {
		names := make([]string, 0, len(want))
		for name := range want {
			names = append(names, name)
		}
		slices.SortFunc(names, func(a, b string) int {
			return cmp.Compare(rate(a), rate(b))
		})
		return names
	}
	wantOrder := order(func(pl string) float64 { return want[pl].clicks / want[pl].share })
	gotOrder := order(func(pl string) float64 { return float64(got[pl].clicks) / float64(got[pl].impressions) })
	if !slices.Equal(gotOrder, wantOrder) {
		t.Fatalf("unexpected placement order by CTR; got %q; want %q", gotOrder, wantOrder)
	}
}

func TestSyntheticDeterministic(t *testing.T) {
	gen := func(cfg SyntheticConfig) []byte {
		s := NewSynthetic(cfg)
		var b []byte
		for i := range 5 {
			b = s.AppendBatch(b, 300, testNowMs+int64(i))
		}
		return b
	}
	a := gen(SyntheticConfig{Seed: 7, RunID: "r"})
	if b := gen(SyntheticConfig{Seed: 7, RunID: "r"}); !bytes.Equal(a, b) {
		t.Fatalf("unexpected difference between two runs with the same seed")
	}
	if b := gen(SyntheticConfig{Seed: 8, RunID: "r"}); bytes.Equal(a, b) {
		t.Fatalf("unexpected identical traffic for different seeds")
	}
	s1, s2 := NewSynthetic(SyntheticConfig{Seed: 7}), NewSynthetic(SyntheticConfig{Seed: 7})
	if !slices.Equal(s1.Cells(), s2.Cells()) {
		t.Fatalf("unexpected different truths for the same seed")
	}
}

func TestSyntheticConfig(t *testing.T) {
	s := NewSynthetic(SyntheticConfig{Campaigns: 2, Creatives: 1, Placements: 6, RunID: strings.Repeat("é", 100)})
	var placements []string
	for _, c := range s.Cells() {
		if c.Campaign == "c1" {
			placements = append(placements, c.Placement)
		}
		if c.CTR <= 0 || c.CTR >= 0.1 || c.CVR < 0.02 || c.CVR > 0.10 || c.Share <= 0 {
			t.Fatalf("unexpected rates in %+v", c)
		}
	}
	wantPlacements := []string{"news.example/top", "sports.example/side", "video.example/preroll", "blog.example/footer",
		"site5.example/slot", "site6.example/slot"}
	if !slices.Equal(placements, wantPlacements) {
		t.Fatalf("unexpected placements; got %q; want %q", placements, wantPlacements)
	}
	if n := len(s.Cells()); n != 2*1*6 {
		t.Fatalf("unexpected number of cells; got %d; want 12", n)
	}
	if ctr, cvr, ok := s.Truth("c2", "cr1", "site6.example/slot"); !ok || ctr == 0 || cvr == 0 {
		t.Fatalf("unexpected truth of a known cell; got %v %v %v", ctr, cvr, ok)
	}
	if _, _, ok := s.Truth("c3", "cr1", "news.example/top"); ok {
		t.Fatalf("unexpected truth of an unknown cell")
	}

	// A long RunID is cut on a rune boundary and ids stay valid.
	var p event.Parser
	valid := 0
	b := s.AppendBatch(nil, 50, testNowMs)
	p.Parse(b, func(ev *event.Event, reason event.Reason, raw []byte) {
		if reason != event.OK {
			t.Fatalf("unexpected rejection; got %s for %s", reason, raw)
		}
		valid++
	})
	if valid < 50 {
		t.Fatalf("unexpected number of valid events; got %d; want at least 50", valid)
	}
	if got := string(s.AppendBatch(nil, 0, testNowMs)); got != "[]" {
		t.Fatalf("unexpected empty batch; got %q; want []", got)
	}

	// Defaults.
	d := NewSynthetic(SyntheticConfig{})
	if n := len(d.Cells()); n != DefaultSyntheticCampaigns*DefaultSyntheticCreatives*DefaultSyntheticPlacements {
		t.Fatalf("unexpected number of default cells; got %d; want 36", n)
	}
	if b := d.AppendBatch(nil, 1, testNowMs); !bytes.HasPrefix(b, []byte(`[{"id":"syn-1","type":"impression","ts":1764345600000,"campaign":"c`)) {
		t.Fatalf("unexpected first event; got %s", b)
	}
}

func TestSyntheticAllocs(t *testing.T) {
	s := NewSynthetic(SyntheticConfig{Seed: 1})
	buf := s.AppendBatch(nil, 1000, testNowMs) // warm-up
	allocs := testing.AllocsPerRun(50, func() { buf = s.AppendBatch(buf[:0], 100, testNowMs) })
	if allocs != 0 {
		t.Fatalf("unexpected allocations per AppendBatch; got %v; want 0", allocs)
	}
}
