// Package brain holds the controller state that bid answers read: per
// campaign (goal, pacing, the compiled delay model and the learned delay
// histogram) and per answering key (guardrails), the empirical-Bayes prior
// strengths, the control tick that advances them, and the building of a
// model's input from the windows. A bid reads bid.go -> brain -> models.
//
// # What a bid takes
//
// Nothing it can wait on. The states are published through atomic
// pointers in copy-on-write tables (bidder/internal/cowmap): a bid's
// look-up takes no lock. The first bid for a key or campaign the brain does
// not yet track adds it to a pending set with a try-lock that gives up
// rather than wait, and answers it as new (a nil state); Publish (every
// second) and the control tick publish the pending entries. The control
// tick advances a copy of each state and publishes it with a pointer swap,
// so a bid sees either the previous state or the next one, never a half
// built one.
//
// # Bounds
//
// At most MaxKeys key states and MaxCampaigns campaigns are held; when a
// table is full, a new key or campaign is answered without state (as a
// new one is) and counted in Stats (KeysFull, CampaignsFull). A key not
// answered for KeyIdle is forgotten. A campaign gets its controller state
// (about 2.3 KB) when it is first answered, is ticked while it is answered
// within CampaignIdle and then loses that state; its entry, which keeps
// the learned delay histogram (about 0.4 KB), is forgotten after
// CampaignForget without an answer or a learned conversion delay.
package brain

import (
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/cespare/xxhash/v2"

	"github.com/bidpulse/bidpulse/bidder/internal/cowmap"
	"github.com/bidpulse/bidpulse/internal/pace"
	"github.com/bidpulse/bidpulse/models"
	"github.com/bidpulse/bidpulse/windows"
)

// Defaults of the bounds.
const (
	DefaultMaxKeys      = 200_000
	DefaultMaxCampaigns = 100_000

	// KeyIdle: a key state not answered for that long is forgotten.
	KeyIdle = time.Hour
	// CampaignIdle: a campaign not answered for that long is no longer
	// ticked and its controller state is dropped (it starts afresh when
	// answered again).
	CampaignIdle = time.Hour
	// CampaignForget: a campaign entry (its learned delays) without an
	// answer or a learned delay for that long is forgotten.
	CampaignForget = 24 * time.Hour
)

// Options configure a Brain.
type Options struct {
	Store   *windows.Store
	Rollups *windows.Rollups
	// Policies returns the policies in force (read at each use).
	Policies func() *models.Policies
	// Now returns the time, Unix ms.
	Now func() int64
	// MaxKeys and MaxCampaigns bound the tables; <= 0: the defaults.
	MaxKeys, MaxCampaigns int
	// Metrics, if set, gets the brain's series (bidpulse_brain_*).
	Metrics *metrics.Set
	// Follower makes this brain a replica's: it computes no controller
	// state of its own (Publish gives no first tick; the service runs no
	// Tick) and takes the states a primary computed (Adopt).
	Follower bool
}

// Brain is the controller state of one service. Safe for concurrent use.
type Brain struct {
	opts      Options
	campaigns *cowmap.Map[campaign]
	keys      *cowmap.Map[keyCtl]
	strengths atomic.Pointer[map[uint64]models.Strength] // xxhash of parent key + level byte -> fit
	// fit is the prior fit's working memory, reused by every tick.
	fit priorFit

	// tickMu serialises the writers of states (Tick, Publish, Restore)
	// and Snapshot, so a snapshot sees whole ticks.
	tickMu sync.Mutex

	keysFull         *metrics.Counter
	campaignsFull    *metrics.Counter
	keysInvalid      *metrics.Counter // states Restore left out
	campaignsInvalid *metrics.Counter
	ticks            *metrics.Counter
	tickMs           atomic.Int64 // duration of the last tick
	// gen counts the changes of the controller states: each Tick, each
	// Publish that gave campaigns their first tick, each Adopt.
	gen            atomic.Uint64
	campaignStates atomic.Int64 // campaigns with controller state
	wanting        atomic.Int64 // campaigns marked wantState

	// WalkHook, when set (tests only), is called by the walks of Tick and
	// Snapshot every walkHookEvery entries, with the walk's name, while
	// the walk holds tickMu and no other lock.
	WalkHook func(walk string)
}

