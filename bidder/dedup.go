package bidder

import (
	"github.com/bidpulse/bidpulse/bidder/event"
	"github.com/bidpulse/bidpulse/bidder/idset"
)

// dedup remembers the (type, id) of counted events so a redelivered or
// re-sent event is counted once. It is an idset.Set: bounded memory that the
// garbage collector does not scan, sure to remember at least the last
// Horizon ids (about 1.5M per 100 MiB: two tables of 24-byte slots, each
// rotated at 70% full, so 69 bytes per id), whatever their length.
//
// Each entry's tag records the stream sequence of the message that counted
// it and the generation (one per process start) that added it. That lets a
// checkpoint save the set after releasing the applier: entries a later
// message added (sequence above the checkpoint's, same generation) are
// ignored when the checkpoint is loaded, so the replay that follows counts
// those events again, once. Tags keep the low 48 bits of the sequence and
// the low 16 of the generation.
//
// The set has one writer: the service calls check and add from its single
// applier goroutine only, which serialises them per id.
type dedup struct {
	set *idset.Set
	key []byte

	gen uint64 // this process's generation
	// Entries of generation staleGen with a sequence above staleAfter came
	// after the loaded checkpoint: they do not count as seen.
	staleGen, staleAfter uint64
}

const (
	tagGenBits = 16
	tagSeqMask = 1<<(64-tagGenBits) - 1
	tagGenMask = 1<<tagGenBits - 1
)

func newDedup(maxBytes int) *dedup {
	return &dedup{set: idset.New(maxBytes), gen: 1}
}

// hash returns the fingerprint of the event of type t with this id.
func (d *dedup) hash(t event.Type, id []byte) idset.FP {
	d.key = append(append(d.key[:0], byte(t)), id...)
	return d.set.Hash(d.key)
}

// seen reports whether the event of fingerprint fp was counted before.
func (d *dedup) seen(fp idset.FP) bool {
	tag, ok := d.set.Get(fp)
	if !ok {
		return false
	}
	if d.staleGen != 0 && tag&tagGenMask == d.staleGen&tagGenMask && tag>>tagGenBits > d.staleAfter&tagSeqMask {
		return false
	}
	return true
}

// add records that the event of fingerprint fp was counted by the message
// of stream sequence seq (0 in core mode).
func (d *dedup) add(fp idset.FP, seq uint64) {
	d.set.Put(fp, (seq&tagSeqMask)<<tagGenBits|d.gen&tagGenMask)
}

// restored installs set, loaded from a checkpoint of sequence seq written
// by generation gen, and starts the next generation.
func (d *dedup) restored(set *idset.Set, gen, seq uint64) {
	d.set = set
	d.staleGen, d.staleAfter = gen, seq
	d.gen = gen + 1
}

func (d *dedup) reset() { d.set.Reset() }
