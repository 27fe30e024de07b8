package client

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/bidpulse/bidpulse/bidder/partition"
)

// Publish modes.
const (
	// ModeAuto publishes with JetStream when a stream captures the subject,
	// with core NATS otherwise.
	ModeAuto = "auto"
	// ModeJetStream publishes with acknowledged JetStream publishes; a
	// stream must capture the subject.
	ModeJetStream = "jetstream"
	// ModeCore publishes with core NATS: no acknowledgement, at most once.
	ModeCore = "core"
)

// PublisherOptions configure a Publisher. The zero value is usable.
type PublisherOptions struct {
	// Subject is where events go (default "bidpulse.events.client"); the
	// service consumes bidpulse.events.>. Unused in partitioned mode.
	Subject string
	// PartitionedBase, when set (e.g. "bidpulse.events"), publishes for a
	// stream partitioned by campaign (docs/SCALING.md): each campaign's
	// events are batched apart and sent to
	// <PartitionedBase>.<campaign>.<Producer>, and an event whose campaign
	// is not one subject token is refused (the stream would store it outside
	// every partition). Empty: every event goes to Subject, as one stream of
	// batches. Setting both Subject and PartitionedBase is refused.
	PartitionedBase string
	// Producer is the last token of partitioned subjects (default
	// "client"): one subject token naming the producer, so that the
	// stream's subjects tell producers apart.
	Producer string
	// MaxOpenBatches bounds the batches open at once in partitioned mode,
	// one per campaign (default 1024): an event of another campaign first
	// sends the oldest open batch.
	MaxOpenBatches int
	// Mode is ModeAuto (default), ModeJetStream or ModeCore.
	Mode string
	// MaxEvents bounds the events of one message, a JSON array (default
	// 500, at most 10,000).
	MaxEvents int
	// MaxBytes bounds one message's bytes (default 256 KiB, at most the
	// server's max_payload).
	MaxBytes int
	// Linger is how long an event may wait in an open batch (default
	// 20 ms): a batch is sent when full, or Linger (and at most a quarter
	// more) after its first event; in partitioned mode, each campaign's
	// batch on its own.
	Linger time.Duration
	// MaxPendingBytes bounds the bytes awaiting acknowledgement (default
	// 64 MiB); past it Publish waits.
	MaxPendingBytes int
	// RetryFor is how long a message is resent, with its Nats-Msg-Id,
	// until acknowledged (default 2 minutes: a NATS restart), counted from
	// when its turn comes (messages settle in order); then it is given up,
	// counted in Stats.FailedEvents and named by Close. A message that no
	// resend can pass (larger than the server or the stream takes) is given
	// up at once.
	RetryFor time.Duration
	// AckTimeout is how long one publish waits for its acknowledgement
	// before it is resent (default 5 s).
	AckTimeout time.Duration
	// MsgIDPrefix starts every Nats-Msg-Id ("<prefix>-<n>"); default: 16
	// random hex digits, unique per Publisher.
	MsgIDPrefix string
	// OnSettled, when set, is called once per message when it is
	// acknowledged (core: handed to the connection) or given up, from the
	// Publisher's own goroutine, in publish order: keep it short, and do
	// not call the Publisher from it (Publish or Flush would wait on the
	// goroutine that runs it).
	OnSettled func(Settled)
}

// Settled is the outcome of one message.
type Settled struct {
	// Events is the message's event count; Tag is PublishRaw's or
	// PublishRawTo's tag (nil for batches of Publish).
	Events int
	Tag    any
	// Err is nil when acknowledged, else the last error before giving up.
	Err error
	// Duplicate: the stream had stored this message already (a resend).
	Duplicate bool
}

// PublisherStats counts a Publisher's events and messages.
type PublisherStats struct {
	Events, Messages           uint64 // handed to NATS
	AckedEvents, AckedMessages uint64 // acknowledged (core: handed to the connection)
	Duplicates                 uint64 // messages acknowledged as already stored
	Resent                     uint64 // sends of a message after an error or a timeout
	FailedEvents               uint64 // given up after RetryFor or at Close's end
}