// walkHookEvery is how often a walk calls WalkHook.
const walkHookEvery = 1000

// campaign is a campaign's entry.
type campaign struct {
	// state is nil until the campaign is answered and ticked.
	state atomic.Pointer[models.CampaignState]
	// lastUsed is the time of its last answer, lastSeen of its last
	// answer or learned delay (Unix ms).
	lastUsed atomic.Int64
	lastSeen atomic.Int64
	// wantState: answered without controller state, for Publish.
	wantState atomic.Bool
	mu        sync.Mutex // guards hist
	hist      models.DelayHistogram
}

type keyCtl struct {
	state    atomic.Pointer[models.KeyState]
	lastUsed atomic.Int64
}

// New returns an empty Brain.
func New(o Options) *Brain {
	if o.MaxKeys <= 0 {
		o.MaxKeys = DefaultMaxKeys
	}
	if o.MaxCampaigns <= 0 {
		o.MaxCampaigns = DefaultMaxCampaigns
	}
	b := &Brain{opts: o, campaigns: cowmap.New[campaign](), keys: cowmap.New[keyCtl]()}
	empty := map[uint64]models.Strength{}
	b.strengths.Store(&empty)
	set := o.Metrics
	if set == nil {
		set = metrics.NewSet()
	}
	b.keysFull = set.NewCounter(`bidpulse_brain_untracked_total{table="keys"}`)
	b.campaignsFull = set.NewCounter(`bidpulse_brain_untracked_total{table="campaigns"}`)
	b.keysInvalid = set.NewCounter(`bidpulse_brain_restore_invalid_total{table="keys"}`)
	b.campaignsInvalid = set.NewCounter(`bidpulse_brain_restore_invalid_total{table="campaigns"}`)
	b.ticks = set.NewCounter(`bidpulse_brain_ticks_total`)
	set.NewGauge(`bidpulse_brain_key_states`, func() float64 { return float64(b.keys.Len()) })
	set.NewGauge(`bidpulse_brain_key_states_max`, func() float64 { return float64(o.MaxKeys) })
	set.NewGauge(`bidpulse_brain_campaigns`, func() float64 { return float64(b.campaigns.Len()) })
	set.NewGauge(`bidpulse_brain_campaign_states`, func() float64 { return float64(b.campaignStates.Load()) })
	set.NewGauge(`bidpulse_brain_campaigns_max`, func() float64 { return float64(o.MaxCampaigns) })
	set.NewGauge(`bidpulse_brain_tick_seconds`, func() float64 { return float64(b.tickMs.Load()) / 1e3 })
	return b
}

func newCampaign() *campaign { return &campaign{} }
func newKey() *keyCtl        { return &keyCtl{} }

// touch raises a to now.
func touch(a *atomic.Int64, nowMs int64) {
	if a.Load() < nowMs {
		a.Store(nowMs)
	}
}

// Campaign returns the published controller state of a campaign, or nil
// (not answered before, or not ticked yet). With track, the answer counts
// as the campaign's use, and an untracked campaign is added (see the
// package doc). It takes no lock it can wait on and allocates nothing once
// the campaign is tracked.
func (b *Brain) Campaign(name []byte, nowMs int64, track bool) *models.CampaignState {
	c := b.campaigns.Get(name)
	if c == nil {
		if track {
			c, full := b.campaigns.TryAdd(name, newCampaign, b.opts.MaxCampaigns)
			if c != nil {
				c.lastUsed.Store(nowMs)
				c.lastSeen.Store(nowMs)
				b.wantState(c)
			} else if full {
				b.campaignsFull.Add(1)
			}
		}
		return nil
	}
	st := c.state.Load()
	if track {
		touch(&c.lastUsed, nowMs)
		touch(&c.lastSeen, nowMs)
		if st == nil {
			b.wantState(c)
		}
	}
	return st
}

// Key returns the published guardrail state of an answering key, or nil
// (a key never served). With track, the answer counts as the key's use,
// and an untracked key is added. It takes no lock it can wait on and
// allocates nothing once the key is tracked.
func (b *Brain) Key(key []byte, nowMs int64, track bool) *models.KeyState {
	k := b.keys.Get(key)
	if k == nil {
		if track {
			k, full := b.keys.TryAdd(key, newKey, b.opts.MaxKeys)
			if k != nil {
				k.lastUsed.Store(nowMs)
			} else if full {
				b.keysFull.Add(1)
			}
		}
		return nil
	}
	if track {
		touch(&k.lastUsed, nowMs)
	}
	return k.state.Load()
}

