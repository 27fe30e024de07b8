package cluster

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// TestBucketSettings checks the stream that Bucket makes, setting by setting (docs/SCALING.md
// lists them), that the server accepts limit markers at all (JetStream API level 1, nats-server
// v2.11, for AllowMsgTTL and SubjectDeleteMarkerTTL), that Bucket binds to an existing bucket
// with the same lease, and that it refuses one with another lease and a lease under MinTTL.
func TestBucketSettings(t *testing.T) {
	srv := startServer(t)
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	info, err := js.AccountInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.API.Level < 1 {
		t.Fatalf("unexpected JetStream API level; got %d; want 1 or more for limit markers", info.API.Level)
	}
	t.Logf("server %s, JetStream API level %d", server.VERSION, info.API.Level)

	f := func(bucket string, ttl, wantMarker time.Duration) {
		t.Helper()
		if _, err := Bucket(ctx, js, bucket, ttl, 1); err != nil {
			t.Fatal(err)
		}
		s, err := js.Stream(ctx, "KV_"+bucket)
		if err != nil {
			t.Fatal(err)
		}
		c := s.CachedInfo().Config
		if c.MaxAge != ttl || c.SubjectDeleteMarkerTTL != wantMarker || !c.AllowMsgTTL || c.MaxMsgsPerSubject != 1 ||
			!c.AllowRollup || !c.DenyDelete || c.Discard != jetstream.DiscardNew || c.Storage != jetstream.FileStorage || c.Replicas != 1 {
			t.Fatalf("unexpected stream of bucket %q; got MaxAge %s, SubjectDeleteMarkerTTL %s, AllowMsgTTL %v, MaxMsgsPerSubject %d, AllowRollup %v, DenyDelete %v, %v, %v, R%d; want MaxAge %s, markers %s, AllowMsgTTL, 1 per subject, rollups, no deletes, discard new, file, R1",
				bucket, c.MaxAge, c.SubjectDeleteMarkerTTL, c.AllowMsgTTL, c.MaxMsgsPerSubject, c.AllowRollup, c.DenyDelete, c.Discard, c.Storage, c.Replicas, ttl, wantMarker)
		}
		if _, err := Bucket(ctx, js, bucket, ttl, 1); err != nil {
			t.Fatalf("unexpected error binding to bucket %q again; got %v; want nil", bucket, err)
		}
	}
	f("b2s", 2*time.Second, 2*time.Second)
	f("b1500ms", 1500*time.Millisecond, 2*time.Second)
	f("b10s", 10*time.Second, 10*time.Second)

	_, err = Bucket(ctx, js, "b2s", 3*time.Second, 1)
	if !errors.Is(err, jetstream.ErrBucketExists) || !strings.Contains(err.Error(), "lease TTL 2s") {
		t.Fatalf("unexpected error for another lease; got %v; want %v naming the bucket's 2s", err, jetstream.ErrBucketExists)
	}
	if _, err := Bucket(ctx, js, "short", MinTTL-time.Millisecond, 1); err == nil {
		t.Fatalf("unexpected bucket with a lease under %s", MinTTL)
	}
}

// TestLimitMarkerLivesAtMostMaxAge pins the server behaviour BucketConfig is built around: a
// limit marker is aged out by the bucket's MaxAge like any message, so one kept longer than the
// lease (here 10 s against 1 s) is gone within about the lease all the same, and a watch that
// was not subscribed meanwhile never sees it. Should a server keep markers for their own TTL,
// this test fails, and BucketConfig and the resync period need another look.
func TestLimitMarkerLivesAtMostMaxAge(t *testing.T) {
	srv := startServer(t)
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "long", TTL: time.Second, LimitMarkerTTL: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	w, err := kv.WatchAll(ctx, jetstream.UpdatesOnly())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = w.Stop() }()
	if _, err := kv.Put(ctx, "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	var marked time.Time
	for marked.IsZero() {
		select {
		case e := <-w.Updates():
			if e != nil && e.Operation() == jetstream.KeyValuePurge {
				marked = time.Now()
			}
		case <-ctx.Done():
			t.Fatal("no limit marker for the expired key")
		}
	}
	s, err := js.Stream(ctx, "KV_long")
	if err != nil {
		t.Fatal(err)
	}
	checkFor(t, 5*time.Second, 20*time.Millisecond, func() error {
		info, err := s.Info(ctx)
		if err != nil {
			return err
		}
		if info.State.Msgs != 0 {
			return errors.New("the marker is still stored")
		}
		return nil
	})
	t.Logf("a marker with a 10s TTL in a bucket with a 1s TTL was removed %s after it was written", time.Since(marked).Round(time.Millisecond))
}
