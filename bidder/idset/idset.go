// Package idset is the bidder's memory of counted event ids: a bounded set of fingerprints, each
// with a 64-bit tag, that remembers at least the last Horizon ids put in it.
//
// It is two open-addressing tables of equal size: new ids go into the current one; when that holds
// Horizon ids, the previous table is dropped, the current one becomes the previous, and the
// dropped table's memory becomes the new current one. A look-up checks both, so every one of the
// last Horizon ids (and up to 2*Horizon) is found. Tables are pointer-free slices: the garbage
// collector does not scan them.
//
// Rotation costs nothing: each table has an epoch, written into every slot it fills, and a slot
// of another epoch counts as empty, so a table is reused without being cleared (a clear of a large
// table would stall the writer for milliseconds). Epochs are 16 bits: a slot would have to stay
// unwritten through 32,768 reuses of its table to be mistaken for a live one.
//
// Cost: a look-up of a new id touches one cache line in each table (about two at the highest
// load), and Put writes the line Get just read. Prefetch starts those loads early, so a caller
// holding several ids (a batch message) overlaps their cache misses.
//
// Fingerprints are 112 bits: two xxhash sums of the id behind two random seeds, one cut to 48 bits
// (its top 16 bits hold the epoch). Two ids collide with a probability of 2^-112 per pair, so a
// false "seen" (an event counted as a duplicate) needs about 2^56 ids. The seeds are random per
// Set and saved with it.
//
// A snapshot being written out still reads the previous table, so a rotation while one is open
// cannot reuse that memory and needs a third table. Allocating it (tens of MB, faulted in) would
// stall the writer, so a goroutine allocates a spare in the background as soon as Put finds a
// snapshot open and the current table past spareLoad; the rotation waits for the spare (the
// current table may fill up to fullLoad meanwhile), and only past fullLoad with no spare ready
// does the writer allocate a table itself (SyncAllocs counts those).
//
// Concurrency: one writer (Get, Put, Reset, Snapshot, Release) at a time; a snapshot is taken by
// the writer and may be written out by another goroutine while the writer goes on. The spare's
// goroutine touches only the memory it allocates, which it hands over through an atomic pointer.
package idset

import (
	"crypto/rand"
	"encoding/binary"
	"math/bits"
	"sync/atomic"
	"unsafe"

	"github.com/cespare/xxhash/v2"
)

// EntryBytes is the memory of one slot: the two fingerprint halves and the tag.
const EntryBytes = 24

// maxLoad is the fill, in percent, at which the current table is rotated: linear probing stays
// within a cache line or two up to there. While a snapshot is being written the dropped table's
// memory cannot be reused yet: a spare table is allocated in the background once the current
// table is past spareLoad (the first Put there with a snapshot open starts it), and the rotation
// waits for it up to fullLoad, past which the writer allocates a table itself. Starting at
// spareLoad leaves the allocation the stretch up to maxLoad to finish before the rotation is
// due, and costs at most one spare per table filled; one not used (the snapshot ended first) is
// dropped at the next rotation, so the set goes back to two tables.
const (
	spareLoad = 60
	maxLoad   = 70
	fullLoad  = 85
)

const (
	epochShift = 48
	h2Mask     = 1<<epochShift - 1
)

// FP is the fingerprint of an id. The zero FP is never produced.
type FP struct{ h1, h2 uint64 }

// Set is a bounded set of id fingerprints with tags. The zero Set is not usable; call New.
type Set struct {
	seed1, seed2 uint64
	slots        uint64 // per table
	horizon      int    // ids per table before rotation
	fullAt       int    // ids a table may reach while a snapshot delays its rotation
	spareAt      int    // ids from which a spare is prepared while a snapshot is open
	tabs         atomic.Pointer[tables]
	n, nPrev     int    // ids in the current and the previous table
	epoch        uint16 // the last epoch handed out
	snapshots    atomic.Int32
	buf          []byte // seed and id, for Hash

	// spare is the table being allocated in the background, or allocated and not used yet;
	// nil when none. Writer only (the goroutine holds the *spareTable, never the Set).
	spare      *spareTable
	syncAllocs atomic.Uint64
	// allocSpare allocates a spare's memory (allocTable; tests hold it back).
	allocSpare func(slots uint64) []uint64
}

// spareTable is a table's memory allocated off the writer's path: its goroutine stores mem once
// the memory is allocated and faulted in; until then mem is nil.
type spareTable struct{ mem atomic.Pointer[[]uint64] }

// table is one table's slots (h1, h2 with the epoch on top, tag) and the epoch of its live slots.
type table struct {
	s     []uint64
	epoch uint64 // shifted to epochShift
}

// tables is the current and the previous table, swapped together so a snapshot sees a pair that
// existed.
type tables struct{ cur, prev table }

