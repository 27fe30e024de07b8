package bidder

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// JetStream modes of Options.JetStream.
const (
	JetStreamAuto  = "auto"
	JetStreamTrue  = "true"
	JetStreamFalse = "false"
)

// DLQStream captures the dead letters so none is lost when nobody listens.
const DLQStream = "BIDPULSE_DLQ"

// jsIngest consumes the event stream with a durable pull consumer, in stream
// order, and applies each message exactly once: a message whose stream
// sequence is not above the last applied one (a redelivery) is skipped, so
// the applied sequence, saved in each checkpoint with the state it produced,
// is the single truth of what has been counted.
type jsIngest struct {
	svc    *Service
	js     jetstream.JetStream
	stream jetstream.Stream
	cons   jetstream.Consumer
	cc     jetstream.ConsumeContext
	name   string // consumer name

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

	// Figures refreshed by the housekeeping loop for /v1/stats.
	numPending    atomic.Uint64
	numAckPending atomic.Int64
	streamBytes   atomic.Uint64
	streamMsgs    atomic.Uint64
	streamFirst   atomic.Uint64
	streamLast    atomic.Uint64

	ackMu    sync.Mutex
	toAck    jetstream.Msg // the newest applied message not yet acknowledged
	unacked  int
	ackStop  chan struct{}
	ackDone  chan struct{}
	stopOnce sync.Once
}

// setupJetStream decides the ingest mode. It returns nil in core mode.
func (s *Service) setupJetStream(ctx context.Context) (*jsIngest, error) {
	mode := s.opts.JetStream
	if mode == JetStreamFalse {
		return nil, nil
	}
	js, err := jetstream.New(s.nc)
	if err != nil {
		return nil, fmt.Errorf("cannot use JetStream: %w", err)
	}
	if _, err := js.AccountInfo(ctx); err != nil {
		if mode == JetStreamAuto {
			s.log.Warn().Err(err).Msg("the NATS server offers no JetStream: consuming with a core subscription (at-most-once; a restart loses the windows)")
			return nil, nil
		}
		return nil, fmt.Errorf("--jetstream=true but the NATS server offers no JetStream: %w", err)
	}
	j := &jsIngest{svc: s, js: js, name: consumerName(s.opts.Instance)}
	if err := j.ensureStreams(ctx); err != nil {
		return nil, err
	}
	return j, nil
}

// consumerName turns an instance name into a valid durable consumer name.
func consumerName(instance string) string {
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
func (j *jsIngest) ensureStreams(ctx context.Context) error {
	o := &j.svc.opts
	cfg := jetstream.StreamConfig{
		Name:        o.Stream,
		Description: "bidpulse events (impressions, clicks, conversions)",
		Subjects:    []string{o.Subject},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardNew,
		MaxAge:      o.StreamMaxAge,
		MaxBytes:    o.StreamMaxBytes,
		Duplicates:  o.StreamDuplicates,
		MaxMsgSize:  8 << 20,
	}
	st, err := j.js.CreateOrUpdateStream(ctx, cfg)
	if err != nil {
		return fmt.Errorf("cannot create or update stream %s on %q: %w", o.Stream, o.Subject, err)
	}
	j.stream = st
	_, err = j.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        DLQStream,
		Description: "bidpulse dead letters: rejected events with their reason",
		Subjects:    []string{DLQSubject},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardOld,
		MaxAge:      7 * 24 * time.Hour,
		MaxBytes:    o.DLQMaxBytes,
	})
	if err != nil {
		return fmt.Errorf("cannot create or update stream %s: %w", DLQStream, err)
	}
	return nil
}

// start (re)creates this instance's durable consumer at the sequence after
// the checkpoint's (or, without one, at now minus the longest span) and
// starts consuming.
func (j *jsIngest) start(ctx context.Context, fromSeq uint64) error {
	s := j.svc
	info, err := j.stream.Info(ctx)
	if err != nil {
		return fmt.Errorf("cannot read stream %s: %w", s.opts.Stream, err)
	}
	j.updateStreamInfo(info)
	cfg := jetstream.ConsumerConfig{
		Durable:       j.name,
		Description:   "bidpulse instance " + s.opts.Instance,
		AckPolicy:     jetstream.AckAllPolicy,
		AckWait:       s.opts.AckWait,
		MaxAckPending: 1_000_000,
		MaxDeliver:    -1,
	}
	first, last := info.State.FirstSeq, info.State.LastSeq
	if fromSeq > 0 {
		if fromSeq > last+1 {
			// The stream holds fewer messages than the checkpoint
			// applied: it was deleted and created again.
			return fmt.Errorf("%w: checkpoint sequence %d is past the stream's last sequence %d (was stream %s re-created?)",
				errStreamReset, fromSeq-1, last, s.opts.Stream)
		}
		if first > fromSeq && info.State.Msgs > 0 {
			lost := first - fromSeq
			s.stats.streamGap.Add(int(lost))
			s.log.Error().Uint64("want_seq", fromSeq).Uint64("first_seq", first).Uint64("lost", lost).
				Msg("the stream no longer holds the messages after the checkpoint (trimmed by max age or max bytes): they are lost; continuing from the first one held")
		}
		cfg.DeliverPolicy = jetstream.DeliverByStartSequencePolicy
		cfg.OptStartSeq = fromSeq
		j.startSeq.Store(fromSeq)
	} else {
		start := time.UnixMilli(s.store.Oldest(s.clock.NowMs()))
		cfg.DeliverPolicy = jetstream.DeliverByStartTimePolicy
		cfg.OptStartTime = &start
		j.fresh.Store(true)
		j.startSeq.Store(first)
	}
	j.targetSeq.Store(last)
	if last < j.startSeq.Load() || info.State.Msgs == 0 {
		j.caughtUp.Store(true)
	}
	// The start position of a durable cannot change: delete and re-create.
	if err := j.js.DeleteConsumer(ctx, s.opts.Stream, j.name); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return fmt.Errorf("cannot delete consumer %s: %w", j.name, err)
	}
	j.cons, err = j.js.CreateOrUpdateConsumer(ctx, s.opts.Stream, cfg)
	if err != nil {
		return fmt.Errorf("cannot create consumer %s: %w", j.name, err)
	}
	j.ackStop, j.ackDone = make(chan struct{}), make(chan struct{})
	go j.ackLoop()
	j.cc, err = j.cons.Consume(j.handle,
		jetstream.PullMaxMessages(s.opts.FetchBatch),
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			if s.stopping.Load() {
				return
			}
			s.throttledLog.warn("jetstream", "JetStream consume error (consumption resumes by itself)", err)
		}))
	if err != nil {
		return fmt.Errorf("cannot consume %s: %w", s.opts.Stream, err)
	}
	return nil
}

