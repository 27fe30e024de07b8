// Package control is bidpulse's control plane: the operator decisions that
// move money (overrides, the kill switch, campaign policies set through the
// admin API), the NATS KV bucket that keeps and shares them, and the audit log
// of every change.
//
// Every record is checked where it is read, with the rules of the admin API:
// a record written to the KV bucket by anything else than bidpulse's admin API
// (`nats kv put`, a forged client) gets the same range checks, hard_max
// included, and a bad one is ignored, logged and counted in
// bidpulse_control_rejected_records_total. Records written by bidpulse carry
// an HMAC-SHA256 of their content under the control key (Options.Key): their
// set_by is the admin token's name that made the change. A record without a
// valid signature is applied when it passes the checks, but its author is
// "nats-kv" (whoever holds credentials that may write the bucket), whatever
// set_by it claims, and the change is audited under that name.
//
// The bid path reads the tables without a lock: Killed, Policies and
// Override are atomic loads and a copy-on-write map look-up.
package control

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/bidpulse/bidpulse/bidder/internal/cowmap"
	"github.com/bidpulse/bidpulse/bidder/internal/jsensure"
	"github.com/bidpulse/bidpulse/bidder/logthrottle"
	"github.com/bidpulse/bidpulse/models"
	"github.com/bidpulse/bidpulse/windows"
)

// The KV bucket, the audit stream and the key names in the bucket.
const (
	Bucket       = "bidpulse_control"
	AuditSubject = "bidpulse.audit"
	AuditStream  = "BIDPULSE_AUDIT"
	// KillKey is the kill switch's key in the bucket.
	KillKey     = "killswitch"
	overridePre = "override."
	policyPre   = "policy."
	// keyFile is the control key's file in the data dir when Options.Key
	// is not given.
	keyFile = "control.key"
)

// Options configure a Control.
type Options struct {
	// Rollups are the configured levels: an override names one of them.
	Rollups *windows.Rollups
	// Policies are the config file's policies (validated).
	Policies *models.Policies
	// DataDir holds audit.log and, without Key, control.key.
	DataDir string
	// Key signs the records this instance writes to the KV bucket and
	// checks the ones it reads. Instances that share a bucket should share
	// it; without it, a key is generated once in DataDir/control.key.
	Key []byte
	// Now is the clock, in Unix milliseconds.
	Now func() int64
	// Log receives the audit lines and the rejected records (throttled).
	Log zerolog.Logger
	// Metrics receives the control plane's series.
	Metrics *metrics.Set
	// Replicas is the replica count of the KV bucket and the audit stream
	// (0: 1).
	Replicas int
	// OpenExisting binds to the bucket and the audit stream when they
	// exist, without the update that Start makes otherwise (the many
	// partition units of a cluster member start at once; one update of a
	// replicated stream each is a queue at the meta leader).
	OpenExisting bool
}

// Control holds the control plane's tables. Its methods are safe for
// concurrent use.
type Control struct {
	rollups *windows.Rollups
	now     func() int64
	log     zerolog.Logger
	warn    *logthrottle.Log
	dataDir string
	key     []byte
	timeout time.Duration // of one KV write (kvTimeout; shorter in tests)
	// replicas is Options.Replicas.
	replicas     int
	openExisting bool

	js      jetstream.JetStream // nil: memory only
	kv      jetstream.KeyValue  // nil: memory only
	watcher jetstream.KeyWatcher
	done    chan struct{}

	overrides *overrides

	kill     atomic.Bool
	killInfo atomic.Pointer[KillRecord]

	polMu        sync.Mutex // serialises writers of the policy tables
	filePolicies atomic.Pointer[models.Policies]
	policies     atomic.Pointer[models.Policies]
	adminPol     map[string]*PolicyRecord // guarded by polMu
	// parsed holds adminPol's policies parsed under the file's hard_max
	// (a policy no longer valid under it is absent); guarded by polMu.
	parsed map[string]*models.CampaignPolicy

	audit auditLog

	// late holds, per KV key, a write whose call failed (a timeout while
	// NATS was away) but that the NATS client may still deliver once it is
	// back: the KV watch audits it if it lands.
	lateMu sync.Mutex
	late   map[string]lateWrite
	// own holds the last revisions this instance wrote (a ring), so that
	// it does not audit again, as read from the bucket, what its admin
	// calls audited.
	own    [ownRevisions]uint64
	ownPos int

	rejected     [numKinds]*metrics.Counter
	unverified   *metrics.Counter
	auditDropped *metrics.Counter
}

