// Package node runs one member of a bidpulse cluster: an instance that owns
// a share of the campaign partitions, each as a partition unit (a
// bidder.Service with Options.Unit: its own consumer filtered on the
// partition, its own windows, controllers, dedup set, lease and checkpoints,
// as a Kafka Streams task owns its partition's state store), and answers
// bids for every partition: its own in process, the others forwarded over
// NATS to their owners.
//
// Membership and assignment come from bidder/cluster: members renew a lease
// in a KV bucket, and every member computes the same rendezvous assignment
// of partitions from the member list. When the assignment moves partition p
// from member A to member B:
//
//  1. A releases its unit of p (bidder.Service.Release): the consumer stops,
//     a final checkpoint is written and kept in NATS, the unit's lease is
//     marked stopped. A's unit goes on answering p's bids from its windows
//     as they were.
//  2. B starts its unit of p under the same name: it takes the lease (it
//     retries while A holds it, or until a crashed A's lease expires), loads
//     the newest checkpoint of p kept in NATS (A's final one), replays p's
//     messages after it, and once caught up joins p's bid subject
//     (bidder.UnitBidSubject) and marks its lease serving.
//  3. A sees B serving, leaves the bid subject and stops its unit.
//
// A campaign's keys and controller state live in one unit, so the state of
// p moves whole, through its checkpoint, and exactly once: the checkpoint
// holds the stream sequence it reflects, and the replay starts after it.
//
// With Options.Replicas R > 1 each partition has R owners: the first in the
// assignment is its primary (the unit above), the others run a replica unit
// (bidder.Options.Replica) that consumes the partition too, answers its
// bids from the controller states the primary publishes, and goes on
// answering while a dead primary's partition moves: a member that becomes
// the primary of a partition it replicates keeps its replica unit serving
// until its new primary unit serves (units.go).
package node

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"

	"github.com/bidpulse/bidpulse/bidder"
	"github.com/bidpulse/bidpulse/bidder/cluster"
	"github.com/bidpulse/bidpulse/bidder/control"
)

// DefaultBucket is the KV bucket of the members' leases.
const DefaultBucket = "bidpulse_members"

// DefaultForwardTimeout bounds a bid forwarded to another member: past it,
// the bid is answered the neutral multiplier.
const DefaultForwardTimeout = 5 * time.Millisecond

// Options configure a Node.
type Options struct {
	// Unit is the template of the partition units' options: NATS (NATSURL
	// is required: the members share a NATS server or cluster), Subject,
	// Stream, Partitions (required, > 0), Config, Clock, Logger, tokens,
	// limits. Each unit gets Unit, Partition, its Instance (UnitName), its
	// DataDir (under DataDir/partitions) and a share of DedupSize.
	Unit bidder.Options
	// Member names this member in the cluster (default: Unit.Instance, or
	// the host name).
	Member string
	// HTTPAddr is the member's API address (default ":8080").
	HTTPAddr string
	// Bucket is the membership KV bucket (default DefaultBucket).
	Bucket string
	// LeaseTTL is the membership lease (default Unit.LeaseTTL, else 15s):
	// a member that stops renewing is gone after it, and its partitions
	// move.
	LeaseTTL time.Duration
	// ForwardTimeout bounds a forwarded bid (default 5ms); a request's
	// own deadline header is not read.
	ForwardTimeout time.Duration
	// InitialSettle is how long a starting member waits for the member
	// list to settle before it takes partitions (default 1s; negative:
	// not at all): members started together then take their own share at
	// once, instead of the first one taking everything and handing most of
	// it over a moment later. Kafka's group.initial.rebalance.delay.ms, 3s
	// by default, does the same.
	InitialSettle time.Duration
	// HandoverWait bounds how long a member that gave a partition up keeps
	// answering it while the new owner catches up (default 2m).
	HandoverWait time.Duration
	// Replicas is R, the members that own each partition (default 1): the
	// first in the assignment is its primary, which runs its controllers
	// and writes its checkpoints; the others are replicas, which consume it
	// too, answer its bids from the controller states the primary
	// publishes, and take over at once when the primary goes (see
	// bidder.Options.Replica).
	Replicas int
}

