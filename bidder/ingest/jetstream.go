package ingest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/bidpulse/bidpulse/bidder/internal/jsensure"
	"github.com/bidpulse/bidpulse/bidder/partition"
)

// DLQStream captures the dead letters so none is lost when nobody listens.
const DLQStream = "BIDPULSE_DLQ"

// MaxMessageBytes is the largest event message the stream accepts.
const MaxMessageBytes = 8 << 20

// jsIngest consumes the event stream with a durable pull consumer, in stream
// order, and applies each message exactly once: a message whose stream
// sequence is not above the last applied one (a redelivery) is skipped, so
// the applied sequence, saved in each checkpoint with the state it produced,
// is the single truth of what has been counted.
type jsIngest struct {
	ing    *Ingester
	js     jetstream.JetStream
	stream jetstream.Stream
	name   string // consumer name

	// ccMu guards cons and cc, which the keeper replaces when it re-creates
	// the consumer.
	ccMu sync.Mutex
	cons jetstream.Consumer
	cc   jetstream.ConsumeContext
	// gen is the consumer generation: bumped, under the applier's lock,
	// whenever the consumer is to be re-created, so messages still arriving
	// for an older one are ignored (never applied nor acknowledged).
	gen atomic.Uint64
	// restart asks the keeper to re-create the consumer at applied+1.
	restart  chan string
	keepStop chan struct{}
	keepDone chan struct{}
	// firstCfg is the consumer configuration of the start, used again by a
	// re-creation while nothing has been applied yet.
	firstCfg jetstream.ConsumerConfig

	// Stall detection (housekeeping): the applied sequence at the last
	// check and when it last moved.
	stallSeq     uint64
	stallCheckMs int64
	stallSinceMs atomic.Int64 // when applied stopped moving with messages waiting; 0: not stalled

	// applied is the stream sequence of the last applied message.
	applied atomic.Uint64
	// startSeq and targetSeq bound the catch-up: the first sequence asked
	// for and the stream's last sequence when consumption started.
	startSeq  atomic.Uint64
	targetSeq atomic.Uint64
	caughtUp  atomic.Bool
	// fresh is true until the first message after a start without a
	// checkpoint: there is no previous sequence to continue from.
	fresh atomic.Bool
	// lastCseq is the consumer sequence of the last message handled from
	// the current consumer (0: none yet), under the applier's lock. With
	// OnePartition the stream sequences of one partition are not
	// contiguous, so a dropped delivery shows as a jump of the consumer
	// sequence, which counts every delivery, redeliveries included.
	lastCseq uint64

	// Figures refreshed by the housekeeping loop for /v1/stats.
	numPending    atomic.Uint64
	numAckPending atomic.Int64
	streamBytes   atomic.Uint64
	streamMsgs    atomic.Uint64
	streamFirst   atomic.Uint64
	streamLast    atomic.Uint64

	ackMu    sync.Mutex
	toAck    jetstream.Msg // the newest acknowledgeable message not yet acknowledged
	toAckSeq uint64
	// held is the newest applied message that may not be acknowledged yet:
	// a dead letter of it, or of a message before it, is not stored yet
	// (AckAll would cover that message too).
	held     jetstream.Msg
	heldSeq  uint64
	unacked  int
	ackStop  chan struct{}
	ackDone  chan struct{}
	stopOnce sync.Once
}