// New builds a Control holding opts.Policies, no override and the kill switch
// off, in memory only until Start.
func New(opts Options) *Control {
	c := &Control{
		rollups:   opts.Rollups,
		now:       opts.Now,
		log:       opts.Log,
		warn:      logthrottle.New(opts.Log, 10*time.Second),
		dataDir:   opts.DataDir,
		key:       opts.Key,
		done:      make(chan struct{}),
		overrides: &overrides{m: cowmap.New[Override]()},
		adminPol:  map[string]*PolicyRecord{},
		parsed:    map[string]*models.CampaignPolicy{},
		late:      map[string]lateWrite{},
		timeout:   kvTimeout,
		replicas:  opts.Replicas,

		openExisting: opts.OpenExisting,
	}
	c.audit.c, c.audit.stop = c, make(chan struct{})
	c.filePolicies.Store(opts.Policies)
	c.policies.Store(opts.Policies)
	ms := opts.Metrics
	if ms == nil {
		ms = metrics.NewSet()
	}
	for k := range c.rejected {
		c.rejected[k] = ms.NewCounter(`bidpulse_control_rejected_records_total{kind="` + kindNames[k] + `"}`)
	}
	c.unverified = ms.NewCounter(`bidpulse_control_unsigned_records_total`)
	c.auditDropped = ms.NewCounter(`bidpulse_control_audit_dropped_total`)
	ms.NewGauge(`bidpulse_overrides`, func() float64 { return float64(c.overrides.m.Len()) })
	ms.NewGauge(`bidpulse_killswitch_enabled`, func() float64 {
		if c.kill.Load() {
			return 1
		}
		return 0
	})
	return c
}

// Start opens audit.log and, when nc's server offers JetStream, the KV bucket
// and the audit stream; it loads the bucket's records before it returns, so
// the first answers honour them, and then watches the bucket. Without
// JetStream the control plane is held in memory only (lost on restart, not
// shared), which is logged.
func (c *Control) Start(ctx context.Context, nc *nats.Conn) error {
	if err := os.MkdirAll(c.dataDir, 0o700); err != nil {
		return fmt.Errorf("cannot create data dir: %w", err)
	}
	if err := c.audit.open(filepath.Join(c.dataDir, "audit.log")); err != nil {
		return err
	}
	if c.key == nil {
		k, err := loadOrCreateKey(filepath.Join(c.dataDir, keyFile))
		if err != nil {
			return err
		}
		c.key = k
	}
	js, err := jetstream.New(nc)
	if err == nil {
		_, err = js.AccountInfo(ctx)
	}
	if err != nil {
		c.log.Warn().Err(err).Msg("no JetStream: overrides, policies and the kill switch are held in memory only (lost on restart, not shared)")
		close(c.done)
		return nil
	}
	kvCfg := jetstream.KeyValueConfig{
		Bucket:      Bucket,
		Description: "bidpulse overrides, campaign policies and kill switch",
		History:     5,
		Storage:     jetstream.FileStorage,
		Replicas:    c.replicas,
	}
	auditCfg := jetstream.StreamConfig{
		Name:        AuditStream,
		Description: "bidpulse audit log: changes that move money",
		Subjects:    []string{AuditSubject},
		Storage:     jetstream.FileStorage,
		MaxAge:      365 * 24 * time.Hour,
		MaxBytes:    256 << 20,
		Discard:     jetstream.DiscardOld,
		// Instances that see the same change made outside the admin API
		// each audit it under the same Nats-Msg-Id: one entry is kept.
		Duplicates: 2 * time.Minute,
		Replicas:   c.replicas,
	}
	var kv jetstream.KeyValue
	if c.openExisting {
		kv, err = jsensure.Bind(ctx,
			func(ctx context.Context) (jetstream.KeyValue, error) { return js.KeyValue(ctx, Bucket) },
			func(ctx context.Context) (jetstream.KeyValue, error) { return js.CreateKeyValue(ctx, kvCfg) },
			func(err error) bool { return errors.Is(err, jetstream.ErrBucketNotFound) })
		if err != nil {
			return fmt.Errorf("cannot open KV bucket %s: %w", Bucket, err)
		}
		_, err = jsensure.Bind(ctx,
			func(ctx context.Context) (jetstream.Stream, error) { return js.Stream(ctx, AuditStream) },
			func(ctx context.Context) (jetstream.Stream, error) { return js.CreateStream(ctx, auditCfg) },
			func(err error) bool { return errors.Is(err, jetstream.ErrStreamNotFound) })
		if err != nil {
			return fmt.Errorf("cannot open stream %s: %w", AuditStream, err)
		}
	} else {
		kv, err = js.CreateOrUpdateKeyValue(ctx, kvCfg)
		if err != nil {
			return fmt.Errorf("cannot open KV bucket %s: %w", Bucket, err)
		}
		if _, err := js.CreateOrUpdateStream(ctx, auditCfg); err != nil {
			return fmt.Errorf("cannot create stream %s: %w", AuditStream, err)
		}
	}
	c.js, c.kv = js, kv
	c.audit.startDelayed()
	return c.startWatch(ctx)
}

