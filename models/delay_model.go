package models

import (
	"encoding/binary"
	"math"
	"sync"

	"github.com/bidpulse/bidpulse/windows"
)

// numAges is the number of click-age intervals the spans delimit:
// [0,1m), [1m,5m), [5m,15m), [15m,1h), [1h,24h).
const numAges = int(windows.NumSpans)

// gammaSteps is the resolution of the tables of delayTable.Gamma.
const gammaSteps = 24

// dayMs is the length of the 24h span and of a click-history block.
const dayMs = 24 * 3600e3

// ageBounds returns the age interval j: [lo, hi) in ms.
func ageBounds(j int) (lo, hi float64) {
	if j > 0 {
		lo = float64(windows.Span(j - 1).Duration().Milliseconds())
	}
	return lo, float64(windows.Span(j).Duration().Milliseconds())
}

// delayTable holds, for one window W, the integrals of g(a), the chance
// that the conversion of a click of age a is counted by the window: F(a) -
// F(a-W) when conversions are counted at their own time, F(a) for a < W
// (else 0) when counted at the click.
type delayTable struct {
	// Gamma[j][k] integrates g over [lo_j, lo_j + k*(hi_j-lo_j)/gammaSteps]
	// of age interval j, in ms.
	Gamma [numAges][gammaSteps + 1]float64 `json:"gamma"`
	// Tail integrates g over the ages of 24 h and more, in ms: the weight,
	// per ms of steady click rate, of the clicks older than the spans.
	Tail float64 `json:"tail"`
}

// DelayModel is a compiled delay distribution: immutable once built, so
// that the states of campaigns on the same fallback share one (a campaign
// state without its tables is about a third of the size).
type DelayModel struct {
	// CDF is the delay distribution at the histogram's bin edges, and G
	// its integral from 0 to each edge, in ms.
	CDF [DelayBins + 1]float64 `json:"cdf"`
	G   [DelayBins + 1]float64 `json:"g"`
	// Learned says CDF comes from the histogram, not the fallback.
	Learned bool `json:"learned"`
	// Table of the state's Window and counting mode.
	Table delayTable `json:"table"`
}

// DelayState is the compiled delay model of a campaign, refreshed on the
// control tick from its histogram (or the fallback) and read on the bid
// path. Plain data but for the model, which is shared and never changed
// (its fields encode inline in JSON, as when they were the state's own).
type DelayState struct {
	// DelayModel is nil until the first refresh (Ready false).
	*DelayModel
	// Samples is the histogram's sample count at the last refresh.
	Samples uint64 `json:"samples"`
	// Window is the span the table was computed for, AtClick the counting
	// mode.
	Window  windows.Span `json:"window"`
	AtClick bool         `json:"at_click"`
	// CampaignTail is the campaign's effective clicks older than 24 h for
	// Window, from its click history, and TailPerClick the same per click
	// of the campaign's last 24 hours: a key's clicks older than a day are
	// assumed to follow its campaign's volume history. TailKnown says
	// there is a history.
	CampaignTail float64 `json:"campaign_tail"`
	TailPerClick float64 `json:"tail_per_click"`
	TailKnown    bool    `json:"tail_known"`
	// CampaignOld is the campaign's effective clicks an hour old and more
	// for Window, from its hourly buckets and click history at the last
	// tick; OldKnown says the tick had the hourly buckets.
	CampaignOld float64 `json:"campaign_old"`
	OldKnown    bool    `json:"old_known"`
	// Ready says the state was refreshed at least once (and has a model).
	Ready bool `json:"ready"`
}

// refresh recompiles d from h (nil: none) and cfg at nowMs, for window.
// A model from the fallback is shared by every state of the same fallback,
// window and counting mode (fallbackModel); a learned one is compiled anew.
func (d *DelayState) refresh(cfg *DelayConfig, h *DelayHistogram, window windows.Span, nowMs int64) {
	d.Samples = 0
	if h != nil {
		d.Samples = h.Samples()
	}
	d.Window = window
	d.AtClick = cfg.CountedAt == CountedAtClick
	if h != nil && d.Samples >= cfg.MinSamples && d.Samples > 0 {
		m := &DelayModel{Learned: true}
		h.CDF(nowMs, &m.CDF)
		m.compile(window, d.AtClick)
		d.DelayModel = m
	} else {
		d.DelayModel = fallbackModel(cfg, window, d.AtClick)
	}
	d.Ready = d.DelayModel != nil
}

