package brain

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strconv"

	"github.com/bidpulse/bidpulse/internal/pace"
	"github.com/bidpulse/bidpulse/models"
)

// snapshot is the controller state saved in a checkpoint.
type snapshot struct {
	Campaigns map[string]campaignSnapshot `json:"campaigns"`
	Keys      map[string]models.KeyState  `json:"keys,omitempty"`
	// Strengths are the fitted prior strengths by parent hash (hex);
	// absent from checkpoints written before they were kept (the next
	// tick fits them again).
	Strengths map[string]models.Strength `json:"strengths,omitempty"`
}

type campaignSnapshot struct {
	// State is absent for a campaign that has only learned delays.
	State  *models.CampaignState `json:"state,omitempty"`
	Delays models.DelayHistogram `json:"delays"`
}

// SnapshotResult is what Snapshot left out.
type SnapshotResult struct {
	// LeftOut counts the states JSON cannot carry (a NaN or an infinity);
	// First names the first of them and Err is its error.
	LeftOut int
	First   string
	Err     error
}

// Snapshot writes the controller states to w as JSON: campaigns by name,
// keys by their encoded window key in base64 (JSON strings must be UTF-8).
// Each state is encoded on its own, so one that JSON cannot carry is left
// out alone (it starts afresh after a restart) and reported. Pending
// entries are published first. It holds tickMu, so it sees whole ticks;
// the walk steps aside every 2 ms of work.
//
// w gets many small writes, one state at a time, and must not fail (a
// memory buffer). A checkpoint passes a writer that keeps the bytes in
// chunks: one buffer of the whole snapshot (tens of MB) is zeroed and
// copied as it grows in calls the scheduler cannot preempt (30-60 ms each
// at 200,000 key states, the bid answers of a one-core service waiting).
func (b *Brain) Snapshot(w io.Writer) SnapshotResult {
	b.tickMu.Lock()
	defer b.tickMu.Unlock()
	var p pace.Pacer
	hook := b.hook("snapshot")
	b.keys.Flush(nil, nil, p.Check)
	b.campaigns.Flush(nil, nil, p.Check)

	var buf bytes.Buffer // up to one state, then emitted to w
	enc := json.NewEncoder(&buf)
	emit := func() {
		w.Write(buf.Bytes())
		buf.Reset()
	}
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
	var res SnapshotResult
	leftOut := func(what string, name []byte, err error) {
		if res.LeftOut == 0 {
			res.First, res.Err = what+" "+string(name), err
		}
		res.LeftOut++
	}

	var name []byte
	buf.WriteString(`{"campaigns":{`)
	var sep byte
	cs := &campaignSnapshot{}
	b.campaigns.Range(func(n string, c *campaign) bool {
		hook()
		p.Step()
		cs.State = c.state.Load()
		c.mu.Lock()
		cs.Delays = c.hist
		c.mu.Unlock()
		if cs.State == nil && cs.Delays.N == 0 {
			return true // answered, not yet ticked: nothing to keep
		}
		name, _ = json.Marshal(n)
		if err := put(sep, name, cs); err != nil {
			leftOut("campaign", name, err)
			return true
		}
		emit()
		sep = ','
		return true
	}, nil)
	buf.WriteString(`},"keys":{`)
	sep = 0
	b.keys.Range(func(k string, ctl *keyCtl) bool {
		hook()
		p.Step()
		st := ctl.state.Load()
		if st == nil {
			return true // answered, not yet ticked: the zero state
		}
		name = append(name[:0], '"')
		name = base64.RawURLEncoding.AppendEncode(name, []byte(k))
		name = append(name, '"')
		if err := put(sep, name, st); err != nil {
			leftOut("key", name, err)
			return true
		}
		emit()
		sep = ','
		return true
	}, nil)
	buf.WriteString(`},"strengths":{`)
	sep = 0
	var hexKey [18]byte
	for h, st := range *b.strengths.Load() {
		hk := strconv.AppendQuote(hexKey[:0], strconv.FormatUint(h, 16))
		if err := put(sep, hk, st); err != nil {
			leftOut("strength", hk, err)
			continue
		}
		emit()
		sep = ','
	}
	buf.WriteString(`}}`)
	emit()
	return res
}