// RecordDelay learns a conversion's click-to-conversion delay (ingest,
// conversions with click_ts). It may wait for a table's writer lock: call
// it off the bid path.
func (b *Brain) RecordDelay(name []byte, clickMs, convMs int64) {
	c := b.campaigns.Add(name, newCampaign, b.opts.MaxCampaigns)
	if c == nil {
		b.campaignsFull.Add(1)
		return
	}
	touch(&c.lastSeen, b.opts.Now())
	var w float64
	if st := c.state.Load(); st != nil {
		w = st.ClickWeight(clickMs)
	} else {
		var zero models.CampaignState
		w = zero.ClickWeight(clickMs)
	}
	c.mu.Lock()
	c.hist.Add(clickMs, convMs, w)
	c.mu.Unlock()
}

// Stats are the brain's sizes and counters.
type Stats struct {
	Keys, KeysPending           int
	Campaigns, CampaignsPending int
	// CampaignStates counts the campaigns with controller state.
	CampaignStates int
	// KeysFull and CampaignsFull count answers given without state
	// because the table was full.
	KeysFull, CampaignsFull uint64
	Ticks                   uint64
	LastTick                time.Duration
}

// Stats returns the brain's figures.
func (b *Brain) Stats() Stats {
	st := Stats{
		Keys: b.keys.Len(), KeysPending: b.keys.Pending(),
		Campaigns: b.campaigns.Len(), CampaignsPending: b.campaigns.Pending(),
		CampaignStates: int(b.campaignStates.Load()),
		KeysFull:       b.keysFull.Get(), CampaignsFull: b.campaignsFull.Get(),
		Ticks: b.ticks.Get(), LastTick: time.Duration(b.tickMs.Load()) * time.Millisecond,
	}
	return st
}

// Limits returns the bounds in force.
func (b *Brain) Limits() (maxKeys, maxCampaigns int) {
	return b.opts.MaxKeys, b.opts.MaxCampaigns
}

// Publish makes the keys and campaigns added since the last call visible
// to bids, and gives each answered campaign without controller state its
// first tick (one that got an entry from a learned delay before its first
// answer included), so its answers after that carry its goal, pacing and
// delay model. Run it every second or so, off the bid path.
func (b *Brain) Publish(nowMs int64) {
	if b.keys.Pending() == 0 && b.campaigns.Pending() == 0 && b.wanting.Load() == 0 {
		return
	}
	b.tickMu.Lock()
	defer b.tickMu.Unlock()
	var p pace.Pacer
	b.keys.Flush(nil, nil, p.Check)
	b.campaigns.Flush(nil, nil, p.Check)
	if b.wanting.Load() == 0 || b.opts.Follower {
		return
	}
	var t *campaignTicker
	b.campaigns.Range(func(name string, c *campaign) bool {
		if !c.wantState.Load() {
			return true
		}
		if t == nil {
			t = b.newCampaignTicker(nowMs)
		}
		if c.state.Load() == nil {
			t.tick(name, c)
			b.campaignStates.Add(1)
		}
		b.ticked(c)
		p.Step()
		return true
	}, nil)
	if t != nil {
		b.gen.Add(1)
	}
}

// Gen returns the generation of the controller states: it moves on each
// change (Tick, a first tick in Publish, Adopt).
func (b *Brain) Gen() uint64 { return b.gen.Load() }

// wantState marks an answered campaign without controller state for
// Publish (once: the flag is set with a compare-and-swap).
func (b *Brain) wantState(c *campaign) {
	if b.opts.Follower {
		return // its states are adopted, never ticked here
	}
	if !c.wantState.Load() && c.wantState.CompareAndSwap(false, true) {
		b.wanting.Add(1)
	}
}

// ticked clears c's mark after a tick gave it a state.
func (b *Brain) ticked(c *campaign) {
	if c.wantState.Swap(false) {
		b.wanting.Add(-1)
	}
}

