package idset

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
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
