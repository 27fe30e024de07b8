package cluster

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// TestViewResyncDropsGhost checks the resynchronisation: a key removed without a marker (here
// its messages purged from the stream, as a limit marker missed by a disconnected watch would
// leave it) stays in a watch's view, and leaves it at the next resync. Member c, with the
// default resync, shows the ghost; member a, resynchronising every 300 ms, drops it.
func TestViewResyncDropsGhost(t *testing.T) {
	srv := startServer(t)
	a, pa := join(t, srv, "members", "a", 300*time.Millisecond)
	b, pb := join(t, srv, "members", "b", 0)
	c, _ := join(t, srv, "members", "c", 0)
	waitView(t, 10*time.Second, []string{"a", "b", "c"}, a, b, c)

	// b stops renewing, and its record vanishes from the stream at once: no delete, no marker.
	pb.nc.Close()
	renewed := c.Stats().Renewals
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := pa.js.Stream(ctx, "KV_members")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Purge(ctx, jetstream.WithPurgeSubject("$KV.members.b")); err != nil {
		t.Fatal(err)
	}
	waitView(t, 10*time.Second, []string{"a", "c"}, a)
	if n := a.Stats().Resyncs; n == 0 {
		t.Fatal("a dropped b without a resync")
	}
	// Past b's lease (four of c's renewals, more than a TTL): with no record left to expire, no
	// marker comes, and c keeps the ghost.
	checkFor(t, 4*testTTL, 10*time.Millisecond, func() error {
		if n := c.Stats().Renewals - renewed; n < 4 {
			return fmt.Errorf("c renewed %d times since the purge", n)
		}
		return nil
	})
	if got := c.Names(); !slices.Equal(got, []string{"a", "b", "c"}) {
		t.Fatalf("unexpected view of c; got %v; want the ghost b still in [a b c]", got)
	}
}

// TestViewRefusesBadRecords checks that records Join did not write (not JSON, another instance
// than their key, no version, no start time) are counted and kept out of the view, and that a
// good record under the same key then enters it.
func TestViewRefusesBadRecords(t *testing.T) {
	srv := startServer(t)
	a, pa := join(t, srv, "members", "a", 0)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	bad := []string{
		`not json`,
		`{"instance":"y","started":"2026-01-02T03:04:05Z","v":1}`,
		`{"instance":"x","started":"2026-01-02T03:04:05Z"}`,
		`{"instance":"x","v":1}`,
	}
	for i, rec := range bad {
		if _, err := pa.kv.Put(ctx, "x", []byte(rec)); err != nil {
			t.Fatal(err)
		}
		checkFor(t, 10*time.Second, 10*time.Millisecond, func() error {
			if n := a.Stats().BadRecords; n != uint64(i+1) {
				return fmt.Errorf("a counted %d bad records; want %d", n, i+1)
			}
			return nil
		})
		if got := a.Names(); !slices.Equal(got, []string{"a"}) {
			t.Fatalf("unexpected view after bad record %q; got %v; want [a]", rec, got)
		}
	}
	good := `{"instance":"x","addr":"10.0.0.7:8080","started":"2026-01-02T03:04:05Z","v":2,"future":true}`
	if _, err := pa.kv.Put(ctx, "x", []byte(good)); err != nil {
		t.Fatal(err)
	}
	waitView(t, 10*time.Second, []string{"a", "x"}, a)
	if got := a.Members()[1]; got.Addr != "10.0.0.7:8080" || got.Version != 2 {
		t.Fatalf("unexpected record of x; got %+v; want addr 10.0.0.7:8080, version 2", got)
	}
}

// TestChangesSignals checks that Changes signals a join and a leave, and nothing for renewals.
func TestChangesSignals(t *testing.T) {
	srv := startServer(t)
	a, _ := join(t, srv, "members", "a", 0)
	wait := func(want []string) {
		t.Helper()
		deadline := time.After(10 * time.Second)
		for {
			select {
			case <-a.Changes():
				if got := a.Names(); slices.Equal(got, want) {
					return
				}
			case <-deadline:
				t.Fatalf("no change signalled to %v; a sees %v", want, a.Names())
			}
		}
	}
	b, _ := join(t, srv, "members", "b", 0)
	wait([]string{"a", "b"})
	// Two renewals of each member pass with no signal.
	checkFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if n := min(a.Stats().Renewals, b.Stats().Renewals); n < 2 {
			return fmt.Errorf("%d renewals", n)
		}
		return nil
	})
	select {
	case <-a.Changes():
		t.Fatalf("unexpected change signalled for renewals; a sees %v", a.Names())
	default:
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := b.Leave(ctx); err != nil {
		t.Fatal(err)
	}
	wait([]string{"a"})
}
