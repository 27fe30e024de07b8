package node

// A partition unit's lifecycle on a member: its start (waiting for the
// partition's lease, then its catch-up), its hand-over when the partition
// moves, a replica's stop, and which unit answers a partition here.

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/bidpulse/bidpulse/bidder"
	"github.com/bidpulse/bidpulse/bidder/ingest"
)

// unitKey names a unit of this member: a partition has at most a primary
// and a replica unit here (both while a replica here becomes the primary,
// or the primary here becomes a replica).
type unitKey struct {
	p       uint32
	replica bool
}

// unit is one partition unit's lifecycle on this member.
type unit struct {
	p       uint32
	replica bool
	// name is its instance name (UnitName or ReplicaName).
	name string
	svc  atomic.Pointer[bidder.Service] // nil until started
	// gone: stopped or stopping for good (dropped, a replica no longer
	// wanted); it answers nothing.
	gone atomic.Bool
	// state: unitStarting, unitServing, unitReleasing.
	state  atomic.Int32
	cancel context.CancelFunc
	done   chan struct{}
	// startedAt and servingAt time the hand-over in.
	startedAt time.Time
	servingMs atomic.Int64
}

const (
	unitStarting int32 = iota
	unitServing
	unitReleasing
)

var stateNames = [...]string{"starting", "serving", "releasing"}

// UnitName is the instance name of partition p's unit in stream's cluster:
// its lease, durable consumer and checkpoints are named after it, whichever
// member runs it.
func UnitName(stream string, p uint32) string {
	return strings.ToLower(stream) + "-p" + strconv.FormatUint(uint64(p), 10)
}

// ReplicaName is the instance name of member's replica unit of partition p:
// its consumer and its record are its own, its checkpoints its primary's.
func ReplicaName(stream string, p uint32, member string) string {
	return UnitName(stream, p) + "-r-" + member
}

// unitOptions returns the options of partition p's unit (its replica unit
// with replica).
func (n *Node) unitOptions(p uint32, replica bool) bidder.Options {
	o := n.opts.Unit
	if cfg := n.cfg.Load(); cfg != nil {
		o.Config = *cfg
	}
	o.Unit, o.Partition = true, p
	o.Instance = UnitName(o.Stream, p)
	dir := "p" + strconv.FormatUint(uint64(p), 10)
	if replica {
		o.Replica, o.Primary = true, o.Instance
		o.Instance = ReplicaName(o.Stream, p, n.opts.Member)
		dir += "-replica"
	}
	o.DataDir = filepath.Join(n.opts.Unit.DataDir, "partitions", dir)
	o.Logger = n.log.With().Uint32("partition", p).Bool("replica", replica).Logger()
	o.NATSBids = bidder.NATSBidsOff
	if o.StartTimeout == 0 {
		// Retried (runUnit): a request that got no reply costs this, not
		// 30s.
		o.StartTimeout = 5 * time.Second
	}
	// The member's dedup memory is shared by the units it is expected to
	// own (R x P / 3 members, at least one member's worth when alone): a
	// unit sees only its partition's ids, so a share covers the same time.
	share := int(max(n.parts*uint32(n.opts.Replicas)/3, 1))
	dedup := o.DedupSize
	if dedup == 0 {
		dedup = 64 << 20
	}
	o.DedupSize = max(dedup/share, 1<<20)
	// The key cap likewise: a member holds about --max-keys over the units
	// it expects, at most P/share times that when it owns every partition.
	keys := o.MaxKeys
	if keys == 0 {
		keys = 1_000_000
	}
	o.MaxKeys = max(keys/share, 1000)
	// And the snapshot scan budget (keys visited per second), so that a
	// member's scans cost what a single instance's do; a unit may still
	// scan all the keys it may hold once a second.
	if o.SnapshotScanRate >= 0 {
		rate := o.SnapshotScanRate
		if rate == 0 {
			rate = bidder.DefaultSnapshotScanRate
		}
		o.SnapshotScanRate = max(rate/share, o.MaxKeys)
	}
	return o
}

// startUnit starts partition p's unit (its replica unit with replica) on
// its own goroutine. Under n.mu.
func (n *Node) startUnit(p uint32, replica bool) {
	ctx, cancel := context.WithCancel(context.Background())
	u := &unit{p: p, replica: replica, cancel: cancel, done: make(chan struct{}), startedAt: time.Now()}
	u.name = n.unitOptions(p, replica).Instance
	n.units[unitKey{p, replica}] = u
	n.bg.Add(1)
	go func() {
		defer n.bg.Done()
		defer close(u.done)
		n.runUnit(ctx, u)
	}()
}