// Tick advances the states at nowMs: it publishes pending entries, forgets
// idle ones, ticks the campaigns answered within CampaignIdle (dropping
// the state of the others), refits the prior strengths and ticks the keys.
// Long walks step aside every 2 ms of work, so answers get the CPU on a
// one-core process.
func (b *Brain) Tick(nowMs int64) {
	b.tickMu.Lock()
	defer b.tickMu.Unlock()
	start := time.Now()
	var p pace.Pacer
	hook := b.hook("tick")

	keyIdle := KeyIdle.Milliseconds()
	b.keys.Flush(func(_ string, k *keyCtl) bool {
		return nowMs-k.lastUsed.Load() <= keyIdle
	}, nil, p.Check)
	forget := CampaignForget.Milliseconds()
	b.campaigns.Flush(func(_ string, c *campaign) bool {
		if nowMs-c.lastSeen.Load() <= forget {
			return true
		}
		b.ticked(c) // forgotten: no longer waits for a state
		return false
	}, nil, p.Check)

	t := b.newCampaignTicker(nowMs)
	idle := CampaignIdle.Milliseconds()
	states := int64(0)
	b.campaigns.Range(func(name string, c *campaign) bool {
		hook()
		if nowMs-c.lastUsed.Load() > idle {
			if c.state.Load() != nil {
				c.state.Store(nil)
			}
			b.ticked(c)
			return true
		}
		t.tick(name, c)
		b.ticked(c)
		states++
		p.Step()
		return true
	}, nil)
	b.campaignStates.Store(states)

	b.fitPriors(t.pol, nowMs, &p)

	in := &Input{}
	var hourly [24]windows.Counts
	st := b.opts.Store
	b.keys.Range(func(key string, k *keyCtl) bool {
		hook()
		p.Step()
		lvl, err := windows.DecodeKey([]byte(key), b.opts.Rollups, &in.Vals)
		if err != nil {
			return true
		}
		cfg := t.pol.For(in.Vals[windows.DimCampaign])
		b.BuildInput(in, lvl, cfg, nowMs)
		if t.hourlyOK {
			// The key's hourly buckets tell the delay correction the age
			// of its older clicks.
			kb := []byte(key)
			if models.ReadBuckets(func(at int64) windows.Counts {
				cnt, _ := st.ReadSpan(kb, windows.Span24h, at)
				return cnt
			}, time.Hour.Milliseconds(), nowMs, hourly[:]) {
				in.In.Hourly = &hourly
			}
		}
		var cs *models.CampaignState
		if c := b.campaigns.Get(in.Vals[windows.DimCampaign]); c != nil {
			cs = c.state.Load()
		}
		next := models.KeyState{}
		if cur := k.state.Load(); cur != nil {
			next = *cur
		}
		next.Tick(cfg, &in.In, cs)
		k.state.Store(&next)
		return true
	}, nil)
	b.ticks.Add(1)
	b.gen.Add(1)
	b.tickMs.Store(time.Since(start).Milliseconds())
}

// hook returns the walk hook of walk, calling WalkHook every
// walkHookEvery entries, or a no-op.
func (b *Brain) hook(walk string) func() {
	h := b.WalkHook
	if h == nil {
		return func() {}
	}
	n := 0
	return func() {
		n++
		if n%walkHookEvery == 0 {
			h(walk)
		}
	}
}

// campaignTicker ticks campaigns at one time under one policy set.
type campaignTicker struct {
	b        *Brain
	pol      *models.Policies
	nowMs    int64
	hourlyOK bool
	vals     windows.Values
	key      []byte
	in       models.TickInput
	hist     models.DelayHistogram
}

func (b *Brain) newCampaignTicker(nowMs int64) *campaignTicker {
	t := &campaignTicker{b: b, pol: b.opts.Policies(), nowMs: nowMs}
	if r, n := b.opts.Store.SpanResolution(windows.Span24h); r.Width == time.Hour && n == 24 {
		t.hourlyOK = true
	}
	return t
}

