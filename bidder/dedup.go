package bidder

import (
	"github.com/VictoriaMetrics/fastcache"

	"github.com/bidpulse/bidpulse/bidder/event"
)

// dedup remembers the (type, id) of counted events so a redelivered or
// re-sent event is counted once. It is backed by fastcache: bounded memory,
// off the Go heap, and the oldest ids are forgotten first once it is full, so
// its size sets the dedup horizon (about 25M ids per GiB for 20-byte ids).
//
// fastcache has no check-and-set: the service calls seen and add from its
// single applier goroutine only, which serialises them per id.
type dedup struct {
	c   *fastcache.Cache
	key []byte
}

func newDedup(maxBytes int) *dedup {
	return &dedup{c: fastcache.New(maxBytes)}
}

func (d *dedup) makeKey(t event.Type, id []byte) []byte {
	d.key = append(append(d.key[:0], byte(t)), id...)
	return d.key
}

// seen reports whether an event of type t with this id was counted before.
func (d *dedup) seen(t event.Type, id []byte) bool {
	return d.c.Has(d.makeKey(t, id))
}

// add records that the event of type t with this id was counted.
func (d *dedup) add(t event.Type, id []byte) {
	d.c.Set(d.makeKey(t, id), nil)
}

func (d *dedup) reset() { d.c.Reset() }
