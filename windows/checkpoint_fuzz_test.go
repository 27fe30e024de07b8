package windows

import (
	"bytes"
	"math/rand/v2"
	"testing"
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
	f.Fuzz(func(t *testing.T, data []byte) {
		s := mustStore(t, Config{MaxKeys: 50})
		// As given (mostly refused by the checksum), and with the checksum
		// fixed so mutations reach every structural check.
		for _, in := range [][]byte{data, withCRC(data)} {
			err := s.ReadCheckpoint(bytes.NewReader(in))
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