var errStreamReset = errors.New("stream reset")

// handle applies one stream message. The Consume callback runs on one
// goroutine, so messages are applied one at a time, in order.
func (j *jsIngest) handle(msg jetstream.Msg) {
	s := j.svc
	seq, _, tsNs, pending, ok := parseAckReply(msg.Reply())
	if !ok {
		s.throttledLog.warn("jetstream-reply", "JetStream message without a valid reply subject; skipped", errors.New(msg.Reply()))
		return
	}
	applied := j.applied.Load()
	if seq <= applied {
		// A redelivery of a message already applied.
		s.stats.redelivered.Inc()
		j.markApplied(msg)
		return
	}
	if applied > 0 && seq > applied+1 && !j.fresh.Load() {
		lost := seq - applied - 1
		s.stats.streamGap.Add(int(lost))
		s.log.Error().Uint64("after_seq", applied).Uint64("seq", seq).Uint64("lost", lost).
			Msg("stream messages missing (deleted or trimmed before they were applied)")
	}
	j.fresh.Store(false)
	if s.opts.applyHook != nil {
		s.opts.applyHook(seq)
	}
	s.applyMu.Lock()
	s.stats.messages.Inc()
	s.ingest.subject = msg.Subject()
	s.ingest.seq = seq
	now := s.clock.NowMs()
	s.ingest.applyMsg(msg.Data(), now, tsNs/1e6, pending > 0)
	j.applied.Store(seq)
	s.applyMu.Unlock()
	if !j.caughtUp.Load() && seq >= j.targetSeq.Load() {
		j.caughtUp.Store(true)
		s.log.Info().Uint64("seq", seq).Uint64("counted", s.stats.counted.Get()).Msg("caught up with the stream")
	}
	j.markApplied(msg)
}

// markApplied remembers msg for the next acknowledgement. With AckAll, one
// acknowledgement covers every earlier message, so acks are batched: every
// 1000 messages here, and every 100ms by ackLoop.
func (j *jsIngest) markApplied(msg jetstream.Msg) {
	j.ackMu.Lock()
	j.toAck = msg
	j.unacked++
	flush := j.unacked >= 1000
	j.ackMu.Unlock()
	if flush {
		j.flushAck()
	}
}

func (j *jsIngest) flushAck() {
	j.ackMu.Lock()
	m := j.toAck
	j.toAck, j.unacked = nil, 0
	j.ackMu.Unlock()
	if m != nil {
		if err := m.Ack(); err != nil && !j.svc.stopping.Load() {
			j.svc.throttledLog.warn("jetstream-ack", "cannot acknowledge (the messages will be redelivered and skipped)", err)
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
		if j.cc != nil {
			j.cc.Drain()
			select {
			case <-j.cc.Closed():
			case <-ctx.Done():
				j.cc.Stop()
			}
		}
		if j.ackStop != nil {
			close(j.ackStop)
			<-j.ackDone
		}
	})
}

// refresh reads the stream and consumer state for /v1/stats and /metrics.
func (j *jsIngest) refresh(ctx context.Context) {
	if info, err := j.stream.Info(ctx); err == nil {
		j.updateStreamInfo(info)
	}
	if j.cons != nil {
		if ci, err := j.cons.Info(ctx); err == nil {
			j.numPending.Store(ci.NumPending)
			j.numAckPending.Store(int64(ci.NumAckPending))
		}
	}
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

// publishDeadLetter stores a dead letter in the DLQ stream and waits (at
// most 5 s, the applier waiting with it) for the acknowledgement. The caller
// acknowledges the poison message afterwards either way: a dead letter that
// could not be stored is counted and logged, never retried in a loop.
func (j *jsIngest) publishDeadLetter(m *nats.Msg) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := j.js.PublishMsg(ctx, m)
	return err
}

// appendReplay appends the catch-up state as a JSON object.
func (j *jsIngest) appendReplay(b []byte) []byte {
	b = append(b, `{"start_seq":`...)
	b = appendUint(b, j.startSeq.Load())
	b = append(b, `,"target_seq":`...)
	b = appendUint(b, j.targetSeq.Load())
	b = append(b, `,"applied_seq":`...)
	b = appendUint(b, j.applied.Load())
	b = append(b, `,"progress":`...)
	b = appendRounded(b, j.progress())
	b = append(b, `,"caught_up":`...)
	b = strconv.AppendBool(b, j.caughtUp.Load())
	return append(b, '}')
}
