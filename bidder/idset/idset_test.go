package idset

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"
)

func id(i int) []byte { return fmt.Appendf(nil, "\x01ev-%d", i) }

// TestHorizon puts ids through many rotations and checks, against a reference, that every one of
// the last Horizon ids is found with its newest tag and that ids never put are not found.
func TestHorizon(t *testing.T) {
	s := New(64 * EntryBytes) // 32 slots per table, horizon 22
	h := s.Horizon()
	if h != 22 {
		t.Fatalf("unexpected horizon; got %d; want 22", h)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	tags := map[int]uint64{}
	var order []int
	for step := range 5000 {
		i := rng.IntN(400)
		fp := s.Hash(id(i))
		if _, ok := s.Get(fp); !ok {
			s.Put(fp, uint64(step))
			tags[i] = uint64(step)
			order = append(order, i)
		}
		if s.Len() > 2*h {
			t.Fatalf("unexpected Len %d above 2*horizon %d", s.Len(), 2*h)
		}
		// The last h distinct puts are all remembered with their tags.
		for k := max(0, len(order)-h); k < len(order); k++ {
			j := order[k]
			got, ok := s.Get(s.Hash(id(j)))
			if !ok {
				t.Fatalf("step %d: unexpected miss of id %d, put %d puts ago (horizon %d)", step, j, len(order)-k, h)
			}
			if got != tags[j] {
				t.Fatalf("step %d: unexpected tag of id %d; got %d; want %d", step, j, got, tags[j])
			}
		}
	}
	for i := 1000; i < 2000; i++ {
		if _, ok := s.Get(s.Hash(id(i))); ok {
			t.Fatalf("unexpected hit of id %d, never put", i)
		}
	}
}

// TestEpochWrap rotates a two-slot set past 65,536 epochs: reused slots of old epochs never count
// as held.
func TestEpochWrap(t *testing.T) {
	s := New(4 * EntryBytes) // 2 slots per table, horizon 1: every Put rotates
	for i := range 140_000 {
		fp := s.Hash(id(i))
		if _, ok := s.Get(fp); ok {
			t.Fatalf("unexpected hit of new id %d", i)
		}
		s.Put(fp, uint64(i))
		if got, ok := s.Get(fp); !ok || got != uint64(i) {
			t.Fatalf("unexpected miss of id %d just put", i)
		}
		if i > 0 {
			if got, ok := s.Get(s.Hash(id(i - 1))); !ok || got != uint64(i-1) {
				t.Fatalf("unexpected miss of id %d, put one before", i-1)
			}
		}
		if i > 2 {
			if _, ok := s.Get(s.Hash(id(i - 3))); ok {
				t.Fatalf("unexpected hit of id %d, dropped two rotations ago", i-3)
			}
		}
	}
}

// TestPutUpdatesTag checks that Put of a held id updates its tag in place.
func TestPutUpdatesTag(t *testing.T) {
	s := New(1 << 16)
	fp := s.Hash([]byte("a"))
	s.Put(fp, 1)
	s.Put(fp, 7)
	if got, ok := s.Get(fp); !ok || got != 7 || s.Len() != 1 {
		t.Fatalf("unexpected state; got tag %d, %v, len %d; want 7, true, 1", got, ok, s.Len())
	}
	s.Reset()
	if _, ok := s.Get(fp); ok || s.Len() != 0 {
		t.Fatalf("unexpected id after Reset")
	}
}

// TestSnapshotConcurrent writes a snapshot while the writer keeps putting ids (run with -race)
// and checks that the read-back set holds every id put before the snapshot, with its tag, and
// is still usable.
func TestSnapshotConcurrent(t *testing.T) {
	s := New(1 << 20)
	for i := range 20_000 {
		s.Put(s.Hash(id(i)), uint64(i))
	}
	sn := s.Snapshot()
	var buf bytes.Buffer
	var wg sync.WaitGroup
	wg.Go(func() {
		if _, err := sn.WriteTo(&buf); err != nil {
			t.Error(err)
		}
	})
	for i := 20_000; i < 80_000; i++ { // rotates: horizon is 15,290
		s.Put(s.Hash(id(i)), uint64(i))
	}
	wg.Wait()
	if _, err := sn.WriteTo(&buf); err == nil {
		t.Fatalf("unexpected second WriteTo of a snapshot")
	}
	for _, size := range []int{1 << 20, 1 << 22} {
		r, err := Read(bytes.NewReader(buf.Bytes()), size, nil)
		if err != nil {
			t.Fatal(err)
		}
		// The snapshot held the last horizon ids before it at least.
		for i := 20_000 - s.Horizon(); i < 20_000; i++ {
			if got, ok := r.Get(r.Hash(id(i))); !ok || got != uint64(i) {
				t.Fatalf("size %d: unexpected read-back of id %d; got %d, %v", size, i, got, ok)
			}
		}
		r.Put(r.Hash([]byte("new")), 1)
		if _, ok := r.Get(r.Hash([]byte("new"))); !ok {
			t.Fatalf("unexpected miss after Put in a read-back set")
		}
	}
}

// TestReadCorrupt checks that damaged files are refused with an error.
func TestReadCorrupt(t *testing.T) {
	s := New(1 << 12)
	for i := range 50 {
		s.Put(s.Hash(id(i)), 1)
	}
	var buf bytes.Buffer
	if _, err := s.Snapshot().WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	good := buf.Bytes()
	flip := bytes.Clone(good)
	flip[len(flip)/2] ^= 1
	huge := bytes.Clone(good)
	binary.LittleEndian.PutUint64(huge[8+16:], 1<<50)
	for name, b := range map[string][]byte{
		"empty": nil, "magic": append([]byte("XXXXXXXX"), good[8:]...), "truncated": good[:len(good)-9],
		"bit flip": flip, "huge": huge,
	} {
		if _, err := Read(bytes.NewReader(b), 1<<12, nil); err == nil {
			t.Errorf("%s: unexpected success", name)
		}
	}
	if _, err := Read(bytes.NewReader(good), 1<<12, nil); err != nil {
		t.Fatalf("unexpected error: %s", err)
	}
}

// waitFor polls cond until it holds, failing the test after a deadline.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// spareMem returns the memory of s's spare once its goroutine allocated it. The caller is the
// writer.
func spareMem(t *testing.T, s *Set) []uint64 {
	t.Helper()
	if s.spare == nil {
		t.Fatalf("unexpected Set without a spare under way (%d ids, spare from %d)", s.n, s.spareAt)
	}
	waitFor(t, "the spare table", func() bool { return s.spare.mem.Load() != nil })
	return *s.spare.mem.Load()
}

// putRange puts ids from..to-1 with their numbers as tags.
func putRange(s *Set, from, to int) {
	for i := from; i < to; i++ {
		s.Put(s.Hash(id(i)), uint64(i))
	}
}

// checkFound fails unless ids from..to-1 are held with their numbers as tags.
func checkFound(t *testing.T, s *Set, from, to int) {
	t.Helper()
	for i := from; i < to; i++ {
		if got, ok := s.Get(s.Hash(id(i))); !ok || got != uint64(i) {
			t.Fatalf("unexpected look-up of id %d; got %d, %v; want %d, true", i, got, ok, i)
		}
	}
}

// sameMem reports whether two tables' memories are the same.
func sameMem(a, b []uint64) bool { return &a[0] == &b[0] }

// TestRotateUsesSpare rotates while a snapshot is open: the spare, allocated in the background
// from spareLoad on, becomes the new table, the writer allocates nothing, every id stays found
// and the snapshot still reads back. Once the snapshot is written, rotation reuses memory again.
func TestRotateUsesSpare(t *testing.T) {
	s := New(1 << 20) // 21,845 slots a table: spare from 13,107 ids, rotation at 15,291
	putRange(s, 0, 1000)
	first := s.tabs.Load().cur.s
	sn := s.Snapshot()
	putRange(s, 1000, s.spareAt)
	spare := spareMem(t, s)
	h := s.Horizon()
	putRange(s, s.spareAt, h+1) // the last Put rotates
	if got := s.tabs.Load().cur.s; !sameMem(got, spare) {
		t.Fatalf("unexpected memory of the table after a rotation during a snapshot; got %p; want the spare %p", got, spare)
	}
	if got := s.SyncAllocs(); got != 0 {
		t.Fatalf("unexpected SyncAllocs; got %d; want 0", got)
	}
	if s.spare != nil {
		t.Fatalf("unexpected spare kept after it was used")
	}
	if s.n != 1 || s.nPrev != h {
		t.Fatalf("unexpected table counts; got %d, %d; want 1, %d", s.n, s.nPrev, h)
	}
	checkFound(t, s, 0, h+1)

	var buf bytes.Buffer
	if _, err := sn.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	r, err := Read(bytes.NewReader(buf.Bytes()), 1<<20, nil)
	if err != nil {
		t.Fatal(err)
	}
	checkFound(t, r, 0, 1000)

	// No snapshot open: the next rotation reuses the dropped table, the first one.
	putRange(s, h+1, 2*h+1)
	if got := s.tabs.Load().cur.s; !sameMem(got, first) {
		t.Fatalf("unexpected memory of the table after a rotation without a snapshot; got %p; want the dropped one %p", got, first)
	}
	if got := s.SyncAllocs(); got != 0 || s.spare != nil {
		t.Fatalf("unexpected SyncAllocs %d or spare %v after a rotation without a snapshot; want 0, nil", got, s.spare)
	}
	checkFound(t, s, h+1, 2*h+1)
}

// TestRotationWaitsForSpare holds the spare's allocation back: past the horizon the current table
// keeps filling (no allocation by the writer) until the spare is ready, and the next Put rotates
// onto it.
func TestRotationWaitsForSpare(t *testing.T) {
	s := New(1 << 20)
	gate := make(chan struct{})
	defer func() {
		select {
		case <-gate:
		default:
			close(gate)
		}
	}()
	s.allocSpare = func(slots uint64) []uint64 {
		<-gate
		return allocTable(slots)
	}
	sn := s.Snapshot()
	defer sn.Discard()
	h := s.Horizon()
	over := h + 1000 // below fullAt (18,568)
	putRange(s, 0, over)
	if s.n != over || s.nPrev != 0 || s.SyncAllocs() != 0 {
		t.Fatalf("unexpected rotation before the spare was ready; got %d, %d ids, %d sync allocations; want %d, 0, 0",
			s.n, s.nPrev, s.SyncAllocs(), over)
	}
	close(gate)
	spare := spareMem(t, s)
	putRange(s, over, over+1)
	if got := s.tabs.Load().cur.s; !sameMem(got, spare) || s.n != 1 || s.nPrev != over {
		t.Fatalf("unexpected state after the spare was ready; got %d, %d ids, spare used %v; want 1, %d, true",
			s.n, s.nPrev, sameMem(got, spare), over)
	}
	if got := s.SyncAllocs(); got != 0 {
		t.Fatalf("unexpected SyncAllocs; got %d; want 0", got)
	}
	checkFound(t, s, 0, over+1)
}

// TestRotationLastResort never lets the spare finish in time: past fullLoad the writer allocates
// a table itself, counted by SyncAllocs, and ids stay found; the spare that comes later serves
// the next rotation, and Release drops one not used.
func TestRotationLastResort(t *testing.T) {
	s := New(1 << 20)
	gate := make(chan struct{})
	s.allocSpare = func(slots uint64) []uint64 {
		<-gate
		return allocTable(slots)
	}
	sn := s.Snapshot()
	defer sn.Discard()
	full := s.fullAt
	putRange(s, 0, full+1)
	if got := s.SyncAllocs(); got != 1 {
		t.Fatalf("unexpected SyncAllocs after a rotation past fullLoad with no spare; got %d; want 1", got)
	}
	if s.n != 1 || s.nPrev != full {
		t.Fatalf("unexpected table counts; got %d, %d; want 1, %d", s.n, s.nPrev, full)
	}
	checkFound(t, s, 0, full+1)

	close(gate)
	spare := spareMem(t, s) // the one started before, still on its way
	putRange(s, full+1, full+1+s.Horizon())
	if got := s.tabs.Load().cur.s; !sameMem(got, spare) || s.SyncAllocs() != 1 {
		t.Fatalf("unexpected second rotation; spare used %v, SyncAllocs %d; want true, 1", sameMem(got, spare), s.SyncAllocs())
	}
	checkFound(t, s, full+1, full+1+s.Horizon())

	putRange(s, full+1+s.Horizon(), full+1+s.Horizon()+s.spareAt) // a new spare
	spareMem(t, s)
	s.Release()
	if s.spare != nil {
		t.Fatalf("unexpected spare kept by Release")
	}
}
