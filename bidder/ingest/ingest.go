// Package ingest applies events from NATS to the windows, exactly once.
//
// # The exactly-once contract
//
// One applier: every message, from the JetStream consumer or the core
// subscription, is applied by Apply's code path under the Ingester's lock
// (applyMu), one at a time and, in JetStream mode, in stream order. The lock
// serialises the dedup check-then-set and the key-cap check; nobody else
// writes the windows' key set or the dedup set (eviction and checkpoints go
// through Pause, which flushes the writes held back for the next message
// first, so what they see is every applied message whole).
//
// The applied sequence: in JetStream mode the stream sequence of the last
// applied message is the single truth of what has been counted. A message at
// or below it (a redelivery) is skipped; a checkpoint records it with the
// state it produced, and a restart consumes from the sequence after it.
//
// Gaps: a message more than one past the applied sequence means the ones in
// between were not delivered. They count as lost only when the stream no
// longer holds them (before its first sequence, or deleted); otherwise they
// were dropped on the way (a slow consumer, a reconnect), nothing past the
// applied sequence is acknowledged, and the consumer is re-created after it.
// Pulls are capped in bytes so that a backlog of the largest messages cannot
// overrun the connection's slow-consumer limits.
//
// Acknowledgements (AckAll) cover a message only once it is applied and every
// dead letter of it and of the messages before it is stored in the DLQ.
// Retention does not hang on them: the stream is trimmed by the service after
// checkpoints (Trim).
//
// Dead letters are queued by the applier and published in the background, in
// order, retried until stored; the queue is bounded (the applier waits when it
// is full) and saved with each checkpoint (QueuedDeadLetters, Restore). A
// letter keeps the rejected event's known fields and a keyed hash of its
// payload (SetDLQKey), the payload itself only with Options.DLQRaw.
//
// Core mode (no JetStream) is at-most-once: what the client or the server
// drops for a slow consumer is counted (Dropped), not recovered.
package ingest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/bidpulse/bidpulse/bidder/idset"
	"github.com/bidpulse/bidpulse/bidder/logthrottle"
	"github.com/bidpulse/bidpulse/windows"
)

// JetStream modes of Options.JetStream.
const (
	JetStreamAuto  = "auto"
	JetStreamTrue  = "true"
	JetStreamFalse = "false"
)

// DLQSubject is where rejected payloads are republished, each with a
// Bidpulse-Reject-Reason header.
const DLQSubject = "bidpulse.dlq"

// Clock gives the service time in Unix ms.
type Clock interface {
	NowMs() int64
}