// Publisher batches events into JSON-array messages and publishes them.
// It is safe for concurrent use.
type Publisher struct {
	nc *nats.Conn
	js jetstream.JetStream // nil in core mode
	o  PublisherOptions

	mu      sync.Mutex // the open batches
	open    batches
	seq     uint64
	scratch []byte
	closed  bool

	pending chan *pendingMsg
	done    chan struct{}
	lingerQ chan struct{}
	// abort is closed when Close's context ends: the messages not yet
	// acknowledged are given up.
	abort     chan struct{}
	abortOnce sync.Once

	flightMu sync.Mutex // bytes and messages in flight
	room     *sync.Cond
	inflight int
	sent     uint64 // messages handed to send, in order
	settled  uint64 // messages settled by collect
	closing  bool   // Close has begun: a Publish waiting for room gives up
	lastErr  error

	st struct {
		events, messages, ackedEvents, ackedMessages, dupes, resent, failed atomic.Uint64
	}
}

type pendingMsg struct {
	msg    *nats.Msg
	events int
	tag    any
	fut    jetstream.PubAckFuture
	err    error
}

// NewPublisher returns a Publisher on nc, which the caller keeps and
// closes after Close. In ModeAuto and ModeJetStream it looks up the
// stream that captures the subject.
func NewPublisher(nc *nats.Conn, o PublisherOptions) (*Publisher, error) {
	if nc == nil {
		return nil, errors.New("bidpulse client: nil NATS connection")
	}
	lookup, err := o.partitioned()
	if err != nil {
		return nil, err
	}
	if o.Mode == "" {
		o.Mode = ModeAuto
	}
	if o.MaxEvents <= 0 {
		o.MaxEvents = 500
	}
	if o.MaxEvents > 10000 {
		return nil, fmt.Errorf("bidpulse client: MaxEvents %d above 10,000", o.MaxEvents)
	}
	if o.MaxBytes <= 0 {
		o.MaxBytes = 256 << 10
	}
	if mp := nc.MaxPayload(); mp > 0 && int64(o.MaxBytes+headerRoom) > mp {
		return nil, fmt.Errorf("bidpulse client: MaxBytes %d leaves no room for the headers under the server's max_payload %d (at most %d)", o.MaxBytes, mp, mp-headerRoom)
	}
	if o.Linger <= 0 {
		o.Linger = 20 * time.Millisecond
	}
	if o.MaxPendingBytes <= 0 {
		o.MaxPendingBytes = 64 << 20
	}
	if o.RetryFor <= 0 {
		o.RetryFor = 2 * time.Minute
	}
	if o.AckTimeout <= 0 {
		o.AckTimeout = 5 * time.Second
	}
	if o.MsgIDPrefix == "" {
		var b [8]byte
		_, _ = rand.Read(b[:])
		o.MsgIDPrefix = hex.EncodeToString(b[:])
	}
	p := &Publisher{nc: nc, o: o, done: make(chan struct{}), lingerQ: make(chan struct{}), abort: make(chan struct{}),
		open: batches{byCampaign: make(map[string]*openBatch)}}
	p.room = sync.NewCond(&p.flightMu)
	switch o.Mode {
	case ModeCore:
	case ModeAuto, ModeJetStream:
		js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(4096), jetstream.WithPublishAsyncTimeout(o.AckTimeout))
		if err != nil {
			return nil, fmt.Errorf("bidpulse client: cannot use JetStream: %w", err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err = js.StreamNameBySubject(ctx, lookup)
		if errors.Is(err, jetstream.ErrStreamNotFound) && o.PartitionedBase == "" {
			// A partitioned stream binds <base>.<campaign>.<rest> only: a
			// producer that is not partitioned would publish beside it,
			// and in ModeAuto lose every event to core NATS.
			if name, perr := partitionedStream(ctx, js, o.Subject); perr == nil {
				cancel()
				return nil, fmt.Errorf("bidpulse client: stream %s is partitioned (it binds %s.<campaign>.<producer>): publish with PartitionedBase (bidpulse publish --partitioned)", name, o.Subject[:strings.LastIndexByte(o.Subject, '.')])
			}
		}
		cancel()
		switch {
		case err == nil:
			p.js = js
		case o.Mode == ModeAuto && errors.Is(err, jetstream.ErrStreamNotFound):
			// core NATS
		case errors.Is(err, jetstream.ErrStreamNotFound):
			return nil, fmt.Errorf("bidpulse client: no JetStream stream captures %s (bidpulse serve creates BIDPULSE_EVENTS in JetStream mode)", lookup)
		default:
			return nil, fmt.Errorf("bidpulse client: cannot look up the stream of %s: %w", lookup, err)
		}
	default:
		return nil, fmt.Errorf("bidpulse client: invalid Mode %q: want auto, jetstream or core", o.Mode)
	}
	p.pending = make(chan *pendingMsg, 8192)
	go p.collect()
	go p.linger()
	return p, nil
}

// partitionedStream returns the stream that binds subject's partitioned
// form: for "bidpulse.events.client", "bidpulse.events.x.client".
func partitionedStream(ctx context.Context, js jetstream.JetStream, subject string) (string, error) {
	i := strings.LastIndexByte(subject, '.')
	if i <= 0 {
		return "", jetstream.ErrStreamNotFound
	}
	return js.StreamNameBySubject(ctx, subject[:i]+".x"+subject[i:])
}

// partitioned checks the subject options and sets their defaults; it
// returns the subject whose stream NewPublisher looks up: in partitioned
// mode one the partitioned stream binds (<base>.*.>), with a placeholder
// campaign.
func (o *PublisherOptions) partitioned() (string, error) {
	if o.PartitionedBase == "" {
		if o.Subject == "" {
			o.Subject = "bidpulse.events.client"
		}
		o.MaxOpenBatches = 1 // the one batch, keyed ""
		return o.Subject, nil
	}
	if o.Subject != "" {
		return "", fmt.Errorf("bidpulse client: Subject %q and PartitionedBase %q both set: partitioned subjects are <PartitionedBase>.<campaign>.<Producer>", o.Subject, o.PartitionedBase)
	}
	if _, err := partition.StreamTransform(1, o.PartitionedBase); err != nil {
		return "", fmt.Errorf("bidpulse client: invalid PartitionedBase: %w", err)
	}
	if o.Producer == "" {
		o.Producer = "client"
	}
	if partition.CheckCampaign(o.Producer) != nil {
		return "", fmt.Errorf("bidpulse client: invalid Producer %q: want one subject token (no '.', no whitespace, not a wildcard)", o.Producer)
	}
	if o.MaxOpenBatches <= 0 {
		o.MaxOpenBatches = 1024
	}
	return o.PartitionedBase + ".x." + o.Producer, nil
}

// JetStream reports whether messages are acknowledged by a stream (false:
// core NATS, at most once).
func (p *Publisher) JetStream() bool { return p.js != nil }

// ErrPublisherClosed is returned by Publish after Close.
var ErrPublisherClosed = errors.New("bidpulse client: publisher closed")

// Publish adds ev to the open batch (in partitioned mode, its campaign's),
// sending the batch when it is full. An event that bidpulse would refuse
// is refused here, with the reason; so is, in partitioned mode, an event
// whose campaign is not one subject token.
func (p *Publisher) Publish(ev *Event) error {
	if err := ev.check(); err != nil {
		return err
	}
	campaign := ""
	if p.o.PartitionedBase != "" {
		if err := partition.CheckCampaign(ev.Campaign); err != nil {
			return fmt.Errorf("bidpulse client: event %q refused in partitioned mode: %w", ev.ID, err)
		}
		campaign = ev.Campaign
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return ErrPublisherClosed
	}
	p.scratch = ev.AppendJSON(p.scratch[:0])
	if len(p.scratch)+2 > p.o.MaxBytes {
		return fmt.Errorf("bidpulse client: event %q is %d bytes, above MaxBytes %d", ev.ID, len(p.scratch), p.o.MaxBytes)
	}
	b, err := p.batchFor(campaign)
	if err != nil {
		return err
	}
	if b.events > 0 && len(b.buf)+1+len(p.scratch)+1 > p.o.MaxBytes {
		if err := p.sendBatch(b, false, context.Background()); err != nil {
			return err
		}
		if b, err = p.batchFor(campaign); err != nil {
			return err
		}
	}
	if b.events == 0 {
		b.buf = append(b.buf[:0], '[')
		b.first = time.Now()
	} else {
		b.buf = append(b.buf, ',')
	}
	b.buf = append(b.buf, p.scratch...)
	b.events++
	if b.events >= p.o.MaxEvents {
		return p.sendBatch(b, false, context.Background())
	}
	return nil
}

// headerRoom is what a message's headers may take beside its data
// (NATS/1.0, Nats-Msg-Id): the server's max_payload counts both.
const headerRoom = 256

// PublishRaw publishes data, a JSON event or array of events encoded by
// the caller, as one message of the given event count, after the open
// batch. msgID is its Nats-Msg-Id ("" for the Publisher's own: prefix and
// sequence); an id derived from the content lets the stream recognise the
// same message published again. tag comes back in Settled. data is copied.
// In partitioned mode it is refused: the message has no campaign, use
// PublishRawTo.
func (p *Publisher) PublishRaw(data []byte, events int, msgID string, tag any) error {
	if p.o.PartitionedBase != "" {
		return errors.New("bidpulse client: PublishRaw has no campaign to publish to in partitioned mode: use PublishRawTo")
	}
	return p.publishRaw("", data, events, msgID, tag)
}

// PublishRawTo is PublishRaw in partitioned mode, for callers that batch
// events themselves: data goes to campaign's subject,
// <PartitionedBase>.<campaign>.<Producer>, after campaign's open batch (the
// messages of a campaign keep their order). Every event in data must be of
// campaign: bidpulse checks the campaign of each event against its subject.
// campaign must be one subject token (partition.CheckCampaign). Outside
// partitioned mode it is refused.
func (p *Publisher) PublishRawTo(campaign string, data []byte, events int, msgID string, tag any) error {
	if p.o.PartitionedBase == "" {
		return errors.New("bidpulse client: PublishRawTo needs PartitionedBase: use PublishRaw")
	}
	if err := partition.CheckCampaign(campaign); err != nil {
		return fmt.Errorf("bidpulse client: a raw message refused in partitioned mode: %w", err)
	}
	return p.publishRaw(campaign, data, events, msgID, tag)
}

func (p *Publisher) publishRaw(campaign string, data []byte, events int, msgID string, tag any) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return ErrPublisherClosed
	}
	if n := int64(len(data) + len(msgID) + headerRoom); n > p.nc.MaxPayload() {
		return fmt.Errorf("bidpulse client: a message of %d bytes and its headers, above the server's max_payload %d", len(data), p.nc.MaxPayload())
	}
	if b := p.open.byCampaign[campaign]; b != nil {
		if err := p.sendBatch(b, false, context.Background()); err != nil {
			return err
		}
	}
	return p.send(p.subjectOf(campaign), append([]byte(nil), data...), events, msgID, tag, false, context.Background())
}

