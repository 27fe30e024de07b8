package ingest

import (
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/bidpulse/bidpulse/bidder/event"
	"github.com/bidpulse/bidpulse/bidder/idset"
	"github.com/bidpulse/bidpulse/windows"
	"github.com/nats-io/nats.go"
)

// futureToleranceMs is how far ahead of the service clock an event time may
// be before the event is refused as "future". Events inside the tolerance
// count in the current bucket.
const futureToleranceMs = 5000

// RejectHeader names the reason on a dead letter.
const RejectHeader = "Bidpulse-Reject-Reason"

// applier applies events to the windows. It is driven by one goroutine (the
// NATS subscription's callback), which serialises the dedup check-then-set and
// the key-cap check; it is not safe for concurrent use.
type applier struct {
	ing    *Ingester
	parser event.Parser
	keys   []byte // encoded keys of the current event, back to back
	offs   []int  // end offset of each key in keys
	// Window writes of the current message on existing keys, applied
	// together by flush (Store.AddBatch overlaps their cache misses).
	pendKeys []byte
	// pend's keys are slices of pendKeys: when pendKeys grows, the earlier
	// ones keep the old array, whose bytes do not change until the flush.
	pend []windows.Event
	// Event outcomes not yet published in the stats: flush adds them all
	// together, after the windows hold the counted events, so a reader that
	// sees an event counted also sees it in /v1/rates, and the stats
	// balance (received = counted + the other outcomes).
	out     outcomes
	subject string // subject of the current message (partitioned: as published, see setSubject)
	// campaign is the campaign the current message's subject names, in
	// partitioned mode ("" when it names none: every event is rejected).
	campaign string
	// base is the subject's base (Options.Subject without ".>"), in
	// partitioned mode.
	base   string
	known  []byte // the known fields of a rejected event (event.Parser.AppendKnown)
	hasher *payloadHasher
	nowMs  int64  // service time of the current message
	oldest int64  // events before it are late (Store.Oldest(nowMs))
	seq    uint64 // stream sequence of the current message (0: core mode)
	// defaultTs is the event time of events without ts: the JetStream
	// message time (so a replay puts them back where they were), else the
	// receive time.
	defaultTs int64
	// newestTs is the newest event time applied (Unix ms), for the
	// ingest lag.
	newestTs atomic.Int64
	onEvent  func(ev *event.Event, reason event.Reason, raw []byte)
	// fps holds the dedup fingerprints of the events of a batch message,
	// computed (and their slots prefetched) before the first is applied;
	// next is the index of the next event to apply.
	fps  []idset.FP
	next int
	// flushTimer flushes writes held back by applyMsg when no message
	// follows soon; armed says it is set. Both under the service's applyMu.
	flushTimer *time.Timer
	armed      bool
}

// flushDelay bounds how long applyMsg holds writes back waiting for the
// next message.
const flushDelay = 2 * time.Millisecond

// outcomes counts events by outcome, for the stats.
type outcomes struct {
	received, counted, duplicates, late, future, overflow uint64
	rejected                                              [event.NumReasons]uint64
	byType                                                [event.NumTypes]uint64
}

// publish adds o to the stats and clears it; received goes last, so a
// reader never sees more received than outcomes.
func (o *outcomes) publish(s *Stats) {
	add := func(c *metrics.Counter, n *uint64) {
		if *n > 0 {
			c.Add(int(*n))
			*n = 0
		}
	}
	add(s.Counted, &o.counted)
	for t := 1; t < len(o.byType); t++ {
		add(s.ByType[t], &o.byType[t])
	}
	add(s.Duplicates, &o.duplicates)
	add(s.Late, &o.late)
	add(s.Future, &o.future)
	add(s.Overflow, &o.overflow)
	for r := 1; r < len(o.rejected); r++ {
		add(s.Rejected[r], &o.rejected[r])
	}
	add(s.Received, &o.received)
}

// maxPending bounds the writes held before a flush.
const maxPending = 512

func newApplier(ing *Ingester) *applier {
	in := &applier{ing: ing, hasher: newPayloadHasher(ing.dlqKey)}
	in.base, _ = Base(ing.opts.Subject)
	// A method value made once, so parsing a message allocates no closure.
	in.onEvent = in.handleEvent
	in.parser.BeforeEvents = in.prefetch
	in.flushTimer = time.AfterFunc(time.Hour, func() {
		ing.applyMu.Lock()
		in.armed = false
		in.flush()
		ing.applyMu.Unlock()
	})
	in.flushTimer.Stop()
	return in
}

// prefetch computes the dedup fingerprints of a batch's events and starts
// loading their slots, so the set's cache misses overlap.
func (in *applier) prefetch(evs []event.Event) {
	d := in.ing.dedup
	in.fps = in.fps[:0]
	for i := range evs {
		fp := d.hash(evs[i].Type, evs[i].ID)
		d.set.Prefetch(fp)
		in.fps = append(in.fps, fp)
	}
}