// setupJetStream decides the ingest mode. It returns nil in core mode.
func (s *Ingester) setupJetStream(ctx context.Context) (*jsIngest, error) {
	mode := s.opts.JetStream
	if mode == JetStreamFalse {
		if s.opts.Partitions > 0 {
			return nil, fmt.Errorf("--partitions %d needs JetStream ingest (the stream stores each event under its partition), not --jetstream=false", s.opts.Partitions)
		}
		return nil, nil
	}
	js, err := jetstream.New(s.nc)
	if err != nil {
		return nil, fmt.Errorf("cannot use JetStream: %w", err)
	}
	if _, err := js.AccountInfo(ctx); err != nil {
		if s.opts.Partitions > 0 {
			return nil, fmt.Errorf("--partitions %d needs JetStream (the stream stores each event under its partition) but the NATS server offers none: %w", s.opts.Partitions, err)
		}
		if mode == JetStreamAuto {
			s.log.Warn().Err(err).Msg("the NATS server offers no JetStream: consuming with a core subscription (at-most-once; a restart loses the windows)")
			return nil, nil
		}
		return nil, fmt.Errorf("--jetstream=true but the NATS server offers no JetStream: %w", err)
	}
	return &jsIngest{ing: s, js: js, name: ConsumerName(s.opts.Instance)}, nil
}

// ConsumerName turns an instance name into a valid durable consumer name
// (also the instance's key in KV and the name of its checkpoints).
func ConsumerName(instance string) string {
	var b strings.Builder
	b.WriteString("bidpulse_")
	for _, r := range instance {
		if r == '.' || r == '*' || r == '>' || r == ' ' || r == '/' || r == '\\' || r < 0x20 {
			r = '_'
		}
		b.WriteRune(r)
	}
	return b.String()
}

// ensureStreams creates or updates the event stream and the DLQ stream.
//
// The event stream is the spike buffer and the recovery log, not an
// archive: limits retention with no age limit, bounded in bytes, refusing
// new messages when full (DiscardNew: the producer sees the refusal, nothing
// unconsumed is dropped). What it holds is trimmed by the instances
// themselves: after each checkpoint kept in NATS, everything before the
// oldest such checkpoint of the instances sharing the stream is purged (see
// trimStream). So it holds the unconsumed backlog plus what recovery needs.
// Retention does not depend on consumers or acknowledgements, so a consumer
// deleted and re-created loses nothing. A stream made by an earlier bidpulse
// (a 26 h max age) is migrated here, with a log line.
//
// Partitioned (Options.Partitions > 0), the stream binds <base>.*.> and
// stores each message under its campaign's partition (partitioned.go); an
// existing stream made with other partitions, or none, is refused, never
// rewritten. The consumer has no filter subject, partitioned or not: this
// instance consumes every partition, and stream sequences (the applied
// sequence, checkpoints, Trim, dead-letter ids) do not depend on subjects.
func (j *jsIngest) ensureStreams(ctx context.Context) error {
	o := &j.ing.opts
	cfg := jetstream.StreamConfig{
		Name:        o.Stream,
		Description: "bidpulse events (impressions, clicks, conversions): the spike buffer, trimmed to the oldest checkpoint",
		Subjects:    []string{o.Subject},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardNew,
		MaxAge:      o.StreamMaxAge,
		MaxBytes:    o.StreamMaxBytes,
		Duplicates:  o.StreamDuplicates,
		MaxMsgSize:  MaxMessageBytes,
		Replicas:    o.StreamReplicas,
	}
	var part *partition.Stream
	if o.Partitions > 0 {
		ps, err := partitionedStream(o)
		if err != nil {
			return err
		}
		ps.Apply(&cfg)
		part = &ps
	}
	if o.OnePartition {
		return j.bindStreams(ctx, cfg, part)
	}
	old, err := j.js.Stream(ctx, o.Stream)
	if err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
		return fmt.Errorf("cannot read stream %s: %w", o.Stream, err)
	}
	if err == nil {
		oc := old.CachedInfo().Config
		if err := checkStreamPartitions(o, &oc, part); err != nil {
			return err
		}
		if oc.MaxAge != cfg.MaxAge || oc.MaxBytes != cfg.MaxBytes || oc.Discard != cfg.Discard {
			j.ing.log.Warn().Str("stream", o.Stream).Dur("max_age_was", oc.MaxAge).Dur("max_age", cfg.MaxAge).
				Int64("max_bytes_was", oc.MaxBytes).Int64("max_bytes", cfg.MaxBytes).Str("discard_was", oc.Discard.String()).
				Msg("migrating the event stream's retention: it buffers the backlog and what recovery needs, trimmed after each checkpoint kept in NATS")
		}
	}
	var st jetstream.Stream
	if old == nil {
		// CreateStream, not CreateOrUpdate: another instance that created
		// it meanwhile with another configuration is refused, not rewritten.
		st, err = j.js.CreateStream(ctx, cfg)
	} else {
		st, err = j.js.UpdateStream(ctx, cfg)
	}
	if err != nil {
		return fmt.Errorf("cannot create or update stream %s on %v: %w", o.Stream, cfg.Subjects, err)
	}
	j.stream = st
	return j.ensureDLQ(ctx)
}

