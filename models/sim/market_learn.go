package sim

import (
	"math"
	"slices"
	"time"

	"github.com/bidpulse/bidpulse/models"
	"github.com/bidpulse/bidpulse/windows"
)

// learner is bidpulse's side of one campaign's replay: windows of the
// default rollups (campaign, campaign/creative, campaign/placement,
// campaign/creative/placement) fed only with the events of the strategy's
// own wins, every event counted in every rollup it names, as bidder's
// ingest counts it; the campaign's controller state and delay histogram; a
// key state per answering key. Every step it is ticked and read as bidder
// ticks and reads: the answering key of a bid is the most specific level
// with impressions in the policy window (ties in configured order), its
// chain runs from the campaign down to it, and each level's prior strength
// is fitted among the keys of its parent. A learner is used by one
// goroutine.
type learner struct {
	pol      *models.CampaignPolicy
	store    *windows.Store
	rollups  *windows.Rollups
	specific []int // level indexes, most specific first
	window   windows.Span
	startMs  int64
	stepMs   int64
	steps    int
	// oldEvery is how many steps apart a key's older clicks are re-read
	// from its hourly buckets on the tick: every hour (bidder re-reads
	// them every 5 minutes, but a replay runs hundreds of times per table,
	// and the share of clicks an hour old and more moves slowly).
	oldEvery int
	xrng     models.Rand

	st               models.CampaignState
	hist             models.DelayHistogram
	dayStart, dayEnd int64
	spentToday       uint64

	// nodes are the keys, the campaign's first; cells[i] holds, per
	// level, the node of cell i (creative i / np, placement i % np).
	nodes   []lnode
	cells   [][]int32
	values  []float64 // the value of a conversion of each cell
	pending [][]lconv // by the step they arrive at
	answer  []int32   // each cell's answering node this step (-1: none)

	// scratch
	in        models.Input
	res       models.Result
	chain     []windows.Counts
	spans     []models.Spans
	strengths []models.Strength
	path      []int32
	sibs      []windows.Counts
	hourly    [24]windows.Counts
}

// lnode is one key of a learner, with what it read this step.
type lnode struct {
	key    []byte
	level  int
	parent int32 // -1 for the campaign
	sp     models.Spans
	found  bool
	ks     models.KeyState
	// strength is the prior of the node's level among its parent's
	// children, fitted on the tick.
	strength models.Strength
	tickedAt int
}

// lconv is a won conversion on its way.
type lconv struct {
	cell        int32
	clickMs, at int64
}

// learnerSeedSalt keeps the exploration draws apart from the log's.
const learnerSeedSalt = 0x5eed

// newLearner builds the learner of campaign c of l under pol, with no
// traffic yet.
func newLearner(l *MarketLog, c *MarketCampaign, pol *models.CampaignPolicy) (*learner, error) {
	rollups, err := windows.ParseRollups(windows.DefaultRollupNames())
	if err != nil {
		return nil, err
	}
	np, nk := len(l.Placements), len(c.Creatives)
	store, err := newStore(max(4096, 2*(1+nk+np+nk*np)))
	if err != nil {
		return nil, err
	}
	lr := &learner{
		pol:      pol,
		store:    store,
		rollups:  rollups,
		window:   pol.Performance.Window,
		startMs:  l.Config.Start.UnixMilli(),
		stepMs:   l.Config.Step.Milliseconds(),
		steps:    l.Steps(),
		oldEvery: max(int(time.Hour/l.Config.Step), 1),
		xrng:     models.NewRand(l.Config.Seed ^ learnerSeedSalt),
		cells:    make([][]int32, nk*np),
		values:   make([]float64, nk*np),
		answer:   make([]int32, nk*np),
	}
	lr.pending = make([][]lconv, lr.steps)
	for i := range rollups.Levels {
		lr.specific = append(lr.specific, i)
	}
	slices.SortStableFunc(lr.specific, func(a, b int) int {
		return len(rollups.Levels[b].Dims) - len(rollups.Levels[a].Dims)
	})
	idx := map[string]int32{}
	node := func(lvl int, v *windows.Values) int32 {
		key := windows.AppendKey(nil, lvl, rollups, v)
		if i, ok := idx[string(key)]; ok {
			return i
		}
		i := int32(len(lr.nodes))
		idx[string(key)] = i
		lr.nodes = append(lr.nodes, lnode{key: key, level: lvl, parent: -1, tickedAt: -1})
		return i
	}
	var v windows.Values
	v[windows.DimCampaign] = []byte(c.Name)
	node(rollups.Campaign, &v)
	for k := range c.Creatives {
		v[windows.DimCreative] = []byte(c.Creatives[k].Name)
		for p := range l.Placements {
			v[windows.DimPlacement] = []byte(l.Placements[p].Name)
			cell := make([]int32, len(rollups.Levels))
			for lvl := range rollups.Levels {
				cell[lvl] = node(lvl, &v)
			}
			for lvl, rl := range rollups.Levels {
				if rl.Parent >= 0 {
					lr.nodes[cell[lvl]].parent = cell[rl.Parent]
				}
			}
			lr.cells[k*np+p] = cell
			lr.values[k*np+p] = c.Placements[p].Value
		}
	}
	return lr, nil
}

