package sim

import (
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/bidpulse/bidpulse/models"
	"github.com/bidpulse/bidpulse/windows"
)

// Level indexes of the simulator's rollups.
const (
	levelCampaign  = 0
	levelPlacement = 1
)

// pending is a conversion on its way: it arrives at the step it is filed
// under.
type pending struct {
	camp, place int32
	clickMs     int64
	atMs        int64
	value       float64
}

// placeRun is the running state of one placement.
type placeRun struct {
	spec *PlacementSpec
	key  []byte
	ks   models.KeyState
	rep  *PlacementReport

	multSum float64
	multN   int

	held bool
	hold *HoldReport
}

// campRun is the running state of one campaign.
type campRun struct {
	idx       int
	spec      *CampaignSpec
	pol       *models.CampaignPolicy
	unguarded models.CampaignPolicy
	key       []byte
	st        models.CampaignState
	ks        models.KeyState // of the campaign key, when it answers
	hist      models.DelayHistogram
	mkt       market
	places    []placeRun
	strengths [2]models.Strength
	rep       *CampaignReport

	dayStart, dayEnd int64
	spentToday       uint64
	day              *DayReport

	hour HourReport
	expC float64 // expected conversions of the hour's clicks
}

// runner holds one run.
type runner struct {
	cfg     Config
	store   *windows.Store
	rollups *windows.Rollups
	rng     models.Rand // traffic
	xrng    models.Rand // exploration
	camps   []campRun
	pending map[int64][]pending
	startMs int64
	stepMs  int64
	steps   int64
	rep     Report
	// oldEvery is how often a key's older clicks are re-read from its
	// hourly buckets on the tick.
	oldEvery time.Duration

	// scratch
	in      models.Input
	chain   [2]windows.Counts
	spans   [2]models.Spans
	res     models.Result
	buckets [24]windows.Counts
}

// Run simulates cfg and returns its report. It fails only on an invalid
// configuration.
func Run(cfg Config) (Report, error) {
	if err := cfg.check(); err != nil {
		return Report{}, fmt.Errorf("cannot simulate %s: %w", cfg.Name, err)
	}
	r, err := newRunner(cfg)
	if err != nil {
		return Report{}, fmt.Errorf("cannot simulate %s: %w", cfg.Name, err)
	}
	r.history()
	for i := int64(0); i < r.steps; i++ {
		r.step(i)
	}
	r.finish()
	if slices.Contains(Scenarios(), cfg.Name) {
		r.rep.Claims = ScenarioClaims(&r.rep)
	}
	return r.rep, nil
}

// newStore returns the windows store of a simulation, whose hourly steps
// need the 24h span served by a ring of 24 one-hour buckets.
func newStore(maxKeys int) (*windows.Store, error) {
	store, err := windows.NewStore(windows.Config{MaxKeys: maxKeys})
	if err != nil {
		return nil, err
	}
	if res, k := store.SpanResolution(windows.Span24h); res.Width != time.Hour || k != 24 || res.Buckets != 24 {
		return nil, fmt.Errorf("the 24h span must be served by a 24 x 1h ring; got %d of %d x %s", k, res.Buckets, res.Width)
	}
	return store, nil
}