// compile fills G from CDF, then the table of window.
func (m *DelayModel) compile(window windows.Span, atClick bool) {
	m.G[0] = 0
	for k := 0; k < DelayBins; k++ {
		m.G[k+1] = m.G[k] + float64(delayEdges[k+1]-delayEdges[k])*(m.CDF[k]+m.CDF[k+1])/2
	}
	m.table(window, atClick, &m.Table)
}

// fallbackModels caches the models compiled from fallbacks, by fallback,
// window and counting mode: policies are few, so it stays small (bounded
// by maxFallbackModels all the same).
var fallbackModels struct {
	mu  sync.Mutex
	m   map[string]*DelayModel
	key []byte
}

const maxFallbackModels = 4096

// fallbackModel returns the shared model of cfg's fallback for window and
// the counting mode. Safe for concurrent use.
func fallbackModel(cfg *DelayConfig, window windows.Span, atClick bool) *DelayModel {
	f := &fallbackModels
	f.mu.Lock()
	defer f.mu.Unlock()
	k := append(f.key[:0], byte(window), 0)
	if atClick {
		k[1] = 1
	}
	for _, p := range cfg.Fallback {
		k = binary.LittleEndian.AppendUint64(k, uint64(p.After))
		k = binary.LittleEndian.AppendUint64(k, math.Float64bits(p.Share))
	}
	f.key = k
	if m := f.m[string(k)]; m != nil {
		return m
	}
	m := &DelayModel{}
	cfg.fallbackCDF(&m.CDF)
	m.compile(window, atClick)
	if f.m == nil {
		f.m = map[string]*DelayModel{}
	}
	if len(f.m) < maxFallbackModels {
		f.m[string(k)] = m
	}
	return m
}

// F returns the share of conversions that arrive within ms of their click.
func (d *DelayModel) F(ms float64) float64 {
	if ms <= 0 {
		return 0
	}
	for k := 0; k < DelayBins; k++ {
		a, b := float64(delayEdges[k]), float64(delayEdges[k+1])
		if ms < b {
			return d.CDF[k] + (d.CDF[k+1]-d.CDF[k])*(ms-a)/(b-a)
		}
	}
	return 1
}

// integral returns the integral of F from 0 to ms, in ms.
func (d *DelayModel) integral(ms float64) float64 {
	if ms <= 0 {
		return 0
	}
	if ms >= float64(delayEdges[DelayBins]) {
		return d.G[DelayBins] + (ms - float64(delayEdges[DelayBins]))
	}
	k := delayBin(int64(ms))
	a, b := float64(delayEdges[k]), float64(delayEdges[k+1])
	fx := d.CDF[k] + (d.CDF[k+1]-d.CDF[k])*(ms-a)/(b-a)
	return d.G[k] + (ms-a)*(d.CDF[k]+fx)/2
}

// gIntegral integrates g from a to b (ms) for the window W.
func (d *DelayModel) gIntegral(a, b, W float64, atClick bool) float64 {
	if b <= a {
		return 0
	}
	if atClick {
		b = math.Min(b, W)
		if b <= a {
			return 0
		}
		return d.integral(b) - d.integral(a)
	}
	return d.integral(b) - d.integral(a) - (d.integral(b-W) - d.integral(a-W))
}

// table fills t for window.
func (d *DelayModel) table(window windows.Span, atClick bool, t *delayTable) {
	W := float64(window.Duration().Milliseconds())
	for j := 0; j < numAges; j++ {
		lo, hi := ageBounds(j)
		step := (hi - lo) / gammaSteps
		t.Gamma[j][0] = 0
		for k := 1; k <= gammaSteps; k++ {
			a := lo + float64(k-1)*step
			t.Gamma[j][k] = t.Gamma[j][k-1] + d.gIntegral(a, a+step, W, atClick)
		}
	}
	t.Tail = 0
	if !atClick {
		// The integral of F(a)-F(a-W) over [24h, inf) is that of 1-F
		// over [24h-W, 24h).
		t.Tail = W - (d.integral(dayMs) - d.integral(dayMs-W))
	}
}

