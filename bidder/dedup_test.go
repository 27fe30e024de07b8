package bidder

import (
	"path/filepath"
	"testing"

	"github.com/VictoriaMetrics/fastcache"

	"github.com/bidpulse/bidpulse/bidder/event"
)

func TestDedupSavedAfterCheckpoint(t *testing.T) {
	d := newDedup(32 << 20)
	d.add(event.Impression, []byte("before"), 10)
	// A checkpoint at sequence 10; the set is saved after one more message.
	d.add(event.Impression, []byte("after"), 11)
	dir := filepath.Join(t.TempDir(), "dedup")
	if err := d.c.SaveToFileConcurrent(dir, 2); err != nil {
		t.Fatal(err)
	}
	c, err := fastcache.LoadFromFile(dir)
	if err != nil {
		t.Fatal(err)
	}
	r := newDedup(32 << 20)
	r.restored(c, d.gen, 10)
	if !r.seen(event.Impression, []byte("before")) {
		t.Fatalf("an id counted before the checkpoint must be seen")
	}
	if r.seen(event.Impression, []byte("after")) {
		t.Fatalf("an id counted after the checkpoint must not be seen: its message is replayed")
	}
	if r.seen(event.Click, []byte("before")) {
		t.Fatalf("the dedup key is (type, id)")
	}
	// The replay counts it again, in the new generation: now it is seen.
	r.add(event.Impression, []byte("after"), 11)
	if !r.seen(event.Impression, []byte("after")) {
		t.Fatalf("an id counted by the replay must be seen")
	}
}