// Node is one running cluster member. Build it with New, then Start and
// Stop it once each.
type Node struct {
	opts Options
	log  zerolog.Logger
	// parts is the number of partitions, Unit.Partitions.
	parts uint32

	nc  *nats.Conn
	js  jetstream.JetStream
	kv  jetstream.KeyValue
	mem *cluster.Membership

	metrics *metrics.Set
	stats   nodeStats
	// auth checks the read token of the member's own read routes.
	auth *bidder.Service
	// cfg is the config the units start with, replaced by Reload;
	// reloadMu serialises the reloads (Reload, and a unit's own in runUnit).
	cfg      atomic.Pointer[bidder.Config]
	reloadMu sync.Mutex

	// mu guards units and the unit lifecycles' bookkeeping.
	mu    sync.Mutex
	units map[unitKey]*unit
	// serving is read on the bid path without a lock: index p holds the
	// unit of p that answers here (nil: forward).
	serving atomic.Pointer[[]*unit]
	// view is the last assignment computed.
	view atomic.Pointer[assignment]
	// starts bounds the units starting at once: each start is a handful
	// of JetStream API calls, and a restart of a member owning 64
	// partitions must not queue hundreds at once.
	starts chan struct{}
	// warm is set once a unit has started here: the shared streams and
	// buckets exist. Until then units start one at a time (warmMu), so
	// that they are created once, not raced for.
	warm   atomic.Bool
	warmMu sync.Mutex

	httpSrv  *fasthttp.Server
	httpLn   net.Listener
	httpDone chan error

	ready    atomic.Bool
	stopping atomic.Bool
	stopOnce sync.Once
	bgStop   chan struct{}
	bg       sync.WaitGroup
}

// assignment is one computation of the partitions' owners.
type assignment struct {
	members []cluster.Member
	owners  [][]string // per partition, primary first
	at      time.Time
}

// New validates opts and builds a Node; nothing is started.
func New(opts Options) (*Node, error) {
	if opts.Unit.NATSURL == "" {
		return nil, errors.New("cluster mode needs --nats-url: the members share a NATS server or cluster (the embedded one serves one process)")
	}
	if opts.Unit.Partitions == 0 {
		return nil, errors.New("cluster mode needs --partitions P (P > 0): the members share the partitions of the stream")
	}
	if opts.Unit.RemoteCheckpointInterval < 0 {
		return nil, errors.New("cluster mode needs checkpoints kept in NATS (--remote-checkpoint-interval > 0): a partition moves to its new owner through them")
	}
	if opts.Unit.Clock == nil {
		return nil, errors.New("node: Unit.Clock is required")
	}
	if opts.Member == "" {
		opts.Member = opts.Unit.Instance
	}
	if opts.Member == "" {
		return nil, errors.New("cluster mode needs --instance: the member's name, stable across restarts (a StatefulSet pod name)")
	}
	if opts.HTTPAddr == "" {
		opts.HTTPAddr = ":8080"
	}
	if opts.Bucket == "" {
		opts.Bucket = DefaultBucket
	}
	if opts.LeaseTTL == 0 {
		opts.LeaseTTL = opts.Unit.LeaseTTL
	}
	if opts.LeaseTTL == 0 {
		opts.LeaseTTL = 15 * time.Second
	}
	if opts.LeaseTTL < cluster.MinTTL {
		return nil, fmt.Errorf("lease TTL %s is below %s", opts.LeaseTTL, cluster.MinTTL)
	}
	opts.Unit.LeaseTTL = opts.LeaseTTL
	if opts.ForwardTimeout == 0 {
		opts.ForwardTimeout = DefaultForwardTimeout
	}
	if opts.ForwardTimeout < 0 {
		return nil, fmt.Errorf("invalid forward timeout %s", opts.ForwardTimeout)
	}
	if opts.InitialSettle == 0 {
		opts.InitialSettle = time.Second
	}
	if opts.HandoverWait == 0 {
		opts.HandoverWait = 2 * time.Minute
	}
	if opts.Replicas == 0 {
		opts.Replicas = 1
	}
	if opts.Replicas < 0 {
		return nil, fmt.Errorf("invalid replicas %d: the members that own each partition, at least 1", opts.Replicas)
	}
	if opts.Unit.DataDir == "" {
		opts.Unit.DataDir = "./data"
	}
	if opts.Unit.Stream == "" {
		opts.Unit.Stream = "BIDPULSE_EVENTS"
	}
	if opts.Unit.Subject == "" {
		opts.Unit.Subject = "bidpulse.events.>"
	}
	n := &Node{
		opts:    opts,
		log:     opts.Unit.Logger.With().Str("member", opts.Member).Logger(),
		parts:   opts.Unit.Partitions,
		units:   map[unitKey]*unit{},
		metrics: metrics.NewSet(),
		bgStop:  make(chan struct{}),
		starts:  make(chan struct{}, 4),
	}
	empty := make([]*unit, n.parts)
	n.serving.Store(&empty)
	n.stats.init(n)
	// Checked now, not at a partition's start: a unit's options are the
	// template's with its own name, directory and dedup share.
	auth, err := bidder.New(n.unitOptions(0, false))
	if err != nil {
		return nil, err
	}
	// Never started: it checks the read token of the member's own routes.
	n.auth = auth
	return n, nil
}

