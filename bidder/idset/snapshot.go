package idset

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"sync/atomic"
)

// File format (little endian): the magic "BPIDSET1", then seed1, seed2, slots, ids in the current
// table, ids in the previous table (uint64 each; the counts are informative: a snapshot written
// while the writer goes on may hold more), then the current and the previous table, 3*slots
// uint64 each, then the CRC-32C of everything before it.
const magic = "BPIDSET1"

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Snapshot is the state of a Set at the moment Snapshot was called, to be written out once by
// WriteTo while the writer goes on. Ids the writer puts meanwhile may or may not be in it; their
// tags tell the reader which ones to trust.
type Snapshot struct {
	s       *Set
	t       *tables
	n, prev int
	done    bool
}

// Snapshot returns the Set's current state for WriteTo. Writer only; WriteTo must be called.
func (s *Set) Snapshot() *Snapshot {
	s.snapshots.Add(1)
	return &Snapshot{s: s, t: s.tabs.Load(), n: s.n, prev: s.nPrev}
}

// WriteTo writes the snapshot to w. It may run concurrently with the writer; it reads each slot
// with the ordering the writer's Put publishes it with.
func (sn *Snapshot) WriteTo(w io.Writer) (int64, error) {
	if sn.done {
		return 0, errors.New("idset: snapshot already written")
	}
	sn.done = true
	defer sn.s.snapshots.Add(-1)
	crc := crc32.New(castagnoli)
	bw := bufio.NewWriterSize(io.MultiWriter(w, crc), 1<<16)
	buf := make([]byte, 0, 1<<16)
	buf = append(buf, magic...)
	for _, v := range []uint64{sn.s.seed1, sn.s.seed2, sn.s.slots, uint64(sn.n), uint64(sn.prev)} {
		buf = binary.LittleEndian.AppendUint64(buf, v)
	}
	var n int64
	flush := func() error {
		k, err := bw.Write(buf)
		n += int64(k)
		buf = buf[:0]
		return err
	}
	for _, t := range [][]uint64{sn.t.cur, sn.t.prev} {
		for i := 0; i < len(t); i += 3 {
			var h2, tag uint64
			h1 := atomic.LoadUint64(&t[i])
			if h1 != 0 {
				h2, tag = t[i+1], atomic.LoadUint64(&t[i+2])
			}
			buf = binary.LittleEndian.AppendUint64(buf, h1)
			buf = binary.LittleEndian.AppendUint64(buf, h2)
			buf = binary.LittleEndian.AppendUint64(buf, tag)
			if len(buf) > cap(buf)-24 {
				if err := flush(); err != nil {
					return n, err
				}
			}
		}
	}
	if err := flush(); err != nil {
		return n, err
	}
	if err := bw.Flush(); err != nil {
		return n, err
	}
	k, err := w.Write(binary.LittleEndian.AppendUint32(nil, crc.Sum32()))
	return n + int64(k), err
}

// Read reads a Set written by Snapshot.WriteTo, sized for maxBytes like New. When the size
// differs from the saved one, the saved ids are put again (the previous table's first), keeping
// the newest ones that fit.
func Read(r io.Reader, maxBytes int) (*Set, error) {
	crc := crc32.New(castagnoli)
	br := bufio.NewReaderSize(r, 1<<16)
	tr := io.TeeReader(br, crc)
	head := make([]byte, len(magic)+5*8)
	if _, err := io.ReadFull(tr, head); err != nil {
		return nil, fmt.Errorf("cannot read the id set header: %w", err)
	}
	if string(head[:len(magic)]) != magic {
		return nil, fmt.Errorf("not an id set file (magic %q)", head[:len(magic)])
	}
	u := func(k int) uint64 { return binary.LittleEndian.Uint64(head[len(magic)+8*k:]) }
	seed1, seed2, slots := u(0), u(1), u(2)
	if slots < 2 || slots > 1<<36 {
		return nil, fmt.Errorf("invalid id set header: %d slots", slots)
	}
	saved := newSet(int(slots)*2*EntryBytes, seed1, seed2)
	if saved.slots != slots {
		return nil, fmt.Errorf("BUG: id set of %d slots read as %d", slots, saved.slots)
	}
	t := saved.tabs.Load()
	buf := make([]byte, 1<<16)
	var counts [2]int
	for ti, tab := range [][]uint64{t.cur, t.prev} {
		for i := 0; i < len(tab); {
			k := min(len(buf)/8, len(tab)-i)
			if _, err := io.ReadFull(tr, buf[:8*k]); err != nil {
				return nil, fmt.Errorf("cannot read the id set tables: %w", err)
			}
			for j := range k {
				v := binary.LittleEndian.Uint64(buf[8*j:])
				tab[i+j] = v
				if (i+j)%3 == 0 && v != 0 {
					counts[ti]++
				}
			}
			i += k
		}
		// Probing relies on empty slots: a table fuller than a Set fills it is not one.
		if counts[ti] > saved.horizon {
			return nil, fmt.Errorf("invalid id set: a table holds %d ids, more than its %d", counts[ti], saved.horizon)
		}
	}
	sum := crc.Sum32()
	var tail [4]byte
	if _, err := io.ReadFull(br, tail[:]); err != nil {
		return nil, fmt.Errorf("cannot read the id set checksum: %w", err)
	}
	if got := binary.LittleEndian.Uint32(tail[:]); got != sum {
		return nil, fmt.Errorf("id set checksum mismatch: file says %08x, content gives %08x", got, sum)
	}
	saved.n, saved.nPrev = counts[0], counts[1]
	want := newSet(maxBytes, seed1, seed2)
	if want.slots == saved.slots {
		return saved, nil
	}
	// Another size: put the saved ids again, oldest table first.
	for _, tab := range [][]uint64{t.prev, t.cur} {
		for i := 0; i < len(tab); i += 3 {
			if tab[i] != 0 {
				want.Put(FP{tab[i], tab[i+1]}, tab[i+2])
			}
		}
	}
	return want, nil
}