// handleMsg is the NATS message handler. msg.Data is not kept after return.
func (in *applier) handleMsg(msg *nats.Msg) {
	if h := in.ing.opts.ApplyHook; h != nil {
		h(0)
	}
	more := false
	if msg.Sub != nil {
		// Pending counts the message being handled too: nats.go lowers
		// it after the callback returns.
		n, _, _ := msg.Sub.Pending()
		more = n > 1
	}
	now := in.ing.clock.NowMs()
	in.ing.applyMu.Lock()
	in.setSubject(msg.Subject)
	in.ing.stats.Messages.Inc()
	in.applyMsg(msg.Data, now, now, more)
	in.ing.applyMu.Unlock()
}

// applyMsg parses payload and applies each of its events at time nowMs;
// events without ts take defaultTs. When more says another message is
// already waiting, the window writes are held back to be applied with its
// own (bigger batches overlap more cache misses), for at most flushDelay
// and maxPending writes. Events count in the stats when
// their writes are applied. Whoever needs every applied message in the
// windows (a checkpoint, eviction) calls flush under applyMu.
func (in *applier) applyMsg(payload []byte, nowMs, defaultTs int64, more bool) {
	in.nowMs, in.defaultTs = nowMs, defaultTs
	in.oldest = in.ing.store.Oldest(nowMs)
	in.parser.NowMs = nowMs
	in.fps, in.next = in.fps[:0], 0
	in.parser.Parse(payload, in.onEvent)
	in.fps = in.fps[:0]
	if !more {
		in.flush()
		return
	}
	if (len(in.pend) > 0 || in.out.received > 0) && !in.armed {
		in.armed = true
		in.flushTimer.Reset(flushDelay)
	}
}

// apply is applyMsg of a lone message whose events without ts take nowMs.
func (in *applier) apply(payload []byte, nowMs int64) {
	in.applyMsg(payload, nowMs, nowMs, false)
}

// flush applies the pending window writes. They touch keys that exist, or
// new keys queued while the store had room for all of them; only the
// applier adds or (through evict, under the same lock) removes keys, so none
// can be refused.
func (in *applier) flush() {
	if len(in.pend) > 0 {
		in.flushWrites()
	}
	if in.out.received > 0 {
		in.out.publish(in.ing.stats)
	}
}

func (in *applier) flushWrites() {
	if n := in.ing.store.AddBatch(in.pend, in.nowMs, nil); n != len(in.pend) {
		panic("BUG: windows refused a write the key-cap check let through")
	}
	clear(in.pend) // drop the references to old key arrays
	in.pend, in.pendKeys = in.pend[:0], in.pendKeys[:0]
}

func (in *applier) handleEvent(ev *event.Event, reason event.Reason, raw []byte) {
	in.out.received++
	k := in.next
	in.next++
	if reason != event.OK {
		in.out.rejected[reason]++
		in.known = in.parser.AppendKnown(in.known[:0])
		if reason == event.BadTS || reason == event.BadClickTS {
			in.logBadTime(reason, k)
		}
		in.deadLetter(raw, reason, k)
		return
	}
	if in.wrongPartition(ev) {
		in.rejectWrongPartition(ev, k)
		return
	}
	var fp idset.FP
	if k < len(in.fps) {
		fp = in.fps[k]
	} else {
		fp = in.ing.dedup.hash(ev.Type, ev.ID)
	}
	in.applyEvent(ev, fp, in.nowMs)
}

func (in *applier) applyEvent(ev *event.Event, fp idset.FP, nowMs int64) {
	svc := in.ing
	ts := in.defaultTs
	if ev.HasTS {
		ts = ev.TS
	}
	if ts < in.oldest {
		in.out.late++
		return
	}
	if ts > nowMs+futureToleranceMs {
		in.out.future++
		return
	}
	if svc.dedup.seen(fp) {
		in.out.duplicates++
		return
	}
	var c windows.Counts
	switch ev.Type {
	case event.Impression:
		c.Impressions = 1
	case event.Click:
		c.Clicks = 1
	case event.Conversion:
		c.Conversions = 1
	}
	c.CostMicros, c.ValueMicros = ev.CostMicros, ev.ValueMicros
	// A write for every rollup whose dimensions the event has. Far from the
	// key cap (room for every pending write and every level of this event to
	// be a new key) the keys need no look-up here: they are queued, AddBatch
	// creates the missing ones when flush runs, and none can be refused.
	if svc.store.Len()+len(in.pend)+len(svc.rollups.Levels) <= svc.store.MaxKeys() {
		for lvl := range svc.rollups.Levels {
			if svc.rollups.Covers(lvl, &ev.Dims) {
				off := len(in.pendKeys)
				in.pendKeys = windows.AppendKey(in.pendKeys, lvl, svc.rollups, &ev.Dims)
				in.queue(off, ts, c)
			}
		}
	} else if !in.addNearCap(ev, ts, nowMs, c) {
		in.out.overflow++
		return
	}
	if len(in.pend) >= maxPending {
		in.flushWrites() // the stats follow at the message's flush
	}
	if ev.Type == event.Conversion && ev.HasClickTS && ev.ClickTS <= ts {
		if f := svc.opts.OnConversionDelay; f != nil {
			f(ev.Dims[windows.DimCampaign], ev.ClickTS, ts)
		}
	}
	svc.dedup.add(fp, in.seq)
	if ts > in.newestTs.Load() {
		in.newestTs.Store(ts)
	}
	in.out.counted++
	in.out.byType[ev.Type]++
}