func newRunner(cfg Config) (*runner, error) {
	rollups, err := windows.ParseRollups([]string{"campaign", "campaign/placement"})
	if err != nil {
		return nil, err
	}
	store, err := newStore(4096)
	if err != nil {
		return nil, err
	}
	r := &runner{
		cfg:     cfg,
		store:   store,
		rollups: rollups,
		rng:     models.NewRand(cfg.Seed),
		xrng:    models.NewRand(cfg.Seed ^ 0x5eed),
		pending: make(map[int64][]pending),
		startMs: cfg.Start.UnixMilli(),
		stepMs:  cfg.Step.Milliseconds(),
		steps:   int64(cfg.Duration / cfg.Step),

		oldEvery: 5 * time.Minute,
	}
	r.rep = Report{Name: cfg.Name, Seed: cfg.Seed, Start: cfg.Start, Duration: cfg.Duration}
	r.rep.Campaigns = make([]CampaignReport, len(cfg.Campaigns))
	r.camps = make([]campRun, len(cfg.Campaigns))
	for ci := range cfg.Campaigns {
		spec := &r.cfg.Campaigns[ci]
		c := &r.camps[ci]
		c.idx = ci
		c.spec = spec
		c.pol = &spec.Policy
		c.unguarded = spec.Policy
		c.unguarded.Guard = models.GuardConfig{}
		c.mkt = market{mu: math.Log(spec.MarketMedian), sigma: spec.MarketSigma}
		c.rep = &r.rep.Campaigns[ci]
		c.rep.Name, c.rep.Policy = spec.Name, spec.Policy.Policy
		if spec.Policy.Policy != models.PolicyPerformance {
			c.rep.Target = spec.Policy.Goal.Target
		}
		c.rep.Budget = spec.Policy.Pacing.DailyBudget
		var v windows.Values
		v[windows.DimCampaign] = []byte(spec.Name)
		c.key = windows.AppendKey(nil, levelCampaign, rollups, &v)
		c.rep.Placements = make([]PlacementReport, len(spec.Placements))
		c.places = make([]placeRun, len(spec.Placements))
		for pi := range spec.Placements {
			ps := &spec.Placements[pi]
			v[windows.DimPlacement] = []byte(ps.Name)
			p := &c.places[pi]
			p.spec = ps
			p.key = windows.AppendKey(nil, levelPlacement, rollups, &v)
			p.rep = &c.rep.Placements[pi]
			*p.rep = PlacementReport{Name: ps.Name, TrueCTR: ps.CTR, TrueCVR: ps.CVR, TrueValue: ps.CTR * ps.CVR,
				Sparse: ps.Sparse, Launched: ps.LaunchAfter > 0, MinMultiplier: math.Inf(1), MaxMultiplier: math.Inf(-1)}
		}
	}
	return r, nil
}

// history plays HistoryDays of steady traffic at multiplier 1 before the
// start: delays into the histograms, the last 24 hours into the windows,
// and conversions still on their way into the pending list.
func (r *runner) history() {
	start := r.startMs
	oldest := r.store.Oldest(start)
	for ci := range r.camps {
		c := &r.camps[ci]
		spec := c.spec
		if spec.HistoryDays <= 0 {
			continue
		}
		pWin, price := c.mkt.win(spec.BaseBid)
		hours := spec.HistoryDays * 24
		blocks := make([]uint64, spec.HistoryDays)
		type draw struct{ t, clicks int64 }
		draws := make([]draw, 0, 60*len(c.places))
		for h := hours; h >= 1; h-- {
			hourStart := start - int64(h)*3600e3
			recent := hourStart >= start-24*3600e3
			chunks := int64(1)
			if recent {
				chunks = 60 // per minute, so that the short spans look steady
			}
			chunkMs := int64(3600e3) / chunks
			lvl := spec.level(time.UnixMilli(hourStart), -time.Hour)
			// The hour's clicks first: its conversions' delays are weighted
			// by 1 / the hour's clicks, as bidder weighs them by the
			// campaign's click rate.
			draws = draws[:0]
			hourClicks := int64(0)
			for k := int64(0); k < chunks; k++ {
				t := hourStart + k*chunkMs
				for pi := range c.places {
					p := &c.places[pi]
					if p.spec.LaunchAfter > 0 {
						draws = append(draws, draw{t, 0})
						continue
					}
					req := spec.Requests * p.spec.Share * lvl / float64(chunks)
					wins := poisson(&r.rng, req*pWin)
					clicks := binomial(&r.rng, wins, p.spec.CTR)
					cost := uint64(math.Round(float64(wins) * price * 1e6))
					blocks[(h-1)/24] += clicks
					hourClicks += int64(clicks)
					draws = append(draws, draw{t, int64(clicks)})
					if recent {
						cnt := windows.Counts{Impressions: wins, Clicks: clicks, CostMicros: cost}
						r.store.Add(p.key, t, start, cnt)
						r.store.Add(c.key, t, start, cnt)
					}
				}
			}
			w := 1 / math.Max(float64(hourClicks), 1)
			for i, d := range draws {
				pi := i % len(c.places)
				p := &c.places[pi]
				convs := binomial(&r.rng, uint64(d.clicks), p.spec.CVR)
				for j := uint64(0); j < convs; j++ {
					click := d.t + int64(r.rng.Float64()*float64(chunkMs))
					at := click + delay(&r.rng, spec.Delay).Milliseconds()
					if at >= start {
						r.file(c.idx, pi, click, at)
						continue
					}
					c.hist.Add(click, at, w)
					if at >= oldest {
						cnt := windows.Counts{Conversions: 1, ValueMicros: uint64(math.Round(p.spec.Value * 1e6))}
						r.store.Add(p.key, at, start, cnt)
						r.store.Add(c.key, at, start, cnt)
					}
				}
			}
		}
		// What bidder's checkpointed state would hold after those days.
		for k := spec.HistoryDays - 1; k >= 0; k-- {
			c.st.Clicks.Push(start-int64(k)*24*3600e3, blocks[k])
		}
		c.st.FirstMs = start - int64(hours)*3600e3
	}
}