// ensureDLQ creates or updates the DLQ stream. Its duplicate window is long
// enough that dead letters saved in a checkpoint and published again after
// a restart are stored once.
func (j *jsIngest) ensureDLQ(ctx context.Context) error {
	_, err := j.js.CreateOrUpdateStream(ctx, j.dlqConfig())
	if err != nil {
		return fmt.Errorf("cannot create or update stream %s: %w", DLQStream, err)
	}
	return nil
}

// bindStreams is ensureStreams for a partition unit (OnePartition): it binds
// to the event and DLQ streams the partitions share, creating them when they
// do not exist, but never updates them. The many units of a member start at
// once, and on a cluster concurrent creations of one stream leave all but
// one without an answer (jsensure).
func (j *jsIngest) bindStreams(ctx context.Context, cfg jetstream.StreamConfig, part *partition.Stream) error {
	o := &j.ing.opts
	notFound := func(err error) bool { return errors.Is(err, jetstream.ErrStreamNotFound) }
	st, err := jsensure.Bind(ctx,
		func(ctx context.Context) (jetstream.Stream, error) { return j.js.Stream(ctx, o.Stream) },
		func(ctx context.Context) (jetstream.Stream, error) { return j.js.CreateStream(ctx, cfg) },
		notFound)
	if err != nil {
		return fmt.Errorf("cannot open stream %s: %w", o.Stream, err)
	}
	oc := st.CachedInfo().Config
	if err := checkStreamPartitions(o, &oc, part); err != nil {
		return err
	}
	j.stream = st
	dlq := j.dlqConfig()
	_, err = jsensure.Bind(ctx,
		func(ctx context.Context) (jetstream.Stream, error) { return j.js.Stream(ctx, DLQStream) },
		func(ctx context.Context) (jetstream.Stream, error) { return j.js.CreateStream(ctx, dlq) },
		notFound)
	if err != nil {
		return fmt.Errorf("cannot open stream %s: %w", DLQStream, err)
	}
	return nil
}

// dlqConfig is the DLQ stream's configuration.
func (j *jsIngest) dlqConfig() jetstream.StreamConfig {
	o := &j.ing.opts
	return jetstream.StreamConfig{
		Name:        DLQStream,
		Description: "bidpulse dead letters: rejected events with their reason",
		Subjects:    []string{DLQSubject},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardOld,
		MaxAge:      7 * 24 * time.Hour,
		MaxBytes:    o.DLQMaxBytes,
		Duplicates:  time.Hour,
		Replicas:    o.StreamReplicas,
	}
}

