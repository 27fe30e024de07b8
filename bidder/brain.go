package bidder

import (
	"bytes"
	"encoding/json"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bidpulse/bidpulse/models"
	"github.com/bidpulse/bidpulse/windows"
)

// maxKeyStates bounds the guardrail states kept for answering keys; a key
// not answered for keyStateIdle is forgotten.
const (
	maxKeyStates = 200_000
	keyStateIdle = time.Hour
)

// brain holds the controller state the policies read: per campaign (goal,
// pacing, delay model, and the learned delay histogram) and per answering
// key (guardrails), plus the empirical-Bayes prior strengths per parent.
// Ticks advance a copy of each state and publish it with an atomic pointer
// swap, so the bid path reads without locks held across Evaluate.
//
// Lock order: brain.mu before campaignCtl.mu; neither is held while a
// windows lock is taken by the same goroutine except through Store calls.
type brain struct {
	mu        sync.RWMutex
	campaigns map[string]*campaignCtl
	keys      map[string]*keyCtl
	strengths atomic.Pointer[map[string]models.Strength] // parent key + level byte -> fit
}

type campaignCtl struct {
	state atomic.Pointer[models.CampaignState]
	mu    sync.Mutex // guards hist
	hist  models.DelayHistogram
}

type keyCtl struct {
	state    atomic.Pointer[models.KeyState]
	lastUsed atomic.Int64
}

func newBrain() *brain {
	b := &brain{campaigns: map[string]*campaignCtl{}, keys: map[string]*keyCtl{}}
	empty := map[string]models.Strength{}
	b.strengths.Store(&empty)
	return b
}

