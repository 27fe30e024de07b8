package idset

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"sync/atomic"

	"github.com/bidpulse/bidpulse/internal/pace"
)

// File format: the magic "BPIDSET4", then seed1, seed2 and slots (uint64, little endian), then
// the previous and then the current table, each as its live slots in slot order: uvarint step
// (the slot's index plus 1 for the first, else the distance from the slot before) and h1, h2
// (without the epoch), tag (uint64, little endian), ended by a uvarint 0; then the CRC-32C of
// everything before it.
// A file's size follows the ids held, not the memory of the tables.
const magic = "BPIDSET4"

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Snapshot is the state of a Set at the moment Snapshot was called, to be written out once by
// WriteTo while the writer goes on. Ids the writer puts meanwhile may or may not be in it; their
// tags tell the reader which ones to trust.
type Snapshot struct {
	s    *Set
	t    *tables
	done bool
}

// Snapshot returns the Set's current state for WriteTo. Writer only; WriteTo must be called.
func (s *Set) Snapshot() *Snapshot {
	s.snapshots.Add(1)
	return &Snapshot{s: s, t: s.tabs.Load()}
}

// Discard gives up a snapshot that will not be written (no-op once written).
func (sn *Snapshot) Discard() {
	if !sn.done {
		sn.done = true
		sn.s.snapshots.Add(-1)
	}
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
	for _, v := range []uint64{sn.s.seed1, sn.s.seed2, sn.s.slots} {
		buf = binary.LittleEndian.AppendUint64(buf, v)
	}
	var n int64
	flush := func() error {
		k, err := bw.Write(buf)
		n += int64(k)
		buf = buf[:0]
		return err
	}
	var pacer pace.Pacer
	for _, tab := range []table{sn.t.prev, sn.t.cur} {
		t := tab.s
		last := -1
		for i := 0; i < len(t); i += 3 {
			if i%(3*1024) == 0 {
				pacer.Check()
			}
			// A live slot of the table's epoch, read whole: Put clears h1
			// before it rewrites a slot, so an unchanged h1 means h2 and the
			// tag read between belong to it.
			h1 := atomic.LoadUint64(&t[i])
			if h1 == 0 {
				continue
			}
			h2 := atomic.LoadUint64(&t[i+1])
			tag := atomic.LoadUint64(&t[i+2])
			if h2&^h2Mask != tab.epoch || atomic.LoadUint64(&t[i]) != h1 {
				continue
			}
			slot := i / 3
			buf = binary.AppendUvarint(buf, uint64(slot-last))
			last = slot
			buf = binary.LittleEndian.AppendUint64(buf, h1)
			buf = binary.LittleEndian.AppendUint64(buf, h2&h2Mask)
			buf = binary.LittleEndian.AppendUint64(buf, tag)
			if len(buf) > cap(buf)-40 {
				if err := flush(); err != nil {
					return n, err
				}
			}
		}
		buf = binary.AppendUvarint(buf, 0)
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

// Read reads a Set written by Snapshot.WriteTo, sized for maxBytes like New (the memory it
// allocates follows maxBytes, never the file). When the size differs from the saved one, the
// saved ids are put again, the previous table's first. retag, when set, maps each saved tag to
// the one the entry gets (an entry cannot be left out without breaking the probe sequences of
// the entries after it; a caller marks the ones it no longer trusts instead).
func Read(r io.Reader, maxBytes int, retag func(tag uint64) uint64) (*Set, error) {
	br := bufio.NewReaderSize(r, 1<<16)
	tr := &crcReader{br: br}
	head := make([]byte, len(magic)+3*8)
	if _, err := io.ReadFull(tr, head); err != nil {
		return nil, fmt.Errorf("cannot read the id set header: %w", err)
	}
	if string(head[:len(magic)]) != magic {
		return nil, fmt.Errorf("not an id set file (magic %q)", head[:len(magic)])
	}
	u := func(k int) uint64 { return binary.LittleEndian.Uint64(head[len(magic)+8*k:]) }
	seed1, seed2, slots := u(0), u(1), u(2)
	if slots < 2 || slots > 1<<40 {
		return nil, fmt.Errorf("invalid id set header: %d slots", slots)
	}
	set := newSet(maxBytes, seed1, seed2)
	direct := set.slots == slots // same layout: slots go back where they were
	t := set.tabs.Load()
	var ent [24]byte
	counts := []*int{&set.nPrev, &set.n}
	for ti, tt := range []table{t.prev, t.cur} {
		slot, count := -1, 0
		for {
			step, err := binary.ReadUvarint(tr)
			if err != nil {
				return nil, fmt.Errorf("cannot read the id set tables: %w", err)
			}
			if step == 0 {
				break
			}
			if step > slots || uint64(slot+1)+step-1 >= slots {
				return nil, fmt.Errorf("invalid id set: slot out of range")
			}
			slot += int(step)
			if _, err := io.ReadFull(tr, ent[:]); err != nil {
				return nil, fmt.Errorf("cannot read the id set tables: %w", err)
			}
			h1 := binary.LittleEndian.Uint64(ent[:])
			h2 := binary.LittleEndian.Uint64(ent[8:])
			tag := binary.LittleEndian.Uint64(ent[16:])
			if retag != nil {
				tag = retag(tag)
			}
			if h1 == 0 || h2&^h2Mask != 0 {
				return nil, fmt.Errorf("invalid id set: a bad slot")
			}
			if !direct {
				set.Put(FP{h1, h2}, tag)
				continue
			}
			// Probing relies on free slots: a table fuller than a Set fills it is not one.
			if count++; count > set.fullAt {
				return nil, fmt.Errorf("invalid id set: a table holds more than its %d ids", set.fullAt)
			}
			tab := tt.s
			tab[3*slot] = h1
			tab[3*slot+1] = h2 | tt.epoch
			tab[3*slot+2] = tag
		}
		if direct {
			*counts[ti] = count
		}
	}
	sum := tr.crc
	var tail [4]byte
	if _, err := io.ReadFull(br, tail[:]); err != nil {
		return nil, fmt.Errorf("cannot read the id set checksum: %w", err)
	}
	if got := binary.LittleEndian.Uint32(tail[:]); got != sum {
		return nil, fmt.Errorf("id set checksum mismatch: file says %08x, content gives %08x", got, sum)
	}
	return set, nil
}

// crcReader reads through br and keeps the CRC-32C of what it read.
type crcReader struct {
	br  *bufio.Reader
	crc uint32
	one [1]byte
}

func (c *crcReader) Read(p []byte) (int, error) {
	n, err := c.br.Read(p)
	c.crc = crc32.Update(c.crc, castagnoli, p[:n])
	return n, err
}

func (c *crcReader) ReadByte() (byte, error) {
	b, err := c.br.ReadByte()
	if err == nil {
		c.one[0] = b
		c.crc = crc32.Update(c.crc, castagnoli, c.one[:])
	}
	return b, err
}