// tick advances campaign c (named name) and publishes its next state.
func (t *campaignTicker) tick(name string, c *campaign) {
	st := t.b.opts.Store
	t.vals.Reset()
	t.vals[windows.DimCampaign] = []byte(name)
	t.key = windows.AppendKey(t.key[:0], t.b.opts.Rollups.Campaign, t.b.opts.Rollups, &t.vals)
	cfg := t.pol.For(t.vals[windows.DimCampaign])
	t.in = models.TickInput{NowMs: t.nowMs}
	st.Read(t.key, t.nowMs, (*[windows.NumSpans]windows.Counts)(&t.in.Campaign))
	if t.hourlyOK {
		key := t.key
		t.in.HourlyKnown = models.ReadBuckets(func(at int64) windows.Counts {
			cnt, _ := st.ReadSpan(key, windows.Span24h, at)
			return cnt
		}, time.Hour.Milliseconds(), t.nowMs, t.in.Hourly[:])
	}
	c.mu.Lock()
	t.hist = c.hist
	c.mu.Unlock()
	t.in.Delays = &t.hist
	next := models.CampaignState{}
	if cur := c.state.Load(); cur != nil {
		next = *cur
	}
	next.Tick(cfg, &t.in)
	c.state.Store(&next)
}

// priorFit is the working memory of fitPriors, kept between ticks so that
// a tick over a million keys does not allocate its groups anew.
type priorFit struct {
	idx     map[uint64]int32 // parent hash -> group
	groups  []fitGroup
	entries []fitEntry
	sorted  []windows.Counts
}

type fitGroup struct {
	hash uint64
	cfg  *models.CampaignPolicy // nil: the group's policy fits no prior on this span
	n    int32
	off  int32
}

type fitEntry struct {
	group int32
	c     windows.Counts
}

// parentHash identifies a parent key and the child level: the key of the
// fitted strengths. A 64-bit hash: two parents that collide (about one
// chance in 10^7 with a million parents) share a fit.
func parentHash(pkey []byte) uint64 { return xxhash.Sum64(pkey) }

// fitPriors refits, for every level with a parent, the prior strengths of
// each parent's children from the children's counts (method of moments),
// and publishes them. Each campaign's siblings are fitted on its own
// policy window, only when its policy uses empirical Bayes.
func (b *Brain) fitPriors(pol *models.Policies, nowMs int64, p *pace.Pacer) {
	out := make(map[uint64]models.Strength, len(*b.strengths.Load()))
	var vals windows.Values
	r := b.opts.Rollups
	spans := []windows.Span{pol.Default.Performance.Window}
	for _, c := range pol.Campaigns {
		if !slices.Contains(spans, c.Performance.Window) {
			spans = append(spans, c.Performance.Window)
		}
	}
	f := &b.fit
	if f.idx == nil {
		f.idx = map[uint64]int32{}
	}
	var pk []byte
	for lvl, rl := range r.Levels {
		if rl.Parent < 0 {
			continue
		}
		for _, span := range spans {
			clear(f.idx)
			f.groups, f.entries = f.groups[:0], f.entries[:0]
			b.opts.Store.Scan(lvl, span, nowMs, func(key []byte, c windows.Counts) bool {
				p.Step()
				if _, err := windows.DecodeKey(key, r, &vals); err != nil {
					return true
				}
				pk = append(windows.AppendKey(pk[:0], rl.Parent, r, &vals), byte(lvl))
				h := parentHash(pk)
				g, ok := f.idx[h]
				if !ok {
					cfg := pol.For(vals[windows.DimCampaign])
					if cfg.Performance.Window != span || !cfg.Performance.EmpiricalBayes.Enabled {
						cfg = nil
					}
					g = int32(len(f.groups))
					f.idx[h] = g
					f.groups = append(f.groups, fitGroup{hash: h, cfg: cfg})
				}
				if f.groups[g].cfg != nil {
					f.groups[g].n++
					f.entries = append(f.entries, fitEntry{g, c})
				}
				return true
			})
			// Siblings side by side: a counting sort by group.
			off := int32(0)
			for i := range f.groups {
				f.groups[i].off = off
				off += f.groups[i].n
				f.groups[i].n = 0
			}
			f.sorted = slices.Grow(f.sorted[:0], int(off))[:off]
			for _, e := range f.entries {
				g := &f.groups[e.group]
				f.sorted[g.off+g.n] = e.c
				g.n++
			}
			for i := range f.groups {
				g := &f.groups[i]
				if g.cfg == nil {
					continue
				}
				p.Step()
				out[g.hash] = models.FitPriors(&g.cfg.Performance, f.sorted[g.off:g.off+g.n]).Strength
			}
		}
	}
	b.strengths.Store(&out)
}

