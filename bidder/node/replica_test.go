package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/bidpulse/bidpulse/bidder"
	"github.com/bidpulse/bidpulse/bidder/partition"
)

// replicaKeys are the keys the replica test asks: each campaign alone and
// on each placement.
func replicaKeys(cs []string) []string {
	var out []string
	for _, c := range cs {
		out = append(out, "campaign="+c)
		for p := range 3 {
			out = append(out, "campaign="+c+"&placement=p"+strconv.Itoa(p))
		}
	}
	return out
}

// answers asks member n every key and returns the multipliers; a neutral
// answer or an error fails the test.
func answers(t *testing.T, n *Node, keys []string) map[string]float64 {
	t.Helper()
	out := make(map[string]float64, len(keys))
	for _, k := range keys {
		code, b := do(t, n, "GET", "/v1/multiplier?"+k, "", "")
		var m map[string]any
		if code != 200 || json.Unmarshal(b, &m) != nil {
			t.Fatalf("%s at %s: %d %s", k, n.opts.Member, code, b)
		}
		if m["neutral"] != nil {
			t.Fatalf("%s at %s: neutral answer %s", k, n.opts.Member, b)
		}
		out[k] = m["multiplier"].(float64)
	}
	return out
}

// diff describes the keys whose answers differ.
func diff(a, b map[string]float64) string {
	var d []string
	for k, v := range a {
		if b[k] != v {
			d = append(d, fmt.Sprintf("%s: %g vs %g", k, v, b[k]))
		}
	}
	return strings.Join(d, "; ")
}