// send hands one message to NATS; p.mu is held (so messages keep their
// order). When MaxPendingBytes are unacknowledged it waits for room: a
// Publish gives up when Close begins, Close's own last batches (final)
// when ctx ends.
func (p *Publisher) send(subject string, data []byte, events int, msgID string, tag any, final bool, ctx context.Context) error {
	p.flightMu.Lock()
	for p.inflight > 0 && p.inflight+len(data) > p.o.MaxPendingBytes {
		if !final && p.closing {
			p.flightMu.Unlock()
			return fmt.Errorf("%w: %d events waiting for room were not sent", ErrPublisherClosed, events)
		}
		if final && ctx.Err() != nil {
			p.flightMu.Unlock()
			return fmt.Errorf("bidpulse client: %d events of a last batch were not sent before Close's end: %w", events, ctx.Err())
		}
		p.room.Wait()
	}
	p.inflight += len(data)
	p.sent++
	p.flightMu.Unlock()
	p.st.events.Add(uint64(events))
	p.st.messages.Add(1)
	pm := &pendingMsg{events: events, tag: tag}
	if p.js == nil {
		pm.err = p.nc.Publish(subject, data)
		pm.msg = &nats.Msg{Data: data}
	} else {
		if msgID == "" {
			p.seq++
			msgID = p.o.MsgIDPrefix + "-" + strconv.FormatUint(p.seq, 36)
		}
		m := nats.NewMsg(subject)
		m.Data = data
		m.Header.Set(jetstream.MsgIDHeader, msgID)
		pm.msg = m
		pm.fut, pm.err = p.js.PublishMsgAsync(m)
	}
	p.pending <- pm
	return nil
}