// file queues a won conversion of cell clicked at clickMs, arriving at atMs.
func (lr *learner) file(cell int, clickMs, atMs int64) {
	idx := (atMs - lr.startMs + lr.stepMs - 1) / lr.stepMs
	if idx >= int64(lr.steps) {
		return
	}
	lr.pending[idx] = append(lr.pending[idx], lconv{cell: int32(cell), clickMs: clickMs, at: atMs})
}

// ingest counts cnt at now in every rollup of cell.
func (lr *learner) ingest(cell int, now int64, cnt windows.Counts) {
	for _, n := range lr.cells[cell] {
		lr.store.Add(lr.nodes[n].key, now, now, cnt)
	}
}

// bids plays the start of step s for a learning strategy: the conversions
// arriving, the day, the control tick, then each cell's bid in micros
// into bids.
func (lr *learner) bids(s int, now int64, spec *ReplaySpec, bids []float64) {
	for _, pc := range lr.pending[s] {
		lr.hist.Add(pc.clickMs, pc.at, lr.st.ClickWeight(pc.clickMs))
		lr.ingest(int(pc.cell), now, windows.Counts{Conversions: 1, ValueMicros: uint64(math.Round(lr.values[pc.cell] * 1e6))})
	}
	lr.pending[s] = nil
	if now >= lr.dayEnd {
		loc := lr.pol.Location
		if loc == nil {
			loc = time.UTC
		}
		lr.dayStart, lr.dayEnd = models.DayBounds(now, loc)
		lr.spentToday = 0
	}
	for i := range lr.nodes {
		n := &lr.nodes[i]
		if n.found = lr.store.Read(n.key, now, &n.sp); !n.found {
			n.sp = models.Spans{}
		}
	}
	lr.tick(s, now)
	for ci := range lr.cells {
		var ks *models.KeyState
		if a := lr.answer[ci]; a < 0 {
			// No data: the goal, pacing and modifier factors still apply.
			lr.in = models.Input{NowMs: now, SpentTodayMicros: lr.spentToday, SpendKnown: true}
		} else {
			lr.input(a, now)
			ks = &lr.nodes[a].ks
		}
		models.Evaluate(lr.pol, &lr.in, &lr.st, ks, &lr.xrng, &lr.res)
		ctr, cvr := 1.0, 1.0
		if f, ok := lr.res.Factor(models.FactorCTR); ok {
			ctr = f.Value
		}
		if f, ok := lr.res.Factor(models.FactorCVR); ok {
			cvr = f.Value
		}
		var b float64
		switch spec.Strategy {
		case BidLinear:
			b = spec.Param * ctr
		case BidORTB:
			cc := spec.ORTBC
			b = (math.Sqrt(cc*spec.Param*1e6*ctr*cvr+cc*cc) - cc) / 1e6
		default:
			b = spec.Param * lr.res.Multiplier
		}
		bids[ci] = b * 1e6
	}
}