// Options configure an Ingester. Zero values are not defaulted here: the
// service fills them (see bidder.Options).
type Options struct {
	Store   *windows.Store
	Rollups *windows.Rollups
	Clock   Clock
	Log     zerolog.Logger
	// Warn logs repeated warnings throttled.
	Warn *logthrottle.Log
	// Metrics receives the ingest counters (Stats).
	Metrics   *metrics.Set
	DedupSize int
	// OnConversionDelay, when set, is told the click and conversion times
	// of each counted conversion that carries its click's time.
	OnConversionDelay func(campaign []byte, clickMs, convMs int64)

	JetStream string // JetStreamAuto, JetStreamTrue or JetStreamFalse
	Subject   string
	// Partitions, when above 0, stores each event message of the stream
	// under its campaign's partition and rejects the events of another
	// campaign than their subject's (partitioned.go). It needs JetStream
	// and a Subject ending in ".>"; it is fixed when the stream is created.
	Partitions uint32
	// OnePartition makes this ingester consume only partition Partition
	// of the Partitions (a partition unit of a cluster member,
	// bidder/node): its durable consumer filters on that partition's
	// stored subjects, its applied sequence is the last of that partition's
	// messages applied, and Trim purges only that partition's messages.
	OnePartition bool
	Partition    uint32
	// StreamReplicas is the replica count of the event and DLQ streams
	// (0: 1). Raising it on an existing stream is an update the server
	// makes on a cluster.
	StreamReplicas   int
	Stream           string
	StreamMaxBytes   int64
	StreamMaxAge     time.Duration
	StreamDuplicates time.Duration
	DLQMaxBytes      int64
	// DLQRaw keeps each rejected payload verbatim in its dead letter (the
	// personal data it may carry included); without it a letter keeps the
	// event's known fields and a keyed hash of the payload (DeadLetter).
	DLQRaw   bool
	Instance string // names the durable consumer
	// Owner identifies this process; it is set in the consumer's metadata,
	// so a consumer replaced from outside is recognised.
	Owner      string
	FetchBatch int
	FetchBytes int
	AckWait    time.Duration
	StallAfter time.Duration
	// ConsumerInactive, when above 0, lets the server delete the durable
	// consumer after that long without a pull: a partition replica's,
	// named after its member, is not used again once the replica moves.
	ConsumerInactive time.Duration
	// StillOwner is asked before the consumer is re-created; false means
	// another instance took the name over (see StopConsuming).
	StillOwner func(ctx context.Context) bool

	// Core mode: the subscription's buffer limits.
	PendingMsgs  int
	PendingBytes int

	// ApplyHook, when set (tests only), is called before each message is
	// applied, with its stream sequence (0 in core mode).
	ApplyHook func(seq uint64)
}

// Ingester consumes the events and applies them (see the package doc). Build
// it with New, then Open, restore a checkpoint's state, Consume, and Stop.
type Ingester struct {
	opts         Options
	log          zerolog.Logger
	clock        Clock
	store        *windows.Store
	rollups      *windows.Rollups
	stats        *Stats
	dedup        *dedup
	deadLetters  *deadLetters
	throttledLog *logthrottle.Log
	// dlqKey keys the hashes of dead-lettered payloads (SetDLQKey).
	dlqKey []byte

	// applyMu is the applier's lock (see the package doc). Lock order: the
	// service's checkpoint lock, then applyMu, then the windows' shard locks.
	applyMu sync.Mutex
	applier *applier

	nc       *nats.Conn
	js       *jsIngest          // JetStream mode
	sub      *nats.Subscription // core mode
	srvDrops *serverDrops       // core mode with the embedded server
	// lastDropped keeps the client's drop count once the subscription is
	// closed.
	lastDropped atomic.Int64

	stopping       atomic.Bool
	consumeStopped atomic.Bool
}

// New builds an Ingester; nothing is started.
func New(o Options) *Ingester {
	in := &Ingester{opts: o, log: o.Log, clock: o.Clock, store: o.Store, rollups: o.Rollups,
		stats: newStats(o.Metrics), dedup: newDedup(o.DedupSize), throttledLog: o.Warn}
	in.deadLetters = newDeadLetters(in.stats, in.throttledLog.Warn)
	in.dlqKey = newDLQKey()
	in.applier = newApplier(in)
	return in
}

// SetDLQKey sets the key of the dead letters' payload hashes (DLQKeySize
// bytes; see payloadHasher), before Restore and Consume. Without it the
// Ingester uses a random key of its own.
func (in *Ingester) SetDLQKey(key []byte) {
	in.applyMu.Lock()
	defer in.applyMu.Unlock()
	in.dlqKey = append([]byte(nil), key...)
	in.applier.hasher = newPayloadHasher(in.dlqKey)
}

// Stats returns the ingest counters.
func (in *Ingester) Stats() *Stats { return in.stats }

// WatchServer counts, in core mode, what the embedded server srv drops for
// this service's connection: call it before the connection is made, and
// Connected as soon as it is.
func (in *Ingester) WatchServer(srv *server.Server) { in.srvDrops = &serverDrops{srv: srv} }