// linger sends a batch that has waited Linger.
func (p *Publisher) linger() {
	t := time.NewTicker(max(p.o.Linger/4, time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-p.lingerQ:
			return
		case now := <-t.C:
			p.mu.Lock()
			// The list is in the order of first events: the expired batches are at its head.
			for b := p.open.head; b != nil && now.Sub(b.first) >= p.o.Linger; b = p.open.head {
				_ = p.sendBatch(b, false, context.Background()) // an error (closing) is Close's to report
			}
			p.mu.Unlock()
		}
	}
}

// collect settles each message in order: acknowledged, or resent with its
// Nats-Msg-Id until RetryFor passes or Close's context ends.
func (p *Publisher) collect() {
	defer close(p.done)
	for pm := range p.pending {
		p.settle(pm)
		p.flightMu.Lock()
		p.inflight -= len(pm.msg.Data)
		p.settled++
		p.room.Broadcast()
		p.flightMu.Unlock()
	}
}

func (p *Publisher) settle(pm *pendingMsg) {
	if p.js == nil {
		p.finish(pm, pm.err, false)
		return
	}
	turn := time.Now() // RetryFor counts from here: an outage's backlog gets its resends
	backoff := time.Duration(0)
	for {
		if pm.err == nil {
			select {
			case ack := <-pm.fut.Ok():
				p.finish(pm, nil, ack.Duplicate)
				return
			case pm.err = <-pm.fut.Err():
			case <-p.abort:
				p.finish(pm, errors.New("not acknowledged before Close's end"), false)
				return
			}
		}
		p.flightMu.Lock()
		p.lastErr = pm.err
		p.flightMu.Unlock()
		switch {
		case permanent(pm.err):
			p.finish(pm, fmt.Errorf("refused for good: %w", pm.err), false)
			return
		case time.Since(turn) > p.o.RetryFor:
			p.finish(pm, fmt.Errorf("not acknowledged within %s: %w", p.o.RetryFor, pm.err), false)
			return
		case p.aborted():
			p.finish(pm, fmt.Errorf("not acknowledged before Close's end: %w", pm.err), false)
			return
		}
		if backoff > 0 {
			select {
			case <-time.After(backoff):
			case <-p.abort:
			}
		}
		backoff = min(max(2*backoff, 50*time.Millisecond), time.Second)
		p.st.resent.Add(1)
		pm.fut, pm.err = p.js.PublishMsgAsync(pm.msg)
	}
}

