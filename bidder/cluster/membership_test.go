package cluster

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// TestMembershipJoinAndLeave checks that three members joining each see all three, with the
// records they wrote, and that one leaving is seen by the other two through its delete, not
// through the expiry of its lease.
func TestMembershipJoinAndLeave(t *testing.T) {
	srv := startServer(t)
	a, _ := join(t, srv, "members", "a", 0)
	b, pb := join(t, srv, "members", "b", 0)
	c, _ := join(t, srv, "members", "c", 0)
	waitView(t, 10*time.Second, []string{"a", "b", "c"}, a, b, c)
	for _, m := range c.Members() {
		want := map[string]*Membership{"a": a, "b": b, "c": c}[m.Instance].Self()
		if m.Addr != "127.0.0.1:80"+m.Instance || !m.Started.Equal(want.Started) || m.Version != RecordVersion {
			t.Fatalf("unexpected record of %q; got %+v; want %+v", m.Instance, m, want)
		}
	}
	if got := a.Stats().Joined; got < 2 {
		t.Fatalf("unexpected joins seen by a; got %d; want b and c at least", got)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := b.Leave(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-b.Done():
	default:
		t.Fatal("b's Done is open after Leave")
	}
	if err := b.Err(); err != nil {
		t.Fatalf("unexpected error after Leave; got %v; want nil", err)
	}
	if _, err := pb.kv.Get(ctx, "b"); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Fatalf("unexpected read of b after Leave; got %v; want %v", err, jetstream.ErrKeyNotFound)
	}
	waitView(t, testTTL+5*time.Second, []string{"a", "c"}, a, c)
	for _, m := range []*Membership{a, c} {
		if s := m.Stats(); s.Left != 1 || s.Expired != 0 {
			t.Fatalf("%q saw b go by %d deletes and %d expiries; want 1 delete", m.Self().Instance, s.Left, s.Expired)
		}
	}
	if err := b.Leave(ctx); err != nil {
		t.Fatalf("unexpected error of a second Leave; got %v; want nil", err)
	}
}

// TestMembershipCrashExpires checks that a member that stops renewing without leaving (its
// process crashed: its NATS connection closes under it) is seen gone by the others once its
// lease expires, through the bucket's limit marker, and logs how long that took.
func TestMembershipCrashExpires(t *testing.T) {
	srv := startServer(t)
	a, _ := join(t, srv, "members", "a", 0)
	b, _ := join(t, srv, "members", "b", 0)
	c, pc := join(t, srv, "members", "c", 0)
	waitView(t, 10*time.Second, []string{"a", "b", "c"}, a, b, c)
	// Let c renew once, so the crash does not fall just after its join.
	checkFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if n := c.Stats().Renewals; n < 1 {
			return fmt.Errorf("c renewed %d times", n)
		}
		return nil
	})

	crashed := time.Now()
	pc.nc.Close()
	// The lease ends TTL after c's last renewal, at most TTL/3 before the crash; the server's
	// expiry timer adds up to 250 ms, the marker's delivery a little more.
	waitView(t, testTTL+5*time.Second, []string{"a", "b"}, a, b)
	t.Logf("a crashed member (TTL %s, renewed every %s) was seen gone after %s", testTTL, (testTTL / 3).Round(time.Millisecond), time.Since(crashed).Round(time.Millisecond))
	for _, m := range []*Membership{a, b} {
		if s := m.Stats(); s.Expired != 1 || s.Left != 0 {
			t.Fatalf("%q saw c go by %d expiries and %d deletes; want 1 expiry", m.Self().Instance, s.Expired, s.Left)
		}
	}
	select {
	case <-c.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("c's Done still open after its connection closed")
	}
	if err := c.Err(); !errors.Is(err, nats.ErrConnectionClosed) {
		t.Fatalf("unexpected end of c; got %v; want %v", err, nats.ErrConnectionClosed)
	}
}

