package bidder

// A partition of a cluster with --replicas R > 1 has one primary unit and
// R-1 replica units, on as many members. All of them consume the
// partition's events, so their windows are the same up to their consumer
// lag, and all of them answer its bids. The controllers (pacing, goals,
// guardrails, the prior fits) run on the primary only: after each change of
// their states (a control tick, a campaign's first tick) it publishes them
// whole as an object of the checkpoints' Object Store and announces it on
// UnitControlSubject(p, "controllers"); each replica takes them
// (brain.Adopt) and answers from them. Two owners of a partition therefore
// answer a key from the same controller states, the replica's at most one
// publication behind (its adoption lag, in UnitState.ControllersLagMs),
// and from windows that differ by what one of them has applied and the
// other not yet.
//
// A replica reports the keys and campaigns it answered to the primary
// every second (UnitControlSubject(p, "used")): the primary then gives
// them states, and does not forget them as idle, as if it had answered
// them itself.
//
// A replica holds the stream for itself: its record in InstancesBucket
// (ReplicaLeaseKey) says how far it applied, and the primary trims its
// partition no further (unitFloor). It writes no checkpoint: it starts from
// the primary's newest one.

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/bidpulse/bidpulse/bidder/ingest"
)

const (
	// publishedHeader is the wall-clock time (Unix ms) of a controllers
	// publication, from which a replica measures its adoption lag.
	publishedHeader = "Bidpulse-Published-Ms"
	// usedChunk bounds one report of used keys (NATS max_payload is 1 MiB
	// by default).
	usedChunk = 256 << 10
)

// UnitControlSubject is the subject of a partition's primary and replicas
// for what ("controllers": a publication; "used": the keys a replica
// answered): bidpulse.ctl.<stream>.<p>.<what>.
func UnitControlSubject(stream string, p uint32, what string) string {
	return "bidpulse.ctl." + strings.ToLower(stream) + "." + strconv.FormatUint(uint64(p), 10) + "." + what
}

// controllersObject is the name of the controllers a partition's primary
// (unit instance primary) publishes, in CheckpointBucket.
func controllersObject(primary string) string {
	return ingest.ConsumerName(primary) + ".controllers"
}

// ReplicaLeaseKey is the key of a replica unit's record in InstancesBucket:
// under its primary's key, so that the primary finds its replicas' records
// with a filter (<primary key>.>).
func ReplicaLeaseKey(primary, replica string) string {
	return ingest.ConsumerName(primary) + ".replica." + ingest.ConsumerName(replica)
}

// replication is a unit's side of it: the primary's publications, or the
// replica's adoptions and reports.
type replication struct {
	// Primary: the generation of the brain last published.
	pubGen     uint64
	published  atomic.Uint64 // publications
	pubErrors  atomic.Uint64
	usedSub    *nats.Subscription
	notifySub  *nats.Subscription
	notify     chan struct{}
	adoptedID  string        // replica: NUID of the object last adopted
	adoptedSeq atomic.Uint64 // its stream sequence (the primary's applied)
	baseSeq    uint64        // replica: the sequence of the checkpoint it started from
	adoptLagMs atomic.Int64  // publication to adoption, the last one
	adoptions  atomic.Uint64
	adoptErrs  atomic.Uint64
	// checked: a replica has looked for a publication once (adopting it if
	// there was one): it may then answer bids.
	checked   atomic.Bool
	lastUsed  int64 // replica: the brain time of the last report
	usedSent  atomic.Uint64
	usedTaken atomic.Uint64 // primary: names taken from the replicas
	usedBad   atomic.Uint64 // primary: reports that did not decode
}

// startReplication starts the primary's publications and its intake of
// used keys, or the replica's adoptions and reports. Start calls it once
// the unit consumes.
func (s *Service) startReplication() error {
	if !s.opts.Unit || s.ckptStore == nil {
		return nil
	}
	r := &s.repl
	if !s.opts.Replica {
		// Published once at start whatever its generation: a replica
		// must not adopt what an earlier primary published before this
		// one's checkpoint.
		r.pubGen = ^uint64(0)
		sub, err := s.nc.Subscribe(UnitControlSubject(s.opts.Stream, s.opts.Partition, "used"), s.takeUsed)
		if err != nil {
			return err
		}
		r.usedSub = sub
		s.every(250*time.Millisecond, func() {
			ctx, cancel := s.stopContext(30 * time.Second)
			defer cancel()
			s.publishControllers(ctx)
		})
		return nil
	}
	r.notify = make(chan struct{}, 1)
	sub, err := s.nc.Subscribe(UnitControlSubject(s.opts.Stream, s.opts.Partition, "controllers"), func(*nats.Msg) {
		select {
		case r.notify <- struct{}{}:
		default:
		}
	})
	if err != nil {
		return err
	}
	r.notifySub = sub
	// The first report covers what is answered from now on, not what
	// the checkpoint restored (the primary has those already).
	r.lastUsed = s.clock.NowMs()
	s.bg.Add(1)
	go s.adoptLoop()
	s.every(time.Second, func() { s.reportUsed() })
	return nil
}

