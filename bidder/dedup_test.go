package bidder

import (
	"bytes"
	"testing"

	"github.com/bidpulse/bidpulse/bidder/event"
	"github.com/bidpulse/bidpulse/bidder/idset"
)

func TestDedupSavedAfterCheckpoint(t *testing.T) {
	d := newDedup(32 << 20)
	add := func(d *dedup, typ event.Type, id string, seq uint64) { d.add(d.hash(typ, []byte(id)), seq) }
	seen := func(d *dedup, typ event.Type, id string) bool { return d.seen(d.hash(typ, []byte(id))) }
	add(d, event.Impression, "before", 10)
	// A checkpoint at sequence 10 takes its snapshot; it is written after
	// one more message.
	snap := d.set.Snapshot()
	add(d, event.Impression, "after", 11)
	var buf bytes.Buffer
	if _, err := snap.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	set, err := idset.Read(&buf, 32<<20)
	if err != nil {
		t.Fatal(err)
	}
	r := newDedup(32 << 20)
	r.restored(set, d.gen, 10)
	if !seen(r, event.Impression, "before") {
		t.Fatalf("an id counted before the checkpoint must be seen")
	}
	if seen(r, event.Impression, "after") {
		t.Fatalf("an id counted after the checkpoint must not be seen: its message is replayed")
	}
	if seen(r, event.Click, "before") {
		t.Fatalf("the dedup key is (type, id)")
	}
	// The replay counts it again, in the new generation: now it is seen.
	add(r, event.Impression, "after", 11)
	if !seen(r, event.Impression, "after") {
		t.Fatalf("an id counted by the replay must be seen")
	}
}