// TestMembershipRenewalKeepsAlive checks that a member's renewals keep it in the bucket and in
// the others' view for several lease TTLs: a watch of its key sees ten renewals (nine renewal
// gaps, three TTLs) and neither a delete nor an expiry.
func TestMembershipRenewalKeepsAlive(t *testing.T) {
	srv := startServer(t)
	a, _ := join(t, srv, "members", "a", 0)
	b, pb := join(t, srv, "members", "b", 0)
	waitView(t, 10*time.Second, []string{"a", "b"}, a, b)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	w, err := pb.kv.Watch(ctx, "b", jetstream.UpdatesOnly())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = w.Stop() }()
	start := time.Now()
	for puts := 0; puts < 10; {
		select {
		case e := <-w.Updates():
			if e == nil {
				continue
			}
			if e.Operation() != jetstream.KeyValuePut {
				t.Fatalf("unexpected %v of b after %s of renewals", e.Operation(), time.Since(start))
			}
			puts++
		case <-ctx.Done():
			t.Fatalf("b renewed %d times before %v", puts, ctx.Err())
		}
	}
	if elapsed := time.Since(start); elapsed < 3*testTTL {
		t.Fatalf("unexpected renewal pace; ten renewals took %s; want at least 3 TTLs (%s)", elapsed, 3*testTTL)
	}
	if got := a.Names(); !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("unexpected view of a; got %v; want [a b]", got)
	}
	if s := a.Stats(); s.Expired != 0 || s.Left != 0 {
		t.Fatalf("a saw %d expiries and %d deletes; want none", s.Expired, s.Left)
	}
	if s := b.Stats(); s.RenewFailures != 0 || s.Reregistered != 0 {
		t.Fatalf("b had %d renewal failures and %d re-registrations (%s); want none", s.RenewFailures, s.Reregistered, s.LastError)
	}
}

// TestMembershipRestartRejoins checks that a crashed instance restarted under its name rejoins:
// after its lease expired (the others see it go, then come back), and before (its new record
// replaces the old one, the others see the new start time, and it is never seen to expire).
func TestMembershipRestartRejoins(t *testing.T) {
	srv := startServer(t)
	a, _ := join(t, srv, "members", "a", 0)
	b, pb := join(t, srv, "members", "b", 0)
	waitView(t, 10*time.Second, []string{"a", "b"}, a, b)

	// After the lease expired.
	pb.nc.Close()
	waitView(t, testTTL+5*time.Second, []string{"a"}, a)
	b2, pb2 := join(t, srv, "members", "b", 0)
	waitView(t, 10*time.Second, []string{"a", "b"}, a, b2)
	if got := startedOf(a, "b"); !got.Equal(b2.Self().Started) || got.Equal(b.Self().Started) {
		t.Fatalf("unexpected start of b in a's view; got %s; want the restart's %s", got, b2.Self().Started)
	}

	// Before the lease expired: the restart writes over the crashed incarnation's live record.
	expired := a.Stats().Expired
	pb2.nc.Close()
	b3, _ := join(t, srv, "members", "b", 0)
	checkFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if got := startedOf(a, "b"); !got.Equal(b3.Self().Started) {
			return fmt.Errorf("a sees b started %s; want %s", got, b3.Self().Started)
		}
		return nil
	})
	// Past the old record's lease: b3 has renewed four times (more than a TTL).
	checkFor(t, 4*testTTL, 10*time.Millisecond, func() error {
		if n := b3.Stats().Renewals; n < 4 {
			return fmt.Errorf("b renewed %d times", n)
		}
		return nil
	})
	if got := a.Names(); !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("unexpected view of a; got %v; want [a b]", got)
	}
	if got := a.Stats().Expired; got != expired {
		t.Fatalf("a saw b expire after its quick restart (%d expiries, %d before); want none", got, expired)
	}
}

// startedOf is the start time of name in m's view, zero when it is not there.
func startedOf(m *Membership, name string) time.Time {
	for _, x := range m.Members() {
		if x.Instance == name {
			return x.Started
		}
	}
	return time.Time{}
}