// stopReplication ends the subscriptions (the loops end with bgStop).
func (s *Service) stopReplication() {
	for _, sub := range []*nats.Subscription{s.repl.usedSub, s.repl.notifySub} {
		if sub != nil {
			_ = sub.Unsubscribe()
		}
	}
}

// publishControllers publishes the brain's states when they changed since
// the last publication (primary).
func (s *Service) publishControllers(ctx context.Context) {
	r := &s.repl
	gen := s.brain.Gen()
	if gen == r.pubGen || s.leaseLost.Load() || !s.ingest.Ready() {
		// (Not before the catch-up: states ticked on a partial replay
		// would be adopted by replicas that serve.)
		return
	}
	seq := s.ingest.Applied()
	var buf bytes.Buffer
	if res := s.brain.Snapshot(&buf); res.LeftOut > 0 {
		s.throttledLog.Warn("controllers", "controller states left out of the publication (they cannot be encoded)", res.Err)
	}
	// The object is the partition's, shared by its primaries over time: a
	// unit that lost its name must not replace the new primary's.
	if err := s.lease.update(ctx, nil); err != nil {
		r.pubErrors.Add(1)
		return
	}
	h := nats.Header{}
	h.Set(seqHeader, strconv.FormatUint(seq, 10))
	h.Set(streamHeader, s.opts.Stream)
	h.Set(publishedHeader, strconv.FormatInt(time.Now().UnixMilli(), 10))
	name := controllersObject(s.opts.Instance)
	if _, err := s.ckptStore.Put(ctx, jetstream.ObjectMeta{Name: name, Headers: h}, &buf); err != nil {
		r.pubErrors.Add(1)
		s.throttledLog.Warn("controllers", "cannot publish the controller states to the partition's replicas (retried)", err)
		return
	}
	r.pubGen = gen
	r.published.Add(1)
	_ = s.nc.Publish(UnitControlSubject(s.opts.Stream, s.opts.Partition, "controllers"), nil)
}

// newestControllers returns the primary's publication when it is newer
// than the checkpoint of stream sequence seq written at atMs (a primary
// starting from that checkpoint takes the states its predecessor published
// after it): of a later sequence, or of the same one and published later
// (the control ticks go on while no event comes; the checkpoints do not).
func (s *Service) newestControllers(ctx context.Context, seq uint64, atMs int64) ([]byte, *jetstream.ObjectInfo, error) {
	info, err := s.ckptStore.GetInfo(ctx, controllersObject(s.primaryName()))
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	pseq, _ := strconv.ParseUint(info.Headers.Get(seqHeader), 10, 64)
	pms, _ := strconv.ParseInt(info.Headers.Get(publishedHeader), 10, 64)
	if info.Headers.Get(streamHeader) != s.opts.Stream || seq > 0 && (pseq < seq || pseq == seq && pms < atMs) {
		return nil, nil, nil
	}
	raw, err := s.ckptStore.GetBytes(ctx, info.Name)
	if err != nil {
		return nil, nil, err
	}
	return raw, info, nil
}

// adoptLoop takes each publication of the primary (replica): on its
// announcement, and every 2s in case one was missed. A read that fails is
// tried again 100ms later: the primary replacing the object while it is
// read purges the chunks being read, and the read then waits for them
// until its deadline (5s per attempt).
func (s *Service) adoptLoop() {
	defer s.bg.Done()
	r := &s.repl
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	for {
		ctx, cancel := s.stopContext(5 * time.Second)
		err := s.adoptControllers(ctx)
		cancel()
		retry := (<-chan time.Time)(nil)
		if err != nil {
			r.adoptErrs.Add(1)
			s.throttledLog.Warn("controllers", "cannot take the primary's controller states (retried)", err)
			retry = time.After(100 * time.Millisecond)
		} else {
			r.checked.Store(true)
		}
		select {
		case <-s.bgStop:
			return
		case <-r.notify:
		case <-t.C:
		case <-retry:
		}
	}
}