// start creates this instance's durable consumer at the sequence after the
// checkpoint's (or, without one, at the first message the stream holds)
// and starts consuming.
func (j *jsIngest) start(ctx context.Context, fromSeq uint64) error {
	s := j.ing
	info, err := j.stream.Info(ctx)
	if err != nil {
		return fmt.Errorf("cannot read stream %s: %w", s.opts.Stream, err)
	}
	j.updateStreamInfo(info)
	cfg := j.consumerConfig()
	first, last := info.State.FirstSeq, info.State.LastSeq
	if fromSeq > 0 {
		if fromSeq > last+1 {
			// The stream holds fewer messages than the checkpoint
			// applied: it was deleted and created again.
			return fmt.Errorf("%w: checkpoint sequence %d is past the stream's last sequence %d (was stream %s re-created?)",
				ErrStreamReset, fromSeq-1, last, s.opts.Stream)
		}
		if first > fromSeq && info.State.Msgs > 0 && !s.opts.OnePartition {
			// (One partition: the stream's first message says nothing
			// of that partition's, which the other partitions' trims
			// do not touch.)
			lost := first - fromSeq
			s.stats.StreamGap.Add(int(lost))
			// Counted here, not again as a gap by the first message.
			j.applied.Store(first - 1)
			s.log.Error().Uint64("want_seq", fromSeq).Uint64("first_seq", first).Uint64("lost", lost).
				Msg("the stream no longer holds the messages after the checkpoint (purged or trimmed past it): they are lost; continuing from the first one held")
		}
		cfg.DeliverPolicy = jetstream.DeliverByStartSequencePolicy
		cfg.OptStartSeq = fromSeq
		j.startSeq.Store(fromSeq)
	} else {
		// No checkpoint, local or in NATS: what the stream holds is all
		// there is (it is trimmed to the oldest checkpoint of the
		// instances that share it).
		cfg.DeliverPolicy = jetstream.DeliverAllPolicy
		j.fresh.Store(true)
		j.startSeq.Store(first)
	}
	j.firstCfg = cfg
	j.targetSeq.Store(last)
	if last < j.startSeq.Load() || info.State.Msgs == 0 {
		j.caughtUp.Store(true)
	}
	j.ackStop, j.ackDone = make(chan struct{}), make(chan struct{})
	go j.ackLoop()
	// Before consumption starts: its error handler may ask for a restart.
	j.restart = make(chan string, 1)
	if err := j.createAndConsume(ctx, cfg); err != nil {
		return err
	}
	if s.opts.OnePartition {
		// The stream's last message is likely another partition's: caught
		// up is when the consumer has nothing pending (handle).
		j.ccMu.Lock()
		pending := j.cons.CachedInfo().NumPending
		j.ccMu.Unlock()
		if pending == 0 {
			j.caughtUp.Store(true)
		}
	}
	j.keepStop, j.keepDone = make(chan struct{}), make(chan struct{})
	go j.keeper()
	return nil
}

// consumerConfig is the durable consumer's configuration, without its
// start position.
func (j *jsIngest) consumerConfig() jetstream.ConsumerConfig {
	s := j.ing
	cfg := jetstream.ConsumerConfig{
		Durable:       j.name,
		Description:   "bidpulse instance " + s.opts.Instance,
		AckPolicy:     jetstream.AckAllPolicy,
		AckWait:       s.opts.AckWait,
		MaxAckPending: 1_000_000,
		MaxDeliver:    -1,
		Metadata:      map[string]string{"bidpulse_owner": s.opts.Owner},
		Replicas:      s.opts.StreamReplicas,
	}
	if s.opts.OnePartition {
		cfg.FilterSubject = gapSubject(&s.opts)
	}
	cfg.InactiveThreshold = s.opts.ConsumerInactive
	return cfg
}

