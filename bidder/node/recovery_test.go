package node

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/bidpulse/bidpulse/bidder"
	"github.com/bidpulse/bidpulse/bidder/ingest"
	"github.com/bidpulse/bidpulse/bidder/partition"
)

func countedOf(n *Node, p uint32) uint64 {
	for _, u := range n.unitReports() {
		if u.Partition == p {
			return u.Counted
		}
	}
	return 0
}

// TestClusterUnitLeaseLost: a unit whose lease another process took (what a
// member cut from NATS for longer than the lease finds on its return) stops
// consuming for good; the member notices, drops it, and takes the
// partition again once the name is free.
func TestClusterUnitLeaseLost(t *testing.T) {
	tc := newTestCluster(t, 2, nil)
	n := tc.start("m0")
	tc.waitStable(1, 30*time.Second)
	p := partition.OfString(2, "c1")
	nc, err := nats.Connect(tc.nats.url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx := context.Background()
	kv, err := js.KeyValue(ctx, bidder.InstancesBucket)
	if err != nil {
		t.Fatal(err)
	}
	key := ingest.ConsumerName(UnitName(tc.stream, p))
	rewrite := func(edit func(r map[string]any)) {
		e, err := kv.Get(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		var r map[string]any
		json.Unmarshal(e.Value(), &r)
		edit(r)
		b, _ := json.Marshal(r)
		if _, err := kv.Update(ctx, key, b, e.Revision()); err != nil {
			t.Fatal(err)
		}
	}
	// Another process takes the unit's name (as the new owner of a
	// partition does while this member is cut from NATS)...
	rewrite(func(r map[string]any) {
		r["owner"] = "someone-else"
		r["pid"] = 1
		r["host"] = "elsewhere"
		r["serving"] = false
	})
	svc := n.servingUnit(p)
	deadline := time.Now().Add(10 * time.Second)
	for svc.UnitState().Ready && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if svc.UnitState().Ready {
		t.Fatal("the unit did not notice its lease was taken")
	}
	// ...then hands it back (stops: the name is free again).
	rewrite(func(r map[string]any) { r["stopped"] = true })
	pub := tc.newPublisher()
	before := countedOf(n, p)
	pub.publish("c1", 5)
	deadline = time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if countedOf(n, p) >= before+5 {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	ready, why := n.isReady()
	var state string
	for _, u := range n.unitReports() {
		if u.Partition == p {
			state = u.State
		}
	}
	t.Fatalf("partition %d: 5 events published 15s ago never counted (counted %d -> %d); member ready=%v %q, unit state %q, unit ready=%v, serving[p]==old unit: %v",
		p, before, countedOf(n, p), ready, why, state, svc.UnitState().Ready, n.servingUnit(p) == svc)
}

// TestClusterOwnershipBackDuringRelease: m2 joins (m0 releases some
// partitions to it) and leaves again before its units serve. The
// partitions come back to m0, which consumes them again at once, not after
// HandoverWait (2m) of answering from frozen windows.
func TestClusterOwnershipBackDuringRelease(t *testing.T) {
	tc := newTestCluster(t, 8, nil)
	m0 := tc.start("m0")
	tc.waitStable(1, 30*time.Second)
	// m2 cannot take its partitions (say its units cannot catch up, or
	// fail to start: here a wrong --partitions), then goes away.
	o := tc.options("m2")
	o.Unit.Partitions = 16
	m2, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	if err := m2.Start(); err != nil {
		t.Fatal(err)
	}
	tc.members["m2"] = m2
	var moved *unit
	deadline := time.Now().Add(10 * time.Second)
	for moved == nil && time.Now().Before(deadline) {
		m0.mu.Lock()
		for _, u := range m0.units {
			if u.state.Load() == unitReleasing {
				moved = u
			}
		}
		m0.mu.Unlock()
		time.Sleep(2 * time.Millisecond)
	}
	if moved == nil {
		t.Fatal("m0 released nothing to m2")
	}
	time.Sleep(time.Second) // m0's final checkpoint, lease released
	tc.stop("m2")
	p := moved.p
	var c string
	for i := 0; ; i++ {
		c = "c" + string(rune('a'+i%26)) + string(rune('a'+i/26))
		if partition.OfString(8, c) == p {
			break
		}
	}
	pub := tc.newPublisher()
	before := countedOf(m0, p)
	pub.publish(c, 5)
	deadline = time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if countedOf(m0, p) >= before+5 {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	ready, why := m0.isReady()
	t.Fatalf("partition %d back at m0: 5 events published 15s ago not counted (%d -> %d); m0 ready=%v %q, old unit still state %s",
		p, before, countedOf(m0, p), ready, why, stateNames[moved.state.Load()])
}
