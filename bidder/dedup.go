package bidder

import (
	"encoding/binary"

	"github.com/VictoriaMetrics/fastcache"

	"github.com/bidpulse/bidpulse/bidder/event"
)

// dedup remembers the (type, id) of counted events so a redelivered or
// re-sent event is counted once. It is backed by fastcache: bounded memory,
// off the Go heap, and the oldest ids are forgotten first once it is full, so
// its size sets the dedup horizon (about 20M ids per GiB for 20-byte ids).
//
// Each entry records the stream sequence of the message that counted it and
// the generation (one per process start) that added it. That lets a
// checkpoint save the set after releasing the applier: entries a later
// message added (sequence above the checkpoint's, same generation) are
// ignored when the checkpoint is loaded, so the replay that follows counts
// those events again, once.
//
// fastcache has no check-and-set: the service calls seen and add from its
// single applier goroutine only, which serialises them per id.
type dedup struct {
	c   *fastcache.Cache
	key []byte
	val [16]byte
	buf []byte

	gen uint64 // this process's generation
	// Entries of generation staleGen with a sequence above staleAfter came
	// after the loaded checkpoint: they do not count as seen.
	staleGen, staleAfter uint64
}

func newDedup(maxBytes int) *dedup {
	return &dedup{c: fastcache.New(maxBytes), gen: 1}
}

func (d *dedup) makeKey(t event.Type, id []byte) []byte {
	d.key = append(append(d.key[:0], byte(t)), id...)
	return d.key
}

// seen reports whether an event of type t with this id was counted before.
func (d *dedup) seen(t event.Type, id []byte) bool {
	v, ok := d.c.HasGet(d.buf[:0], d.makeKey(t, id))
	d.buf = v
	if !ok {
		return false
	}
	if len(v) == 16 && d.staleGen != 0 &&
		binary.LittleEndian.Uint64(v[8:]) == d.staleGen && binary.LittleEndian.Uint64(v) > d.staleAfter {
		return false
	}
	return true
}

// add records that the event of type t with this id was counted by the
// message of stream sequence seq (0 in core mode).
func (d *dedup) add(t event.Type, id []byte, seq uint64) {
	binary.LittleEndian.PutUint64(d.val[:8], seq)
	binary.LittleEndian.PutUint64(d.val[8:], d.gen)
	d.c.Set(d.makeKey(t, id), d.val[:])
}

// restored installs c, loaded from a checkpoint of sequence seq written by
// generation gen, and starts the next generation.
func (d *dedup) restored(c *fastcache.Cache, gen, seq uint64) {
	d.c.Reset()
	d.c = c
	d.staleGen, d.staleAfter = gen, seq
	d.gen = gen + 1
}

func (d *dedup) reset() { d.c.Reset() }
