package bidder

import (
	"sort"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/bidpulse/bidpulse/bidder/brain"
	"github.com/bidpulse/bidpulse/models"
	"github.com/bidpulse/bidpulse/windows"
)

// answer is the decision for one bid request.
type answer struct {
	multiplier float64
	level      int // -1: no level with data ("none")
	counts     windows.Counts
	override   bool
	killed     bool // the kill switch answered
	cfg        *models.CampaignPolicy
	res        models.Result
}

// bidScratch is the per-request working memory of the bid path, pooled so
// that answering allocates nothing in steady state. brain.Input holds the
// request's dimension values (Vals), the answering key (Key) and the
// model's input (In).
type bidScratch struct {
	brain.Input
	norm [windows.NumDims][]byte // normalised copies of device and country
	out  []byte
	a    answer

	rng       models.Rand
	rngSeeded bool
	// noTrack: the answer is for a listing (the snapshot), not a bid
	// request; it must not create or keep alive a key's guardrail state.
	noTrack bool
}

var bidScratchPool = sync.Pool{New: func() any { return &bidScratch{} }}

func getScratch() *bidScratch {
	sc := bidScratchPool.Get().(*bidScratch)
	sc.Vals.Reset()
	sc.ResetMemo()
	return sc
}

func putScratch(sc *bidScratch) {
	sc.Vals.Reset()
	bidScratchPool.Put(sc)
}

// bySpecificity returns the level indexes ordered most specific first (more
// dimensions), ties in configured order.
func bySpecificity(r *windows.Rollups) []int {
	idx := make([]int, len(r.Levels))
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool {
		return len(r.Levels[idx[a]].Dims) > len(r.Levels[idx[b]].Dims)
	})
	return idx
}

// decide computes the multiplier for the dimension values in sc.Vals at
// nowMs into sc.a.
//
// The answering level is the most specific configured rollup named by the
// request that has an override, else the most specific one with at least
// one impression in the policy window (ties: configured order); with
// neither, the answer is the neutral 1 at level "none".
func (s *Service) decide(sc *bidScratch, nowMs int64) {
	a := &sc.a
	a.multiplier, a.level, a.counts, a.override, a.killed, a.cfg = 1, -1, windows.Counts{}, false, false, nil
	a.res.Reset()
	if s.control.Killed() {
		a.killed = true
		a.res.Min, a.res.Max = 1, 1 // the kill switch answers exactly 1
		return
	}
	pol := s.control.Policies()
	cfg := pol.For(sc.Vals[windows.DimCampaign])
	a.cfg = cfg
	span := cfg.Performance.Window
	if s.control.NumOverrides() > 0 {
		for _, lvl := range s.specific {
			if !s.rollups.Covers(lvl, &sc.Vals) {
				continue
			}
			sc.Key = windows.AppendKey(sc.Key[:0], lvl, s.rollups, &sc.Vals)
			if m, ok := s.control.Override(sc.Key, nowMs); ok {
				a.level, a.override, a.multiplier = lvl, true, m
				a.counts, _ = s.store.ReadSpan(sc.Key, span, nowMs)
				a.res.Multiplier, a.res.BeforeClamp = m, m
				a.res.Min, a.res.Max = m, m
				return
			}
		}
	}
	for _, lvl := range s.specific {
		if !s.rollups.Covers(lvl, &sc.Vals) {
			continue
		}
		sc.Key = windows.AppendKey(sc.Key[:0], lvl, s.rollups, &sc.Vals)
		// All spans, through the request's memo: BuildInput reads this
		// key's spans next, and a batch's items share their parents.
		var sp models.Spans
		if !s.brain.ReadSpans(&sc.Input, sc.Key, nowMs, &sp) || sp[span].Impressions == 0 {
			continue
		}
		a.level, a.counts = lvl, sp[span]
		break
	}
	cs := s.brain.Campaign(sc.Vals[windows.DimCampaign], nowMs, !sc.noTrack)
	var ks *models.KeyState
	if a.level < 0 {
		// No data: the goal, pacing and modifier factors still apply.
		sc.In = models.Input{NowMs: nowMs, Device: sc.Vals[windows.DimDevice], Country: sc.Vals[windows.DimCountry]}
	} else {
		// buildInput leaves the answering key in sc.Key, and reads all
		// its spans once: the answer reports the counts Evaluate used.
		s.brain.BuildInput(&sc.Input, a.level, cfg, nowMs)
		counts := sc.Counts()
		a.counts = counts[len(counts)-1]
		ks = s.brain.Key(sc.Key, nowMs, !sc.noTrack)
	}
	if !sc.rngSeeded {
		sc.rng = models.NewRand(rngSeeds.Add(0x9e3779b97f4a7c15))
		sc.rngSeeded = true
	}
	models.Evaluate(cfg, &sc.In, cs, ks, &sc.rng, &a.res)
	a.multiplier = a.res.Multiplier
}

