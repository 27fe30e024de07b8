package idset

import (
	"strconv"
	"testing"

	"github.com/VictoriaMetrics/fastcache"
)

// BenchmarkDedup times the dedup of one new id (look-up, then insert) in a set of 256 MiB that
// already holds 3M ids, against fastcache (HasGet then Set: the check-then-set the bidder used
// before idset) in the same run. "prefetch16" hashes and prefetches 16 ids ahead, as the
// ingester does for a batch message.
func BenchmarkDedup(b *testing.B) {
	const size, preload = 256 << 20, 3_000_000
	key := func(buf []byte, prefix byte, i int) []byte {
		buf = append(buf[:0], 1, prefix, '-')
		return strconv.AppendInt(buf, int64(i), 36)
	}
	b.Run("idset", func(b *testing.B) {
		s := New(size)
		var buf []byte
		for i := range preload {
			s.Put(s.Hash(key(buf, 'p', i)), uint64(i))
		}
		b.ResetTimer()
		for i := 0; b.Loop(); i++ {
			fp := s.Hash(key(buf, 'n', i))
			if _, ok := s.Get(fp); !ok {
				s.Put(fp, uint64(i))
			}
		}
	})
	b.Run("idset/prefetch16", func(b *testing.B) {
		s := New(size)
		var buf []byte
		for i := range preload {
			s.Put(s.Hash(key(buf, 'p', i)), uint64(i))
		}
		var fps [16]FP
		b.ResetTimer()
		for i := 0; b.Loop(); i++ {
			if i%16 == 0 {
				for j := range fps {
					fps[j] = s.Hash(key(buf, 'n', i+j))
					s.Prefetch(fps[j])
				}
			}
			fp := fps[i%16]
			if _, ok := s.Get(fp); !ok {
				s.Put(fp, uint64(i))
			}
		}
	})
	b.Run("fastcache", func(b *testing.B) {
		c := fastcache.New(size)
		var buf, v []byte
		val := make([]byte, 16)
		for i := range preload {
			c.Set(key(buf, 'p', i), val)
		}
		b.ResetTimer()
		for i := 0; b.Loop(); i++ {
			k := key(buf, 'n', i)
			var ok bool
			if v, ok = c.HasGet(v[:0], k); !ok {
				c.Set(k, val)
			}
		}
	})
}