// Restore loads the controller states of a snapshot into an empty brain.
// The restored campaigns and keys count as used at nowMs. Entries past the
// bounds are left out and counted as the tables' full answers. A state out
// of the ranges the control tick keeps it in (models' Check: a corrupt or
// edited checkpoint) is left out too, counted in
// bidpulse_brain_restore_invalid_total: it starts afresh, where trusting it
// would crash the tick or turn its multipliers into NaN. Restore then still
// loads the others, and returns an error naming the first one left out.
func (b *Brain) Restore(raw json.RawMessage, nowMs int64) error {
	if len(raw) == 0 {
		return nil
	}
	var snap snapshot
	if err := json.Unmarshal(raw, &snap); err != nil {
		return err
	}
	b.tickMu.Lock()
	defer b.tickMu.Unlock()
	var lo leftOuts
	leftOut := lo.add
	for name, cs := range snap.Campaigns {
		err := cs.Delays.Check()
		if err == nil && cs.State != nil {
			err = cs.State.Check()
		}
		if err != nil {
			leftOut("campaign", name, err)
			b.campaignsInvalid.Add(1)
			continue
		}
		if cs.State != nil && cs.State.Delay.Ready && cs.State.Delay.DelayModel == nil {
			cs.State.Delay.Ready = false // no model: recompiled on the next tick
		}
		if !b.setCampaign(name, cs.State, cs.Delays, nowMs) {
			b.campaignsFull.Add(1)
		}
	}
	for k, ks := range snap.Keys {
		key, err := base64.RawURLEncoding.DecodeString(k)
		if err != nil || len(key) == 0 {
			continue // not a key this brain wrote: left out
		}
		if err := ks.Check(); err != nil {
			leftOut("key", k, err)
			b.keysInvalid.Add(1)
			continue
		}
		st := ks
		if !b.setKey(string(key), &st, nowMs) {
			b.keysFull.Add(1)
		}
	}
	b.keys.Flush(nil, nil, nil)
	b.campaigns.Flush(nil, nil, nil)
	if len(snap.Strengths) > 0 {
		b.strengths.Store(decodeStrengths(snap.Strengths))
	}
	n := int64(0)
	b.campaigns.Range(func(_ string, c *campaign) bool {
		if c.state.Load() != nil {
			n++
		}
		return true
	}, nil)
	b.campaignStates.Store(n)
	return lo.err("(they start afresh)")
}

// decodeStrengths returns the strengths of a snapshot by parent hash,
// leaving out those with a bad hash or out of range.
func decodeStrengths(in map[string]models.Strength) *map[uint64]models.Strength {
	out := make(map[uint64]models.Strength, len(in))
	for k, st := range in {
		h, err := strconv.ParseUint(k, 16, 64)
		if err != nil || !(st.CTR >= 0) || !(st.CVR >= 0) || math.IsInf(st.CTR, 0) || math.IsInf(st.CVR, 0) {
			continue
		}
		out[h] = st
	}
	return &out
}

// Adopt makes the controller states of a snapshot another brain wrote (a
// partition's primary) this brain's: every campaign and key in it gets its
// state, every other one here loses its state (the primary has not ticked
// it yet: it answers as a new one, as on the primary), and the prior
// strengths are replaced. What this brain learned from the events itself
// is kept: the delay histograms (a replica applies the same events) and
// when each entry was last answered here, by which idle entries are
// forgotten as a Tick would. The entries it adds count as last answered at
// usedMs: 0 on a replica (they were not answered here, and are not reported
// back as such), nowMs on a primary taking its predecessor's states. A
// state out of range is left out, as Restore does, and the others are
// adopted; the error names the first one.
func (b *Brain) Adopt(raw []byte, nowMs, usedMs int64) error {
	var snap snapshot
	if err := json.Unmarshal(raw, &snap); err != nil {
		return err
	}
	b.tickMu.Lock()
	defer b.tickMu.Unlock()
	var lo leftOuts
	leftOut := lo.add
	campaigns := make(map[string]*models.CampaignState, len(snap.Campaigns))
	for name, cs := range snap.Campaigns {
		if cs.State == nil {
			continue
		}
		if err := cs.State.Check(); err != nil {
			leftOut("campaign", name, err)
			continue
		}
		if cs.State.Delay.Ready && cs.State.Delay.DelayModel == nil {
			continue // no model: answered as the primary's first tick would
		}
		campaigns[name] = cs.State
	}
	keys := make(map[string]*models.KeyState, len(snap.Keys))
	for k, ks := range snap.Keys {
		key, err := base64.RawURLEncoding.DecodeString(k)
		if err != nil || len(key) == 0 {
			continue
		}
		if err := ks.Check(); err != nil {
			leftOut("key", k, err)
			continue
		}
		st := ks
		keys[string(key)] = &st
	}
	var p pace.Pacer
	keyIdle := KeyIdle.Milliseconds()
	b.keys.Flush(func(key string, k *keyCtl) bool {
		_, ok := keys[key]
		return ok || nowMs-k.lastUsed.Load() <= keyIdle
	}, nil, p.Check)
	forget := CampaignForget.Milliseconds()
	b.campaigns.Flush(func(name string, c *campaign) bool {
		_, ok := campaigns[name]
		return ok || nowMs-c.lastSeen.Load() <= forget
	}, nil, p.Check)
	b.keys.Range(func(key string, k *keyCtl) bool {
		p.Step()
		st := keys[key]
		k.state.Store(st)
		if st != nil {
			delete(keys, key)
		}
		return true
	}, nil)
	states := int64(0)
	b.campaigns.Range(func(name string, c *campaign) bool {
		p.Step()
		st := campaigns[name]
		c.state.Store(st)
		if st != nil {
			delete(campaigns, name)
			states++
		}
		return true
	}, nil)
	// The primary's entries this brain does not hold yet.
	for key, st := range keys {
		if k := b.keys.Add([]byte(key), newKey, b.opts.MaxKeys); k != nil {
			k.state.Store(st)
			k.lastUsed.Store(usedMs)
		} else {
			b.keysFull.Add(1)
		}
	}
	for name, st := range campaigns {
		if c := b.campaigns.Add([]byte(name), newCampaign, b.opts.MaxCampaigns); c != nil {
			c.state.Store(st)
			c.lastUsed.Store(usedMs)
			c.lastSeen.Store(usedMs)
			states++
		} else {
			b.campaignsFull.Add(1)
		}
	}
	b.keys.Flush(nil, nil, nil)
	b.campaigns.Flush(nil, nil, nil)
	b.campaignStates.Store(states)
	b.strengths.Store(decodeStrengths(snap.Strengths))
	b.gen.Add(1)
	return lo.err("")
}