// tick is the control tick: the campaign state, the prior fits, the
// campaign key's state, then each answering key's.
func (lr *learner) tick(s int, now int64) {
	w := lr.window
	camp := &lr.nodes[0]
	in := models.TickInput{NowMs: now, Delays: &lr.hist, HourlyKnown: true, Campaign: camp.sp}
	lr.hourlyOf(camp.key, now, &in.Hourly)
	lr.st.Tick(lr.pol, &in)
	lr.fit()

	lr.input(0, now)
	camp.ks.Tick(lr.pol, &lr.in, &lr.st)
	camp.tickedAt = s
	for ci, cell := range lr.cells {
		lr.answer[ci] = -1
		for _, lvl := range lr.specific {
			n := cell[lvl]
			if nd := &lr.nodes[n]; nd.found && nd.sp[w].Impressions > 0 {
				lr.answer[ci] = n
				break
			}
		}
		a := lr.answer[ci]
		if a < 0 || lr.nodes[a].tickedAt == s {
			continue
		}
		nd := &lr.nodes[a]
		nd.tickedAt = s
		lr.input(a, now)
		if s%lr.oldEvery == 0 {
			lr.hourlyOf(nd.key, now, &lr.hourly)
			lr.in.Hourly = &lr.hourly
		}
		nd.ks.Tick(lr.pol, &lr.in, &lr.st)
		lr.in.Hourly = nil
	}
}

// fit refits every level's prior strengths among each parent's children
// that have a key, as bidder's tick does.
func (lr *learner) fit() {
	w := lr.window
	for lvl, rl := range lr.rollups.Levels {
		if rl.Parent < 0 {
			continue
		}
		// Group the level's nodes by parent: nodes are few, a pass per
		// parent is cheap enough.
		for pi := range lr.nodes {
			if lr.nodes[pi].level != rl.Parent {
				continue
			}
			lr.sibs = lr.sibs[:0]
			for i := range lr.nodes {
				if n := &lr.nodes[i]; n.level == lvl && n.parent == int32(pi) && n.found {
					lr.sibs = append(lr.sibs, n.sp[w])
				}
			}
			st := models.FitPriors(&lr.pol.Performance, lr.sibs).Strength
			for i := range lr.nodes {
				if n := &lr.nodes[i]; n.level == lvl && n.parent == int32(pi) {
					n.strength = st
				}
			}
		}
	}
}

// input prepares lr.in for node a at now: its chain from the campaign
// down, the spans and strengths of each level, the day's spend.
func (lr *learner) input(a int32, now int64) {
	lr.path = lr.path[:0]
	for n := a; n >= 0; n = lr.nodes[n].parent {
		lr.path = append(lr.path, n)
	}
	slices.Reverse(lr.path)
	lr.chain, lr.spans, lr.strengths = lr.chain[:0], lr.spans[:0], lr.strengths[:0]
	for i, n := range lr.path {
		nd := &lr.nodes[n]
		lr.chain = append(lr.chain, nd.sp[lr.window])
		lr.spans = append(lr.spans, nd.sp)
		st := models.Strength{}
		if i > 0 {
			st = nd.strength
		}
		lr.strengths = append(lr.strengths, st)
	}
	lr.in = models.Input{
		Chain:            lr.chain,
		Spans:            lr.spans,
		Strengths:        lr.strengths,
		NowMs:            now,
		SpentTodayMicros: lr.spentToday,
		SpendKnown:       true,
	}
}

// hourlyOf fills dst with key's hourly buckets of the 24h window at now.
func (lr *learner) hourlyOf(key []byte, now int64, dst *[24]windows.Counts) {
	models.ReadBuckets(func(t int64) windows.Counts {
		cnt, _ := lr.store.ReadSpan(key, windows.Span24h, t)
		return cnt
	}, 3600e3, now, dst[:])
}

// wins counts the step's wins of each cell in the windows and in the
// day's spend.
func (lr *learner) wins(now int64, wins []windows.Counts) {
	for ci := range wins {
		if wins[ci].Impressions == 0 {
			continue
		}
		lr.ingest(ci, now, wins[ci])
		lr.spentToday += wins[ci].CostMicros
	}
}
