package bidder

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/bidpulse/bidpulse/bidder/ingest"
	"github.com/bidpulse/bidpulse/bidder/internal/jsensure"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// InstancesBucket is the KV bucket of the instances' records: one per
// instance name, holding its lease and how far its checkpoints reach. It has
// no TTL: a stopped instance's record stays, so the stream keeps what that
// instance needs to recover (for RetentionGrace).
const InstancesBucket = "bidpulse_instances"

// instanceRecord is what an instance says of itself in InstancesBucket.
type instanceRecord struct {
	Instance string `json:"instance"`
	Owner    string `json:"owner"` // one per process start
	Host     string `json:"host"`
	PID      int    `json:"pid"`
	// PIDNS names the process's pid namespace: containers of one host may
	// share its name and pid 1.
	PIDNS   string    `json:"pid_ns,omitempty"`
	Started time.Time `json:"started_at"`
	Stream  string    `json:"stream"`
	// CheckpointSeq is the stream sequence of the last local checkpoint;
	// RemoteSeq that of the last checkpoint kept in NATS (0: none), from
	// which this instance or a new one can recover (the local one when
	// checkpoints are not kept in NATS): the stream is not trimmed past it.
	CheckpointSeq uint64 `json:"checkpoint_seq"`
	RemoteSeq     uint64 `json:"remote_seq"`
	Stopped       bool   `json:"stopped"`
	// Serving says a partition unit answers its partition's bids (it
	// joined the partition's bid subject once caught up): the previous
	// owner may leave the subject.
	Serving bool `json:"serving,omitempty"`
}

// lease holds this instance's name in InstancesBucket: created or updated
// with compare-and-set on the record's revision, renewed by the
// housekeeping loop. A running instance whose record another process
// overwrote has lost its name (see Service.leaseLost).
type lease struct {
	kv  jetstream.KeyValue
	key string
	ttl time.Duration

	mu  sync.Mutex
	rec instanceRecord
	rev uint64
}

func newOwnerID() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// errNameInUse means another running instance holds the name.
var errNameInUse = errors.New("instance name in use")

// ErrNameInUse is what Start returns, wrapped, while another running
// process holds the instance's name (for a partition unit: while the
// partition's previous owner has not released it, or its lease has not
// expired).
var ErrNameInUse = errNameInUse

