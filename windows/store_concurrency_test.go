package windows

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"runtime"
	"strings"
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

// TestStoreConcurrentReference hammers one store from writers (Add and
// AddBatch, keys moving from sparse to dense blocks), readers, scans,
// checkpoints and an evictor that recycles slots and arenas under them, and
// checks every read against the reference: per key, the events whose Add had
// returned before the read began and those whose Add had begun before it
// ended bound what the read may see, and no read shows more clicks than
// impressions (each Add carries its click with its impression). The slab is
// off the Go heap, where the race detector is blind: this test is what
// shows the seqlock readers correct.
func TestStoreConcurrentReference(t *testing.T) {
	const (
		writers = 3
		readers = 3
		keys    = 200
	)
	adds := 30000
	if testing.Short() {
		adds = 500
	}
	s := mustStore(t, Config{MaxKeys: 100_000})
	keyOf := func(i int) []byte { return testKey(i%4, fmt.Sprint("stable-", i)) }
	var clock atomic.Int64
	clock.Store(t0 + 30*minuteMs)
	// started[k] counts impressions whose Add began, done[k] those whose Add
	// returned; both only grow.
	var started, done [keys]atomic.Uint64
	for k := 0; k < keys; k++ {
		s.Add(keyOf(k), clock.Load(), clock.Load(), Counts{})
	}
	var wg sync.WaitGroup
	var stop atomic.Bool
	var failures atomic.Int64
	fail := func(format string, args ...any) {
		if failures.Add(1) == 1 {
			t.Errorf(format, args...)
		}
	}
	start := make(chan struct{})
	for w := 0; w < writers; w++ {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 17))
			<-start
			batch := make([]Event, 0, 8)
			for i := 0; i < adds; i++ {
				now := clock.Add(rng.Int64N(300))
				if rng.IntN(4) == 0 {
					batch = batch[:0]
					for j := 0; j < 1+rng.IntN(8); j++ {
						k := rng.IntN(keys)
						ts := now - rng.Int64N(20*minuteMs) // spread over many buckets
						batch = append(batch, Event{Key: keyOf(k), TsMs: ts, C: Counts{Impressions: 1, Clicks: 1, CostMicros: 10}})
						started[k].Add(1)
					}
					if n := s.AddBatch(batch, now, nil); n != len(batch) {
						fail("unexpected AddBatch count; got %d; want %d", n, len(batch))
					}
					for _, ev := range batch {
						var k int
						fmt.Sscanf(string(ev.Key[1:]), "stable-%d", &k)
						done[k].Add(1)
					}
					continue
				}
				k := rng.IntN(keys)
				started[k].Add(1)
				if !s.Add(keyOf(k), now-rng.Int64N(20*minuteMs), now-rng.Int64N(100), Counts{Impressions: 1, Clicks: 1, CostMicros: 10}) {
					fail("unexpected Add failure")
				}
				done[k].Add(1)
			}
		})
	}
	for r := 0; r < readers; r++ {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(r), 19))
			var dst [NumSpans]Counts
			<-start
			for !stop.Load() {
				k := rng.IntN(keys)
				lo := done[k].Load()
				ok := s.Read(keyOf(k), clock.Load()+secondMs, &dst)
				hi := started[k].Load()
				if !ok {
					fail("unexpected miss of a stable key")
					return
				}
				for sp, c := range dst {
					if c.Clicks != c.Impressions || c.CostMicros != 10*c.Impressions {
						fail("torn read of %s: %+v", Span(sp), c)
					}
				}
				if c := dst[Span24h]; c.Impressions < lo || c.Impressions > hi {
					fail("unexpected 24h impressions of key %d; got %d; want %d..%d", k, c.Impressions, lo, hi)
				}
				if c, ok := s.ReadSpan(keyOf(k), Span(rng.IntN(int(NumSpans))), clock.Load()); !ok || c.Clicks != c.Impressions {
					fail("torn ReadSpan: %+v, %v", c, ok)
				}
			}
		})
	}
	// Churn: short-lived keys with old event times, evicted soon after, so
	// slots, local ids, index entries and arenas are recycled under the readers.
	wg.Go(func() {
		<-start
		for i := 0; !stop.Load(); i++ {
			now := clock.Load()
			for j := 0; j < 50; j++ {
				key := testKey(j%4, fmt.Sprint("churn-", i, "-", j, "-", strings.Repeat("x", j)))
				s.Add(key, now-25*hourMs, now, Counts{Impressions: 7})
				if j%5 == 0 {
					// A few become dense before they go.
					for m := int64(0); m < 6; m++ {
						s.Add(key, now-m*minuteMs, now, Counts{Impressions: 7})
					}
				}
			}
			// Their newest time is old (or they are dense and recent: they stay a while).
			s.EvictIdle(now + 24*hourMs - 30*minuteMs)
		}
	})
	// Scans and checkpoints see every stable key exactly once, untorn.
	wg.Go(func() {
		<-start
		for !stop.Load() {
			seen := map[string]int{}
			s.Scan(-1, Span1h, clock.Load(), func(key []byte, c Counts) bool {
				if c.Clicks > c.Impressions {
					fail("torn scan: %+v", c)
				}
				if strings.Contains(string(key), "stable-") {
					seen[string(key)]++
				}
				return true
			})
			if len(seen) != keys {
				fail("unexpected stable keys in a scan; got %d; want %d", len(seen), keys)
			}
			for k, n := range seen {
				if n != 1 {
					fail("unexpected count of %q in a scan: %d", k, n)
				}
			}
			var buf bytes.Buffer
			if _, err := s.WriteCheckpoint(&buf); err != nil {
				fail("unexpected error: %s", err)
				return
			}
			s2 := mustStore(t, Config{MaxKeys: 100_000})
			if err := s2.ReadCheckpoint(&buf); err != nil {
				fail("unexpected error loading a checkpoint written under load: %s", err)
				return
			}
			for k := 0; k < keys; k++ {
				c, ok := s2.ReadSpan(keyOf(k), Span24h, clock.Load())
				if !ok || c.Clicks != c.Impressions {
					fail("unexpected checkpointed key %d: %+v, %v", k, c, ok)
				}
			}
		}
	})
	close(start)
	// Readers and the rest run until the writers are done.
	for {
		total := uint64(0)
		for k := range done {
			total += done[k].Load()
		}
		if total >= uint64(writers*adds) || failures.Load() > 0 {
			break
		}
		runtime.Gosched()
	}
	stop.Store(true)
	wg.Wait()
	if t.Failed() {
		return
	}
	// Final state: every event is within the last hour.
	now := clock.Load()
	for k := 0; k < keys; k++ {
		want := done[k].Load()
		var dst [NumSpans]Counts
		if !s.Read(keyOf(k), now, &dst) {
			t.Fatalf("unexpected miss of key %d", k)
		}
		if c := dst[Span24h]; c.Impressions != want || c.Clicks != want {
			t.Fatalf("unexpected final 24h of key %d; got %+v; want %d", k, c, want)
		}
	}
}