// Start connects to NATS, joins the membership and starts the HTTP API; the
// units start as the assignment gives this member their partitions.
func (n *Node) Start() (err error) {
	defer func() {
		if err != nil {
			n.Stop(context.Background())
		}
	}()
	o := &n.opts
	if o.Unit.ControlKey == "" {
		// The units of this member sign with one key; members that share
		// one (--control-key) audit each other's changes as their own.
		if err := os.MkdirAll(o.Unit.DataDir, 0o700); err != nil {
			return fmt.Errorf("cannot create data dir: %w", err)
		}
		k, err := control.LoadOrCreateKey(filepath.Join(o.Unit.DataDir, "control.key"))
		if err != nil {
			return err
		}
		o.Unit.ControlKey = string(k)
	}
	connOpts, err := o.Unit.NATSClient.Options()
	if err != nil {
		return err
	}
	connOpts = append(connOpts, nats.Name("bidpulse member "+o.Member), nats.MaxReconnects(-1), nats.ReconnectWait(500*time.Millisecond))
	if n.nc, err = nats.Connect(o.Unit.NATSURL, connOpts...); err != nil {
		return fmt.Errorf("cannot connect to NATS at %s: %w", o.Unit.NATSURL, err)
	}
	if n.js, err = jetstream.New(n.nc); err != nil {
		return err
	}
	n.httpLn, err = net.Listen("tcp", o.HTTPAddr)
	if err != nil {
		return fmt.Errorf("cannot listen on http-addr %s: %w", o.HTTPAddr, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	replicas := max(o.Unit.Replicas, 1)
	if n.kv, err = cluster.Bucket(ctx, n.js, o.Bucket, o.LeaseTTL, replicas); err != nil {
		return err
	}
	if n.mem, err = cluster.Join(ctx, n.kv, cluster.Member{Instance: o.Member, Addr: n.httpLn.Addr().String()}); err != nil {
		return err
	}
	// The single instance's limits: header and body sizes, timeouts, JSON
	// refusals, connection caps.
	n.httpSrv = n.auth.FrontServer(n.serveHTTP)
	n.httpDone = make(chan error, 1)
	ln := n.auth.LimitConns(n.httpLn, n.metrics)
	go func() { n.httpDone <- n.httpSrv.Serve(ln) }()
	n.log.Info().Str("addr", n.httpLn.Addr().String()).Uint32("partitions", n.parts).Str("bucket", o.Bucket).
		Dur("lease", o.LeaseTTL).Msg("cluster member started")
	n.bg.Add(1)
	go n.reconcileLoop()
	n.ready.Store(true)
	return nil
}

// HTTPAddr returns the address the member's API listens on.
func (n *Node) HTTPAddr() string {
	if n.httpLn == nil {
		return ""
	}
	return n.httpLn.Addr().String()
}

// reconcileLoop moves the units toward the assignment on every change of
// the member list, and every 250ms (a unit waiting for a lease, or for its
// catch-up, moves on).
func (n *Node) reconcileLoop() {
	defer n.bg.Done()
	if n.opts.InitialSettle > 0 {
		select {
		case <-n.bgStop:
			return
		case <-time.After(n.opts.InitialSettle):
		}
	}
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		n.reconcile()
		select {
		case <-n.bgStop:
			return
		case <-n.mem.Changes():
		case <-t.C:
		}
	}
}

// reconcile computes the assignment and starts or releases units.
func (n *Node) reconcile() {
	members := n.mem.Members()
	names := make([]string, len(members))
	for i, m := range members {
		names[i] = m.Instance
	}
	if !slices.Contains(names, n.opts.Member) {
		// Our own lease is being renewed (or taken again): until we see
		// ourselves, own nothing new, but give nothing up either.
		return
	}
	owners := cluster.Assign(n.parts, names, n.opts.Replicas)
	n.view.Store(&assignment{members: members, owners: owners, at: time.Now()})
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.stopping.Load() {
		return
	}
	for p := range n.parts {
		primary := len(owners[p]) > 0 && owners[p][0] == n.opts.Member
		replica := !primary && slices.Contains(owners[p], n.opts.Member)
		pu, ru := n.units[unitKey{p, false}], n.units[unitKey{p, true}]
		switch {
		case primary && pu == nil:
			n.startUnit(p, false)
		case !primary && pu != nil && pu.state.Load() != unitReleasing:
			n.releaseUnit(pu)
		case pu != nil && pu.state.Load() == unitServing && pu.leaseLost():
			// Another process took the unit's name (this member was
			// away from NATS longer than the lease): the unit stopped
			// consuming for good. Drop it; a new one starts on the next
			// pass if the partition is still ours (waiting for the lease).
			n.dropUnit(pu)
		}
		// A replica that becomes the primary here answers until the
		// primary unit serves (it waits for the old primary's lease).
		promoting := primary && (pu == nil || pu.state.Load() != unitServing)
		switch {
		case replica && ru == nil:
			n.startUnit(p, true)
		case ru != nil && !ru.gone.Load() && !replica && !promoting:
			n.stopReplica(ru)
		case ru != nil && !ru.gone.Load() && ru.leaseLost():
			// Its record expired (away from NATS longer than the lease):
			// it restarts from the primary's newest checkpoint.
			n.dropUnit(ru)
		}
	}
}

// Reload applies cfg's policies to every unit of this member and to the
// units it starts later (SIGHUP), as bidder.Service.Reload does for a
// single instance: a config that changes the rollups or the resolutions,
// or does not build, is refused and the running one stays.
func (n *Node) Reload(cfg bidder.Config) error {
	n.reloadMu.Lock()
	defer n.reloadMu.Unlock()
	o := n.unitOptions(0, false)
	o.Config = cfg
	if _, err := bidder.New(o); err != nil {
		return err
	}
	// Only the policies change: the units started later keep the rollups
	// and resolutions of the running ones (and of their checkpoints).
	next := n.unitOptions(0, false).Config
	if next.Rollups == nil {
		next = bidder.DefaultConfig() // what the units run without one
	}
	next.Policies = cfg.Policies
	// The units share one config: the first refusal refuses it for all.
	svcs := n.unitServices()
	if len(svcs) > 0 {
		if err := svcs[0].Reload(cfg); err != nil {
			return err
		}
	} else if len(cfg.Rollups) > 0 && !slices.Equal(cfg.Rollups, next.Rollups) || len(cfg.Resolutions) > 0 && !slices.Equal(cfg.Resolutions, next.Resolutions) {
		return errors.New("rollups or resolutions changed: they need a restart")
	}
	// Stored first, then the units listed again: a unit built from the
	// old config that is not listed yet reloads itself (runUnit).
	n.cfg.Store(&next)
	var errs []error
	for _, svc := range n.unitServices() {
		if len(svcs) > 0 && svc == svcs[0] {
			continue
		}
		if err := svc.Reload(cfg); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// unitServices returns the services of this member's units started so far.
func (n *Node) unitServices() []*bidder.Service {
	n.mu.Lock()
	defer n.mu.Unlock()
	var svcs []*bidder.Service
	for _, u := range n.units {
		if svc := u.svc.Load(); svc != nil {
			svcs = append(svcs, svc)
		}
	}
	return svcs
}

// isReady reports whether the member is started, in its own member list,
// and serves every partition the assignment gives it.
func (n *Node) isReady() (bool, string) {
	if !n.ready.Load() || n.stopping.Load() {
		return false, "not started or stopping"
	}
	v := n.view.Load()
	if v == nil {
		return false, "no assignment yet"
	}
	serving := *n.serving.Load()
	var waiting []int
	for p, owners := range v.owners {
		i := slices.Index(owners, n.opts.Member)
		if i < 0 {
			continue
		}
		// A unit still answering a partition it gave up, a replica
		// answering for the primary unit catching up, or one that lost
		// its lease, is not this member serving it as the assignment says.
		if u := serving[p]; u == nil || u.state.Load() != unitServing || u.leaseLost() || u.replica != (i > 0) {
			waiting = append(waiting, p)
		}
	}
	if len(waiting) > 0 {
		return false, fmt.Sprintf("%d owned partitions not caught up yet: %v", len(waiting), waiting)
	}
	return true, ""
}

// Stop leaves the cluster: the membership lease is deleted (the others take
// this member's partitions at once), every unit stops with a final
// checkpoint kept in NATS and releases its lease, the HTTP API stops.
func (n *Node) Stop(ctx context.Context) error {
	var errs []error
	n.stopOnce.Do(func() {
		n.stopping.Store(true)
		n.ready.Store(false)
		if n.mem != nil {
			lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			if err := n.mem.Leave(lctx); err != nil {
				errs = append(errs, err)
			}
			cancel()
		}
		close(n.bgStop)
		n.mu.Lock()
		units := make([]*unit, 0, len(n.units))
		for _, u := range n.units {
			units = append(units, u)
		}
		n.mu.Unlock()
		var wg sync.WaitGroup
		var errMu sync.Mutex
		for _, u := range units {
			u.cancel()
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-u.done
				if svc := u.svc.Load(); svc != nil {
					if err := svc.Stop(ctx); err != nil {
						errMu.Lock()
						errs = append(errs, fmt.Errorf("partition %d: %w", u.p, err))
						errMu.Unlock()
					}
				}
			}()
		}
		wg.Wait()
		n.bg.Wait()
		if n.httpSrv != nil {
			if err := n.httpSrv.ShutdownWithContext(ctx); err != nil {
				errs = append(errs, err)
			}
			_ = n.httpLn.Close()
			<-n.httpDone
		} else if n.httpLn != nil {
			n.httpLn.Close()
		}
		if n.nc != nil {
			n.nc.Close()
		}
	})
	return errors.Join(errs...)
}

// Kill stops the member as a crash would (tests): no lease is released, no
// final checkpoint is written; the others take its partitions once its
// leases expire.
func (n *Node) Kill() {
	n.stopOnce.Do(func() {
		n.stopping.Store(true)
		close(n.bgStop)
		n.mu.Lock()
		units := make([]*unit, 0, len(n.units))
		for _, u := range n.units {
			units = append(units, u)
		}
		n.mu.Unlock()
		for _, u := range units {
			u.cancel()
			<-u.done
			if svc := u.svc.Load(); svc != nil {
				svc.Kill()
			}
		}
		// A closed connection ends the membership without deleting the
		// member's record: it expires after the lease, as a crash's.
		n.nc.Close()
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_ = n.mem.Leave(ctx)
		cancel()
		n.bg.Wait()
		n.httpLn.Close()
	})
}
