// Package bench is the bidpulse load-test suite: bid and event load, scenarios and reports.
package bench

import (
	"math"
	"math/rand/v2"
	"sort"
	"strconv"
	"unicode/utf8"

	"github.com/bidpulse/bidpulse/bidder/event"
	"github.com/bidpulse/bidpulse/windows"
)

// SyntheticConfig configures a Synthetic traffic generator. Zero values take the defaults.
type SyntheticConfig struct {
	// Campaigns is the number of campaigns, named "c1".."cN" (default 3).
	Campaigns int
	// Creatives is the number of creatives per campaign, named "cr1".."crN" in every campaign
	// (default 3).
	Creatives int
	// Placements is the number of placements (default 4): "news.example/top",
	// "sports.example/side", "video.example/preroll", "blog.example/footer", then
	// "site5.example/slot", "site6.example/slot", ...
	Placements int
	// Seed makes the traffic, and the true rates behind it, reproducible.
	Seed int64
	// RunID prefixes every event id ("<RunID>-<sequence>"), so that ids are unique per run and a
	// second run is not taken for duplicates of the first. Default "syn"; cut to 96 bytes so ids
	// stay within event.MaxFieldLen.
	RunID string
	// Skew, when > 0, is the Zipf exponent of the traffic shares: the campaign, creative and
	// placement of rank r (from 1) get weights 1/r^Skew, and a cell's share is their product.
	// 0 keeps the built-in profile: campaign c has weight 1/c, creatives random weights
	// (0.5..1.5), the base placements their fixed shares.
	Skew float64
}

// Default sizes of a SyntheticConfig.
const (
	DefaultSyntheticCampaigns  = 3
	DefaultSyntheticCreatives  = 3
	DefaultSyntheticPlacements = 4
	maxRunIDLen                = 96
)

// Cell is one (campaign, creative, placement) combination with the true rates its traffic is
// drawn from.
type Cell struct {
	Campaign, Creative, Placement string
	// CTR is the true click-through rate: clicks / impressions.
	CTR float64
	// CVR is the true post-click conversion rate: conversions / clicks.
	CVR float64
	// Share is the cell's expected share of all impressions; the shares sum to 1.
	Share float64
}

// placementProfile is the true behaviour of a placement: its base CTR, a factor on the CVR of
// its clicks, and how busy it is.
type placementProfile struct {
	name   string
	ctr    float64
	cvr    float64
	weight float64
}

// basePlacements have clearly different CTRs (an ad above the fold is clicked ten times more
// than one in a footer), milder CVR differences (accidental clicks convert less) and a skewed
// traffic share.
var basePlacements = []placementProfile{
	{"news.example/top", 0.040, 1.0, 0.30},
	{"sports.example/side", 0.010, 0.8, 0.35},
	{"video.example/preroll", 0.025, 1.25, 0.10},
	{"blog.example/footer", 0.004, 0.7, 0.25},
}

// extraCTRs are cycled through for placements beyond the base ones; they get a small share each.
var extraCTRs = []float64{0.015, 0.006, 0.030, 0.012, 0.020}

const extraPlacementWeight = 0.08

// weighted is a small categorical distribution over fixed strings.
type weighted struct {
	values [][]byte
	cum    []float64 // cumulative weights, last = 1
}

func newWeighted(values []string, weights []float64) weighted {
	w := weighted{}
	total := 0.0
	for _, x := range weights {
		total += x
	}
	acc := 0.0
	for i, v := range values {
		acc += weights[i] / total
		w.values = append(w.values, []byte(v))
		w.cum = append(w.cum, acc)
	}
	w.cum[len(w.cum)-1] = 1
	return w
}

func (w *weighted) pick(u float64) []byte {
	return w.values[pickCum(w.cum, u)]
}

// pickCum returns the index of the first cumulative weight above u (u in [0, 1)).
func pickCum(cum []float64, u float64) int {
	i := sort.SearchFloat64s(cum, u)
	if i < len(cum) && cum[i] == u {
		i++
	}
	return min(i, len(cum)-1)
}

var (
	syntheticDevices   = newWeighted([]string{"mobile", "desktop", "tablet", "ctv"}, []float64{55, 35, 7, 3})
	syntheticCountries = newWeighted([]string{"US", "GB", "DE", "FR", "BR", "IN", "JP", "CA"}, []float64{35, 12, 11, 10, 9, 9, 7, 7})
)