// file queues a conversion arriving at atMs (after the start).
func (r *runner) file(ci, pi int, clickMs, atMs int64) {
	idx := (atMs - r.startMs + r.stepMs - 1) / r.stepMs
	if idx >= r.steps {
		return
	}
	r.pending[idx] = append(r.pending[idx], pending{camp: int32(ci), place: int32(pi), clickMs: clickMs, atMs: atMs,
		value: r.camps[ci].spec.Placements[pi].Value})
}

// step plays step i: conversions arriving, the control tick, then every
// placement's bids and the events they bring.
func (r *runner) step(i int64) {
	now := r.startMs + i*r.stepMs
	off := time.Duration(i) * r.cfg.Step
	r.deliver(i, now)
	tick := i%int64(r.cfg.Tick/r.cfg.Step) == 0
	for ci := range r.camps {
		c := &r.camps[ci]
		r.day(c, now)
		if tick {
			r.tick(c, now, off)
		}
		r.probes(c, now, off)
		r.read(0, c.key, now)
		for pi := range c.places {
			r.bid(ci, pi, now, off)
		}
		if (i+1)%int64(time.Hour/r.cfg.Step) == 0 {
			r.closeHour(c, off+r.cfg.Step)
		}
	}
}

// deliver adds the conversions of step i to the windows and histograms.
func (r *runner) deliver(i, now int64) {
	list := r.pending[i]
	delete(r.pending, i)
	for _, pc := range list {
		c := &r.camps[pc.camp]
		p := &c.places[pc.place]
		c.hist.Add(pc.clickMs, pc.atMs, c.st.ClickWeight(pc.clickMs))
		cnt := windows.Counts{Conversions: 1, ValueMicros: uint64(math.Round(pc.value * 1e6))}
		r.store.Add(p.key, now, now, cnt)
		r.store.Add(c.key, now, now, cnt)
		p.rep.Convs++
	}
}

// day follows the campaign's local day: the spend counted since its
// midnight, and the day's report.
func (r *runner) day(c *campRun, now int64) {
	if now < c.dayEnd {
		return
	}
	loc := c.pol.Location
	if loc == nil {
		loc = time.UTC
	}
	r.closeDay(c)
	c.dayStart, c.dayEnd = models.DayBounds(now, loc)
	c.spentToday = 0
	if c.pol.Pacing.Enabled() {
		c.rep.Days = append(c.rep.Days, DayReport{
			Date:   time.UnixMilli(c.dayStart).In(loc).Format("2006-01-02"),
			Budget: c.pol.Pacing.DailyBudget,
			Full:   c.dayStart >= r.startMs,
		})
		c.day = &c.rep.Days[len(c.rep.Days)-1]
	}
}

// closeDay records the day that ended (or the run's last one).
func (r *runner) closeDay(c *campRun) {
	if c.day == nil {
		return
	}
	c.day.Spent = float64(c.spentToday) / 1e6
	c.day.Share = c.day.Spent / c.day.Budget
	if r.startMs+r.steps*r.stepMs < c.dayEnd {
		c.day.Full = false
	}
	c.day = nil
}

// read fills r.spans[idx] with key's spans at now.
func (r *runner) read(idx int, key []byte, now int64) {
	r.store.Read(key, now, &r.spans[idx])
}

// input prepares r.in for placement pi of c at now (the spans of the
// campaign are in r.spans[0]): the placement's chain when it has
// impressions in the policy window, else the campaign's alone, as bidder
// picks the answering level. It returns the key state to use.
func (r *runner) input(c *campRun, pi int, now int64) *models.KeyState {
	p := &c.places[pi]
	w := c.pol.Performance.Window
	r.read(1, p.key, now)
	r.chain[0] = r.spans[0][w]
	r.chain[1] = r.spans[1][w]
	n := 2
	ks := &p.ks
	if r.chain[1].Impressions == 0 {
		n = 1
		ks = &c.ks
	}
	r.in = models.Input{
		Chain:            r.chain[:n],
		Spans:            r.spans[:n],
		Strengths:        c.strengths[:n],
		NowMs:            now,
		SpentTodayMicros: c.spentToday,
		SpendKnown:       true,
	}
	return ks
}