// TestMembershipNameTaken checks that of two live processes under one name, the one that joined
// last keeps it: the other's next renewal finds a record it did not write, it ends with
// ErrNameTaken instead of fighting over the key, and its Leave does not delete the record of the
// one that replaced it.
func TestMembershipNameTaken(t *testing.T) {
	srv := startServer(t)
	a, _ := join(t, srv, "members", "a", 0)
	old, _ := join(t, srv, "members", "x", 0)
	waitView(t, 10*time.Second, []string{"a", "x"}, a, old)
	newer, pn := join(t, srv, "members", "x", 0)
	select {
	case <-old.Done():
	case <-time.After(testTTL + 5*time.Second):
		t.Fatal("the replaced incarnation still runs")
	}
	if err := old.Err(); !errors.Is(err, ErrNameTaken) {
		t.Fatalf("unexpected end of the replaced incarnation; got %v; want %v", err, ErrNameTaken)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := old.Leave(ctx); err != nil {
		t.Fatalf("unexpected Leave of the replaced incarnation; got %v; want nil", err)
	}
	e, err := pn.kv.Get(ctx, "x")
	if err != nil {
		t.Fatalf("the replaced incarnation's Leave removed the newer record: %v", err)
	}
	got, err := decodeMember("x", e.Value())
	if err != nil || !got.Started.Equal(newer.Self().Started) {
		t.Fatalf("unexpected record of x; got %+v (%v); want the newer incarnation's, started %s", got, err, newer.Self().Started)
	}
	checkFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if got := startedOf(a, "x"); !got.Equal(newer.Self().Started) {
			return fmt.Errorf("a sees x started %s; want %s", got, newer.Self().Started)
		}
		return nil
	})
	select {
	case <-newer.Done():
		t.Fatalf("the newer incarnation ended: %v", newer.Err())
	default:
	}
}

// TestMembershipReregistersAfterLosingLease checks that a member whose lease ended while it ran
// (here its key is deleted under it, as an expiry during a long pause would) writes it again at
// once, and the others see it back.
func TestMembershipReregistersAfterLosingLease(t *testing.T) {
	srv := startServer(t)
	a, pa := join(t, srv, "members", "a", 0)
	b, _ := join(t, srv, "members", "b", 0)
	waitView(t, 10*time.Second, []string{"a", "b"}, a, b)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := pa.kv.Delete(ctx, "b"); err != nil {
		t.Fatal(err)
	}
	checkFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if n := b.Stats().Reregistered; n != 1 {
			return fmt.Errorf("b registered again %d times", n)
		}
		return nil
	})
	waitView(t, 10*time.Second, []string{"a", "b"}, a, b)
	if _, err := pa.kv.Get(ctx, "b"); err != nil {
		t.Fatalf("b's record is missing after it registered again: %v", err)
	}
}

// TestJoinRefuses checks Join's errors: names that cannot be KV keys, and a bucket without the
// lease settings (no TTL, or no limit markers, whose expiries no watcher would see).
func TestJoinRefuses(t *testing.T) {
	srv := startServer(t)
	p := connect(t, srv, "members")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, name := range []string{"", "a b", ".a", "a.", "a..b", "a*", "a>", "é", string(make([]byte, 256))} {
		if m, err := Join(ctx, p.kv, Member{Instance: name}); err == nil {
			_ = m.Leave(ctx)
			t.Fatalf("unexpected Join as %q; got nil error; want a refusal", name)
		}
	}
	plain, err := p.js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "plain", TTL: testTTL})
	if err != nil {
		t.Fatal(err)
	}
	forever, err := p.js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "forever"})
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range []jetstream.KeyValue{plain, forever} {
		if m, err := Join(ctx, kv, Member{Instance: "a"}); err == nil {
			_ = m.Leave(ctx)
			t.Fatalf("unexpected Join on bucket %q; got nil error; want a refusal", kv.Bucket())
		}
		if _, err := kv.Get(ctx, "a"); !errors.Is(err, jetstream.ErrKeyNotFound) {
			t.Fatalf("a refused Join left a record in %q: %v", kv.Bucket(), err)
		}
	}
}

// TestLeaveDeletesOwnRecordAtLaterRevision checks that Leave deletes the member's record when it
// stands at a later revision than the member last wrote (a renewal whose reply was lost; here
// the same bytes written again from another connection).
func TestLeaveDeletesOwnRecordAtLaterRevision(t *testing.T) {
	srv := startServer(t)
	a, pa := join(t, srv, "members", "a", 0)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	e, err := pa.kv.Get(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	other := connect(t, srv, "members")
	if _, err := other.kv.Put(ctx, "a", e.Value()); err != nil {
		t.Fatal(err)
	}
	if err := a.Leave(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := other.kv.Get(ctx, "a"); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Fatalf("unexpected read of a after Leave; got %v; want %v", err, jetstream.ErrKeyNotFound)
	}
}