// Synthetic generates realistic event traffic with known true rates: impressions spread over
// (campaign, creative, placement) cells with a skew, and the clicks and conversions they lead
// to. The same config (Seed included) yields the same bytes.
//
// A Synthetic is not safe for concurrent use. AppendBatch allocates nothing beyond growing dst.
type Synthetic struct {
	runID []byte
	rng   *rand.Rand
	cells []Cell
	// names holds each cell's campaign, creative and placement as bytes, for the encoder.
	names  [][3][]byte
	cum    []float64 // cumulative impression shares of cells
	index  map[[3]string]int
	seq    uint64 // impressions so far, the last id's sequence number
	total  uint64 // events so far
	byType [event.NumTypes]uint64
	id     []byte
	ev     event.Event
}

// NewSynthetic returns a generator for cfg. The true rates are drawn once from cfg.Seed:
// placement CTRs as in the package table, a mild per-campaign and per-creative factor
// (0.9..1.1 and 0.85..1.15); CVRs of 3%..8% per campaign, times a creative factor (0.8..1.25)
// and a placement factor, kept within 2%..10%. A negative or non-finite cfg.Skew counts as 0.
func NewSynthetic(cfg SyntheticConfig) *Synthetic {
	if cfg.Campaigns <= 0 {
		cfg.Campaigns = DefaultSyntheticCampaigns
	}
	if cfg.Creatives <= 0 {
		cfg.Creatives = DefaultSyntheticCreatives
	}
	if cfg.Placements <= 0 {
		cfg.Placements = DefaultSyntheticPlacements
	}
	if cfg.RunID == "" {
		cfg.RunID = "syn"
	}
	runID := cfg.RunID
	if len(runID) > maxRunIDLen {
		// Cut before the rune that crosses the limit.
		runID = runID[:maxRunIDLen]
		for len(runID) > 0 && !utf8.RuneStart(cfg.RunID[len(runID)]) {
			runID = runID[:len(runID)-1]
		}
	}
	s := &Synthetic{
		runID: []byte(runID),
		rng:   rand.New(rand.NewPCG(uint64(cfg.Seed), 0x62696470756c7365)), // "bidpulse"
		index: make(map[[3]string]int),
	}

	places := make([]placementProfile, cfg.Placements)
	for i := range places {
		if i < len(basePlacements) {
			places[i] = basePlacements[i]
			continue
		}
		places[i] = placementProfile{
			name:   "site" + strconv.Itoa(i+1) + ".example/slot",
			ctr:    extraCTRs[(i-len(basePlacements))%len(extraCTRs)],
			cvr:    1,
			weight: extraPlacementWeight,
		}
	}

	skew := cfg.Skew
	if !(skew > 0) || math.IsInf(skew, 0) {
		skew = 0
	}
	if skew > 0 {
		for i := range places {
			places[i].weight = math.Pow(float64(i+1), -skew)
		}
	}
	// The name bytes are shared by every cell that uses them.
	placeNames := make([][]byte, len(places))
	for i, pl := range places {
		placeNames[i] = []byte(pl.name)
	}
	total := 0.0
	for c := range cfg.Campaigns {
		campaign := "c" + strconv.Itoa(c+1)
		campaignB := []byte(campaign)
		campaignCTR := 0.9 + 0.2*s.rng.Float64()
		campaignCVR := 0.03 + 0.05*s.rng.Float64()
		campaignWeight := 1 / float64(c+1) // a few big campaigns, a tail of small ones
		if skew > 0 {
			campaignWeight = math.Pow(float64(c+1), -skew)
		}
		for k := range cfg.Creatives {
			creative := "cr" + strconv.Itoa(k+1)
			creativeB := []byte(creative)
			creativeCTR := 0.85 + 0.3*s.rng.Float64()
			creativeCVR := 0.8 + 0.45*s.rng.Float64()
			creativeWeight := 0.5 + s.rng.Float64()
			if skew > 0 {
				creativeWeight = math.Pow(float64(k+1), -skew)
			}
			for p, pl := range places {
				cell := Cell{
					Campaign:  campaign,
					Creative:  creative,
					Placement: pl.name,
					CTR:       min(pl.ctr*campaignCTR*creativeCTR, 1),
					CVR:       math.Min(math.Max(campaignCVR*creativeCVR*pl.cvr, 0.02), 0.10),
					Share:     campaignWeight * creativeWeight * pl.weight,
				}
				total += cell.Share
				s.index[[3]string{campaign, creative, pl.name}] = len(s.cells)
				s.cells = append(s.cells, cell)
				s.names = append(s.names, [3][]byte{campaignB, creativeB, placeNames[p]})
			}
		}
	}
	acc := 0.0
	for i := range s.cells {
		s.cells[i].Share /= total
		acc += s.cells[i].Share
		s.cum = append(s.cum, acc)
	}
	s.cum[len(s.cum)-1] = 1
	return s
}

// Cells returns every cell with its true rates, in (campaign, creative, placement) order. The
// slice is a copy.
func (s *Synthetic) Cells() []Cell {
	return append([]Cell(nil), s.cells...)
}