// addNearCap writes the event's keys when the store may not have room for
// all of them: the whole event is refused (false) when it needs a new key
// and the cap is full, so a child never counts more than its parent.
func (in *applier) addNearCap(ev *event.Event, ts, nowMs int64, c windows.Counts) bool {
	svc := in.ing
	// Pending writes may create keys (queued while there was room): apply
	// them first, so the checks below see every key and the cap is exact.
	// (The stats follow at the next flush: they never run ahead of the
	// windows, nor received ahead of the outcomes.)
	if len(in.pend) > 0 {
		in.flushWrites()
	}
	in.keys, in.offs = in.keys[:0], in.offs[:0]
	missing := 0
	start := 0
	for lvl := range svc.rollups.Levels {
		if !svc.rollups.Covers(lvl, &ev.Dims) {
			continue
		}
		in.keys = windows.AppendKey(in.keys, lvl, svc.rollups, &ev.Dims)
		in.offs = append(in.offs, len(in.keys))
		if !svc.store.Contains(in.keys[start:]) {
			missing++
		}
		start = len(in.keys)
	}
	if missing > 0 && svc.store.Len()+missing > svc.store.MaxKeys() {
		return false
	}
	start = 0
	if missing > 0 {
		// New keys: write now, so the key-cap check of the next event sees
		// them (the pending writes were applied above).
		for _, end := range in.offs {
			if !svc.store.Add(in.keys[start:end], ts, nowMs, c) {
				// Only the applier adds keys, and eviction runs under the
				// applier's lock, so the check above cannot be outrun.
				panic("BUG: windows refused a key after the key-cap check passed")
			}
			start = end
		}
		return true
	}
	for _, end := range in.offs {
		off := len(in.pendKeys)
		in.pendKeys = append(in.pendKeys, in.keys[start:end]...)
		in.queue(off, ts, c)
		start = end
	}
	return true
}

// queue adds the write of the key at pendKeys[off:] to the pending ones.
func (in *applier) queue(off int, ts int64, c windows.Counts) {
	key := in.pendKeys[off:len(in.pendKeys):len(in.pendKeys)]
	in.pend = append(in.pend, windows.Event{Key: key, TsMs: ts, C: c})
}

// logBadTime logs, throttled, an event refused for a time outside the
// accepted range (event.MinTS to event.MaxTSAhead past the service clock).
// The usual cause is a producer's unit (seconds, microseconds), which would
// otherwise show only in the stats. The line holds the event's known fields
// (in.known: the refused time among them), never its payload; the k-th
// event of its message.
func (in *applier) logBadTime(reason event.Reason, k int) {
	suppressed, ok := in.ing.throttledLog.Allow("bad_ts")
	if !ok {
		return
	}
	lo, hi := in.parser.TSRange()
	in.ing.log.Warn().Str("reason", reason.String()).RawJSON("fields", in.known).Uint64("seq", in.seq).Int("index", k).
		Int64("min_ms", lo).Int64("max_ms", hi).Int("suppressed", suppressed).
		Msg("event refused: its time is not Unix milliseconds of this era (in seconds? microseconds?); dead-lettered")
}

// deadLetter queues the k-th event of its message, rejected, for the DLQ
// with its reason, its known fields (in.known) and the keyed hash of its
// payload raw; raw itself only with Options.DLQRaw (see deadLetters: it
// never waits on the network).
func (in *applier) deadLetter(raw []byte, reason event.Reason, k int) {
	l := DeadLetter{Seq: in.seq, Index: k, Subject: in.subject, Reason: reason,
		Fields: in.known, Hash: in.hasher.hash(raw), Size: len(raw)}
	if in.ing.opts.DLQRaw {
		l.Data = raw
		if l.Data == nil {
			l.Data = []byte{}
		}
	}
	in.ing.deadLetters.add(l)
}
