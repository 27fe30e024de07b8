package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// ErrNameTaken ends a Membership whose key another incarnation of the same instance name wrote:
// a restarted instance replaces its predecessor's record (Join writes unconditionally), so two
// live processes with one name leave the older one without a lease. It stops renewing, rather
// than fight over the key and make the name flap in every member's view.
var ErrNameTaken = errors.New("instance name taken by another incarnation")

// DefaultResync is how often a Membership rebuilds its view from a fresh watch. A watch misses
// a limit marker when it is not subscribed while the marker lives (at most the lease TTL, see
// BucketConfig): a reconnection or a reset of its consumer at that moment would leave an
// expired member in the view. A fresh watch starts from each key's current state, so the
// resynchronisation bounds how long such a ghost can last. It costs one consumer and one message
// per key.
const DefaultResync = time.Minute

// Membership is this instance's lease in the membership bucket and its view of all members.
//
// Two goroutines run from Join until Leave: one renews the lease every TTL/3 (a failed renewal
// is retried after TTL/10), one follows the bucket with a KV watch and keeps the view, which
// Members reads without asking NATS. Methods are safe for concurrent use.
type Membership struct {
	kv       jetstream.KeyValue
	self     Member
	rec      []byte // self, encoded; compared with what the watch sees under self's key
	ttl      time.Duration
	renewGap time.Duration
	retryGap time.Duration
	resync   time.Duration

	// rev is the revision of self's key last written by this Membership. Only the renew
	// goroutine uses it, then Leave once that goroutine has ended.
	rev uint64

	mu   sync.Mutex
	view map[string]viewEntry // guarded by mu
	err  error                // why the Membership ended early; guarded by mu

	changes  chan struct{} // capacity 1: a pending signal stands for any number of changes
	renewNow chan struct{} // capacity 1: the watch saw self's key change under it
	leaving  atomic.Bool
	failOnce sync.Once
	failed   chan struct{} // closed when a goroutine ends the Membership on an error
	done     chan struct{} // closed when both goroutines have ended
	stopRen  chan struct{}
	stopW    chan struct{}
	renDone  chan struct{}
	wDone    chan struct{}
	leave    sync.Once

	stats stats
}

// viewEntry is one member as the watch last saw it; raw is its record's bytes, to tell a
// renewal (same bytes) from a changed record without comparing decoded times.
type viewEntry struct {
	m   Member
	raw string
}

// Join registers self in kv, a bucket made by Bucket, and starts renewing its lease and
// watching the other members. It returns once the view holds every member registered at that
// moment (self included).
//
// Join writes self's key unconditionally: an instance restarted under the same name replaces
// the record its predecessor left, which would otherwise last until it expired. self.Started
// defaults to now; self.Version is set to RecordVersion. ctx bounds Join only.
func Join(ctx context.Context, kv jetstream.KeyValue, self Member) (*Membership, error) {
	return joinWith(ctx, kv, self, DefaultResync)
}

func joinWith(ctx context.Context, kv jetstream.KeyValue, self Member, resync time.Duration) (*Membership, error) {
	if err := checkInstance(self.Instance); err != nil {
		return nil, fmt.Errorf("cannot join: %w", err)
	}
	ttl, err := leaseOf(ctx, kv)
	if err != nil {
		return nil, fmt.Errorf("cannot join as %q: %w", self.Instance, err)
	}
	if self.Started.IsZero() {
		self.Started = time.Now()
	}
	self.Started = self.Started.UTC()
	self.Version = RecordVersion
	rec, err := json.Marshal(self)
	if err != nil {
		return nil, fmt.Errorf("BUG: cannot encode member record: %w", err)
	}
	m := &Membership{
		kv:       kv,
		self:     self,
		rec:      rec,
		ttl:      ttl,
		renewGap: ttl / 3,
		retryGap: ttl / 10,
		resync:   resync,
		changes:  make(chan struct{}, 1),
		renewNow: make(chan struct{}, 1),
		failed:   make(chan struct{}),
		done:     make(chan struct{}),
		stopRen:  make(chan struct{}),
		stopW:    make(chan struct{}),
		renDone:  make(chan struct{}),
		wDone:    make(chan struct{}),
	}
	if m.rev, err = kv.Put(ctx, self.Instance, rec); err != nil {
		return nil, fmt.Errorf("cannot join as %q: cannot write member record: %w", self.Instance, err)
	}
	w, view, err := m.watch(ctx)
	if err != nil {
		// Best effort: the record would otherwise stand for a member that never ran, until
		// it expired. ctx may be what ran out.
		dctx, cancel := context.WithTimeout(context.Background(), ttl)
		_ = kv.Delete(dctx, self.Instance, jetstream.LastRevision(m.rev))
		cancel()
		return nil, fmt.Errorf("cannot join as %q: %w", self.Instance, err)
	}
	m.view = view
	go m.renewLoop()
	go m.watchLoop(w)
	go func() {
		<-m.renDone
		<-m.wDone
		close(m.done)
	}()
	return m, nil
}

// Self is this instance's record as written.
func (m *Membership) Self() Member { return m.self }

// TTL is the lease TTL, read from the bucket at Join.
func (m *Membership) TTL() time.Duration { return m.ttl }

