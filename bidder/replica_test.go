package bidder

import (
	"encoding/binary"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"
)

// TestTakeUsed: a primary counts the names of a replica's report as
// answered (they are then tracked), and a report that stops decoding is
// counted as refused from there, the names before it taken.
func TestTakeUsed(t *testing.T) {
	svc, err := New(Options{Clock: NewManualClock(testNow), Logger: zerolog.Nop(), DedupSize: 32 << 20})
	if err != nil {
		t.Fatal(err)
	}
	var b []byte
	for _, n := range []struct {
		kind byte
		name string
	}{{'c', "c1"}, {'k', "key-1"}} {
		b = append(b, n.kind)
		b = binary.AppendUvarint(b, uint64(len(n.name)))
		b = append(b, n.name...)
	}
	svc.takeUsed(&nats.Msg{Data: append(b, 'k', 200, 1, 'x')}) // a length past the end
	svc.brain.Publish(testNow)
	if _, _, ok := svc.brain.CampaignEntry("c1"); !ok {
		t.Fatal("the reported campaign is not tracked")
	}
	if _, ok := svc.brain.KeyEntry("key-1"); !ok {
		t.Fatal("the reported key is not tracked")
	}
	st := svc.replicationState()
	if st.UsedTaken != 2 || st.UsedRefused != 1 {
		t.Fatalf("taken %d, refused %d; want 2 and 1", st.UsedTaken, st.UsedRefused)
	}
	svc.takeUsed(&nats.Msg{Data: []byte{'x', 1, 'a'}}) // an unknown kind
	if st := svc.replicationState(); st.UsedTaken != 2 || st.UsedRefused != 2 {
		t.Fatalf("taken %d, refused %d; want 2 and 2", st.UsedTaken, st.UsedRefused)
	}
}