// Connected and Disconnected are the connection's (re)connect and
// disconnect callbacks, for the server-side drop count.
func (in *Ingester) Connected(nc *nats.Conn) {
	if in.srvDrops != nil {
		in.srvDrops.connected(nc)
	}
}

// Disconnected: see Connected.
func (in *Ingester) Disconnected(nc *nats.Conn) {
	if in.srvDrops != nil {
		in.srvDrops.disconnected(nc)
	}
}

// Open decides the mode on nc. In JetStream mode, the caller then takes the
// instance's name (a lease) and calls EnsureStreams.
func (in *Ingester) Open(ctx context.Context, nc *nats.Conn) (err error) {
	in.nc = nc
	in.js, err = in.setupJetStream(ctx)
	return err
}

// EnsureStreams creates the event and DLQ streams, or brings their settings
// to the options' (see jsIngest.ensureStreams); a no-op in core mode.
func (in *Ingester) EnsureStreams(ctx context.Context) error {
	if in.js == nil {
		return nil
	}
	return in.js.ensureStreams(ctx)
}

// JetStream returns the JetStream context in JetStream mode, else nil.
func (in *Ingester) JetStream() jetstream.JetStream {
	if in.js == nil {
		return nil
	}
	return in.js.js
}

// Mode returns "jetstream" or "core".
func (in *Ingester) Mode() string {
	if in.js != nil {
		return "jetstream"
	}
	return "core"
}

// Consume starts the dead-letter publisher and consumption: in JetStream mode
// from stream sequence fromSeq (0: what the stream holds), in core mode with
// a subscription to the event subject.
func (in *Ingester) Consume(ctx context.Context, fromSeq uint64) error {
	if in.js != nil {
		in.deadLetters.recreate = in.js.ensureDLQ
		in.deadLetters.start(in.nc, in.js.js, in.opts.Stream)
		in.js.applied.Store(0)
		if fromSeq > 0 {
			in.js.applied.Store(fromSeq - 1)
		}
		return in.js.start(ctx, fromSeq)
	}
	in.deadLetters.start(in.nc, nil, "")
	sub, err := in.nc.Subscribe(in.opts.Subject, in.applier.handleMsg)
	if err != nil {
		return fmt.Errorf("cannot subscribe to %q: %w", in.opts.Subject, err)
	}
	in.sub = sub
	if err := sub.SetPendingLimits(in.opts.PendingMsgs, in.opts.PendingBytes); err != nil {
		return fmt.Errorf("cannot set pending limits: %w", err)
	}
	if err := in.nc.Flush(); err != nil {
		return fmt.Errorf("cannot confirm subscription to %q: %w", in.opts.Subject, err)
	}
	return nil
}

// Stop stops consuming (JetStream: the messages fetched are applied, the last
// acknowledged) and waits, until ctx is done, for the queued dead letters to
// be stored. It returns the dead letters left: the caller saves them in the
// final checkpoint (QueuedDeadLetters) in JetStream mode; in core mode, where
// the subscription drains with the connection, they are counted as errors
// and lost.
func (in *Ingester) Stop(ctx context.Context) int {
	in.stopping.Store(true)
	if in.js != nil {
		in.js.stop(ctx)
	}
	if in.sub != nil && in.sub.Drain() == nil {
		// Its pending messages are applied, their dead letters queued.
		for in.sub.IsValid() && ctx.Err() == nil {
			time.Sleep(5 * time.Millisecond)
		}
	}
	n := in.deadLetters.stop(ctx)
	if n > 0 && in.js == nil {
		in.stats.DLQErrors.Add(n)
	}
	return n
}

// Unblock makes a stopping service's applier never wait for room in the
// dead-letter queue (a DLQ that does not answer must not hold up Stop; the
// letters left are saved by the final checkpoint).
func (in *Ingester) Unblock() { in.deadLetters.unbound() }

// StopConsuming stops consumption for good (another instance took the name
// over): nothing more is applied or acknowledged.
func (in *Ingester) StopConsuming() {
	in.consumeStopped.Store(true)
	if in.js != nil {
		in.js.stopConsuming()
	}
}