// startWatch watches the bucket and applies its records before it returns.
func (c *Control) startWatch(ctx context.Context) (err error) {
	kv := c.kv
	c.watcher, err = kv.WatchAll(context.Background())
	if err != nil {
		return fmt.Errorf("cannot watch KV bucket %s: %w", Bucket, err)
	}
	// The initial values arrive first, then a nil entry: wait for it so
	// the first answers already honour the stored records. A change made
	// while this instance was down is not audited by it: it cannot tell it
	// from a record it had already seen.
	for {
		select {
		case e := <-c.watcher.Updates():
			if e == nil {
				go c.watch()
				return nil
			}
			c.apply(e, false)
		case <-ctx.Done():
			// No watch goroutine runs: stop the watcher here, so that
			// Stop does not wait for one.
			c.watcher.Stop()
			c.watcher = nil
			close(c.done)
			return fmt.Errorf("cannot load KV bucket %s: %w", Bucket, ctx.Err())
		}
	}
}

func (c *Control) watch() {
	defer close(c.done)
	for e := range c.watcher.Updates() {
		if e != nil {
			c.apply(e, true)
		}
	}
}

// Stop stops watching the bucket and closes audit.log.
func (c *Control) Stop() {
	if c.watcher != nil {
		c.watcher.Stop()
		<-c.done
	}
	c.audit.close()
}

// Shared reports whether the control plane is kept in a KV bucket (false:
// in memory only).
func (c *Control) Shared() bool { return c.kv != nil }

// kvTimeout bounds one KV or audit stream operation.
const kvTimeout = 5 * time.Second

// errStore wraps the failure to store a change in the KV bucket.
var errStore = errors.New("cannot store the change in the KV bucket")

// lateWrite is a write answered as failed that may still land; audit
// records it under its KV revision.
type lateWrite struct {
	value []byte
	audit func(rev uint64)
}

// put stores a signed record under key, when there is a bucket, and returns
// its revision (0: memory only). When the put fails, audit is kept for the
// KV watch: the NATS client may still send the record once it reconnects,
// and the change then takes effect after its call was answered 503.
func (c *Control) put(key string, r signer, audit func(rev uint64)) (uint64, error) {
	if c.kv == nil {
		return 0, nil
	}
	b := sign(c.key, key, r)
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	rev, err := c.kv.Put(ctx, key, b)
	c.lateMu.Lock()
	if err != nil {
		c.late[key] = lateWrite{value: b, audit: audit}
	} else {
		delete(c.late, key)
		c.markOwnLocked(rev)
	}
	c.lateMu.Unlock()
	if err != nil {
		return 0, fmt.Errorf("%w: %w", errStore, err)
	}
	return rev, nil
}

// ownRevisions is how many of its latest writes an instance remembers: far
// more than it makes within sharedAuditDelay.
const ownRevisions = 4096

// markOwnLocked remembers rev as written by this instance. lateMu must be
// held.
func (c *Control) markOwnLocked(rev uint64) {
	c.own[c.ownPos] = rev
	c.ownPos = (c.ownPos + 1) % ownRevisions
}

// ownRevision reports whether this instance wrote the bucket's revision rev
// (among its last ownRevisions writes).
func (c *Control) ownRevision(rev uint64) bool {
	c.lateMu.Lock()
	defer c.lateMu.Unlock()
	for _, r := range c.own {
		if r == rev {
			return true
		}
	}
	return false
}

// landedLate returns the audit of a failed write of this instance whose
// record e is, if any.
func (c *Control) landedLate(e jetstream.KeyValueEntry) func(rev uint64) {
	if e.Operation() != jetstream.KeyValuePut {
		return nil
	}
	c.lateMu.Lock()
	defer c.lateMu.Unlock()
	lw, ok := c.late[e.Key()]
	if !ok || !bytes.Equal(lw.value, e.Value()) {
		return nil
	}
	delete(c.late, e.Key())
	// Its audit names it late: the read-side audit of the same revision
	// must not come first.
	c.markOwnLocked(e.Revision())
	return lw.audit
}

// remove deletes key from the bucket after storing a signed tombstone under
// it, so that the other instances see who deleted it; a bare delete (from
// outside the admin API) is audited as "nats-kv".
func (c *Control) remove(key string, tomb signer, audit func(rev uint64)) (uint64, error) {
	rev, err := c.put(key, tomb, audit)
	if err != nil || c.kv == nil {
		return rev, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	if err := c.kv.Delete(ctx, key); err != nil {
		// The tombstone already deletes it everywhere.
		c.warn.Warn("kv-delete", "cannot delete a tombstoned key from the KV bucket", err)
	}
	return rev, nil
}

// IsStoreError reports whether err is the failure to store a change in the KV
// bucket (a 503 for the admin API, not the caller's fault).
func IsStoreError(err error) bool { return errors.Is(err, errStore) }

// LoadOrCreateKey returns the control key kept in the file at path, made
// (random, mode 0600) when the file does not exist. A cluster member
// (bidder/node) gives its partition units the one key of its data dir.
func LoadOrCreateKey(path string) ([]byte, error) { return loadOrCreateKey(path) }