// TestClusterReplicas: R = 2 over 3 members. Every partition is served by
// its primary and a replica; the replica answers every key as the primary
// does (the controllers run on the primary: a spent budget paces to 0,
// which a replica with states of its own would not know); the replica
// reports the keys it answered, so the primary ticks them; and when a
// primary is killed, its partitions' bids are answered by their replicas
// at once, never neutrally, with the same multipliers as before, and after
// the hand-over too; and when it comes back and takes its partitions
// again.
func TestClusterReplicas(t *testing.T) {
	const parts = 8
	tc := newTestCluster(t, parts, func(o *Options) {
		o.Replicas = 2
		o.Unit.ControlInterval = 300 * time.Millisecond
	})
	tc.startMembers(3)
	cs := campaigns(12)
	via := tc.members["m0"]
	for i, c := range cs {
		// Half spent their day's budget (10 of 5): paced to 0 once the
		// controllers ticked. The others pace below their budget.
		budget := 5
		if i%2 == 1 {
			budget = 1000
		}
		body := fmt.Sprintf(`{"campaign":%q,"policy":{"pacing":{"daily_budget":%d}}}`, c, budget)
		if code, b := do(t, via, "PUT", "/v1/policies", "admin-secret", body); code != 200 {
			t.Fatalf("policy of %s: %d %s", c, code, b)
		}
	}
	pub := tc.newPublisher()
	for _, c := range cs {
		if !pub.publishCost(c, 20, 0.5) {
			t.Fatal("publish not acknowledged")
		}
	}
	tc.waitCounted(pub.total(), 30*time.Second)
	keys := replicaKeys(cs)

	// Each member answers each key once (the replicas report theirs), then
	// the primaries tick and publish, and the replicas adopt.
	for _, n := range tc.members {
		answers(t, n, keys)
	}
	var before map[string]float64
	deadline := time.Now().Add(20 * time.Second)
	for {
		all := map[string]map[string]float64{}
		for name, n := range tc.members {
			all[name] = answers(t, n, keys)
		}
		agree, zeros := true, 0
		for _, a := range all {
			if d := diff(all["m0"], a); d != "" {
				agree = false
			}
		}
		for i, c := range cs {
			if i%2 == 0 && all["m0"]["campaign="+c] == 0 {
				zeros++
			}
		}
		if agree && zeros == len(cs)/2 {
			before = all["m0"]
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("members do not answer alike after 20s (paced to 0: %d of %d): m1 %s; m2 %s",
				zeros, len(cs)/2, diff(all["m0"], all["m1"]), diff(all["m0"], all["m2"]))
		}
		time.Sleep(100 * time.Millisecond)
	}

	// Each partition: served by two members, its primary and a replica,
	// both in process, which answer alike.
	for p := range uint32(parts) {
		var roles []string
		for name, n := range tc.members {
			if u := (*n.serving.Load())[p]; u != nil {
				roles = append(roles, name+":"+map[bool]string{false: "primary", true: "replica"}[u.replica])
			}
		}
		if len(roles) != 2 || strings.Count(strings.Join(roles, ","), "primary") != 1 {
			t.Fatalf("partition %d served by %v; want a primary and a replica", p, roles)
		}
	}
	var lagMax int64
	var adopted uint64
	for _, n := range tc.members {
		for _, u := range n.unitReports() {
			if u.Role == "replica" {
				lagMax = max(lagMax, u.Replication.ControllersLagMs)
				adopted += u.Replication.Adopted
			}
		}
	}
	if adopted == 0 {
		t.Fatal("no replica adopted its primary's controller states")
	}
	t.Logf("replicas adopted %d publications; the last adoption's lag at most %d ms", adopted, lagMax)

	// The primary of the first campaign's partition dies.
	p0 := partition.OfString(parts, cs[0])
	victim, _ := via.ownerOf(p0)
	var lost []uint32
	for p := range uint32(parts) {
		if o, _ := tc.members[victim].ownerOf(p); o == victim {
			lost = append(lost, p)
		}
	}
	tc.kill(victim)
	t0 := time.Now()
	// At once, before its lease expires: every key is answered, by the
	// replicas, as before.
	for name, n := range tc.members {
		if d := diff(before, answers(t, n, keys)); d != "" {
			t.Fatalf("%s answers otherwise right after %s died: %s", name, victim, d)
		}
	}
	t.Logf("%s (primary of %v) killed: every key answered as before within %s", victim, lost, time.Since(t0).Round(time.Millisecond))
	tc.waitStable(2, 30*time.Second)
	t.Logf("the replicas of %s's partitions are their primaries after %s", victim, time.Since(t0).Round(time.Millisecond))
	for name, n := range tc.members {
		if d := diff(before, answers(t, n, keys)); d != "" {
			t.Fatalf("%s answers otherwise after the hand-over: %s", name, d)
		}
	}
	tc.waitCounted(pub.total(), 30*time.Second)

	// It comes back: it is again the primary of its partitions (their
	// primaries now become their replicas, handing the partitions over)
	// and a replica of others.
	t0 = time.Now()
	tc.start(victim)
	tc.waitStable(3, 30*time.Second)
	t.Logf("%s back: primary of its partitions again after %s", victim, time.Since(t0).Round(time.Millisecond))
	for name, n := range tc.members {
		if d := diff(before, answers(t, n, keys)); d != "" {
			t.Fatalf("%s answers otherwise after %s came back: %s", name, victim, d)
		}
	}
	// The primaries count exactly what was sent, and each replica what
	// its primary counted.
	tc.waitCounted(pub.total(), 30*time.Second)
	byPart := map[uint32][]uint64{}
	for _, n := range tc.members {
		for _, u := range n.unitReports() {
			byPart[u.Partition] = append(byPart[u.Partition], u.Counted)
		}
	}
	for p, c := range byPart {
		if len(c) != 2 || c[0] != c[1] {
			t.Fatalf("partition %d: counted %v by its units; want a primary and a replica alike", p, c)
		}
	}
}