// adoptControllers adopts the primary's publication if it is a new one.
func (s *Service) adoptControllers(ctx context.Context) error {
	r := &s.repl
	info, err := s.ckptStore.GetInfo(ctx, controllersObject(s.opts.Primary))
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if info.NUID == r.adoptedID || info.Headers.Get(streamHeader) != s.opts.Stream {
		return nil
	}
	if seq, _ := strconv.ParseUint(info.Headers.Get(seqHeader), 10, 64); seq < r.baseSeq {
		// Older than the checkpoint this replica started from: the
		// primary publishes again once it starts or ticks.
		r.adoptedID = info.NUID
		return nil
	}
	obj, err := s.ckptStore.Get(ctx, info.Name)
	if err != nil {
		return err
	}
	defer obj.Close()
	raw, err := io.ReadAll(obj)
	if err != nil {
		return err
	}
	got, err := obj.Info()
	if err != nil {
		return err
	}
	if err := s.brain.Adopt(raw, s.clock.NowMs(), 0); err != nil {
		s.throttledLog.Warn("controllers", "controller states of the primary left out", err)
	}
	r.adoptedID = got.NUID
	seq, _ := strconv.ParseUint(got.Headers.Get(seqHeader), 10, 64)
	r.adoptedSeq.Store(seq)
	if ms, err := strconv.ParseInt(got.Headers.Get(publishedHeader), 10, 64); err == nil {
		r.adoptLagMs.Store(max(time.Now().UnixMilli()-ms, 0))
	}
	r.adoptions.Add(1)
	return nil
}

// reportUsed sends the primary the keys and campaigns answered here since
// the last report (replica), in chunks: a kind byte ('k' key, 'c'
// campaign), a uvarint length, the name.
func (s *Service) reportUsed() {
	r := &s.repl
	now := s.clock.NowMs()
	since := r.lastUsed
	r.lastUsed = now
	subject := UnitControlSubject(s.opts.Stream, s.opts.Partition, "used")
	var buf []byte
	flush := func() {
		if len(buf) > 0 {
			if s.nc.Publish(subject, buf) == nil {
				r.usedSent.Add(1)
			}
			buf = nil
		}
	}
	s.brain.Used(since, func(name string, campaign bool) {
		kind := byte('k')
		if campaign {
			kind = 'c'
		}
		buf = append(buf, kind)
		buf = binary.AppendUvarint(buf, uint64(len(name)))
		buf = append(buf, name...)
		if len(buf) >= usedChunk {
			flush()
		}
	})
	flush()
}

// takeUsed counts the names a replica reports as answered here (primary).
// The rest of a report from where it does not decode is dropped, and the
// report counted (used_reports_refused).
func (s *Service) takeUsed(m *nats.Msg) {
	now := s.clock.NowMs()
	b := m.Data
	for len(b) > 0 {
		kind := b[0]
		n, k := binary.Uvarint(b[1:])
		if k <= 0 || uint64(len(b)-1-k) < n || kind != 'k' && kind != 'c' {
			s.repl.usedBad.Add(1)
			return
		}
		name := b[1+k : 1+k+int(n)]
		s.brain.Touch(name, kind == 'c', now)
		s.repl.usedTaken.Add(1)
		b = b[1+k+int(n):]
	}
}

// primaryName is the instance whose checkpoints and controllers this unit
// starts from: its partition's primary.
func (s *Service) primaryName() string {
	if s.opts.Replica {
		return s.opts.Primary
	}
	return s.opts.Instance
}

// unitFloor is how far a primary may trim its partition: to its own
// checkpoint kept in NATS, and no further than any live replica applied
// (ok false: one has not said yet, or a record could not be read). A
// replica's record counts as live for two leases after its last renewal: a
// replica stops itself once it has not renewed for one lease (renewLease),
// so none still consumes when its record stops counting.
func (s *Service) unitFloor(ctx context.Context) (uint64, bool, error) {
	floor := s.ckpt.remoteSeq.Load()
	lister, err := s.lease.kv.ListKeysFiltered(ctx, ingest.ConsumerName(s.opts.Instance)+".replica.>")
	if err != nil {
		return 0, false, err
	}
	ok := floor > 0
	for key := range lister.Keys() {
		e, err := s.lease.kv.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
			continue
		}
		if err != nil {
			return 0, false, err
		}
		if time.Since(e.Created()) > 2*s.opts.LeaseTTL {
			continue // not renewed: its replica has stopped consuming
		}
		var r instanceRecord
		if err := json.Unmarshal(e.Value(), &r); err != nil {
			return 0, false, fmt.Errorf("replica record %s: %w", key, err)
		}
		if r.Stream != s.opts.Stream || r.Stopped {
			continue
		}
		if r.RemoteSeq == 0 {
			ok = false
		}
		floor = min(floor, r.RemoteSeq)
	}
	if err := ctx.Err(); err != nil {
		// The listing ends quietly with its context: it may be partial.
		return 0, false, err
	}
	return floor, ok, nil
}