// Release frees the dedup set's memory; the Ingester is not usable after.
func (in *Ingester) Release() { in.dedup.set.Release() }

// Pause runs fn with the applier stopped and every applied message's writes
// in the windows: a checkpoint begins its snapshots, eviction removes keys.
// fn must be short; it must not call Apply or Pause.
func (in *Ingester) Pause(fn func()) {
	in.applyMu.Lock()
	defer in.applyMu.Unlock()
	in.applier.flush()
	fn()
}

// Apply applies payload as one message received at nowMs (events without
// ts take nowMs), with its writes flushed. It is the in-process way in, for
// tests and benchmarks; safe for concurrent use with consumption.
func (in *Ingester) Apply(payload []byte, nowMs int64) {
	in.applyMu.Lock()
	defer in.applyMu.Unlock()
	// No subject and no stream sequence: not those of the last consumed
	// message (its dead letters' ids would collide with this one's).
	in.applier.setSubject("")
	in.applier.seq = 0
	in.applier.apply(payload, nowMs)
}

// ApplyOn is Apply of a message stored under subject (in partitioned mode
// <p>.<base>.<campaign>.<rest>: its events are checked against the campaign
// it names, as a consumed message's are).
func (in *Ingester) ApplyOn(subject string, payload []byte, nowMs int64) {
	in.applyMu.Lock()
	defer in.applyMu.Unlock()
	in.applier.setSubject(subject)
	in.applier.seq = 0
	in.applier.apply(payload, nowMs)
}

// Applied returns the stream sequence of the last applied message (0 in core
// mode or before the first).
func (in *Ingester) Applied() uint64 {
	if in.js == nil {
		return 0
	}
	return in.js.applied.Load()
}

// NewestTs returns the newest event time applied (Unix ms; 0: none).
func (in *Ingester) NewestTs() int64 { return in.applier.newestTs.Load() }

// DedupSnapshot begins a snapshot of the dedup set and returns it with the
// generation of this process; call it inside Pause.
func (in *Ingester) DedupSnapshot() (*idset.Snapshot, uint64) {
	return in.dedup.set.Snapshot(), in.dedup.gen
}

// QueuedDeadLetters returns the dead letters not stored yet; inside Pause,
// exactly those of the messages applied so far.
func (in *Ingester) QueuedDeadLetters() []DeadLetter { return in.deadLetters.queued() }

// Restore installs the state of a checkpoint of sequence seq, before
// Consume: the dead letters it had queued, its newest event time and, when
// set is not nil, its dedup set (written by generation gen). Letters of an
// earlier bidpulse (the payload, no hash) are brought to this one's form,
// and the payloads are dropped unless Options.DLQRaw (upgradeLetters).
func (in *Ingester) Restore(letters []DeadLetter, newestTs int64, set *idset.Set, gen uint64) {
	upgradeLetters(letters, newPayloadHasher(in.dlqKey), in.opts.DLQRaw)
	in.deadLetters.requeue(letters)
	in.applier.newestTs.Store(newestTs)
	if set != nil {
		in.dedup.restored(set, gen)
	}
}

// ReadDedup reads a dedup set saved by a checkpoint of sequence seq written
// by generation gen: the entries that generation added after seq are dead.
func (in *Ingester) ReadDedup(path string, gen, seq uint64) (*idset.Set, error) {
	return readDedup(path, in.opts.DedupSize, staleAfter(gen, seq))
}

// Reset drops every state before Consume (a checkpoint that turned out
// unusable): the windows become store, the dedup set and the counters are
// emptied.
func (in *Ingester) Reset(store *windows.Store) {
	in.store = store
	in.dedup.reset()
	in.deadLetters.clear()
	for _, c := range in.stats.Counters() {
		c.Set(0)
	}
	in.applier.newestTs.Store(0)
}