// leftOuts collects the states a restore or an adoption left out.
type leftOuts struct {
	n     int
	first error
}

func (l *leftOuts) add(what, name string, err error) {
	if l.n++; l.first == nil {
		l.first = fmt.Errorf("%s %q: %w", what, name, err)
	}
}

// err names how many were left out and the first, or is nil.
func (l *leftOuts) err(why string) error {
	if l.n == 0 {
		return nil
	}
	if why != "" {
		why = " " + why
	}
	return fmt.Errorf("%d controller states out of range left out%s; the first: %w", l.n, why, l.first)
}

// Used calls fn with the keys and the campaigns (campaign true) answered
// here at sinceMs or later (a key adopted, never answered here, is not): a replica reports
// them to its primary, whose states they then get (see Touch).
func (b *Brain) Used(sinceMs int64, fn func(name string, campaign bool)) {
	var p pace.Pacer
	b.keys.Range(func(key string, k *keyCtl) bool {
		p.Step()
		if k.lastUsed.Load() >= sinceMs {
			fn(key, false)
		}
		return true
	}, nil)
	b.campaigns.Range(func(name string, c *campaign) bool {
		p.Step()
		if c.lastUsed.Load() >= sinceMs {
			fn(name, true)
		}
		return true
	}, nil)
}

// Touch counts a key (or a campaign) as answered at nowMs, as a bid here
// would: a primary calls it for the keys its replicas answered, so that
// they get states and are not forgotten as idle.
func (b *Brain) Touch(name []byte, campaign bool, nowMs int64) {
	if campaign {
		b.Campaign(name, nowMs, true)
		return
	}
	b.Key(name, nowMs, true)
}

// SetCampaign publishes a campaign's controller state (nil: none) and
// learned delays at once, as Restore does, counting as used at nowMs. It
// reports false when the table is full.
func (b *Brain) SetCampaign(name string, st *models.CampaignState, delays models.DelayHistogram, nowMs int64) bool {
	ok := b.setCampaign(name, st, delays, nowMs)
	b.campaigns.Flush(nil, nil, nil)
	return ok
}

func (b *Brain) setCampaign(name string, st *models.CampaignState, delays models.DelayHistogram, nowMs int64) bool {
	c := b.campaigns.Add([]byte(name), newCampaign, b.opts.MaxCampaigns)
	if c == nil {
		return false
	}
	c.state.Store(st)
	if st != nil {
		c.lastUsed.Store(nowMs)
	}
	c.lastSeen.Store(nowMs)
	c.mu.Lock()
	c.hist = delays
	c.mu.Unlock()
	return true
}

// SetKey publishes a key's guardrail state at once, as Restore does,
// counting as used at nowMs. It reports false when the table is full.
func (b *Brain) SetKey(key string, st *models.KeyState, nowMs int64) bool {
	ok := b.setKey(key, st, nowMs)
	b.keys.Flush(nil, nil, nil)
	return ok
}

func (b *Brain) setKey(key string, st *models.KeyState, nowMs int64) bool {
	k := b.keys.Add([]byte(key), newKey, b.opts.MaxKeys)
	if k == nil {
		return false
	}
	k.state.Store(st)
	k.lastUsed.Store(nowMs)
	return true
}

// CampaignEntry returns a campaign's published state (nil: none) and
// learned delays, and whether the campaign is tracked.
func (b *Brain) CampaignEntry(name string) (*models.CampaignState, models.DelayHistogram, bool) {
	c := b.campaigns.Find(name)
	if c == nil {
		return nil, models.DelayHistogram{}, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.state.Load(), c.hist, true
}

// KeyEntry returns a key's published state (nil: none yet) and whether the
// key is tracked.
func (b *Brain) KeyEntry(key string) (*models.KeyState, bool) {
	k := b.keys.Find(key)
	if k == nil {
		return nil, false
	}
	return k.state.Load(), true
}