// tick is the control tick of a campaign: the campaign state, the prior
// fit over its placements, then every key's guardrail state.
func (r *runner) tick(c *campRun, now int64, off time.Duration) {
	in := models.TickInput{NowMs: now, Delays: &c.hist, HourlyKnown: true}
	r.store.Read(c.key, now, &in.Campaign)
	r.hourly(c.key, now, &in.Hourly)
	// Tick computes the day's spend from the buckets as below: check it
	// against the simulator's own count.
	spent := models.SpentSince(in.Hourly[:], 3600e3, now, c.dayStart)
	if d := absDiff(spent, c.spentToday); d > c.rep.SpendCheckMicros {
		c.rep.SpendCheckMicros = d
	}
	c.st.Tick(c.pol, &in)

	w := c.pol.Performance.Window
	sibs := make([]windows.Counts, 0, len(c.places))
	for pi := range c.places {
		cnt, _ := r.store.ReadSpan(c.places[pi].key, w, now)
		sibs = append(sibs, cnt)
	}
	fit := models.FitPriors(&c.pol.Performance, sibs)
	c.strengths[1] = fit.Strength

	r.spans[0] = in.Campaign
	r.in = models.Input{Chain: r.chain[:1], Spans: r.spans[:1], NowMs: now}
	r.chain[0] = in.Campaign[w]
	c.ks.Tick(c.pol, &r.in, &c.st)
	for pi := range c.places {
		p := &c.places[pi]
		ks := r.input(c, pi, now)
		if ks != &p.ks {
			continue
		}
		before := p.ks.Value
		if off%r.oldEvery == 0 {
			// The older clicks' share moves slowly: every 5 minutes by
			// default.
			r.hourly(p.key, now, &r.buckets)
			r.in.Hourly = &r.buckets
		}
		p.ks.Tick(c.pol, &r.in, &c.st)
		r.in.Hourly = nil
		r.trackHold(c, p, now, off, before)
	}
}

// hourly fills dst with key's hourly buckets of the 24h window at now.
func (r *runner) hourly(key []byte, now int64, dst *[24]windows.Counts) {
	models.ReadBuckets(func(t int64) windows.Counts {
		cnt, _ := r.store.ReadSpan(key, windows.Span24h, t)
		return cnt
	}, 3600e3, now, dst[:])
}

// trackHold records the anomaly holds of a placement.
func (r *runner) trackHold(c *campRun, p *placeRun, now int64, off time.Duration, before float64) {
	held := p.ks.Held(now)
	switch {
	case held && !p.held:
		c.rep.Holds = append(c.rep.Holds, HoldReport{Placement: p.spec.Name, From: off, Before: before})
		p.hold = &c.rep.Holds[len(c.rep.Holds)-1]
	case !held && p.held:
		p.hold.To = off
		p.hold = nil
	}
	p.held = held
	if p.hold != nil {
		p.hold.MaxHeld = math.Max(p.hold.MaxHeld, p.ks.Value)
		models.Evaluate(&c.unguarded, &r.in, &c.st, nil, nil, &r.res)
		p.hold.MaxUnguarded = math.Max(p.hold.MaxUnguarded, r.res.Multiplier)
	}
}

