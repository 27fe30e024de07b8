package windows

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
)

func TestStoreConcurrent(t *testing.T) {
	const (
		writers = 4
		readers = 4
		keys    = 64
	)
	adds, reads := 20000, 5000
	if testing.Short() {
		adds, reads = 500, 200
	}
	s := mustStore(t, Config{})
	keyOf := func(i int) []byte { return testKey(i%4, fmt.Sprint("k", i)) }
	var clock atomic.Int64 // injected clock, advanced by the writers
	clock.Store(t0)
	var imps, clicks [writers][keys]uint64
	var wg sync.WaitGroup
	start := make(chan struct{})
	for w := 0; w < writers; w++ {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			key := make([]byte, 0, 32)
			<-start
			for i := 0; i < adds; i++ {
				now := clock.Load()
				if rng.IntN(100) == 0 {
					now = clock.Add(rng.Int64N(200)) // at most ~ 80 s over the whole test
				}
				k := rng.IntN(keys)
				key = append(key[:0], keyOf(k)...)
				c := Counts{Impressions: 1}
				if rng.IntN(2) == 0 {
					c.Clicks = 1 // the click comes in the same Add as its impression
				}
				// Out-of-order event times, and nows a little behind other writers'.
				if !s.Add(key, now-rng.Int64N(10*secondMs), now-rng.Int64N(50), c) {
					panic("unexpected Add failure")
				}
				key[len(key)-1] ^= 0xff // the store must have copied the key
				imps[w][k]++
				clicks[w][k] += c.Clicks
			}
		})
	}
	var violations atomic.Int64
	for r := 0; r < readers; r++ {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(r), 11))
			var dst [NumSpans]Counts
			<-start
			for i := 0; i < reads; i++ {
				now := clock.Load() + rng.Int64N(100) - 50
				if !s.Read(keyOf(rng.IntN(keys)), now, &dst) {
					continue
				}
				for sp := range dst {
					if c := dst[sp]; c.Clicks > c.Impressions || c.CTR() > 1 {
						violations.Add(1)
					}
				}
				if c, ok := s.ReadSpan(keyOf(rng.IntN(keys)), Span(rng.IntN(int(NumSpans))), now); ok && c.Clicks > c.Impressions {
					violations.Add(1)
				}
			}
		})
	}
	wg.Go(func() {
		<-start
		for i := 0; i < reads/100; i++ {
			now := clock.Load()
			s.Scan(-1, Span1m, now, func(_ []byte, c Counts) bool {
				if c.Clicks > c.Impressions {
					violations.Add(1)
				}
				return true
			})
			if n := s.EvictIdle(now); n != 0 {
				panic(fmt.Sprintf("unexpected eviction of %d keys", n))
			}
			_ = s.Len() + s.MaxKeys()
			s.Contains(keyOf(3))
		}
	})
	close(start)
	wg.Wait()
	if n := violations.Load(); n != 0 {
		t.Fatalf("unexpected reads with more clicks than impressions; got %d; want 0", n)
	}
	if s.Len() != keys {
		t.Fatalf("unexpected Len; got %d; want %d", s.Len(), keys)
	}
	// Every event lies within the last hour: the 1h and 24h spans hold them all.
	now := clock.Load()
	for k := 0; k < keys; k++ {
		var want Counts
		for w := 0; w < writers; w++ {
			want.Impressions += imps[w][k]
			want.Clicks += clicks[w][k]
		}
		var dst [NumSpans]Counts
		s.Read(keyOf(k), now, &dst)
		if dst[Span1h] != want || dst[Span24h] != want {
			t.Fatalf("unexpected totals of key %d; got 1h %+v, 24h %+v; want %+v", k, dst[Span1h], dst[Span24h], want)
		}
	}
}