// rngSeeds seeds each scratch's exploration generator differently.
var rngSeeds atomic.Uint64

// spanJSON holds each span's name as a JSON string.
var spanJSON = func() (out [windows.NumSpans]string) {
	for sp := range windows.NumSpans {
		out[sp] = string(appendStr(nil, sp.String()))
	}
	return out
}()

// defaultWindow is the default policy's window.
var defaultWindow = models.DefaultPerformance().Window

// window returns the span the answer's policy read.
func (a *answer) window() windows.Span {
	if a.cfg == nil {
		return defaultWindow
	}
	return a.cfg.Performance.Window
}

// appendAnswer appends the JSON answer of /v1/multiplier.
func (s *Service) appendAnswer(dst []byte, a *answer, explain bool) []byte {
	dst = append(dst, `{"multiplier":`...)
	dst = appendRounded(dst, a.multiplier)
	dst = append(dst, `,"level":`...)
	if a.level < 0 {
		dst = append(dst, `"none"`...)
	} else {
		dst = append(dst, s.levelJSON[a.level]...)
	}
	dst = append(dst, `,"window":`...)
	dst = append(dst, spanJSON[a.window()]...)
	dst = append(dst, `,"ctr":`...)
	dst = appendFloat(dst, a.counts.CTR())
	dst = append(dst, `,"cvr":`...)
	dst = appendFloat(dst, a.counts.CVR())
	dst = append(dst, `,"impressions":`...)
	dst = appendUint(dst, a.counts.Impressions)
	dst = append(dst, `,"clicks":`...)
	dst = appendUint(dst, a.counts.Clicks)
	dst = append(dst, `,"conversions":`...)
	dst = appendUint(dst, a.counts.Conversions)
	if explain {
		dst = append(dst, `,"explain":`...)
		dst = appendExplain(dst, a)
	}
	return append(dst, '}')
}

// appendExplain appends the explain object of an answer.
func appendExplain(dst []byte, a *answer) []byte {
	dst = append(dst, `{"policy":`...)
	switch {
	case a.killed:
		dst = appendStr(dst, "kill_switch")
	case a.override:
		dst = appendStr(dst, "override")
	case a.level < 0:
		dst = appendStr(dst, "none")
	case a.res.Policy != "":
		dst = appendStr(dst, a.res.Policy)
	default:
		dst = appendStr(dst, "performance")
	}
	dst = append(dst, `,"window":`...)
	dst = append(dst, spanJSON[a.window()]...)
	dst = append(dst, `,"factors":`...)
	dst = a.res.AppendFactorsJSON(dst)
	dst = append(dst, `,"before_clamp":`...)
	dst = appendRounded(dst, a.res.BeforeClamp)
	dst = append(dst, `,"clamp":[`...)
	dst = appendFloat(dst, a.res.Min)
	dst = append(dst, ',')
	dst = appendFloat(dst, a.res.Max)
	dst = append(dst, `],"clamped":`...)
	dst = strconv.AppendBool(dst, a.res.Clamped)
	dst = append(dst, `,"override":`...)
	if a.override {
		dst = appendFloat(dst, a.multiplier)
	} else {
		dst = append(dst, "null"...)
	}
	dst = append(dst, '}')
	return dst
}