// Members is the current view, sorted by instance name: the members whose records the watch
// has seen and whose removal (Leave, expiry) it has not. It reads no NATS.
func (m *Membership) Members() []Member {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]Member, 0, len(m.view))
	for _, e := range m.view {
		out = append(out, e.m)
	}
	slices.SortFunc(out, func(a, b Member) int {
		switch {
		case a.Instance < b.Instance:
			return -1
		case a.Instance > b.Instance:
			return 1
		}
		return 0
	})
	return out
}

// Names is the instance names of Members, sorted: Assign's input.
func (m *Membership) Names() []string {
	ms := m.Members()
	out := make([]string, len(ms))
	for i := range ms {
		out[i] = ms[i].Instance
	}
	return out
}

// Changes receives a signal after the view changed: a member joined, left, expired or wrote
// another record. Signals coalesce (one pending signal stands for any number of changes), so a
// receiver reads Members after each; it never blocks the watch.
func (m *Membership) Changes() <-chan struct{} { return m.changes }

// Done is closed when the Membership has ended: after Leave, or on its own when it cannot go on
// (the NATS connection closed, or ErrNameTaken); Err says which.
func (m *Membership) Done() <-chan struct{} { return m.done }

// Err is why the Membership ended on its own, nil while it runs or after a Leave.
func (m *Membership) Err() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.err
}

// Leave stops renewing, deletes self's key at once (others see the member go now, not a TTL
// later), and stops the watch. It deletes only the revision it last wrote: a record that another
// incarnation wrote since is not its to delete. Leave after the Membership ended on its own
// stops what is left and tries the delete all the same. It returns the delete's error, if any;
// calls after the first return nil.
func (m *Membership) Leave(ctx context.Context) error {
	var err error
	m.leave.Do(func() {
		m.leaving.Store(true)
		close(m.stopRen)
		<-m.renDone
		err = m.deleteOwn(ctx)
		if err != nil {
			err = fmt.Errorf("cannot delete member record %q: %w", m.self.Instance, err)
		}
		close(m.stopW)
		<-m.done
	})
	return err
}

// deleteOwn deletes self's key if it holds this Membership's record. The revision last written
// is the usual case; a renewal whose reply was lost leaves the record at a later one, found by
// reading the key. A key that expired (a limit marker sits there) or that another incarnation
// wrote has nothing of ours to delete.
func (m *Membership) deleteOwn(ctx context.Context) error {
	err := m.kv.Delete(ctx, m.self.Instance, jetstream.LastRevision(m.rev))
	if !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return err
	}
	e, err := m.kv.Get(ctx, m.self.Instance)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		return nil
	case err != nil:
		return err
	case !bytes.Equal(e.Value(), m.rec):
		return nil
	}
	return m.kv.Delete(ctx, m.self.Instance, jetstream.LastRevision(e.Revision()))
}

// fail ends the Membership on err: both goroutines stop, Done closes, Err returns err.
func (m *Membership) fail(err error) {
	m.failOnce.Do(func() {
		m.mu.Lock()
		m.err = err
		m.mu.Unlock()
		close(m.failed)
	})
}

// renewLoop rewrites self's record every renewGap, at once when the watch saw the key change,
// and after retryGap when a renewal failed.
func (m *Membership) renewLoop() {
	defer close(m.renDone)
	t := time.NewTimer(m.renewGap)
	defer t.Stop()
	for {
		select {
		case <-m.stopRen:
			return
		case <-m.failed:
			return
		case <-t.C:
		case <-m.renewNow:
		}
		err := m.renew()
		switch {
		case err == nil:
			m.stats.renewals.Add(1)
			t.Reset(m.renewGap)
		case errors.Is(err, ErrNameTaken), errors.Is(err, nats.ErrConnectionClosed):
			m.stats.renewFailures.Add(1)
			m.fail(err)
			return
		default:
			m.stats.renewFailures.Add(1)
			m.stats.setLastError(err)
			t.Reset(m.retryGap)
		}
	}
}

// renew writes self's record over the revision it last wrote. When the key moved on without it,
// it finds out why: the lease expired or someone deleted the key (register again), its own
// earlier write landed though its reply was lost (carry on from there), or another incarnation
// wrote it (ErrNameTaken).
func (m *Membership) renew() error {
	// A renewal that takes longer than the gap to the next one is as good as lost.
	ctx, cancel := context.WithTimeout(context.Background(), m.renewGap)
	defer cancel()
	rev, err := m.kv.Update(ctx, m.self.Instance, m.rec, m.rev)
	if err == nil {
		m.rev = rev
		return nil
	}
	if !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return fmt.Errorf("cannot renew lease of %q: %w", m.self.Instance, err)
	}
	e, err := m.kv.Get(ctx, m.self.Instance)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		if rev, err = m.kv.Create(ctx, m.self.Instance, m.rec); err != nil {
			return fmt.Errorf("cannot register %q again after its lease ended: %w", m.self.Instance, err)
		}
		m.rev = rev
		m.stats.reregistered.Add(1)
		return nil
	case err != nil:
		return fmt.Errorf("cannot read lease of %q: %w", m.self.Instance, err)
	case bytes.Equal(e.Value(), m.rec):
		m.rev = e.Revision()
		return nil
	}
	other, derr := decodeMember(m.self.Instance, e.Value())
	if derr != nil {
		return fmt.Errorf("%w: key %q holds a record this instance did not write: %w", ErrNameTaken, m.self.Instance, derr)
	}
	return fmt.Errorf("%w: %q started %s, this one %s", ErrNameTaken, m.self.Instance,
		other.Started.Format(time.RFC3339Nano), m.self.Started.Format(time.RFC3339Nano))
}
