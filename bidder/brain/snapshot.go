package brain

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"

	"github.com/bidpulse/bidpulse/internal/pace"
	"github.com/bidpulse/bidpulse/models"
)

// snapshot is the controller state saved in a checkpoint.
type snapshot struct {
	Campaigns map[string]campaignSnapshot `json:"campaigns"`
	Keys      map[string]models.KeyState  `json:"keys,omitempty"`
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
	var invalid int
	var first error
	leftOut := func(what, name string, err error) {
		if invalid++; first == nil {
			first = fmt.Errorf("%s %q: %w", what, name, err)
		}
	}
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
	n := int64(0)
	b.campaigns.Range(func(_ string, c *campaign) bool {
		if c.state.Load() != nil {
			n++
		}
		return true
	}, nil)
	b.campaignStates.Store(n)
	if invalid > 0 {
		return fmt.Errorf("%d controller states out of range left out (they start afresh); the first: %w", invalid, first)
	}
	return nil
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