// Truth returns the true CTR and CVR of a (campaign, creative, placement) cell; ok is false for
// an unknown cell.
func (s *Synthetic) Truth(campaign, creative, placement string) (ctr, cvr float64, ok bool) {
	i, ok := s.index[[3]string{campaign, creative, placement}]
	if !ok {
		return 0, 0, false
	}
	return s.cells[i].CTR, s.cells[i].CVR, true
}

// AppendBatch appends to dst a JSON array of about n events at event time nowMs (Unix ms) and
// returns the extended slice: impressions, each followed by the click it leads to (with the
// cell's CTR) and that click's conversion (with its CVR). A click and a conversion share their
// impression's id (the dedup key is (type, id)); a conversion carries click_ts = nowMs. The
// array holds at least n events and at most n+2 (an impression is never split from its click
// and conversion); n <= 0 gives "[]".
//
// Impressions cost about 0.002 each (0.001..0.003); clicks and conversions cost nothing (CPM
// buying); a conversion is worth 20..80 in whole cents.
func (s *Synthetic) AppendBatch(dst []byte, n int, nowMs int64) []byte {
	dst = append(dst, '[')
	count := 0
	for count < n {
		cell := pickCum(s.cum, s.rng.Float64())
		ev := s.newEvent(cell, nowMs)
		ev.Type = event.Impression
		ev.CostMicros = 1000 + s.rng.Uint64N(2001)
		dst = s.appendEvent(dst, count)
		count++
		ev.CostMicros = 0
		if s.rng.Float64() >= s.cells[cell].CTR {
			continue
		}
		ev.Type = event.Click
		dst = s.appendEvent(dst, count)
		count++
		if s.rng.Float64() >= s.cells[cell].CVR {
			continue
		}
		ev.Type = event.Conversion
		ev.ValueMicros = (2000 + s.rng.Uint64N(6001)) * 10000
		ev.ClickTS, ev.HasClickTS = nowMs, true
		dst = s.appendEvent(dst, count)
		count++
	}
	s.total += uint64(count)
	s.ev = event.Event{}
	return append(dst, ']')
}

// NumCells returns the number of (campaign, creative, placement) cells.
func (s *Synthetic) NumCells() int { return len(s.cells) }

// AppendSweep appends to dst a JSON array of one impression for each of the n cells from
// first on (wrapping around), at event time nowMs, and returns the extended slice: traffic
// that makes every key of those cells live whatever its share. Its ids continue the
// sequence of AppendBatch, and its events count in Events and EventsByType.
func (s *Synthetic) AppendSweep(dst []byte, first, n int, nowMs int64) []byte {
	dst = append(dst, '[')
	ev := &s.ev
	for i := range n {
		s.newEvent((first+i)%len(s.cells), nowMs)
		ev.Type, ev.CostMicros = event.Impression, 1000+s.rng.Uint64N(2001)
		dst = s.appendEvent(dst, i)
	}
	s.total += uint64(max(n, 0))
	s.ev = event.Event{}
	return append(dst, ']')
}

// Events returns the number of events appended by AppendBatch and AppendSweep so far, clicks
// and conversions included; the difference around a call is the number of events in that batch.
func (s *Synthetic) Events() uint64 {
	return s.total
}

// EventsByType returns the events appended by AppendBatch so far, by type.
func (s *Synthetic) EventsByType() (impressions, clicks, conversions uint64) {
	return s.byType[event.Impression], s.byType[event.Click], s.byType[event.Conversion]
}

func (s *Synthetic) appendEvent(dst []byte, count int) []byte {
	if count > 0 {
		dst = append(dst, ',')
	}
	s.byType[s.ev.Type]++
	return event.AppendJSON(dst, &s.ev)
}

// newEvent starts s.ev as the next event of cell (a new id, its dimensions),
// at event time nowMs, and returns it.
func (s *Synthetic) newEvent(cell int, nowMs int64) *event.Event {
	s.seq++
	s.id = append(s.id[:0], s.runID...)
	s.id = append(s.id, '-')
	s.id = strconv.AppendUint(s.id, s.seq, 36)
	ev := &s.ev
	*ev = event.Event{ID: s.id, TS: nowMs, HasTS: true}
	names := &s.names[cell]
	ev.Dims[windows.DimCampaign] = names[0]
	ev.Dims[windows.DimCreative] = names[1]
	ev.Dims[windows.DimPlacement] = names[2]
	ev.Dims[windows.DimDevice] = syntheticDevices.pick(s.rng.Float64())
	ev.Dims[windows.DimCountry] = syntheticCountries.pick(s.rng.Float64())
	return ev
}