// createAndConsume deletes this instance's consumer (the start position of
// a durable cannot change), creates it with cfg and consumes it under the
// current generation. The stream's retention does not depend on consumers
// (see ensureStreams), so deleting one loses no message.
func (j *jsIngest) createAndConsume(ctx context.Context, cfg jetstream.ConsumerConfig) error {
	s := j.ing
	if err := j.js.DeleteConsumer(ctx, s.opts.Stream, j.name); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return fmt.Errorf("cannot delete consumer %s: %w", j.name, err)
	}
	cons, err := j.js.CreateOrUpdateConsumer(ctx, s.opts.Stream, cfg)
	if err != nil {
		return fmt.Errorf("cannot create consumer %s: %w", j.name, err)
	}
	// A replicated consumer answers pulls once its leader is elected: a
	// pull sent before gets "no responders", and the consumption then
	// waits for a missed heartbeat (up to 30s) before it pulls again.
	for wait := 10 * time.Millisecond; ; wait = min(2*wait, 200*time.Millisecond) {
		ictx, cancel := context.WithTimeout(ctx, time.Second)
		_, err := cons.Info(ictx)
		cancel()
		if err == nil || ctx.Err() != nil {
			break
		}
		time.Sleep(wait)
	}
	gen := j.gen.Load()
	s.applyMu.Lock()
	j.lastCseq = 0
	s.applyMu.Unlock()
	// Pulls are capped in bytes as well as in messages: a backlog of
	// maximum-size messages must not overrun the connection's
	// slow-consumer limits (the server cuts a connection whose outbound
	// buffer passes its max_pending, 64 MiB by default; the dropped
	// deliveries look like a sequence gap).
	pullOpts := []jetstream.PullConsumeOpt{jetstream.PullMaxMessagesWithBytesLimit(s.opts.FetchBatch, s.opts.FetchBytes)}
	if s.opts.OnePartition {
		// A pull lost on the way (a leader change of the replicated
		// consumer) is noticed by the missed heartbeat: within seconds,
		// not the default 30s expiry's.
		pullOpts = append(pullOpts, jetstream.PullExpiry(5*time.Second))
	}
	cc, err := cons.Consume(func(m jetstream.Msg) { j.handle(m, gen) },
		append(pullOpts,
			jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
				if s.stopping.Load() {
					return
				}
				if errors.Is(err, jetstream.ErrConsumerDeleted) || errors.Is(err, jetstream.ErrConsumerNotFound) {
					j.requestRestart(gen, "consumer deleted from outside")
					return
				}
				s.throttledLog.Warn("jetstream", "JetStream consume error (consumption resumes by itself)", err)
			}))...)
	if err != nil {
		return fmt.Errorf("cannot consume %s: %w", s.opts.Stream, err)
	}
	j.ccMu.Lock()
	j.cons, j.cc = cons, cc
	j.ccMu.Unlock()
	return nil
}

// requestRestart asks the keeper to re-create the consumer of generation
// gen at applied+1; requests for an older generation are ignored.
//
// It never waits for the applier (a stalled applier is one reason to call
// it): a message being applied meanwhile completes, in order, and the
// keeper re-creates the consumer after it.
func (j *jsIngest) requestRestart(gen uint64, reason string) {
	if !j.gen.CompareAndSwap(gen, gen+1) {
		return
	}
	select {
	case j.restart <- reason:
	default: // one is queued already
	}
}

// keeper re-creates the consumer when asked (a delivery gap, a consumer
// deleted or replaced from outside, a stall), retrying until it succeeds or
// the service stops.
func (j *jsIngest) keeper() {
	defer close(j.keepDone)
	s := j.ing
	for {
		var reason string
		select {
		case <-j.keepStop:
			return
		case reason = <-j.restart:
		}
		for wait := 100 * time.Millisecond; ; wait = min(2*wait, 5*time.Second) {
			err := j.recreate(reason)
			if err == nil {
				break
			}
			s.throttledLog.Warn("jetstream-recreate", "cannot re-create the consumer (retrying)", err)
			select {
			case <-j.keepStop:
				return
			case <-time.After(wait):
			}
		}
	}
}

