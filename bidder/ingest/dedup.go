package ingest

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

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
// checkpoint save the set after releasing the applier: when the checkpoint
// is loaded, entries of the generation that wrote it with a sequence above
// the checkpoint's came after it, and are marked dead (generation 0), so the
// replay that follows counts those events again, once. Marking happens at
// load, so the dead stay dead through any number of later restarts. Tags keep
// the low 48 bits of the sequence and a 16-bit generation in 1..65535.
//
// The set has one writer: the service calls seen and add from its single
// applier goroutine only, which serialises them per id.
type dedup struct {
	set *idset.Set
	key []byte
	gen uint64 // this process's generation
}

const (
	tagGenBits = 16
	tagSeqMask = 1<<(64-tagGenBits) - 1
	tagGenMask = 1<<tagGenBits - 1
)

// tagGen is generation gen as a tag holds it: never 0 (dead).
func tagGen(gen uint64) uint64 { return gen%tagGenMask + 1 }

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
	return ok && tag&tagGenMask != 0
}

// add records that the event of fingerprint fp was counted by the message
// of stream sequence seq (0 in core mode).
func (d *dedup) add(fp idset.FP, seq uint64) {
	d.set.Put(fp, (seq&tagSeqMask)<<tagGenBits|tagGen(d.gen))
}

// staleAfter returns the retag function for a set saved by generation gen
// with a checkpoint of sequence seq: entries that generation added after seq
// become dead.
func staleAfter(gen, seq uint64) func(uint64) uint64 {
	g, s := tagGen(gen), seq&tagSeqMask
	return func(tag uint64) uint64 {
		if tag&tagGenMask == g && tag>>tagGenBits > s {
			return tag &^ tagGenMask
		}
		return tag
	}
}

// restored installs set, loaded from a checkpoint written by generation
// gen, and starts the next generation.
func (d *dedup) restored(set *idset.Set, gen uint64) {
	d.set = set
	d.gen = gen + 1
}

func (d *dedup) reset() { d.set.Reset() }

// readDedup reads a dedup set saved by a checkpoint.
func readDedup(path string, maxBytes int, retag func(uint64) uint64) (*idset.Set, error) {
	if filepath.Base(path) == "." || !strings.HasPrefix(filepath.Base(path), "dedup-") {
		return nil, fmt.Errorf("checkpoint names no dedup file")
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return idset.Read(f, maxBytes, retag)
}