// Input is the working memory that builds a model's input: embed it in a
// pooled request scratch, so that answering allocates nothing.
type Input struct {
	// Vals are the request's dimension values.
	Vals windows.Values
	// Key is the encoded key BuildInput ended on (the answering key).
	Key       []byte
	pkey      []byte
	chain     []int
	counts    []windows.Counts
	spans     []models.Spans
	strengths []models.Strength
	// In is the model's input BuildInput filled.
	In models.Input

	// memo holds the spans of the keys read since ResetMemo, so a batch
	// whose items share a campaign (or campaign and creative) reads each
	// shared key once.
	memo  [memoSize]memoEntry
	nMemo int
	memoT int64
}

// memoSize bounds the per-request memo (a chain has at most a few levels).
const memoSize = 8

type memoEntry struct {
	key []byte
	sp  models.Spans
	ok  bool
}

// ResetMemo forgets the keys read: call it at the start of each request.
func (in *Input) ResetMemo() { in.nMemo = 0 }

// ReadSpans reads key's counts in every span at nowMs into dst, from the
// request's memo when the key was read before at the same time. It
// reports whether the key exists.
func (b *Brain) ReadSpans(in *Input, key []byte, nowMs int64, dst *models.Spans) bool {
	if in.memoT != nowMs {
		in.nMemo, in.memoT = 0, nowMs
	}
	for i := 0; i < in.nMemo; i++ {
		if m := &in.memo[i]; string(m.key) == string(key) {
			*dst = m.sp
			return m.ok
		}
	}
	ok := b.opts.Store.Read(key, nowMs, (*[windows.NumSpans]windows.Counts)(dst))
	// The slots fill in order, then the last one is recycled: a request's
	// shared parents are read first.
	i := in.nMemo
	if i == memoSize {
		i--
	} else {
		in.nMemo++
	}
	m := &in.memo[i]
	m.key = append(m.key[:0], key...)
	m.sp, m.ok = *dst, ok
	return ok
}

// Counts returns the counts in the policy window of the chain's levels,
// the answering key's last.
func (in *Input) Counts() []windows.Counts { return in.counts }

// BuildInput fills in.In for the key of level lvl named by in.Vals: the
// chain's counts in the policy window and all its spans, the fitted prior
// strengths, the request's device and country. It leaves the key of level
// lvl (the last of the chain) in in.Key.
func (b *Brain) BuildInput(in *Input, lvl int, cfg *models.CampaignPolicy, nowMs int64) {
	r := b.opts.Rollups
	in.chain = r.Chain(in.chain[:0], lvl)
	in.counts = in.counts[:0]
	in.spans = in.spans[:0]
	in.strengths = in.strengths[:0]
	strengths := *b.strengths.Load()
	span := cfg.Performance.Window
	for i, l := range in.chain {
		in.Key = windows.AppendKey(in.Key[:0], l, r, &in.Vals)
		var sp models.Spans
		b.ReadSpans(in, in.Key, nowMs, &sp)
		in.spans = append(in.spans, sp)
		in.counts = append(in.counts, sp[span])
		var st models.Strength
		if i > 0 && len(strengths) > 0 {
			in.pkey = windows.AppendKey(in.pkey[:0], in.chain[i-1], r, &in.Vals)
			in.pkey = append(in.pkey, byte(l))
			st = strengths[parentHash(in.pkey)]
		}
		in.strengths = append(in.strengths, st)
	}
	in.In = models.Input{
		Chain: in.counts, Spans: in.spans, Strengths: in.strengths, NowMs: nowMs,
		Device: in.Vals[windows.DimDevice], Country: in.Vals[windows.DimCountry],
	}
}

// Strengths returns how many parents have fitted prior strengths.
func (b *Brain) Strengths() int { return len(*b.strengths.Load()) }

// Reset empties the brain and makes it read store: for a service that
// discards its loaded state before it serves (not safe with concurrent
// bids).
func (b *Brain) Reset(store *windows.Store) {
	b.tickMu.Lock()
	defer b.tickMu.Unlock()
	b.opts.Store = store
	b.campaigns = cowmap.New[campaign]()
	b.keys = cowmap.New[keyCtl]()
	empty := map[uint64]models.Strength{}
	b.strengths.Store(&empty)
	b.campaignStates.Store(0)
	b.wanting.Store(0)
}