// recreate stops the current consumption and re-creates the consumer at
// applied+1.
func (j *jsIngest) recreate(reason string) error {
	s := j.ing
	s.applyMu.Lock()
	s.applier.flush()
	applied := j.applied.Load()
	s.applyMu.Unlock()
	j.ccMu.Lock()
	if j.cc != nil {
		j.cc.Stop()
	}
	j.ccMu.Unlock()
	j.ackMu.Lock()
	// Acknowledgements name the old consumer's delivery sequences.
	j.toAck, j.toAckSeq, j.held, j.heldSeq, j.unacked = nil, 0, nil, 0, 0
	j.ackMu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// Another instance that took the name over re-creates the consumer
	// too: never fight it.
	if f := s.opts.StillOwner; f != nil && !f(ctx) {
		return nil
	}
	cfg := j.firstCfg
	if applied > 0 {
		cfg = j.consumerConfig()
		cfg.DeliverPolicy = jetstream.DeliverByStartSequencePolicy
		cfg.OptStartSeq = applied + 1
	}
	if err := j.createAndConsume(ctx, cfg); err != nil {
		return err
	}
	if s.consumeStopped.Load() {
		// The name was taken over meanwhile.
		j.stopConsuming()
		return nil
	}
	s.stats.ConsumerRecreated.Inc()
	s.log.Warn().Str("reason", reason).Str("consumer", j.name).Uint64("from_seq", applied+1).
		Msg("consumer re-created; ingest resumes after the last applied message")
	return nil
}

// ErrStreamReset means the checkpoint's sequence is past the stream's last
// one: the stream was deleted and created again. The caller drops the
// restored state and consumes from 0.
var ErrStreamReset = errors.New("stream reset")

// handle applies one stream message of consumer generation gen. The Consume
// callback runs on one goroutine, so messages are applied one at a time, in
// order.
func (j *jsIngest) handle(msg jetstream.Msg, gen uint64) {
	s := j.ing
	seq, cseq, _, tsNs, pending, ok := parseAckReply(msg.Reply())
	if !ok {
		s.throttledLog.Warn("jetstream-reply", "JetStream message without a valid reply subject; skipped", errors.New(msg.Reply()))
		return
	}
	s.applyMu.Lock()
	if j.gen.Load() != gen || s.consumeStopped.Load() {
		// Delivered by a consumer being replaced (the new one delivers
		// it again), or after the name was taken over.
		s.applyMu.Unlock()
		return
	}
	applied := j.applied.Load()
	lastCseq := j.lastCseq
	j.lastCseq = cseq
	if seq <= applied {
		// A redelivery of a message already applied.
		s.applyMu.Unlock()
		s.stats.Redelivered.Inc()
		j.markApplied(msg, seq)
		return
	}
	// A gap: messages between the last applied one and this one that were
	// not delivered. One partition's sequences are not contiguous: there,
	// only a jump of the consumer sequence is one.
	gap := applied > 0 && seq > applied+1 && !j.fresh.Load()
	if s.opts.OnePartition {
		// A new consumer's first delivery is consumer sequence 1
		// (lastCseq 0): past it, deliveries were dropped too.
		gap = gap && cseq > lastCseq+1
	}
	if gap {
		// Released while the stream is asked what became of the
		// missing messages.
		s.applyMu.Unlock()
		lost, held := j.classifyGap(applied+1, seq-1)
		if s.opts.OnePartition && !held {
			// The stream no longer holds any of the partition's messages
			// in between: the deliveries missed were of those.
			lost = cseq - lastCseq - 1
		}
		if held {
			// Still in the stream: dropped on the way (a slow
			// consumer, a reconnect). Nothing past applied is
			// acknowledged; the consumer starts again after it.
			s.stats.DeliveryGaps.Inc()
			s.log.Warn().Uint64("after_seq", applied).Uint64("seq", seq).
				Msg("stream messages were not delivered (dropped on the way); re-creating the consumer after the last applied message")
			j.requestRestart(gen, "delivery gap")
			return
		}
		s.stats.StreamGap.Add(int(lost))
		s.log.Error().Uint64("after_seq", applied).Uint64("seq", seq).Uint64("lost", lost).
			Msg("stream messages missing (purged, trimmed or deleted before they were applied)")
		s.applyMu.Lock()
		if j.gen.Load() != gen || j.applied.Load() != applied {
			s.applyMu.Unlock()
			return
		}
	}
	j.fresh.Store(false)
	if s.opts.ApplyHook != nil {
		s.opts.ApplyHook(seq)
	}
	s.stats.Messages.Inc()
	s.applier.setSubject(msg.Subject())
	s.applier.seq = seq
	now := s.clock.NowMs()
	s.applier.applyMsg(msg.Data(), now, tsNs/1e6, pending > 0)
	j.applied.Store(seq)
	s.applyMu.Unlock()
	if !j.caughtUp.Load() && (seq >= j.targetSeq.Load() || s.opts.OnePartition && pending == 0) {
		j.caughtUp.Store(true)
		s.log.Info().Uint64("seq", seq).Uint64("counted", s.stats.Counted.Get()).Msg("caught up with the stream")
	}
	j.markApplied(msg, seq)
}