// permanent reports whether no resend of a message can pass err.
func permanent(err error) bool {
	var apiErr *jetstream.APIError
	return errors.Is(err, nats.ErrMaxPayload) || errors.Is(err, nats.ErrBadSubject) ||
		errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamMessageExceedsMaximum
}

func (p *Publisher) aborted() bool {
	select {
	case <-p.abort:
		return true
	default:
		return false
	}
}

func (p *Publisher) finish(pm *pendingMsg, err error, dup bool) {
	if err == nil {
		p.st.ackedEvents.Add(uint64(pm.events))
		p.st.ackedMessages.Add(1)
		if dup {
			p.st.dupes.Add(1)
		}
	} else {
		p.st.failed.Add(uint64(pm.events))
	}
	if p.o.OnSettled != nil {
		p.o.OnSettled(Settled{Events: pm.events, Tag: pm.tag, Err: err, Duplicate: dup})
	}
}

// Flush sends the open batches and waits until every message sent before
// it is settled, or ctx ends. In core mode it also flushes the connection.
func (p *Publisher) Flush(ctx context.Context) error {
	p.mu.Lock()
	err := p.sendAll(false, context.Background())
	p.flightMu.Lock()
	target := p.sent
	p.flightMu.Unlock()
	p.mu.Unlock()
	if err != nil {
		return err
	}
	if p.js == nil {
		if err := p.flushConn(ctx); err != nil {
			return err
		}
	}
	stop := context.AfterFunc(ctx, func() {
		p.flightMu.Lock()
		p.room.Broadcast()
		p.flightMu.Unlock()
	})
	defer stop()
	p.flightMu.Lock()
	defer p.flightMu.Unlock()
	for p.settled < target {
		if ctx.Err() != nil {
			return fmt.Errorf("bidpulse client: %d messages not yet acknowledged: %w", target-p.settled, ctx.Err())
		}
		p.room.Wait()
	}
	return nil
}