// New returns a Set using about maxBytes for its two tables (at least 2 slots each).
func New(maxBytes int) *Set {
	var b [16]byte
	rand.Read(b[:])
	return newSet(maxBytes, binary.LittleEndian.Uint64(b[:8]), binary.LittleEndian.Uint64(b[8:]))
}

func newSet(maxBytes int, seed1, seed2 uint64) *Set {
	slots := uint64(max(maxBytes/2/EntryBytes, 2))
	s := &Set{seed1: seed1, seed2: seed2, slots: slots, horizon: int(max(slots*maxLoad/100, 1)),
		fullAt: int(max(slots*fullLoad/100, 1)), spareAt: int(max(slots*spareLoad/100, 1)), allocSpare: allocTable}
	s.tabs.Store(&tables{cur: s.newTable(allocTable(slots)), prev: s.newTable(allocTable(slots))})
	return s
}

// nextEpoch returns a new table epoch, never 0.
func (s *Set) nextEpoch() uint64 {
	if s.epoch++; s.epoch == 0 {
		s.epoch = 1
	}
	return uint64(s.epoch) << epochShift
}

// newTable returns an empty table of a new epoch on mem (any earlier content: slots of other
// epochs count as empty).
func (s *Set) newTable(mem []uint64) table {
	return table{s: mem, epoch: s.nextEpoch()}
}

// allocTable returns the new memory of a table of slots slots, its pages faulted in, as the
// first Puts would otherwise each pay a page fault on the writer's path.
func allocTable(slots uint64) []uint64 {
	mem := make([]uint64, 3*slots)
	adviseHuge(mem)
	for i := 0; i < len(mem); i += 4096 / 8 {
		mem[i] = 0
	}
	return mem
}

// allocSync is allocTable on the writer's path, counted in SyncAllocs: the last resort when a
// snapshot holds the memory a table would reuse and no spare is ready.
func (s *Set) allocSync() []uint64 {
	s.syncAllocs.Add(1)
	return allocTable(s.slots)
}

// SyncAllocs returns how many tables the writer allocated itself (tens of MB each, faulted in
// while it waited) because a snapshot was open and no spare was ready: in a rotation past
// fullLoad, or in Reset. Safe for concurrent use.
func (s *Set) SyncAllocs() uint64 { return s.syncAllocs.Load() }

// prepareSpare starts allocating a spare table in the background unless one is ready or being
// allocated. Writer only.
func (s *Set) prepareSpare() {
	if s.spare != nil {
		return
	}
	sp := &spareTable{}
	s.spare = sp
	alloc, slots := s.allocSpare, s.slots
	go func() {
		mem := alloc(slots)
		sp.mem.Store(&mem)
	}()
}

// takeSpare returns the spare's memory and forgets it; nil when no spare is ready. Writer only.
func (s *Set) takeSpare() []uint64 {
	if s.spare == nil {
		return nil
	}
	mem := s.spare.mem.Load()
	if mem == nil || uint64(len(*mem)) != 3*s.slots {
		return nil
	}
	s.spare = nil
	return *mem
}

// Release drops the tables and any spare (one still being allocated is dropped by its goroutine
// when done), keeping an empty Set of two slots: for a writer that is done, so the memory can go
// back before the Set does.
func (s *Set) Release() {
	s.slots, s.horizon, s.fullAt, s.spareAt, s.n, s.nPrev = 2, 1, 1, 1, 0, 0
	s.spare = nil
	s.tabs.Store(&tables{cur: table{s: make([]uint64, 6), epoch: s.nextEpoch()}, prev: table{s: make([]uint64, 6), epoch: s.nextEpoch()}})
}

// Horizon returns how many of the most recent ids the Set is sure to remember.
func (s *Set) Horizon() int { return s.horizon }

// Len returns the number of ids held (at most 2*Horizon, a little more while a snapshot is
// written). Writer only.
func (s *Set) Len() int { return s.n + s.nPrev }

// Hash returns the fingerprint of id: the xxhash sums of id behind each seed. Writer only; it
// does not allocate once its buffer has grown.
func (s *Set) Hash(id []byte) FP {
	s.buf = binary.LittleEndian.AppendUint64(s.buf[:0], s.seed1)
	s.buf = append(s.buf, id...)
	h1 := xxhash.Sum64(s.buf) | 1 // 0 marks an empty slot
	binary.LittleEndian.PutUint64(s.buf, s.seed2)
	return FP{h1, xxhash.Sum64(s.buf) & h2Mask}
}

// home returns the first slot of fp in a table.
func (s *Set) home(fp FP) uint64 {
	hi, _ := bits.Mul64(fp.h1, s.slots)
	return hi
}