// Ready reports whether consumption is caught up and advancing (always true
// in core mode).
func (in *Ingester) Ready() bool {
	return in.js == nil || in.js.caughtUp.Load() && in.js.stallSinceMs.Load() == 0 && !in.consumeStopped.Load()
}

// StalledSince returns when ingest stopped advancing while the stream held
// messages past it (Unix ms; 0: not stalled).
func (in *Ingester) StalledSince() int64 {
	if in.js == nil {
		return 0
	}
	return in.js.stallSinceMs.Load()
}

// Refresh reads the stream's and the consumer's state (for Stream) and
// notices a consumer gone, replaced or stalled. The service calls it every
// second.
func (in *Ingester) Refresh(ctx context.Context) {
	if in.js != nil {
		in.js.refresh(ctx)
	}
}

// StreamState is what the JetStream consumer knows of the stream.
type StreamState struct {
	Consumer                       string
	Applied                        uint64
	Msgs, Bytes, FirstSeq, LastSeq uint64
	ConsumerPending                uint64
	AckPending                     int64
	StartSeq, TargetSeq            uint64
	CaughtUp                       bool
	Progress                       float64
}

// Stream returns the stream's state as of the last Refresh; ok is false in
// core mode.
func (in *Ingester) Stream() (st StreamState, ok bool) {
	j := in.js
	if j == nil {
		return st, false
	}
	return StreamState{
		Consumer: j.name, Applied: j.applied.Load(),
		Msgs: j.streamMsgs.Load(), Bytes: j.streamBytes.Load(), FirstSeq: j.streamFirst.Load(), LastSeq: j.streamLast.Load(),
		ConsumerPending: j.numPending.Load(), AckPending: j.numAckPending.Load(),
		StartSeq: j.startSeq.Load(), TargetSeq: j.targetSeq.Load(), CaughtUp: j.caughtUp.Load(), Progress: j.progress(),
	}, true
}

// Trim purges the stream's messages before seq (the service's retention:
// nothing an instance sharing the stream needs to recover); it returns how
// many went. With OnePartition it purges only that partition's messages:
// each partition is trimmed by its owner, to its own checkpoint, so an idle
// partition holds back no other.
func (in *Ingester) Trim(ctx context.Context, seq uint64) (uint64, error) {
	j := in.js
	if j == nil {
		return 0, errors.New("no stream in core mode")
	}
	if in.opts.OnePartition {
		return j.trimPartition(ctx, seq)
	}
	first := j.streamFirst.Load()
	if seq <= first {
		return 0, nil
	}
	if err := j.stream.Purge(ctx, jetstream.WithPurgeSequence(seq)); err != nil {
		return 0, fmt.Errorf("cannot trim the stream before sequence %d: %w", seq, err)
	}
	info, err := j.stream.Info(ctx)
	if err != nil {
		return 0, nil
	}
	j.updateStreamInfo(info)
	if info.State.FirstSeq > first {
		return info.State.FirstSeq - first, nil
	}
	return 0, nil
}

// Pending returns the messages and bytes the core subscription received but
// has not applied yet.
func (in *Ingester) Pending() (int, int) {
	if in.sub == nil {
		return 0, 0
	}
	n, b, err := in.sub.Pending()
	if err != nil {
		return 0, 0
	}
	return n, b
}

// Dropped returns the event messages lost to a slow consumer in core mode:
// those the NATS client dropped because the subscription's pending limits
// were reached, plus, with the embedded server, those the server dropped for
// this service's connection.
func (in *Ingester) Dropped() int {
	if in.sub == nil {
		return 0
	}
	n, err := in.sub.Dropped()
	if err != nil {
		// A closed subscription no longer reports: keep the last figure.
		n = int(in.lastDropped.Load())
	} else {
		in.lastDropped.Store(int64(n))
	}
	if in.srvDrops != nil {
		n += int(in.srvDrops.update())
	}
	return n
}