// replicaHold returns the edit that records how far a replica applied in
// its record (the stream is kept after it for it), or nil for a primary.
func (s *Service) replicaHold() func(r *instanceRecord) {
	if !s.opts.Replica {
		return nil
	}
	return func(r *instanceRecord) {
		if a := s.ingest.Applied(); a > r.RemoteSeq {
			r.RemoteSeq = a
		}
	}
}

// ReplicationState is what a unit reports of its replication.
type ReplicationState struct {
	Role string `json:"role"` // "primary" or "replica"
	// Primary: publications of its controller states, failed ones, and
	// the names its replicas reported answered.
	Published     uint64 `json:"controllers_published,omitempty"`
	PublishErrors uint64 `json:"controllers_publish_errors,omitempty"`
	UsedTaken     uint64 `json:"used_names_taken,omitempty"`
	UsedRefused   uint64 `json:"used_reports_refused,omitempty"`
	// Replica: publications adopted, failures, the stream sequence of the
	// last (the primary's applied one when it published), and its lag
	// from publication to adoption.
	Adopted          uint64 `json:"controllers_adopted,omitempty"`
	AdoptErrors      uint64 `json:"controllers_adopt_errors,omitempty"`
	ControllersSeq   uint64 `json:"controllers_seq,omitempty"`
	ControllersLagMs int64  `json:"controllers_lag_ms,omitempty"`
	UsedReports      uint64 `json:"used_reports,omitempty"`
	// Checked: the replica has looked for a publication (it answers bids
	// after that).
	Checked bool `json:"checked"`
}

func (s *Service) replicationState() ReplicationState {
	r := &s.repl
	if !s.opts.Replica {
		return ReplicationState{Role: "primary", Published: r.published.Load(), PublishErrors: r.pubErrors.Load(),
			UsedTaken: r.usedTaken.Load(), UsedRefused: r.usedBad.Load(), Checked: true}
	}
	return ReplicationState{Role: "replica", Adopted: r.adoptions.Load(), AdoptErrors: r.adoptErrs.Load(),
		ControllersSeq: r.adoptedSeq.Load(), ControllersLagMs: r.adoptLagMs.Load(), UsedReports: r.usedSent.Load(),
		Checked: r.checked.Load()}
}

// checkReplicaOptions validates the replica options.
func checkReplicaOptions(o *Options) error {
	if !o.Replica {
		return nil
	}
	if !o.Unit || o.Primary == "" {
		return fmt.Errorf("a replica unit needs Unit and its Primary's instance name")
	}
	return nil
}

// startUnitState completes a partition unit's state once its checkpoint is
// loaded (from: the sequence it consumes from, 0 for all the stream holds).
// A replica records it as its hold on the stream; a primary adopts the
// controller states its predecessor published after that checkpoint (a
// control tick between the last checkpoint and a crash is not lost).
func (s *Service) startUnitState(ctx context.Context, from uint64) error {
	if !s.opts.Unit {
		return nil
	}
	if s.opts.Replica {
		if from <= 1 {
			return nil // no checkpoint: RemoteSeq 0 holds all
		}
		s.repl.baseSeq = from - 1
		return s.lease.update(ctx, func(r *instanceRecord) { r.RemoteSeq = from - 1 })
	}
	if s.ckptStore == nil {
		return nil
	}
	raw, info, err := s.newestControllers(ctx, max(from, 1)-1, s.ckpt.lastAtMs.Load())
	if err != nil {
		return fmt.Errorf("cannot read the partition's published controller states: %w", err)
	}
	if raw == nil {
		return nil
	}
	now := s.clock.NowMs()
	if err := s.brain.Adopt(raw, now, now); err != nil {
		s.log.Warn().Err(err).Msg("controller states of the previous primary left out")
	}
	s.log.Info().Str("seq", info.Headers.Get(seqHeader)).Uint64("checkpoint_seq", max(from, 1)-1).
		Msg("took the controller states the previous primary published after its checkpoint")
	return nil
}

// replicaConsumerInactive is how long a replica's consumer outlives its
// last pull (0: a primary's, kept, as the partition's name is reused).
func replicaConsumerInactive(o *Options) time.Duration {
	if !o.Replica {
		return 0
	}
	return max(10*o.LeaseTTL, 5*time.Minute)
}

// stopContext returns a context that ends after d or when the service's
// background work stops (bgStop), whichever comes first: a stop or a
// release does not wait out a slow JetStream request.
func (s *Service) stopContext(d time.Duration) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	go func() {
		select {
		case <-s.bgStop:
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}