// publishCost sends k impressions of campaign with cost each (placements
// p0..p2, one click every fourth), retrying until acknowledged.
func (p *publisher) publishCost(campaign string, k int, cost float64) bool {
	var b strings.Builder
	b.WriteByte('[')
	n := 0
	for i := range k {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"id":"%s-c%d-%d","type":"impression","campaign":%q,"placement":"p%d","ts":%d,"cost":%v}`,
			campaign, p.n, i, campaign, i%3, testNow-60_000, cost)
		n++
		if i%4 == 0 {
			fmt.Fprintf(&b, `,{"id":"%s-k%d-%d","type":"click","campaign":%q,"placement":"p%d","ts":%d}`,
				campaign, p.n, i, campaign, i%3, testNow-30_000)
			n++
		}
	}
	b.WriteByte(']')
	subject := p.base + "." + campaign + ".t"
	id := fmt.Sprintf("%s-cost-%d", campaign, p.n)
	p.n++
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err := p.js.Publish(ctx, subject, []byte(b.String()), jetstream.WithMsgID(id))
		cancel()
		if err == nil {
			p.sent[campaign] += n
			return true
		}
		time.Sleep(50 * time.Millisecond)
	}
	return false
}

// TestClusterReplicaHoldsStream: a primary trims its partition no further
// than its live replicas applied. A replica's record that says it applied
// the first message, not the second, lets the primary's checkpoints trim the
// first and keeps the second; once the record moves on, the next
// checkpoint trims it too.
func TestClusterReplicaHoldsStream(t *testing.T) {
	const parts = 2
	tc := newTestCluster(t, parts, func(o *Options) { o.Replicas = 2 })
	tc.startMembers(2)
	var c string
	for i := 0; ; i++ {
		if c = "h" + strconv.Itoa(i); partition.OfString(parts, c) == 0 {
			break
		}
	}
	nc, err := nats.Connect(tc.nats.url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	kv, err := js.KeyValue(ctx, bidder.InstancesBucket)
	if err != nil {
		t.Fatal(err)
	}
	// A replica's record, renewed as a live one is, holding from 0.
	key := bidder.ReplicaLeaseKey(UnitName(tc.stream, 0), "held")
	var hold atomic.Uint64
	write := func() {
		rec := fmt.Sprintf(`{"instance":"held","owner":"test","stream":%q,"remote_seq":%d}`, tc.stream, hold.Load())
		if _, err := kv.Put(ctx, key, []byte(rec)); err != nil {
			t.Error(err)
		}
	}
	write()
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			case <-time.After(300 * time.Millisecond):
				write()
			}
		}
	}()
	defer func() { close(stop); <-done }()
	stream, err := js.Stream(ctx, tc.stream)
	if err != nil {
		t.Fatal(err)
	}
	pubOne := func(i int) uint64 {
		body := fmt.Sprintf(`{"id":"%s-%d","type":"impression","campaign":%q,"placement":"p0","ts":%d}`, c, i, c, testNow-60_000)
		ack, err := js.Publish(ctx, tc.base+"."+c+".t", []byte(body))
		if err != nil {
			t.Fatal(err)
		}
		return ack.Sequence
	}
	held := func(seq uint64) bool {
		_, err := stream.GetMsg(ctx, seq)
		if err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
			t.Fatal(err)
		}
		return err == nil
	}
	applied := pubOne(0)
	hold.Store(applied) // it applied that one, not the next
	first := pubOne(1)
	// Several checkpoints kept in NATS go by (every 300ms), each after a
	// new event: the primary would trim past first without the hold.
	var last uint64
	for i := 2; i <= 9; i++ {
		last = pubOne(i)
		time.Sleep(200 * time.Millisecond)
	}
	tc.waitCounted(10, 30*time.Second)
	time.Sleep(time.Second)
	primary := tc.members[tc.ownerName(c)]
	svc := primary.servingUnit(0)
	if st := svc.UnitState(); st.RemoteSeq < last {
		t.Fatalf("the primary kept a checkpoint of sequence %d in NATS; want %d", st.RemoteSeq, last)
	}
	if !held(first) {
		t.Fatalf("message %d trimmed past the hold of a live replica", first)
	}
	if held(applied) {
		t.Fatalf("message %d, applied by every owner and older than the checkpoint, not trimmed", applied)
	}
	// The replica applied everything: the next checkpoint trims.
	hold.Store(last + 1)
	write()
	pubOne(10)
	deadline := time.Now().Add(10 * time.Second)
	for held(first) {
		if time.Now().After(deadline) {
			t.Fatalf("message %d still held 10s after the replica's record moved on", first)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
