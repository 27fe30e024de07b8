package windows

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
)

// benchStore is the surface the benchmarks drive, so the Store and the
// baseline below run exactly the same loops.
type benchStore interface {
	Add(key []byte, tsMs, nowMs int64, c Counts) bool
	Read(key []byte, nowMs int64, dst *[NumSpans]Counts) bool
}

// mapStore is the baseline: the obvious map[string]*ringSet behind a mutex,
// one heap object (and a mutex) per key, doing the same ring arithmetic.
type mapStore struct {
	s  *Store // ring layout only
	mu sync.RWMutex
	m  map[string]*ringSet
}

type ringSet struct {
	mu      sync.Mutex
	buckets []bucket
}

func newMapStore(b *testing.B) *mapStore {
	return &mapStore{s: mustStore(b, Config{}), m: make(map[string]*ringSet)}
}

func (ms *mapStore) Add(key []byte, tsMs, nowMs int64, c Counts) bool {
	tsMs = min(tsMs, nowMs)
	ms.mu.RLock()
	rs := ms.m[string(key)]
	ms.mu.RUnlock()
	if rs == nil {
		ms.mu.Lock()
		if rs = ms.m[string(key)]; rs == nil {
			rs = &ringSet{buckets: make([]bucket, ms.s.stride)}
			ms.m[string(key)] = rs
		}
		ms.mu.Unlock()
	}
	rs.mu.Lock()
	for i := range ms.s.rings {
		ms.s.rings[i].add(rs.buckets, tsMs, nowMs, &c)
	}
	rs.mu.Unlock()
	return true
}

func (ms *mapStore) Read(key []byte, nowMs int64, dst *[NumSpans]Counts) bool {
	ms.mu.RLock()
	rs := ms.m[string(key)]
	ms.mu.RUnlock()
	if rs == nil {
		return false
	}
	rs.mu.Lock()
	ms.s.sumSpans(rs.buckets, nowMs, dst)
	rs.mu.Unlock()
	return true
}

func benchKeys(b *testing.B, n int) [][]byte {
	b.Helper()
	r, err := ParseRollups(DefaultRollupNames())
	if err != nil {
		b.Fatalf("unexpected error: %s", err)
	}
	keys := make([][]byte, n)
	var v Values
	for i := range keys {
		v[DimCampaign] = fmt.Appendf(nil, "c%d", i%500)
		v[DimCreative] = fmt.Appendf(nil, "cr%d", i)
		v[DimPlacement] = []byte("news.example/top")
		keys[i] = AppendKey(nil, 3, r, &v)
	}
	return keys
}

// benchBoth runs fn on the Store and on the baseline. setup runs once per
// implementation, before the first timed run.
func benchBoth(b *testing.B, setup func(s benchStore), fn func(b *testing.B, s benchStore)) {
	impls := []struct {
		name string
		make func() benchStore
	}{
		{"Store", func() benchStore { return mustStore(b, Config{}) }},
		{"map+mutex", func() benchStore { return newMapStore(b) }},
	}
	for _, impl := range impls {
		var s benchStore
		b.Run(impl.name, func(b *testing.B) {
			if s == nil {
				s = impl.make()
				setup(s)
				runtime.GC() // no collection of the setup's garbage in the timed loop
			}
			b.ReportAllocs()
			b.ResetTimer()
			fn(b, s)
		})
	}
}

func BenchmarkAddHotKey(b *testing.B) {
	key := benchKeys(b, 1)[0]
	c := Counts{Impressions: 1, Clicks: 1, CostMicros: 2100}
	benchBoth(b, func(benchStore) {}, func(b *testing.B, s benchStore) {
		now := t0
		for b.Loop() {
			now += 3 // rotates the 5 s ring every ~1700 adds
			s.Add(key, now-100, now, c)
		}
	})
}

func BenchmarkAddRandomKey100k(b *testing.B) {
	keys := benchKeys(b, 100_000)
	order := make([]int32, 1<<20)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range order {
		order[i] = int32(rng.IntN(len(keys)))
	}
	c := Counts{Impressions: 1}
	benchBoth(b, func(s benchStore) {
		for _, k := range keys {
			s.Add(k, t0, t0, c)
		}
	}, func(b *testing.B, s benchStore) {
		now, i := t0+hourMs, 0
		for b.Loop() {
			now += 3
			s.Add(keys[order[i&(len(order)-1)]], now, now, c)
			i++
		}
	})
}

func BenchmarkReadAllSpans(b *testing.B) {
	keys := benchKeys(b, 1000)
	benchBoth(b, func(s benchStore) {
		// A day of data every 10 s for 10 keys, so every bucket is full.
		for now := t0; now < t0+24*hourMs; now += 10 * secondMs {
			for _, k := range keys[:10] {
				s.Add(k, now, now, Counts{Impressions: 3, Clicks: 1})
			}
		}
		for _, k := range keys[10:] {
			s.Add(k, t0, t0, Counts{Impressions: 1})
		}
	}, func(b *testing.B, s benchStore) {
		var dst [NumSpans]Counts
		now := t0 + 24*hourMs - 1
		i := 0
		for b.Loop() {
			s.Read(keys[i%10], now, &dst)
			i++
		}
		if dst[Span24h].Impressions == 0 {
			b.Fatalf("unexpected empty read")
		}
	})
}

func BenchmarkParallel1Write10Reads(b *testing.B) {
	keys := benchKeys(b, 10_000)
	benchBoth(b, func(s benchStore) {
		for _, k := range keys {
			s.Add(k, t0, t0, Counts{Impressions: 1})
		}
	}, func(b *testing.B, s benchStore) {
		var clock atomic.Int64
		clock.Store(t0 + hourMs)
		var seed atomic.Uint64
		b.RunParallel(func(pb *testing.PB) {
			rng := rand.New(rand.NewPCG(seed.Add(1), 3))
			var dst [NumSpans]Counts
			i := 0
			for pb.Next() {
				k := keys[rng.IntN(len(keys))]
				if i%11 == 0 {
					now := clock.Add(1)
					s.Add(k, now, now, Counts{Impressions: 1, Clicks: 1})
				} else {
					s.Read(k, clock.Load(), &dst)
				}
				i++
			}
		})
	})
}

// BenchmarkGC100k measures a full garbage collection with 100k keys live: the
// Store's pointer-free slabs give the collector nothing to scan.
func BenchmarkGC100k(b *testing.B) {
	benchBoth(b, func(s benchStore) {
		for _, k := range benchKeys(b, 100_000) {
			s.Add(k, t0, t0, Counts{Impressions: 1})
		}
		runtime.GC()
	}, func(b *testing.B, s benchStore) {
		for b.Loop() {
			runtime.GC()
		}
		runtime.KeepAlive(s)
	})
}