// acquireLease takes this instance's name, refusing (errNameInUse) while
// another process renews it, unless Options.Takeover.
func (s *Service) acquireLease(ctx context.Context, js jetstream.JetStream) (*lease, error) {
	cfg := jetstream.KeyValueConfig{
		Bucket:      InstancesBucket,
		Description: "bidpulse instances: leases on instance names and how far their checkpoints reach",
		History:     1,
		Storage:     jetstream.FileStorage,
		Replicas:    s.opts.Replicas,
	}
	var kv jetstream.KeyValue
	var err error
	if s.opts.Unit {
		// Bound, not updated: see control.Options.OpenExisting.
		kv, err = jsensure.Bind(ctx,
			func(ctx context.Context) (jetstream.KeyValue, error) { return js.KeyValue(ctx, InstancesBucket) },
			func(ctx context.Context) (jetstream.KeyValue, error) { return js.CreateKeyValue(ctx, cfg) },
			func(err error) bool { return errors.Is(err, jetstream.ErrBucketNotFound) })
	} else {
		kv, err = js.CreateOrUpdateKeyValue(ctx, cfg)
	}
	if err != nil {
		return nil, fmt.Errorf("cannot create or open KV bucket %s: %w", InstancesBucket, err)
	}
	host, _ := os.Hostname()
	l := &lease{kv: kv, key: ingest.ConsumerName(s.opts.Instance), ttl: s.opts.LeaseTTL}
	if s.opts.Replica {
		l.key = ReplicaLeaseKey(s.opts.Primary, s.opts.Instance)
	}
	l.rec = instanceRecord{Instance: s.opts.Instance, Owner: s.owner, Host: host, PID: os.Getpid(),
		PIDNS: pidNamespace(), Started: time.Now().UTC(), Stream: s.opts.Stream}
	e, err := kv.Get(ctx, l.key)
	for errors.Is(err, nats.ErrNoResponders) && ctx.Err() == nil {
		// A replicated bucket just created: its servers answer direct
		// gets once its stream is up on them.
		time.Sleep(50 * time.Millisecond)
		e, err = kv.Get(ctx, l.key)
	}
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		l.rev, err = kv.Create(ctx, l.key, l.encode())
		if err != nil {
			return nil, fmt.Errorf("cannot take instance name %q: %w", s.opts.Instance, err)
		}
		liveOwners.Store(s.owner, struct{}{})
		s.lastRenewed.Store(time.Now().UnixNano())
		return l, nil
	case err != nil:
		return nil, fmt.Errorf("cannot read the record of instance %q: %w", s.opts.Instance, err)
	}
	var old instanceRecord
	if json.Unmarshal(e.Value(), &old) == nil {
		// Keep how far the previous run's checkpoints reach until this
		// run writes its own.
		if !s.opts.Replica {
			// (A replica holds nothing until it loaded a checkpoint:
			// RemoteSeq 0 stops its primary's trims.)
			l.rec.CheckpointSeq, l.rec.RemoteSeq = old.CheckpointSeq, old.RemoteSeq
		}
		age := time.Since(e.Created())
		if !old.Stopped && age < l.ttl && old.Owner != s.owner && !deadOnThisHost(old, host) {
			if !s.opts.Takeover {
				return nil, fmt.Errorf("%w: instance %q is running on host %s (pid %d, started %s, renewed %s ago): stop it, give this one another --instance, or pass --takeover",
					errNameInUse, old.Instance, old.Host, old.PID, old.Started.Format(time.RFC3339), age.Round(time.Millisecond))
			}
			s.log.Warn().Str("host", old.Host).Int("pid", old.PID).Msg("taking over the instance name from a running instance (--takeover): it stops consuming")
		}
	}
	l.rev, err = kv.Update(ctx, l.key, l.encode(), e.Revision())
	if err != nil {
		return nil, fmt.Errorf("cannot take instance name %q (another instance took it at the same time?): %w", s.opts.Instance, err)
	}
	liveOwners.Store(s.owner, struct{}{})
	s.lastRenewed.Store(time.Now().UnixNano())
	return l, nil
}

func (l *lease) encode() []byte {
	b, err := json.Marshal(&l.rec)
	if err != nil {
		panic("BUG: cannot encode an instance record: " + err.Error())
	}
	return b
}

// update applies edit to the record and writes it if this process still
// holds the name; it returns errLeaseLost when another one took it.
func (l *lease) update(ctx context.Context, edit func(r *instanceRecord)) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if edit != nil {
		edit(&l.rec)
	}
	rev, err := l.kv.Update(ctx, l.key, l.encode(), l.rev)
	if err == nil {
		l.rev = rev
		return nil
	}
	if e, gerr := l.kv.Get(ctx, l.key); gerr == nil {
		var cur instanceRecord
		if json.Unmarshal(e.Value(), &cur) == nil && cur.Owner != l.rec.Owner {
			return fmt.Errorf("%w by host %s (pid %d) at %s", errLeaseLost, cur.Host, cur.PID, e.Created().UTC().Format(time.RFC3339))
		}
		if errors.Is(err, jetstream.ErrKeyExists) {
			// Our own earlier write whose answer was lost.
			l.rev = e.Revision()
		}
	} else if errors.Is(gerr, jetstream.ErrKeyNotFound) || errors.Is(gerr, jetstream.ErrKeyDeleted) {
		// Deleted from outside: take it again.
		if rev, cerr := l.kv.Create(ctx, l.key, l.encode()); cerr == nil {
			l.rev = rev
			return nil
		}
	}
	return fmt.Errorf("cannot renew the instance lease: %w", err)
}

var errLeaseLost = errors.New("instance name taken over")

// liveOwners holds the owner ids of the services running in this process.
var liveOwners sync.Map