// classifyGap asks the stream about the messages from..to that were not
// delivered: lost counts those it no longer holds (trimmed, purged or
// deleted), held says at least one is still there (or the stream could not
// answer), so they were dropped on the way. One look-up: the first message
// the stream holds at or after from.
func (j *jsIngest) classifyGap(from, to uint64) (lost uint64, held bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	m, err := j.stream.GetMsg(ctx, from, jetstream.WithGetMsgSubject(gapSubject(&j.ing.opts)))
	if err != nil {
		return 0, true
	}
	if m.Sequence <= to {
		return 0, true
	}
	return to - from + 1, false
}

// markApplied remembers msg (of stream sequence seq) for the next
// acknowledgement. With AckAll, one acknowledgement covers every earlier
// message, so acks are batched: every 1000 messages here, and every 100ms
// by ackLoop. A message is acknowledged only once every dead letter of it
// and of the messages before it is stored; until then a redelivery of it
// is told that it is in progress, so it does not come back in a loop.
func (j *jsIngest) markApplied(msg jetstream.Msg, seq uint64) {
	oldest := j.ing.deadLetters.oldestSeq()
	j.ackMu.Lock()
	if oldest == 0 || seq < oldest {
		if j.toAck == nil || seq >= j.toAckSeq {
			j.toAck, j.toAckSeq = msg, seq
		}
	} else {
		if seq >= j.heldSeq {
			j.held, j.heldSeq = msg, seq
		}
		if seq < j.heldSeq {
			msg.InProgress()
		}
	}
	j.unacked++
	flush := j.unacked >= 1000
	j.ackMu.Unlock()
	if flush {
		j.flushAck()
	}
}

func (j *jsIngest) flushAck() {
	oldest := j.ing.deadLetters.oldestSeq()
	j.ackMu.Lock()
	if j.held != nil && (oldest == 0 || j.heldSeq < oldest) {
		if j.toAck == nil || j.heldSeq > j.toAckSeq {
			j.toAck = j.held
		}
		j.held, j.heldSeq = nil, 0
	}
	m := j.toAck
	j.toAck, j.toAckSeq, j.unacked = nil, 0, 0
	j.ackMu.Unlock()
	if m != nil {
		if err := m.Ack(); err != nil && !j.ing.stopping.Load() {
			j.ing.throttledLog.Warn("jetstream-ack", "cannot acknowledge (the messages will be redelivered and skipped)", err)
		}
	}
}

func (j *jsIngest) ackLoop() {
	defer close(j.ackDone)
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-j.ackStop:
			j.flushAck()
			return
		case <-t.C:
			j.flushAck()
		}
	}
}

// stop stops consuming: the messages already fetched are applied, the last
// one acknowledged.
func (j *jsIngest) stop(ctx context.Context) {
	j.stopOnce.Do(func() {
		if j.keepStop != nil {
			close(j.keepStop)
			<-j.keepDone
		}
		j.ccMu.Lock()
		cc := j.cc
		j.ccMu.Unlock()
		if cc != nil {
			cc.Drain()
			select {
			case <-cc.Closed():
			case <-ctx.Done():
				cc.Stop()
			}
		}
		if j.ackStop != nil {
			close(j.ackStop)
			<-j.ackDone
		}
	})
}

