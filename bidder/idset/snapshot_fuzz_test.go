package idset

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"testing"

	"github.com/bidpulse/bidpulse/internal/allocbound"
)

// fuzzSetBytes is the size of the sets FuzzRead reads into: 85 slots a table, so inputs of a
// few kilobytes fill them, rotate them and go past them.
const fuzzSetBytes = 4 << 10

// FuzzRead checks that Read never panics and allocates what maxBytes says, whatever the file
// claims (its slot count is a length field: 2^40 must cost nothing), and that a set it accepts
// writes out a file that reads back to itself: Read(WriteTo(Read(x))) writes the same bytes.
func FuzzRead(f *testing.F) {
	for _, c := range []struct{ size, ids, write int }{{fuzzSetBytes, 0, fuzzSetBytes}, {fuzzSetBytes, 30, fuzzSetBytes}, {fuzzSetBytes, 200, fuzzSetBytes}, {1 << 10, 20, fuzzSetBytes}, {16 << 10, 100, fuzzSetBytes}} {
		s := newSet(c.size, 1, 2)
		for i := range c.ids {
			s.Put(s.Hash(fmt.Appendf(nil, "id-%d", i)), uint64(i))
		}
		b := snapshotBytes(f, s)
		f.Add(b)
		f.Add(b[:len(b)/2])
	}
	hostile := []byte(magic)
	for _, v := range []uint64{1, 2, 1 << 40} {
		hostile = binary.LittleEndian.AppendUint64(hostile, v)
	}
	hostile = binary.AppendUvarint(hostile, 1<<39)
	f.Add(withCRC(hostile))
	f.Fuzz(func(t *testing.T, data []byte) {
		// As given (mostly refused by the checksum), and with the checksum fixed so that
		// mutations reach every structural check.
		for _, in := range [][]byte{data, withCRC(data)} {
			var s *Set
			var err error
			allocbound.Check(t, "idset.Read", len(in), 1<<20, 64, func() {
				s, err = Read(bytes.NewReader(in), fuzzSetBytes, nil)
			})
			if err != nil {
				continue
			}
			if s.Len() > 2*s.fullAt {
				t.Fatalf("unexpected Len %d of a set of %d slots a table", s.Len(), s.slots)
			}
			b1 := snapshotBytes(t, s)
			s2, err := Read(bytes.NewReader(b1), fuzzSetBytes, nil)
			if err != nil {
				t.Fatalf("unexpected error reading back a written set: %v", err)
			}
			if b2 := snapshotBytes(t, s2); !bytes.Equal(b1, b2) || s2.Len() != s.Len() {
				t.Fatalf("unexpected round trip; got %d ids, %x; want %d ids, %x", s2.Len(), b2, s.Len(), b1)
			}
		}
	})
}

func snapshotBytes(tb testing.TB, s *Set) []byte {
	tb.Helper()
	var buf bytes.Buffer
	if _, err := s.Snapshot().WriteTo(&buf); err != nil {
		tb.Fatalf("cannot write a snapshot: %v", err)
	}
	return buf.Bytes()
}

// withCRC returns data with its last 4 bytes replaced by the CRC-32C of the rest, or with one
// appended when data is shorter than a header.
func withCRC(data []byte) []byte {
	body := data
	if len(data) >= len(magic)+3*8+4 {
		body = data[:len(data)-4]
	}
	return binary.LittleEndian.AppendUint32(append([]byte(nil), body...), crc32.Checksum(body, castagnoli))
}
