package ingest

import (
	"bytes"
	"testing"

	"github.com/bidpulse/bidpulse/bidder/event"
	"github.com/bidpulse/bidpulse/bidder/idset"
)

func dedupAdd(d *dedup, typ event.Type, id string, seq uint64) { d.add(d.hash(typ, []byte(id)), seq) }

func dedupSeen(d *dedup, typ event.Type, id string) bool { return d.seen(d.hash(typ, []byte(id))) }

// dedupRestart saves d's set as a checkpoint of sequence seq would (snap
// taken at the checkpoint, after its writes) and loads it in a new process.
func dedupRestart(t *testing.T, d *dedup, snap *idset.Snapshot, seq uint64) *dedup {
	t.Helper()
	var buf bytes.Buffer
	if _, err := snap.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	set, err := idset.Read(&buf, 32<<20, staleAfter(d.gen, seq))
	if err != nil {
		t.Fatal(err)
	}
	r := newDedup(32 << 20)
	r.restored(set, d.gen)
	return r
}

func TestDedupSavedAfterCheckpoint(t *testing.T) {
	d := newDedup(32 << 20)
	dedupAdd(d, event.Impression, "before", 10)
	// A checkpoint at sequence 10 takes its snapshot; it is written after
	// one more message.
	snap := d.set.Snapshot()
	dedupAdd(d, event.Impression, "after", 11)
	r := dedupRestart(t, d, snap, 10)
	if !dedupSeen(r, event.Impression, "before") {
		t.Fatalf("an id counted before the checkpoint must be seen")
	}
	if dedupSeen(r, event.Impression, "after") {
		t.Fatalf("an id counted after the checkpoint must not be seen: its message is replayed")
	}
	if dedupSeen(r, event.Click, "before") {
		t.Fatalf("the dedup key is (type, id)")
	}
	// The replay counts it again, in the new generation: now it is seen.
	dedupAdd(r, event.Impression, "after", 11)
	if !dedupSeen(r, event.Impression, "after") {
		t.Fatalf("an id counted by the replay must be seen")
	}
}

// TestDedupStaleThroughRestarts: an entry added after a checkpoint stays
// unseen when the next process writes its own checkpoint before its replay
// reaches that entry's message, and a third process starts from it.
func TestDedupStaleThroughRestarts(t *testing.T) {
	d1 := newDedup(32 << 20)
	dedupAdd(d1, event.Impression, "a", 90)
	snap := d1.set.Snapshot()
	dedupAdd(d1, event.Impression, "x", 3000) // after the checkpoint at 100
	d2 := dedupRestart(t, d1, snap, 100)
	// Generation 2 replays up to 2000 only, then stops with a checkpoint.
	dedupAdd(d2, event.Impression, "b", 1500)
	d3 := dedupRestart(t, d2, d2.set.Snapshot(), 2000)
	if dedupSeen(d3, event.Impression, "x") {
		t.Fatalf("an id counted after the first checkpoint and not replayed since must not be seen")
	}
	for _, id := range []string{"a", "b"} {
		if !dedupSeen(d3, event.Impression, id) {
			t.Fatalf("unexpected miss of %q", id)
		}
	}
	if d3.gen != 3 {
		t.Fatalf("unexpected generation %d; want 3", d3.gen)
	}
}
