package cluster

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// MinTTL is the shortest lease Bucket accepts. The server keeps a limit marker for whole seconds
// only (at least 1 s), and its expiry timer fires at most every 250 ms, so a shorter lease would
// be decided by those granularities rather than by the TTL; renewing every TTL/3 also needs room
// for a slow round trip.
const MinTTL = time.Second

// BucketConfig is the configuration of a membership bucket whose leases last ttl.
//
// A lease is the bucket's TTL (the stream's MaxAge), not a per-key TTL: a key created with a
// per-key TTL and then updated loses its TTL, and a member renews by writing its key again.
// Every write restarts the key's age, and a key not written for ttl is removed by the server,
// which then writes a limit marker (header Nats-Marker-Reason: MaxAge) in its place, so watchers
// see the expiry as a purge of the key. LimitMarkerTTL is what turns those markers on; the server
// keeps a marker for whole seconds and also ages it out with MaxAge (nats-server v2.15.2 removes
// a marker at min(LimitMarkerTTL, MaxAge)), so it is set to ttl rounded up to a second: a longer
// one would not last longer. A watcher that is not subscribed while the marker lives does not
// see it; Membership resynchronises its view for that reason.
//
// History 1: only a key's current record matters. Replicas is the bucket's stream replicas
// (1 on a single server; 3 on a 3-node JetStream cluster), 0 meaning 1.
func BucketConfig(bucket string, ttl time.Duration, replicas int) (jetstream.KeyValueConfig, error) {
	if ttl < MinTTL {
		return jetstream.KeyValueConfig{}, fmt.Errorf("cannot configure membership bucket %q: lease TTL %s is under the minimum %s", bucket, ttl, MinTTL)
	}
	return jetstream.KeyValueConfig{
		Bucket:         bucket,
		Description:    "bidpulse cluster membership: one key per instance, a lease renewed every TTL/3",
		History:        1,
		TTL:            ttl,
		LimitMarkerTTL: (ttl + time.Second - 1).Truncate(time.Second),
		Storage:        jetstream.FileStorage,
		Replicas:       replicas,
	}, nil
}

// Bucket creates the membership bucket with BucketConfig, or binds to it when it exists with
// that configuration. A bucket that exists with another lease TTL is an error rather than an
// update: instances started with different TTLs would otherwise rewrite the bucket in turn, and
// each would renew at a rate meant for another lease.
func Bucket(ctx context.Context, js jetstream.JetStream, bucket string, ttl time.Duration, replicas int) (jetstream.KeyValue, error) {
	cfg, err := BucketConfig(bucket, ttl, replicas)
	if err != nil {
		return nil, err
	}
	kv, err := js.CreateKeyValue(ctx, cfg)
	if err == nil {
		return kv, nil
	}
	if !errors.Is(err, jetstream.ErrBucketExists) {
		return nil, fmt.Errorf("cannot create membership bucket %q: %w", bucket, err)
	}
	kv, gerr := js.KeyValue(ctx, bucket)
	if gerr != nil {
		return nil, fmt.Errorf("cannot bind membership bucket %q: %w", bucket, gerr)
	}
	st, gerr := kv.Status(ctx)
	if gerr != nil {
		return nil, fmt.Errorf("cannot read membership bucket %q: %w", bucket, gerr)
	}
	return nil, fmt.Errorf("cannot use membership bucket %q: it exists with lease TTL %s and marker TTL %s, want %s and %s: %w",
		bucket, st.TTL(), st.LimitMarkerTTL(), cfg.TTL, cfg.LimitMarkerTTL, err)
}

// leaseOf reads the lease TTL of a membership bucket and checks that expiries reach watchers.
func leaseOf(ctx context.Context, kv jetstream.KeyValue) (time.Duration, error) {
	st, err := kv.Status(ctx)
	if err != nil {
		return 0, fmt.Errorf("cannot read membership bucket %q: %w", kv.Bucket(), err)
	}
	switch {
	case st.TTL() < MinTTL:
		return 0, fmt.Errorf("cannot use bucket %q for membership: its TTL %s is under %s (create it with Bucket)", kv.Bucket(), st.TTL(), MinTTL)
	case st.LimitMarkerTTL() <= 0:
		return 0, fmt.Errorf("cannot use bucket %q for membership: it has no limit markers, so an expired member would vanish unseen by watchers (create it with Bucket)", kv.Bucket())
	}
	return st.TTL(), nil
}