// Prefetch starts loading the lines a Get or Put of fp will read.
func (s *Set) Prefetch(fp FP) {
	t := s.tabs.Load()
	i := 3 * s.home(fp)
	prefetch(unsafe.Pointer(&t.cur.s[i]))
	prefetch(unsafe.Pointer(&t.prev.s[i]))
}

// Get returns the tag of fp; false when fp is not held.
func (s *Set) Get(fp FP) (uint64, bool) {
	t := s.tabs.Load()
	// The previous table's line loads while the current one is probed.
	prefetch(unsafe.Pointer(&t.prev.s[3*s.home(fp)]))
	if i, ok := s.find(t.cur, fp); ok {
		return atomic.LoadUint64(&t.cur.s[i+2]), true
	}
	if i, ok := s.find(t.prev, fp); ok {
		return atomic.LoadUint64(&t.prev.s[i+2]), true
	}
	return 0, false
}

// find returns the index of fp's slot in t, or of the free slot (empty, or of another epoch) that
// ends its probe.
func (s *Set) find(t table, fp FP) (uint64, bool) {
	i := 3 * s.home(fp)
	end := uint64(len(t.s))
	want := fp.h2 | t.epoch
	for {
		h := atomic.LoadUint64(&t.s[i])
		h2 := atomic.LoadUint64(&t.s[i+1])
		if h == 0 || h2&^h2Mask != t.epoch {
			return i, false
		}
		if h == fp.h1 && h2 == want {
			return i, true
		}
		if i += 3; i == end {
			i = 0
		}
	}
}

// Put records fp with tag: it updates the tag when fp is held in the current table, else adds fp
// to the current table (rotating first when it is full).
func (s *Set) Put(fp FP, tag uint64) {
	t := s.tabs.Load()
	i, ok := s.find(t.cur, fp)
	if ok {
		atomic.StoreUint64(&t.cur.s[i+2], tag)
		return
	}
	if s.n >= s.horizon && s.rotateNow() {
		t = s.rotate(t)
		i, _ = s.find(t.cur, fp)
	}
	// A concurrent snapshot reads h1, h2, the tag, then h1 again, and keeps the slot only when h1
	// did not change and h2 has the table's epoch. Clearing h1 first means it never pairs an old
	// h1 with a new h2; writing the tag before h2 means a reader that sees the new h2 also sees
	// the new tag (the same h1 may come back: the same id, reused slot).
	c := t.cur.s
	atomic.StoreUint64(&c[i], 0)
	atomic.StoreUint64(&c[i+2], tag)
	atomic.StoreUint64(&c[i+1], fp.h2|t.cur.epoch)
	atomic.StoreUint64(&c[i], fp.h1)
	// Past spareAt with a snapshot open (opened before or after the table got there), a spare is
	// prepared for the rotation to come.
	if s.n++; s.n >= s.spareAt && s.spare == nil && s.snapshots.Load() != 0 {
		s.prepareSpare()
	}
}

// rotateNow reports whether the current table, holding Horizon ids or more, is rotated before
// the next id goes in: at once without a snapshot open (the dropped table's memory is reused);
// with one, when a spare is ready, or past fullLoad (the last resort: the writer allocates).
// Otherwise it makes sure a spare is on its way and the table keeps filling.
func (s *Set) rotateNow() bool {
	if s.snapshots.Load() == 0 || s.n >= s.fullAt {
		return true
	}
	if s.spare != nil && s.spare.mem.Load() != nil {
		return true
	}
	s.prepareSpare()
	return false
}

// rotate drops the previous table and starts an empty current one on its memory; while a
// snapshot may still read the dropped one, on the spare, or on memory allocated here when none
// is ready. Without a snapshot, a spare not used is dropped: the set keeps two tables.
func (s *Set) rotate(t *tables) *tables {
	mem := t.prev.s
	if s.snapshots.Load() != 0 {
		if mem = s.takeSpare(); mem == nil {
			mem = s.allocSync()
		}
	} else {
		s.spare = nil
	}
	nt := &tables{cur: s.newTable(mem), prev: t.cur}
	s.tabs.Store(nt)
	s.n, s.nPrev = 0, s.n
	return nt
}

// Reset forgets every id. While a snapshot is open it needs two new tables: the spare, when
// ready, and memory it allocates (counted in SyncAllocs); Reset is rare (a state reset at start).
func (s *Set) Reset() {
	t := s.tabs.Load()
	cur, prev := t.cur.s, t.prev.s
	if s.snapshots.Load() != 0 {
		if cur = s.takeSpare(); cur == nil {
			cur = s.allocSync()
		}
		prev = s.allocSync()
	}
	s.tabs.Store(&tables{cur: s.newTable(cur), prev: s.newTable(prev)})
	s.n, s.nPrev = 0, 0
}
