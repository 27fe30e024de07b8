package windows

import (
	"encoding/binary"
	"sync/atomic"
)

// A ref locates a key: its slot (31 bits), whether the slot is in the dense
// slab (bit 31), and the arena offset of its record (high 32 bits). With the
// slot and the record both in the index entry, the CPU fetches the block and
// the key bytes of a cold key in parallel.
type ref uint64

const refDense = 1 << 31

func makeRef(slot uint32, dense bool, off uint32) ref {
	r := ref(off)<<32 | ref(slot&(refDense-1))
	if dense {
		r |= refDense
	}
	return r
}

func (r ref) slot() uint32 { return uint32(r) & (refDense - 1) }
func (r ref) dense() bool  { return r&refDense != 0 }
func (r ref) off() uint32  { return uint32(r >> 32) }

// An arena record is, little endian: the key length (4 bytes), the key's
// local id in its shard's metas (4 bytes), then the key. A record is written
// once, before the ref that points at it is published, and never changed;
// compaction copies the live ones into a new arena.
const (
	recLen    = 0
	recLocal  = 4
	recHeader = 8
)

// recKey returns the key of the record at off in ar, or false when the
// bytes there cannot be a record (a reader that raced a writer).
func recKey(ar []byte, off uint32) ([]byte, bool) {
	o := uint64(off)
	if o+recHeader > uint64(len(ar)) {
		return nil, false
	}
	n := uint64(binary.LittleEndian.Uint32(ar[o+recLen:]))
	if o+recHeader+n > uint64(len(ar)) {
		return nil, false
	}
	return ar[o+recHeader : o+recHeader+n : o+recHeader+n], true
}

// table is a shard's index: open addressing with linear probing over
// 16-byte entries (a key's hash, 0 for an empty entry, and its ref), at most
// 3/4 full; deletion shifts the following entries back, so there are no
// tombstones. Two keys with the same 64-bit hash simply take two entries;
// the key bytes in the arena tell them apart. Entries are read and written
// with atomic operations (readers do not take the lock); a grown table is
// built privately and published whole.
type table struct {
	mask uint64
	n    int // live entries; writers only
	ents []tabEntry
}

type tabEntry struct {
	hash uint64
	ref  uint64
}

const minTableSize = 16

func newTable(size int) *table {
	return &table{mask: uint64(size - 1), ents: make([]tabEntry, size)}
}

// hashOf maps a key hash to a table hash (0 marks an empty entry).
func hashOf(h uint64) uint64 { return max(h, 1) }

// find returns the position and ref of key, whose table hash is h. ar is the
// shard's arena as loaded before the table.
func (t *table) find(h uint64, key, ar []byte) (int, ref, bool) {
	i := h & t.mask
	for n := uint64(0); n <= t.mask; n++ {
		e := &t.ents[i]
		eh := atomic.LoadUint64(&e.hash)
		if eh == 0 {
			break
		}
		if eh == h {
			r := ref(atomic.LoadUint64(&e.ref))
			if k, ok := recKey(ar, r.off()); ok && string(k) == string(key) {
				return int(i), r, true
			}
		}
		i = (i + 1) & t.mask
	}
	return -1, 0, false
}

// findRef returns the position of the entry holding r. The caller holds the
// writer lock.
func (t *table) findRef(h uint64, r ref) int {
	i := h & t.mask
	for n := uint64(0); n <= t.mask; n++ {
		e := &t.ents[i]
		if e.hash == 0 {
			break
		}
		if e.hash == h && ref(e.ref) == r {
			return int(i)
		}
		i = (i + 1) & t.mask
	}
	panic("BUG: windows: a live key is missing from its index")
}

// set stores an entry. The ref goes first, so a reader that sees the hash
// sees a ref published with it or after it.
func (t *table) set(i int, h uint64, r ref) {
	atomic.StoreUint64(&t.ents[i].ref, uint64(r))
	atomic.StoreUint64(&t.ents[i].hash, h)
}

// insert adds an entry; it returns the table to use from now on (a new one
// when this one was full). The caller holds the writer lock and publishes a
// new table.
func (t *table) insert(h uint64, r ref) *table {
	if (t.n+1)*4 > len(t.ents)*3 {
		g := newTable(2 * len(t.ents))
		for i := range t.ents {
			if e := t.ents[i]; e.hash != 0 {
				g.place(e.hash, ref(e.ref))
			}
		}
		t = g
	}
	t.place(h, r)
	return t
}

func (t *table) place(h uint64, r ref) {
	i := h & t.mask
	for t.ents[i].hash != 0 {
		i = (i + 1) & t.mask
	}
	t.set(int(i), h, r)
	t.n++
}

// remove deletes the entry at position i and shifts back the entries after
// it that would otherwise become unreachable. The caller holds the writer
// lock.
func (t *table) remove(i int) {
	pos := uint64(i)
	for j := (pos + 1) & t.mask; ; j = (j + 1) & t.mask {
		e := t.ents[j]
		if e.hash == 0 {
			break
		}
		home := e.hash & t.mask
		// e may move to pos unless its home lies cyclically in (pos, j].
		if (j > pos && (home <= pos || home > j)) || (j < pos && home <= pos && home > j) {
			t.set(int(pos), e.hash, ref(e.ref))
			pos = j
		}
	}
	t.set(int(pos), 0, 0)
	t.n--
}

// entryBytes is the index memory per entry.
const entryBytes = 16