// campaign returns the controller of a campaign, creating it when create.
func (b *brain) campaign(name []byte, create bool) *campaignCtl {
	b.mu.RLock()
	c := b.campaigns[string(name)]
	b.mu.RUnlock()
	if c != nil || !create {
		return c
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if c = b.campaigns[string(name)]; c == nil {
		c = &campaignCtl{}
		c.state.Store(&models.CampaignState{})
		b.campaigns[string(name)] = c
	}
	return c
}

// key returns the guardrail controller of an answering key. With track,
// it creates it (while fewer than maxKeyStates exist) and marks it used, so
// the control tick advances it; without, it only looks it up.
func (b *brain) key(key []byte, nowMs int64, track bool) *keyCtl {
	b.mu.RLock()
	k := b.keys[string(key)]
	b.mu.RUnlock()
	if !track {
		return k
	}
	if k == nil {
		b.mu.Lock()
		if k = b.keys[string(key)]; k == nil && len(b.keys) < maxKeyStates {
			k = &keyCtl{}
			k.state.Store(&models.KeyState{})
			b.keys[string(key)] = k
		}
		b.mu.Unlock()
		if k == nil {
			return nil
		}
	}
	if k.lastUsed.Load() < nowMs {
		k.lastUsed.Store(nowMs)
	}
	return k
}

// recordDelay learns a conversion's click-to-conversion delay (ingest,
// conversions with click_ts).
func (s *Service) recordDelay(campaign []byte, clickMs, convMs int64) {
	c := s.brain.campaign(campaign, true)
	w := c.state.Load().ClickWeight(clickMs)
	c.mu.Lock()
	c.hist.Add(clickMs, convMs, w)
	c.mu.Unlock()
}

// controlTick advances the campaign states, refits the prior strengths and
// advances the key states, at nowMs. Ticks are serialised by tickMu, so a
// checkpoint sees whole ticks.
func (s *Service) controlTick(nowMs int64) {
	s.tickMu.Lock()
	defer s.tickMu.Unlock()
	pol := s.policies.Load()
	st := s.store
	var vals windows.Values

	// Campaign keys first: collect them, then read each one's spans.
	var camps [][]byte
	st.Scan(s.rollups.Campaign, windows.Span24h, nowMs, func(key []byte, _ windows.Counts) bool {
		camps = append(camps, append([]byte(nil), key...))
		return true
	})
	hourlyOK := false
	if r, n := st.SpanResolution(windows.Span24h); r.Width == time.Hour && n == 24 {
		hourlyOK = true
	}
	var in models.TickInput
	for _, key := range camps {
		if _, err := windows.DecodeKey(key, s.rollups, &vals); err != nil {
			continue
		}
		name := vals[windows.DimCampaign]
		cfg := pol.For(name)
		c := s.brain.campaign(name, true)
		in = models.TickInput{NowMs: nowMs}
		st.Read(key, nowMs, (*[windows.NumSpans]windows.Counts)(&in.Campaign))
		if hourlyOK {
			in.HourlyKnown = models.ReadBuckets(func(at int64) windows.Counts {
				cnt, _ := st.ReadSpan(key, windows.Span24h, at)
				return cnt
			}, time.Hour.Milliseconds(), nowMs, in.Hourly[:])
		}
		c.mu.Lock()
		h := c.hist
		c.mu.Unlock()
		in.Delays = &h
		next := *c.state.Load()
		next.Tick(cfg, &in)
		c.state.Store(&next)
	}

	s.fitPriors(pol, nowMs)

	// Key states: advance the answered ones, forget the idle ones. The
	// bid path reads the table under the read lock: hold the write lock
	// only for the deletions.
	type entry struct {
		key string
		ctl *keyCtl
	}
	var keys []entry
	var idle []string
	s.brain.mu.RLock()
	for k, ctl := range s.brain.keys {
		if nowMs-ctl.lastUsed.Load() > keyStateIdle.Milliseconds() {
			idle = append(idle, k)
			continue
		}
		keys = append(keys, entry{k, ctl})
	}
	s.brain.mu.RUnlock()
	if len(idle) > 0 {
		s.brain.mu.Lock()
		for _, k := range idle {
			if ctl := s.brain.keys[k]; ctl != nil && nowMs-ctl.lastUsed.Load() > keyStateIdle.Milliseconds() {
				delete(s.brain.keys, k)
			}
		}
		s.brain.mu.Unlock()
	}
	sc := getScratch()
	defer putScratch(sc)
	for _, e := range keys {
		lvl, err := windows.DecodeKey([]byte(e.key), s.rollups, &sc.vals)
		if err != nil {
			continue
		}
		cfg := pol.For(sc.vals[windows.DimCampaign])
		s.buildInput(sc, lvl, cfg, nowMs)
		if hourlyOK {
			// The key's hourly buckets tell the delay correction the age
			// of its older clicks.
			var hourly [24]windows.Counts
			key := []byte(e.key)
			if models.ReadBuckets(func(at int64) windows.Counts {
				cnt, _ := st.ReadSpan(key, windows.Span24h, at)
				return cnt
			}, time.Hour.Milliseconds(), nowMs, hourly[:]) {
				sc.in.Hourly = &hourly
			}
		}
		cs := s.campaignState(sc.vals[windows.DimCampaign])
		next := *e.ctl.state.Load()
		next.Tick(cfg, &sc.in, cs)
		e.ctl.state.Store(&next)
	}
}

// fitPriors refits, for every level with a parent, the prior strengths of
// each parent's children from the children's counts (method of moments).
func (s *Service) fitPriors(pol *models.Policies, nowMs int64) {
	out := map[string]models.Strength{}
	var vals windows.Values
	// Each campaign's siblings are fitted on its own policy window.
	spans := []windows.Span{pol.Default.Performance.Window}
	for _, c := range pol.Campaigns {
		if !slices.Contains(spans, c.Performance.Window) {
			spans = append(spans, c.Performance.Window)
		}
	}
	for lvl, r := range s.rollups.Levels {
		if r.Parent < 0 {
			continue
		}
		for _, span := range spans {
			groups := map[string][]windows.Counts{}
			campaignOf := map[string]string{}
			s.store.Scan(lvl, span, nowMs, func(key []byte, c windows.Counts) bool {
				if _, err := windows.DecodeKey(key, s.rollups, &vals); err != nil {
					return true
				}
				pk := string(append(windows.AppendKey(nil, r.Parent, s.rollups, &vals), byte(lvl)))
				groups[pk] = append(groups[pk], c)
				campaignOf[pk] = string(vals[windows.DimCampaign])
				return true
			})
			for pk, sib := range groups {
				cfg := pol.For([]byte(campaignOf[pk]))
				if cfg.Performance.Window != span || !cfg.Performance.EmpiricalBayes.Enabled {
					continue
				}
				out[pk] = models.FitPriors(&cfg.Performance, sib).Strength
			}
		}
	}
	s.brain.strengths.Store(&out)
}

// campaignState returns the published state of a campaign, or nil.
func (s *Service) campaignState(campaign []byte) *models.CampaignState {
	if c := s.brain.campaign(campaign, false); c != nil {
		return c.state.Load()
	}
	return nil
}

// buildInput fills sc.in for the key of level lvl named by sc.vals: the
// chain's counts in the policy window and all its spans, the fitted prior
// strengths, the request's device and country. It leaves the key of level
// lvl (the last of the chain) in sc.key.
func (s *Service) buildInput(sc *bidScratch, lvl int, cfg *models.CampaignPolicy, nowMs int64) {
	sc.chain = s.rollups.Chain(sc.chain[:0], lvl)
	sc.counts = sc.counts[:0]
	sc.spans = sc.spans[:0]
	sc.strengths = sc.strengths[:0]
	strengths := *s.brain.strengths.Load()
	span := cfg.Performance.Window
	for i, l := range sc.chain {
		sc.key = windows.AppendKey(sc.key[:0], l, s.rollups, &sc.vals)
		var sp models.Spans
		s.store.Read(sc.key, nowMs, (*[windows.NumSpans]windows.Counts)(&sp))
		sc.spans = append(sc.spans, sp)
		sc.counts = append(sc.counts, sp[span])
		var st models.Strength
		if i > 0 && len(strengths) > 0 {
			sc.pkey = windows.AppendKey(sc.pkey[:0], sc.chain[i-1], s.rollups, &sc.vals)
			sc.pkey = append(sc.pkey, byte(l))
			st = strengths[string(sc.pkey)]
		}
		sc.strengths = append(sc.strengths, st)
	}
	sc.in = models.Input{
		Chain: sc.counts, Spans: sc.spans, Strengths: sc.strengths, NowMs: nowMs,
		Device: sc.vals[windows.DimDevice], Country: sc.vals[windows.DimCountry],
	}
}

// controllerSnapshot is the controller state saved in a checkpoint.
type controllerSnapshot struct {
	Campaigns map[string]campaignSnapshot `json:"campaigns"`
	Keys      map[string]models.KeyState  `json:"keys,omitempty"`
}

type campaignSnapshot struct {
	State  models.CampaignState  `json:"state"`
	Delays models.DelayHistogram `json:"delays"`
}

// snapshotControllers encodes the controller states as a
// controllerSnapshot. Keys are the encoded window keys in base64 (JSON
// strings must be UTF-8).
//
// Each campaign and key state is encoded on its own, so one that JSON
// cannot carry (a NaN or an infinity) is left out alone and every other
// state is kept: the states left out are counted in
// bidpulse_checkpoint_controller_errors_total and logged once per call,
// with the first of them. A key or campaign left out starts afresh after a
// restart.
//
// brain.mu is held only to copy the pointers; published states are never
// changed in place (a tick stores a new one), so they are encoded with no
// lock held. A campaign's mu is held only to copy its delay histogram. The
// caller holds tickMu, which serialises it with the control tick, so the
// snapshot sees whole ticks.
func (s *Service) snapshotControllers() json.RawMessage {
	type keyRef struct {
		key   string
		state *models.KeyState
	}
	type campaignRef struct {
		name string
		ctl  *campaignCtl
	}
	s.brain.mu.RLock()
	camps := make([]campaignRef, 0, len(s.brain.campaigns))
	for name, c := range s.brain.campaigns {
		camps = append(camps, campaignRef{name, c})
	}
	keys := make([]keyRef, 0, len(s.brain.keys))
	for k, ctl := range s.brain.keys {
		keys = append(keys, keyRef{k, ctl.state.Load()})
	}
	s.brain.mu.RUnlock()

	var buf bytes.Buffer
	buf.Grow(64 + len(camps)*2048 + len(keys)*256)
	enc := json.NewEncoder(&buf)
	// put appends sep, `name:` and the encoding of v to buf, or, when v
	// cannot be encoded, nothing. Encoder.Encode writes nothing when it
	// fails, and ends what it writes with a newline, which put removes.
	put := func(sep byte, name []byte, v any) error {
		mark := buf.Len()
		if sep != 0 {
			buf.WriteByte(sep)
		}
		buf.Write(name)
		buf.WriteByte(':')
		if err := enc.Encode(v); err != nil {
			buf.Truncate(mark)
			return err
		}
		buf.Truncate(buf.Len() - 1)
		return nil
	}
	var (
		bad      int
		firstBad string
		firstErr error
	)
	leftOut := func(what string, name []byte, err error) {
		if bad == 0 {
			firstBad, firstErr = what+" "+string(name), err
		}
		bad++
	}

	var name []byte
	buf.WriteString(`{"campaigns":{`)
	var sep byte
	cs := &campaignSnapshot{}
	for _, c := range camps {
		cs.State = *c.ctl.state.Load()
		c.ctl.mu.Lock()
		cs.Delays = c.ctl.hist
		c.ctl.mu.Unlock()
		name = appendStr(name[:0], c.name)
		if err := put(sep, name, cs); err != nil {
			leftOut("campaign", name, err)
			continue
		}
		sep = ','
	}
	buf.WriteString(`},"keys":{`)
	sep = 0
	for _, k := range keys {
		name = append(append(append(name[:0], '"'), b64(k.key)...), '"')
		if err := put(sep, name, k.state); err != nil {
			leftOut("key", name, err)
			continue
		}
		sep = ','
	}
	buf.WriteString(`}}`)

	if bad > 0 {
		s.stats.ckptCtlErrors.Add(bad)
		s.log.Warn().Err(firstErr).Int("left_out", bad).Str("first", firstBad).
			Msg("checkpoint: controller states that cannot be encoded are left out (they start afresh after a restart)")
	}
	return buf.Bytes()
}

// restoreControllers loads the controller states of a checkpoint.
func (s *Service) restoreControllers(raw json.RawMessage, nowMs int64) error {
	if len(raw) == 0 {
		return nil
	}
	var snap controllerSnapshot
	if err := json.Unmarshal(raw, &snap); err != nil {
		return err
	}
	for name, cs := range snap.Campaigns {
		c := s.brain.campaign([]byte(name), true)
		st := cs.State
		c.state.Store(&st)
		c.hist = cs.Delays
	}
	for k, ks := range snap.Keys {
		key, err := unb64(k)
		if err != nil || len(key) == 0 {
			continue
		}
		if ctl := s.brain.key(key, nowMs, true); ctl != nil {
			st := ks
			ctl.state.Store(&st)
		}
	}
	return nil
}