// deadOnThisHost reports whether r was written by a process of this host
// that is gone (killed or crashed and restarted here): its lease need not
// be waited out. The same pid as this process is such a process too (a
// container restarted with pid 1 again).
func deadOnThisHost(r instanceRecord, host string) bool {
	if r.Host != host || r.PID <= 0 || r.PIDNS != pidNamespace() {
		return false
	}
	if r.PID == os.Getpid() {
		_, running := liveOwners.Load(r.Owner)
		return !running
	}
	return errors.Is(syscall.Kill(r.PID, 0), syscall.ESRCH)
}

// renewLease renews the lease; when another instance took the name, ingest
// stops and /readyz turns 503 with the reason.
func (s *Service) renewLease(ctx context.Context) {
	if s.lease == nil || s.leaseLost.Load() {
		return
	}
	last := s.lastRenewed.Load()
	if s.opts.Replica && last != 0 && time.Since(time.Unix(0, last)) > s.opts.LeaseTTL {
		// Its record expired meanwhile: its primary may have trimmed what
		// it had not applied yet. It stops; its member starts it again
		// from the primary's newest checkpoint.
		err := fmt.Errorf("%w: the replica's record was not renewed for %s (more than the lease)", errLeaseLost, time.Since(time.Unix(0, last)).Round(time.Millisecond))
		s.leaseLost.Store(true)
		s.leaseLostWhy.Store(err.Error())
		s.log.Error().Err(err).Msg("replica stops consuming")
		s.ingest.StopConsuming()
		return
	}
	err := s.lease.update(ctx, s.replicaHold())
	if err == nil {
		s.lastRenewed.Store(time.Now().UnixNano())
	}
	if errors.Is(err, errLeaseLost) {
		s.leaseLost.Store(true)
		s.leaseLostWhy.Store(err.Error())
		s.log.Error().Err(err).Msg("instance name taken over by another instance: this one stops consuming (restart it under another --instance)")
		s.ingest.StopConsuming()
		return
	}
	if err != nil {
		s.throttledLog.Warn("lease", "cannot renew the instance lease", err)
	}
}

// stillOwner reports whether this instance still holds its name (asked by
// ingest before it re-creates the consumer: never fight the instance that
// took the name over).
func (s *Service) stillOwner(ctx context.Context) bool {
	s.renewLease(ctx)
	return !s.leaseLost.Load()
}

// retentionFloor returns the oldest checkpoint kept in NATS among the
// instances that share the stream and are running or stopped for less than
// RetentionGrace: the stream must keep every message after it. ok is false
// when one of them has no such checkpoint yet (nothing may be trimmed).
func (s *Service) retentionFloor(ctx context.Context) (floor uint64, ok bool, err error) {
	lister, err := s.lease.kv.ListKeys(ctx)
	if err != nil {
		return 0, false, err
	}
	floor, ok = ^uint64(0), true
	for key := range lister.Keys() {
		e, err := s.lease.kv.Get(ctx, key)
		if err != nil {
			continue
		}
		var r instanceRecord
		if json.Unmarshal(e.Value(), &r) != nil || r.Stream != s.opts.Stream {
			continue
		}
		if r.Owner != s.owner && time.Since(e.Created()) > s.opts.RetentionGrace {
			continue
		}
		if r.RemoteSeq == 0 {
			ok = false
		}
		floor = min(floor, r.RemoteSeq)
	}
	return floor, ok && floor != ^uint64(0), nil
}

// releaseLease marks the record stopped, so the name is free at once.
func (s *Service) releaseLease(ctx context.Context) {
	if s.killed {
		return
	}
	liveOwners.Delete(s.owner)
	if s.lease == nil || s.leaseLost.Load() || s.opts.noFinalCheckpoint {
		return
	}
	if err := s.lease.update(ctx, func(r *instanceRecord) { r.Stopped = true }); err != nil {
		s.log.Warn().Err(err).Msg("cannot release the instance lease (the name frees itself after the lease TTL)")
	}
}

// pidNamespace names this process's pid namespace ("" where there is none to
// read).
func pidNamespace() string {
	ns, _ := os.Readlink("/proc/self/ns/pid")
	return ns
}