// stopConsuming stops consumption for good (another instance took the
// name over): nothing more is applied or acknowledged.
func (j *jsIngest) stopConsuming() {
	s := j.ing
	s.applyMu.Lock()
	j.gen.Add(1)
	s.applier.flush()
	s.applyMu.Unlock()
	j.ccMu.Lock()
	if j.cc != nil {
		j.cc.Stop()
	}
	j.ccMu.Unlock()
}

// refresh reads the stream and consumer state for /v1/stats and /metrics,
// and notices a consumer that is gone or replaced, and an ingest that does
// not advance while the stream holds messages past it.
func (j *jsIngest) refresh(ctx context.Context) {
	s := j.ing
	if info, err := j.stream.Info(ctx); err == nil {
		j.updateStreamInfo(info)
	}
	j.ccMu.Lock()
	cons := j.cons
	j.ccMu.Unlock()
	gen := j.gen.Load()
	if cons != nil {
		ci, err := cons.Info(ctx)
		switch {
		case errors.Is(err, jetstream.ErrConsumerNotFound):
			j.requestRestart(gen, "consumer deleted from outside")
		case err == nil && ci.Config.Metadata["bidpulse_owner"] != s.opts.Owner:
			j.requestRestart(gen, "consumer replaced from outside")
		case err == nil:
			j.numPending.Store(ci.NumPending)
			j.numAckPending.Store(int64(ci.NumAckPending))
		}
	}
	j.checkStall(gen)
}

// checkStall marks ingest stalled when the applied sequence has not moved
// for StallAfter while the stream holds messages past it; the first time,
// it also re-creates the consumer.
func (j *jsIngest) checkStall(gen uint64) {
	s := j.ing
	now := time.Now().UnixMilli() // an operational timer: the wall clock, not the service clock
	applied := j.applied.Load()
	// Not while NATS is away: a disconnection is no stall of ingest (it
	// is reported on its own, and must not take every replica out).
	waiting := j.streamLast.Load() > applied && j.streamMsgs.Load() > 0 && !s.consumeStopped.Load() && s.nc.IsConnected()
	if s.opts.OnePartition {
		// The stream's later messages are mostly other partitions'.
		waiting = j.numPending.Load() > 0 && !s.consumeStopped.Load() && s.nc.IsConnected()
	}
	if applied != j.stallSeq || !waiting {
		j.stallSeq = applied
		j.stallSinceMs.Store(0)
		j.stallCheckMs = now
		return
	}
	if j.stallCheckMs == 0 {
		j.stallCheckMs = now
	}
	if now-j.stallCheckMs < s.opts.StallAfter.Milliseconds() || j.stallSinceMs.Load() != 0 {
		return
	}
	j.stallSinceMs.Store(j.stallCheckMs)
	s.stats.Stalls.Inc()
	s.log.Error().Uint64("applied_seq", applied).Uint64("last_seq", j.streamLast.Load()).Dur("for", s.opts.StallAfter).
		Msg("ingest stalled: the stream holds messages past the last applied one and none was applied; re-creating the consumer")
	j.requestRestart(gen, "ingest stalled")
}

func (j *jsIngest) updateStreamInfo(info *jetstream.StreamInfo) {
	j.streamBytes.Store(info.State.Bytes)
	j.streamMsgs.Store(info.State.Msgs)
	j.streamFirst.Store(info.State.FirstSeq)
	j.streamLast.Store(info.State.LastSeq)
}

// progress returns the catch-up progress in [0, 1].
func (j *jsIngest) progress() float64 {
	if j.caughtUp.Load() {
		return 1
	}
	start, target, applied := j.startSeq.Load(), j.targetSeq.Load(), j.applied.Load()
	if target <= start || applied < start {
		return 0
	}
	return float64(applied-start+1) / float64(target-start+1)
}