// bid plays one step of one placement: the multiplier, the auctions won,
// the clicks and the conversions on their way.
func (r *runner) bid(ci, pi int, now int64, off time.Duration) {
	c := &r.camps[ci]
	p := &c.places[pi]
	spec := c.spec
	if off < p.spec.LaunchAfter {
		return
	}
	ks := r.input(c, pi, now)
	models.Evaluate(c.pol, &r.in, &c.st, ks, &r.xrng, &r.res)
	m := r.res.Multiplier
	if off >= r.cfg.MeasureFrom {
		p.multSum += m
		p.multN++
		p.rep.MinMultiplier = math.Min(p.rep.MinMultiplier, m)
		p.rep.MaxMultiplier = math.Max(p.rep.MaxMultiplier, m)
	}

	lvl := spec.level(time.UnixMilli(now), off)
	req := poisson(&r.rng, spec.Requests*p.spec.Share*lvl*r.cfg.Step.Hours())
	var wins, clicks uint64
	var cost uint64
	if m > 0 && req > 0 {
		pWin, price := c.mkt.win(spec.BaseBid * m)
		wins = binomial(&r.rng, req, pWin)
		cost = uint64(math.Round(float64(wins) * price * 1e6))
		clicks = binomial(&r.rng, wins, p.spec.CTR)
	}
	var fraud uint64
	for _, f := range spec.Fraud {
		if f.Placement == p.spec.Name && off >= f.From && off < f.To {
			fraud += poisson(&r.rng, f.ClicksPerMinute*r.cfg.Step.Minutes())
		}
	}
	if wins+clicks+fraud > 0 {
		cnt := windows.Counts{Impressions: wins, Clicks: clicks + fraud, CostMicros: cost}
		r.store.Add(p.key, now, now, cnt)
		r.store.Add(c.key, now, now, cnt)
	}
	convs := binomial(&r.rng, clicks, p.spec.CVR)
	for j := uint64(0); j < convs; j++ {
		at := now + delay(&r.rng, spec.Delay).Milliseconds()
		r.file(ci, pi, now, max(at, now+1))
	}
	c.spentToday += cost
	p.rep.Impressions += wins
	p.rep.Clicks += clicks
	c.hour.Impressions += wins
	c.hour.Clicks += clicks
	c.hour.Spend += float64(cost) / 1e6
	c.expC += float64(clicks) * p.spec.CVR
	if c.day != nil && c.day.ExhaustedAt == "" && float64(c.spentToday) >= c.pol.Pacing.DailyBudget*1e6 {
		loc := c.pol.Location
		if loc == nil {
			loc = time.UTC
		}
		c.day.ExhaustedAt = time.UnixMilli(now).In(loc).Format("15:04:05")
	}
}

// closeHour records the hour that ends at off.
func (r *runner) closeHour(c *campRun, off time.Duration) {
	h := c.hour
	h.At = off
	if c.expC > 0 {
		h.TrueCPA = h.Spend / c.expC
	}
	h.ObservedCPA = c.st.Goal.Observed
	h.GoalFactor = c.st.Goal.Factor()
	h.PacingFactor = c.st.Pacing.Factor(r.startMs + off.Milliseconds())
	c.rep.Hours = append(c.rep.Hours, h)
	c.hour = HourReport{}
	c.expC = 0
}

// probes measures the CVR probes due at off.
func (r *runner) probes(c *campRun, now int64, off time.Duration) {
	for _, pr := range c.spec.Probes {
		if pr.At < off || pr.At >= off+r.cfg.Step {
			continue
		}
		p := &c.places[c.spec.placement(pr.Placement)]
		var sp models.Spans
		r.store.Read(p.key, now, &sp)
		h := sp[windows.Span1h]
		// What Evaluate uses for the key: its spans under an hour and the
		// older clicks from its last tick.
		eff := c.st.Delay.EffectiveClicksAged(&sp, -1, c.pol.Delay.MaxCorrection)
		if p.ks.OldKnown {
			eff = c.st.Delay.EffectiveClicksOld(&sp, keyAge(&p.ks, now), p.ks.Old, c.pol.Delay.MaxCorrection)
		}
		rep := ProbeReport{Placement: pr.Placement, At: off, Clicks: h.Clicks, Conversions: h.Conversions,
			EffectiveClicks: eff, Truth: p.spec.CVR, Naive: h.CVR()}
		if eff > 0 {
			rep.Corrected = float64(h.Conversions) / eff
		}
		c.rep.Probes = append(c.rep.Probes, rep)
	}
}

// finish closes the open days and computes the summaries.
func (r *runner) finish() {
	for ci := range r.camps {
		c := &r.camps[ci]
		r.closeDay(c)
		var xs, ys []float64
		for pi := range c.places {
			p := &c.places[pi]
			if p.multN > 0 {
				p.rep.MeanMultiplier = p.multSum / float64(p.multN)
			} else {
				p.rep.MinMultiplier, p.rep.MaxMultiplier = 0, 0
			}
			if !p.spec.Sparse && p.spec.LaunchAfter == 0 && p.multN > 0 {
				xs = append(xs, p.rep.TrueValue)
				ys = append(ys, p.rep.MeanMultiplier)
			}
		}
		if len(xs) >= 3 && !allEqual(xs) {
			c.rep.Spearman = spearman(xs, ys)
			c.rep.SpearmanPlacements = len(xs)
		}
	}
}

func allEqual(xs []float64) bool {
	for _, x := range xs {
		if x != xs[0] {
			return false
		}
	}
	return true
}

func keyAge(ks *models.KeyState, now int64) int64 {
	if ks.FirstMs == 0 {
		return -1
	}
	return max(now-ks.FirstMs, 0)
}

func absDiff(a, b uint64) uint64 {
	if a > b {
		return a - b
	}
	return b - a
}