// flushConn waits until the server has every core publish: until ctx's
// deadline, or 10 s without one.
func (p *Publisher) flushConn(ctx context.Context) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
	}
	if err := p.nc.FlushWithContext(ctx); err != nil {
		return fmt.Errorf("bidpulse client: cannot flush to NATS: %w", err)
	}
	return nil
}

// Close sends the open batches, waits for every acknowledgement (resending
// as needed) until ctx ends, and stops. A Publish waiting for room when
// Close begins returns ErrPublisherClosed. Close returns an error naming
// the events never acknowledged.
func (p *Publisher) Close(ctx context.Context) error {
	p.flightMu.Lock()
	p.closing = true
	p.room.Broadcast()
	p.flightMu.Unlock()
	stop := context.AfterFunc(ctx, func() {
		p.abortOnce.Do(func() { close(p.abort) })
		p.flightMu.Lock()
		p.room.Broadcast()
		p.flightMu.Unlock()
	})
	defer stop()
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return ErrPublisherClosed
	}
	err := p.sendAll(true, ctx)
	p.closed = true
	close(p.lingerQ)
	p.mu.Unlock()
	if p.js == nil {
		if ferr := p.flushConn(ctx); ferr != nil && err == nil {
			err = ferr
		}
	}
	close(p.pending)
	<-p.done
	if n := p.st.failed.Load(); n > 0 && err == nil {
		p.flightMu.Lock()
		last := p.lastErr
		p.flightMu.Unlock()
		err = fmt.Errorf("bidpulse client: %d events were never acknowledged (last error: %v)", n, last)
	}
	return err
}

// Stats returns the counts so far.
func (p *Publisher) Stats() PublisherStats {
	return PublisherStats{
		Events: p.st.events.Load(), Messages: p.st.messages.Load(),
		AckedEvents: p.st.ackedEvents.Load(), AckedMessages: p.st.ackedMessages.Load(),
		Duplicates: p.st.dupes.Load(), Resent: p.st.resent.Load(), FailedEvents: p.st.failed.Load(),
	}
}