// runUnit starts u's service (retrying while the partition's previous owner
// holds its lease), waits for its catch-up, then serves its bids.
func (n *Node) runUnit(ctx context.Context, u *unit) {
	log := n.log.With().Uint32("partition", u.p).Bool("replica", u.replica).Logger()
	var svc *bidder.Service
	// cfg is the reloaded config the unit was built with (nil: the
	// options' own).
	var cfg *bidder.Config
	for wait := 100 * time.Millisecond; ; wait = min(2*wait, time.Second) {
		if ctx.Err() != nil {
			return
		}
		select {
		case n.starts <- struct{}{}:
		case <-ctx.Done():
			return
		}
		cold := !n.warm.Load()
		if cold {
			n.warmMu.Lock()
		}
		cfg = n.cfg.Load()
		s, err := bidder.New(n.unitOptions(u.p, u.replica))
		if err == nil {
			err = s.Start()
		}
		if cold {
			if err == nil {
				n.warm.Store(true)
			}
			n.warmMu.Unlock()
		}
		<-n.starts
		if err == nil {
			svc = s
			break
		}
		if errors.Is(err, bidder.ErrNameInUse) {
			// The previous owner has not released it yet, or crashed
			// and its lease has not expired.
			wait = 100 * time.Millisecond
			log.Debug().Err(err).Msg("waiting for the partition's previous owner")
		} else {
			n.stats.unitErrors.Inc()
			log.Warn().Err(err).Dur("retry_in", wait).Msg("cannot start the partition's unit")
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
	u.svc.Store(svc)
	n.reloadMu.Lock()
	if cur := n.cfg.Load(); cur != cfg {
		// Reloaded while this unit was built from the config before.
		if err := svc.Reload(*cur); err != nil {
			log.Error().Err(err).Msg("the reloaded config is refused by this unit: it runs the one it started with")
		}
	}
	n.reloadMu.Unlock()
	// A replica answers once it has the primary's controller states (or
	// found none published).
	for st := svc.UnitState(); !st.Ready || !st.Replication.Checked; st = svc.UnitState() {
		select {
		case <-ctx.Done():
			return
		case <-time.After(10 * time.Millisecond):
		}
	}
	for wait := 100 * time.Millisecond; ; wait = min(2*wait, 2*time.Second) {
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := svc.ServeBids(sctx)
		cancel()
		if err == nil {
			break
		}
		log.Warn().Err(err).Dur("retry_in", wait).Msg("cannot join the partition's bid subject (its bids are forwarded to the previous owner meanwhile)")
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
	if ctx.Err() != nil || !u.state.CompareAndSwap(unitStarting, unitServing) {
		return
	}
	u.servingMs.Store(time.Since(u.startedAt).Milliseconds())
	n.refreshServing(u.p)
	st := svc.UnitState()
	if u.replica {
		n.stats.replicasIn.Inc()
		log.Info().Uint64("applied_seq", st.AppliedSeq).Int("keys", st.Keys).Str("from_checkpoint", st.FromCheckpoint).
			Dur("took", time.Since(u.startedAt)).Msg("partition replica caught up: serving its bids")
		return
	}
	n.stats.handoversIn.Inc()
	log.Info().Uint64("applied_seq", st.AppliedSeq).Int("keys", st.Keys).Str("from_checkpoint", st.FromCheckpoint).
		Dur("took", time.Since(u.startedAt)).Msg("partition taken: caught up and serving its bids")
}

// releaseUnit hands u's partition over: its ingest stops with a final
// checkpoint kept in NATS, then it answers the partition's bids until the
// new owner serves them (or HandoverWait), then it stops. Under n.mu.
func (n *Node) releaseUnit(u *unit) {
	prev := u.state.Swap(unitReleasing)
	n.bg.Add(1)
	go func() {
		defer n.bg.Done()
		log := n.log.With().Uint32("partition", u.p).Logger()
		if prev == unitStarting {
			// Not serving yet: nothing to hand over but its lease, and
			// nothing to answer from (a partial replay).
			u.gone.Store(true)
			n.refreshServing(u.p)
			n.endUnit(u, log)
			return
		}
		<-u.done
		n.refreshServing(u.p)
		svc := u.svc.Load()
		t0 := time.Now()
		if err := svc.Release(context.Background()); err != nil {
			log.Warn().Err(err).Msg("partition released with errors (its new owner replays from its last checkpoint kept in NATS)")
		}
		deadline := time.Now().Add(n.opts.HandoverWait)
		for time.Now().Before(deadline) && !n.stopping.Load() {
			if n.mine(u.p) {
				// The partition came back to this member before anyone
				// took it: stop waiting, a new unit takes it up.
				break
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			ok, _ := svc.ServedElsewhere(ctx)
			cancel()
			if ok {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		u.gone.Store(true)
		n.refreshServing(u.p)
		n.stopUnit(svc, log)
		n.forget(u)
		n.stats.handoversOut.Inc()
		log.Info().Dur("took", time.Since(t0)).Msg("partition handed over")
	}()
}

// mine reports whether the last assignment makes this member partition
// p's primary.
func (n *Node) mine(p uint32) bool {
	v := n.view.Load()
	return v != nil && len(v.owners[p]) > 0 && v.owners[p][0] == n.opts.Member
}

// stopReplica stops a replica unit no longer wanted here. Under n.mu.
func (n *Node) stopReplica(u *unit) {
	u.gone.Store(true)
	u.state.Store(unitReleasing)
	n.bg.Add(1)
	go func() {
		defer n.bg.Done()
		n.refreshServing(u.p)
		n.endUnit(u, n.log.With().Uint32("partition", u.p).Bool("replica", true).Logger())
		n.stats.replicasOut.Inc()
	}()
}

// leaseLost reports whether the unit's service lost its name.
func (u *unit) leaseLost() bool {
	svc := u.svc.Load()
	return svc != nil && svc.UnitState().LeaseLost
}

// dropUnit stops a unit that lost its lease and forgets it. Under n.mu.
func (n *Node) dropUnit(u *unit) {
	u.gone.Store(true)
	u.state.Store(unitReleasing)
	n.stats.unitErrors.Inc()
	n.bg.Add(1)
	go func() {
		defer n.bg.Done()
		log := n.log.With().Uint32("partition", u.p).Bool("replica", u.replica).Logger()
		log.Error().Msg("the partition's unit lost its lease: replacing it")
		n.refreshServing(u.p)
		n.endUnit(u, log)
	}()
}

// endUnit ends u's start (or its wait for the catch-up), stops its
// service if it has one, and forgets it.
func (n *Node) endUnit(u *unit, log zerolog.Logger) {
	u.cancel()
	<-u.done
	if svc := u.svc.Load(); svc != nil {
		n.stopUnit(svc, log)
	}
	n.forget(u)
}

// stopUnit stops a unit's service.
func (n *Node) stopUnit(svc *bidder.Service, log zerolog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := svc.Stop(ctx); err != nil {
		log.Warn().Err(err).Msg("partition unit stopped with errors")
	}
}

// forget removes u from the units.
func (n *Node) forget(u *unit) {
	n.mu.Lock()
	defer n.mu.Unlock()
	k := unitKey{u.p, u.replica}
	if n.units[k] == u {
		delete(n.units, k)
	}
	n.refreshServingLocked(u.p)
}

// refreshServing picks the unit answering partition p here: the primary
// unit serving, else the replica unit serving, else a primary unit that
// released p and answers from its windows until the new primary serves;
// none: p's bids are forwarded.
func (n *Node) refreshServing(p uint32) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.refreshServingLocked(p)
}

func (n *Node) refreshServingLocked(p uint32) {
	var pick *unit
	pu, ru := n.units[unitKey{p, false}], n.units[unitKey{p, true}]
	usable := func(u *unit, state int32) bool {
		return u != nil && !u.gone.Load() && u.state.Load() == state && u.svc.Load() != nil
	}
	switch {
	case usable(pu, unitServing):
		pick = pu
	case usable(ru, unitServing):
		pick = ru
	case usable(pu, unitReleasing):
		pick = pu
	}
	cur := *n.serving.Load()
	if cur[p] == pick {
		return
	}
	next := slices.Clone(cur)
	next[p] = pick
	n.serving.Store(&next)
}

// servingUnit returns the service answering partition p here, or nil.
func (n *Node) servingUnit(p uint32) *bidder.Service {
	u := (*n.serving.Load())[p]
	if u == nil {
		return nil
	}
	return u.svc.Load()
}

// anyServing returns a service answering some partition here, or nil.
func (n *Node) anyServing() *bidder.Service {
	for _, u := range *n.serving.Load() {
		if u != nil {
			return u.svc.Load()
		}
	}
	return nil
}

// ingestConsumer is the durable consumer name of unit u (for operators:
// `nats consumer info <stream> <name>`).
func (u *unit) ingestConsumer() string {
	return ingest.ConsumerName(u.name)
}
