package windows

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"testing"

	"github.com/bidpulse/bidpulse/internal/allocbound"
)

func FuzzReadCheckpoint(f *testing.F) {
	for _, n := range []int{0, 1, 5, 30} {
		s := mustStore(f, Config{MaxKeys: 50})
		fillRandom(f, s, rand.New(rand.NewPCG(uint64(n), 1)), max(n, 1), n*20, t0)
		data := checkpointBytes(f, s)
		f.Add(data)
		f.Add(data[:len(data)/2])
	}
	f.Add([]byte(ckptMagic))
	// Hostile lengths in a header that matches the store: 2^40 keys, a key of 2^40 bytes, a
	// key of 2^20 bytes (the most allowed) that is not there.
	hs := mustStore(f, Config{MaxKeys: 50})
	hdr := binary.AppendUvarint([]byte(ckptMagic), ckptVersion)
	hdr = binary.AppendUvarint(hdr, uint64(len(hs.rings)))
	for _, r := range hs.rings {
		hdr = binary.AppendUvarint(binary.AppendUvarint(hdr, uint64(r.width)), uint64(r.buckets))
	}
	for _, tail := range [][]uint64{{1 << 40, 0, 0}, {1, 1 << 40}, {1, maxCheckpointKeyLen}} {
		b := append([]byte(nil), hdr...)
		for _, v := range tail {
			b = binary.AppendUvarint(b, v)
		}
		f.Add(withCRC(append(b, 0, 0, 0, 0)))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		s := mustStore(t, Config{MaxKeys: 50})
		// As given (mostly refused by the checksum), and with the checksum
		// fixed so mutations reach every structural check.
		for _, in := range [][]byte{data, withCRC(data)} {
			// The key count, key lengths and ring sizes are length fields: what they claim
			// must not be allocated before the bytes that back it are read.
			var err error
			allocbound.Check(t, "ReadCheckpoint", len(in), 4<<20, 256, func() { err = s.ReadCheckpoint(bytes.NewReader(in)) })
			if err != nil {
				if s.Len() != 0 {
					t.Fatalf("unexpected Len after error %q; got %d; want 0", err, s.Len())
				}
				continue
			}
			// A loaded store checkpoints to something that loads to the same content.
			keys := [][]byte{}
			s.Scan(-1, Span1m, t0, func(k []byte, _ Counts) bool {
				keys = append(keys, append([]byte(nil), k...))
				return true
			})
			if len(keys) != s.Len() {
				t.Fatalf("unexpected scanned keys; got %d; want %d", len(keys), s.Len())
			}
			s2 := mustStore(t, Config{MaxKeys: 50})
			if err := s2.ReadCheckpoint(bytes.NewReader(checkpointBytes(t, s))); err != nil {
				t.Fatalf("unexpected error re-reading a written checkpoint: %s", err)
			}
			sameContent(t, s, s2, keys, []int64{0, t0, t0 + hourMs})
			s.Add([]byte{0, 'x'}, t0, t0, Counts{Impressions: 1})
			s.EvictIdle(t0 + 48*hourMs)
		}
	})
}