// historyTail returns the effective clicks, for window W, of the clicks of
// h of age minAge (ms) or more at nowMs.
func (d *DelayState) historyTail(h *ClickHistory, window windows.Span, atClick bool, nowMs int64, minAge float64) float64 {
	if atClick {
		return 0
	}
	W := float64(window.Duration().Milliseconds())
	e := 0.0
	for k := 0; k < h.N; k++ {
		end := h.EndMs - int64(k)*int64(dayMs)
		a0 := float64(nowMs - end)
		a1 := a0 + dayMs
		a0 = math.Max(a0, minAge)
		if a1 <= a0 {
			continue
		}
		e += float64(h.block(k)) / dayMs * d.gIntegral(a0, a1, W, false)
	}
	return e
}

// effective returns the effective clicks of sp for d's window; see
// effectiveClicks.
func (d *DelayState) effective(sp *Spans, ageMs int64, old, tail, maxCorr float64) float64 {
	return effectiveClicks(&d.Table, d.Window, sp, ageMs, old, tail, maxCorr)
}

// effectiveClicks returns the effective clicks of sp for the window of t:
// for each age interval under an hour, its clicks times the mean of g over
// the ages they can have (the whole interval, or only [lo, age] for a key
// first seen ageMs ago; ageMs < 0: unknown). The clicks of an hour and
// older add old when it is known (>= 0: computed on the tick from hourly
// buckets, see hourlyOld); else they are approximated from the spans: the
// [1h, 24h) clicks spread evenly (or over [1h, age]), and the clicks older
// than a day add nothing for a key younger than a day, else tail when >= 0
// (from a click history), else the [1h, 24h) rate continued back in time.
// The sum is bounded to [clicks/maxCorr, clicks*maxCorr] around the
// window's clicks.
func effectiveClicks(t *delayTable, window windows.Span, sp *Spans, ageMs int64, old, tail, maxCorr float64) float64 {
	e := 0.0
	last := numAges
	if old >= 0 {
		last = numAges - 1
		e = old
	}
	for j := 0; j < last; j++ {
		c := ageClicks(sp, j)
		if c == 0 {
			continue
		}
		lo, hi := ageBounds(j)
		width := hi - lo
		L := width
		if ageMs >= 0 && float64(ageMs) < hi {
			L = math.Min(math.Max(float64(ageMs)-lo, 1), width)
		}
		x := L / width * gammaSteps
		k := int(x)
		if k >= gammaSteps {
			k = gammaSteps - 1
		}
		g := t.Gamma[j][k] + (t.Gamma[j][k+1]-t.Gamma[j][k])*(x-float64(k))
		e += c * g / L
	}
	if old < 0 {
		switch {
		case ageMs >= 0 && float64(ageMs) < dayMs:
		case tail >= 0:
			e += tail
		default:
			lo, hi := ageBounds(numAges - 1)
			e += ageClicks(sp, numAges-1) / (hi - lo) * t.Tail
		}
	}
	clicks := float64(sp[window].Clicks)
	if lo := clicks / maxCorr; e < lo {
		e = lo
	}
	if hi := clicks * maxCorr; e > hi {
		e = hi
	}
	return e
}

// hourlyOld returns the effective clicks, for window, of the clicks an
// hour old and more in the hourly buckets (as ReadBuckets fills them, the
// last current at nowMs; each bucket's clicks spread evenly over its
// time), and the age its oldest bucket reaches, where a longer history
// takes over.
func (d *DelayState) hourlyOld(hourly *[24]windows.Counts, window windows.Span, atClick bool, nowMs int64) (e, covered float64) {
	const hour = 3600e3
	W := float64(window.Duration().Milliseconds())
	cur := nowMs / int64(hour)
	for i := 0; i < len(hourly); i++ {
		start := (cur - int64(len(hourly)-1-i)) * int64(hour)
		end := min(start+int64(hour), nowMs)
		a0, a1 := float64(nowMs-end), float64(nowMs-start)
		if i == 0 {
			covered = a1
		}
		c := float64(hourly[i].Clicks)
		if c == 0 || a1 <= hour || a1 <= a0 {
			continue
		}
		e += c / (a1 - a0) * d.gIntegral(math.Max(a0, hour), a1, W, atClick)
	}
	return e, covered
}

// oldEffective returns the effective clicks, for window, of a level's
// clicks an hour old and more at nowMs: its hourly buckets, then its click
// history h when not nil and not empty; else, for a level at least a day
// old (ageMs < 0 or >= 24 h), its buckets' clicks times tailPerClick when
// >= 0, or the buckets' mean rate continued back in time.
func (d *DelayState) oldEffective(hourly *[24]windows.Counts, h *ClickHistory, window windows.Span, atClick bool, ageMs, nowMs int64, tailPerClick float64) float64 {
	e, covered := d.hourlyOld(hourly, window, atClick, nowMs)
	if atClick {
		return e
	}
	if h != nil && h.N > 0 {
		return e + d.historyTail(h, window, atClick, nowMs, covered)
	}
	if ageMs >= 0 && float64(ageMs) < dayMs {
		return e
	}
	var clicks uint64
	for i := range hourly {
		clicks += hourly[i].Clicks
	}
	if tailPerClick >= 0 {
		return e + float64(clicks)*tailPerClick
	}
	W := float64(window.Duration().Milliseconds())
	// The integral of g over [covered, inf) is that of 1-F over
	// [covered-W, covered).
	beyond := W - (d.integral(covered) - d.integral(covered-W))
	return e + float64(clicks)/covered*beyond
}

// EffectiveClicks returns the clicks of sp's window (d.Window) whose
// conversions the window can already count: the denominator of the
// delay-corrected CVR, conversions / EffectiveClicks, for a key of unknown
// age whose click rate of the last day continues back in time. Without a
// refreshed model (Ready false) it is the window's clicks. It allocates
// nothing.
func (d *DelayState) EffectiveClicks(sp *Spans, maxCorrection float64) float64 {
	return d.EffectiveClicksAged(sp, -1, maxCorrection)
}

// EffectiveClicksAged is EffectiveClicks for a key first seen ageMs ago
// (its clicks cannot be older); ageMs < 0 means unknown.
func (d *DelayState) EffectiveClicksAged(sp *Spans, ageMs int64, maxCorrection float64) float64 {
	if !d.Ready || maxCorrection < 1 {
		return float64(sp[d.Window].Clicks)
	}
	return d.effective(sp, ageMs, -1, d.keyTail(sp), maxCorrection)
}

// EffectiveClicksOld is EffectiveClicksAged with old, the key's effective
// clicks an hour old and more from its last tick (KeyState.Old).
func (d *DelayState) EffectiveClicksOld(sp *Spans, ageMs int64, old, maxCorrection float64) float64 {
	if !d.Ready || maxCorrection < 1 {
		return float64(sp[d.Window].Clicks)
	}
	return d.effective(sp, ageMs, old, -1, maxCorrection)
}

// OldEffectiveClicks returns the part of a key's effective clicks for
// d.Window that comes from its clicks an hour old and more, from its
// hourly buckets (ReadBuckets, the last current at nowMs): what
// KeyState.Tick stores when Input.Hourly is set. ageMs is the time since
// the key was first seen (< 0: unknown).
func (d *DelayState) OldEffectiveClicks(hourly *[24]windows.Counts, ageMs, nowMs int64) float64 {
	return d.oldEffective(hourly, nil, d.Window, d.AtClick, ageMs, nowMs, d.tailPerClick())
}

// tailPerClick returns TailPerClick, or -1 without a click history.
func (d *DelayState) tailPerClick() float64 {
	if !d.TailKnown {
		return -1
	}
	return d.TailPerClick
}

// keyTail returns the effective clicks older than a day of a key with the
// spans sp under the campaign's history, -1 without one.
func (d *DelayState) keyTail(sp *Spans) float64 {
	if !d.TailKnown {
		return -1
	}
	return float64(sp[windows.Span24h].Clicks) * d.TailPerClick
}

// Spans holds the counts of one key in every span, as windows.Store.Read
// fills them: Spans[windows.Span1h] is the last hour.
type Spans = [windows.NumSpans]windows.Counts

// ageClicks returns the clicks of age interval j of sp: the clicks of span
// j minus those of span j-1 (0 if the spans disagree).
func ageClicks(sp *Spans, j int) float64 {
	c := sp[j].Clicks
	if j > 0 {
		p := sp[j-1].Clicks
		if p >= c {
			return 0
		}
		c -= p
	}
	return float64(c)
}
