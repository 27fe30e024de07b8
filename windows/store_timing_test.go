package windows

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"runtime"
	"runtime/metrics"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/paulbellamy/ratecounter"
)

// Benchmarks of issue 3, all under stable names; rerun them with
//
//	go test -run=NONE -bench=. -benchmem ./windows/
//
// docs/PERFORMANCE.md states each figure as a ratio to BenchmarkPointerChase
// (one dependent random load) from the same run.

// benchStore is the surface the benchmarks drive, so the Store and the
// baseline run exactly the same loops.
type benchStore interface {
	Add(key []byte, tsMs, nowMs int64, c Counts) bool
	Read(key []byte, nowMs int64, dst *[NumSpans]Counts) bool
	ReadSpan(key []byte, span Span, nowMs int64) (Counts, bool)
}

// mapStore is the baseline: the obvious map[string]*ring behind a mutex,
// one heap object (and a mutex) per key, each ring slot tagged with its
// bucket number, five uint64 counters, hardware division.
type mapStore struct {
	res    []Resolution
	plans  [NumSpans]spanPlan
	stride int
	mu     sync.RWMutex
	m      map[string]*ringSet
}

type ringSet struct {
	mu      sync.Mutex
	buckets []tagBucket
}

type tagBucket struct {
	tag uint64 // bucket number + 1
	c   Counts
}

func newMapStore(b testing.TB) *mapStore {
	s := mustStore(b, Config{})
	ms := &mapStore{res: s.res, plans: s.plans, m: make(map[string]*ringSet)}
	for _, r := range ms.res {
		ms.stride += r.Buckets
	}
	return ms
}

func (ms *mapStore) Add(key []byte, tsMs, nowMs int64, c Counts) bool {
	tsMs = min(tsMs, nowMs)
	ms.mu.RLock()
	rs := ms.m[string(key)]
	ms.mu.RUnlock()
	if rs == nil {
		ms.mu.Lock()
		if rs = ms.m[string(key)]; rs == nil {
			rs = &ringSet{buckets: make([]tagBucket, ms.stride)}
			ms.m[string(key)] = rs
		}
		ms.mu.Unlock()
	}
	rs.mu.Lock()
	off := 0
	for _, r := range ms.res {
		w, n := r.Width.Milliseconds(), int64(r.Buckets)
		if e := tsMs / w; e > nowMs/w-n {
			b := &rs.buckets[off+int(e%n)]
			switch tag := uint64(e) + 1; {
			case b.tag == tag:
				b.c.Add(c)
			case b.tag < tag:
				b.tag, b.c = tag, c
			}
		}
		off += r.Buckets
	}
	rs.mu.Unlock()
	return true
}

func (ms *mapStore) sum(rs *ringSet, sp Span, nowMs int64) Counts {
	pl := ms.plans[sp]
	off := 0
	for _, r := range ms.res[:pl.ring] {
		off += r.Buckets
	}
	w, n := ms.res[pl.ring].Width.Milliseconds(), int64(ms.res[pl.ring].Buckets)
	var c Counts
	cur := nowMs / w
	for e := cur; e > cur-pl.k && e >= 0; e-- {
		if b := &rs.buckets[off+int(e%n)]; b.tag == uint64(e)+1 {
			c.Add(b.c)
		}
	}
	return c
}

func (ms *mapStore) lookup(key []byte) *ringSet {
	ms.mu.RLock()
	rs := ms.m[string(key)]
	ms.mu.RUnlock()
	return rs
}

func (ms *mapStore) Read(key []byte, nowMs int64, dst *[NumSpans]Counts) bool {
	rs := ms.lookup(key)
	if rs == nil {
		return false
	}
	rs.mu.Lock()
	for sp := Span(0); sp < NumSpans; sp++ {
		dst[sp] = ms.sum(rs, sp, nowMs)
	}
	rs.mu.Unlock()
	return true
}

func (ms *mapStore) ReadSpan(key []byte, sp Span, nowMs int64) (Counts, bool) {
	rs := ms.lookup(key)
	if rs == nil {
		return Counts{}, false
	}
	rs.mu.Lock()
	c := ms.sum(rs, sp, nowMs)
	rs.mu.Unlock()
	return c, true
}

// benchKeys returns n distinct campaign/creative/placement keys.
func benchKeys(b testing.TB, n int) [][]byte {
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

// keyGen builds the key of benchKeys(n)[i] into its own buffer: random-key
// loops must not read a million separately allocated keys, or each op pays
// a cache miss of the harness on top of the store's.
type keyGen struct{ buf [64]byte }

func (g *keyGen) key(i int) []byte {
	b := append(g.buf[:0], 3, 0, 'c')
	b = strconv.AppendInt(b, int64(i%500), 10)
	b[1] = byte(len(b) - 2)
	mark := len(b)
	b = append(b, 0, 'c', 'r')
	b = strconv.AppendInt(b, int64(i), 10)
	b[mark] = byte(len(b) - mark - 1)
	b = append(b, 16)
	return append(b, "news.example/top"...)
}

// randomOrder returns 2^20 random indexes below n.
func randomOrder(n int) []int32 {
	order := make([]int32, 1<<20)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range order {
		order[i] = int32(rng.IntN(n))
	}
	return order
}

// fixture is a benchmark's set of stores with n busy keys: every key got an
// event in six different minutes, so every Store key is dense.
type fixture struct {
	n     int
	order []int32
	impls []namedStore
}

type namedStore struct {
	name string
	s    benchStore
}

func newFixture(b *testing.B, n int, withMap bool) *fixture {
	f := &fixture{n: n, order: randomOrder(n)}
	s := mustStore(b, Config{MaxKeys: n})
	f.impls = append(f.impls, namedStore{"Store", s})
	if withMap {
		f.impls = append(f.impls, namedStore{"map+mutex", newMapStore(b)})
	}
	var g keyGen
	for _, impl := range f.impls {
		for i := 0; i < n; i++ {
			k := g.key(i)
			for j := int64(0); j < 6; j++ {
				now := t0 + j*minuteMs
				impl.s.Add(k, now, now, Counts{Impressions: 3, Clicks: 1, CostMicros: 2100})
			}
		}
	}
	runtime.GC() // no collection of the setup's garbage in the timed loops
	return f
}

func (f *fixture) store() *Store { return f.impls[0].s.(*Store) }

// key returns the key of the i-th op of a random-key loop.
func (f *fixture) key(g *keyGen, i int) []byte { return g.key(int(f.order[i&(len(f.order)-1)])) }

// release drops the fixture's memory before the next benchmark.
func (f *fixture) release() {
	f.impls = nil
	runtime.GC()
	runtime.GC() // the second cycle runs the Store's cleanup (slab unmapping)
}

const startNow = t0 + 10*minuteMs

func BenchmarkAdd(b *testing.B) {
	c := Counts{Impressions: 1, Clicks: 1, CostMicros: 2100}
	b.Run("hot", func(b *testing.B) {
		f := newFixture(b, 1, true)
		defer f.release()
		var g keyGen
		key := g.key(0)
		for _, impl := range f.impls {
			b.Run(impl.name, func(b *testing.B) {
				b.ReportAllocs()
				now := startNow
				for b.Loop() {
					now += 3 // rotates the 5 s ring every ~1700 adds
					impl.s.Add(key, now-100, now, c)
				}
			})
		}
		b.Run("StoreBatch", func(b *testing.B) {
			batch := make([]Event, 64)
			for i := range batch {
				batch[i] = Event{Key: key, C: c}
			}
			benchBatch(b, f.store(), batch, func([]Event, int) {})
		})
	})
	b.Run("random1M", func(b *testing.B) {
		f := newFixture(b, 1_000_000, true)
		defer f.release()
		for _, impl := range f.impls {
			b.Run(impl.name, func(b *testing.B) {
				b.ReportAllocs()
				var g keyGen
				now, i := startNow, 0
				for b.Loop() {
					now++
					impl.s.Add(f.key(&g, i), now, now, c)
					i++
				}
			})
		}
		b.Run("StoreBatch", func(b *testing.B) {
			batch := make([]Event, 64)
			gs := make([]keyGen, len(batch))
			i := 0
			benchBatch(b, f.store(), batch, func(batch []Event, now int) {
				for j := range batch {
					batch[j] = Event{Key: f.key(&gs[j], i), TsMs: int64(now), C: c}
					i++
				}
			})
		})
	})
}

func TestKeyGen(t *testing.T) {
	keys := benchKeys(t, 1000)
	var g keyGen
	for i, k := range keys {
		if !bytes.Equal(g.key(i), k) {
			t.Fatalf("unexpected key %d; got %q; want %q", i, g.key(i), k)
		}
	}
}

// benchBatch times AddBatch per event; fill refreshes the batch (untimed
// work of the caller: it only picks keys) before each call.
func benchBatch(b *testing.B, s *Store, batch []Event, fill func(batch []Event, now int)) {
	b.ReportAllocs()
	now := startNow
	n := 0
	for b.Loop() {
		if n == 0 {
			now += 64
			fill(batch, int(now))
			for j := range batch {
				if batch[j].TsMs == 0 {
					batch[j].TsMs = now - 100
				}
			}
			s.AddBatch(batch, now, nil)
		}
		if n++; n == len(batch) {
			n = 0
		}
	}
}

// BenchmarkAddEvent adds whole events: one event updates its four default
// rollup keys (campaign, campaign/creative, campaign/placement,
// campaign/creative/placement). ns/op is per event; ns/key is per key.
func BenchmarkAddEvent(b *testing.B) {
	r, err := ParseRollups(DefaultRollupNames())
	if err != nil {
		b.Fatalf("unexpected error: %s", err)
	}
	makeEvents := func(n int) [][4][]byte {
		evs := make([][4][]byte, n)
		var v Values
		for i := range evs {
			v[DimCampaign] = fmt.Appendf(nil, "c%d", i%5000)
			v[DimCreative] = fmt.Appendf(nil, "cr%d", i)
			v[DimPlacement] = fmt.Appendf(nil, "site%d.example/slot%d", i%97, i%3)
			for l := range 4 {
				evs[i][l] = AppendKey(nil, l, r, &v)
			}
		}
		return evs
	}
	c := Counts{Impressions: 1, CostMicros: 2100}
	for _, n := range []int{1, 300_000} {
		name := "hot"
		if n > 1 {
			name = "random300k"
		}
		b.Run(name, func(b *testing.B) {
			evs := makeEvents(n)
			s := mustStore(b, Config{})
			for _, ev := range evs {
				for _, k := range ev {
					s.Add(k, t0, t0, c)
				}
			}
			defer runtime.GC()
			order := randomOrder(n)
			b.Run("Store", func(b *testing.B) {
				b.ReportAllocs()
				now, i := startNow, 0
				for b.Loop() {
					now++
					for _, k := range evs[order[i&(len(order)-1)]] {
						s.Add(k, now, now, c)
					}
					i++
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/4, "ns/key")
			})
			b.Run("StoreBatch", func(b *testing.B) {
				b.ReportAllocs()
				batch := make([]Event, 64) // 16 events
				now, i, n := startNow, 0, 0
				for b.Loop() {
					if n == 0 {
						now += 16
						for j := 0; j < len(batch); j += 4 {
							for l, k := range evs[order[i&(len(order)-1)]] {
								batch[j+l] = Event{Key: k, TsMs: now, C: c}
							}
							i++
						}
						s.AddBatch(batch, now, nil)
					}
					if n++; n == len(batch)/4 {
						n = 0
					}
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/4, "ns/key")
			})
			if s.Len() > s.MaxKeys() {
				b.Fatalf("unexpected Len")
			}
		})
	}
}

// BenchmarkRead reads every span (1m, 5m, 15m, 1h, 24h) of one key.
func BenchmarkRead(b *testing.B) {
	for _, n := range []int{1, 1_000_000} {
		name := "hot"
		if n > 1 {
			name = "random1M"
		}
		b.Run(name, func(b *testing.B) {
			f := newFixture(b, n, true)
			defer f.release()
			for _, impl := range f.impls {
				b.Run(impl.name, func(b *testing.B) {
					b.ReportAllocs()
					var dst [NumSpans]Counts
					var g keyGen
					now, i := startNow, 0
					for b.Loop() {
						impl.s.Read(f.key(&g, i), now, &dst)
						i++
					}
					if dst[Span1h].Impressions != 18 {
						b.Fatalf("unexpected read: %+v", dst)
					}
				})
			}
		})
	}
}

// rateCounters is the github.com/paulbellamy/ratecounter peer: one
// RateCounter (one counter, one resolution, wall clock, a goroutine per
// active counter) per key, behind a map and a mutex.
type rateCounters struct {
	mu sync.RWMutex
	m  map[string]*ratecounter.RateCounter
}

func (rc *rateCounters) get(key []byte) *ratecounter.RateCounter {
	rc.mu.RLock()
	c := rc.m[string(key)]
	rc.mu.RUnlock()
	if c == nil {
		rc.mu.Lock()
		if c = rc.m[string(key)]; c == nil {
			c = ratecounter.NewRateCounter(time.Minute)
			rc.m[string(key)] = c
		}
		rc.mu.Unlock()
	}
	return c
}

// BenchmarkPeers does the peers' work, an increment and the rate over a
// minute, on a hot key and on random keys among 10k (ratecounter runs a
// goroutine and a ticker per active counter, which rules out millions of
// keys). The Store carries five counters and three resolutions meanwhile.
func BenchmarkPeers(b *testing.B) {
	for _, n := range []int{1, 10_000} {
		name := "hot"
		if n > 1 {
			name = "random10k"
		}
		b.Run(name, func(b *testing.B) {
			f := newFixture(b, n, true)
			defer f.release()
			rc := &rateCounters{m: map[string]*ratecounter.RateCounter{}}
			var g keyGen
			for i := 0; i < n; i++ {
				rc.get(g.key(i)).Incr(1)
			}
			key := func(i int) []byte { return f.key(&g, i) }
			for _, impl := range f.impls {
				b.Run("incr/"+impl.name, func(b *testing.B) {
					b.ReportAllocs()
					now, i := startNow, 0
					for b.Loop() {
						now++
						impl.s.Add(key(i), now, now, Counts{Impressions: 1})
						i++
					}
				})
			}
			b.Run("incr/StoreBatch", func(b *testing.B) {
				batch := make([]Event, 64)
				gs := make([]keyGen, len(batch))
				i := 0
				benchBatch(b, f.store(), batch, func(batch []Event, now int) {
					for j := range batch {
						batch[j] = Event{Key: f.key(&gs[j], i), TsMs: int64(now), C: Counts{Impressions: 1}}
						i++
					}
				})
			})
			b.Run("incr/ratecounter", func(b *testing.B) {
				b.ReportAllocs()
				i := 0
				for b.Loop() {
					rc.get(key(i)).Incr(1)
					i++
				}
			})
			for _, impl := range f.impls {
				b.Run("rate1m/"+impl.name, func(b *testing.B) {
					b.ReportAllocs()
					var sink uint64
					i := 0
					for b.Loop() {
						c, _ := impl.s.ReadSpan(key(i), Span1m, startNow)
						sink += c.Impressions
						i++
					}
				})
			}
			b.Run("rate1m/ratecounter", func(b *testing.B) {
				b.ReportAllocs()
				var sink int64
				i := 0
				for b.Loop() {
					sink += rc.get(key(i)).Rate()
					i++
				}
			})
		})
	}
}

// BenchmarkParallel1Write10Reads mixes one Add per ten Reads of random keys
// on every core (GOMAXPROCS goroutines).
func BenchmarkParallel1Write10Reads(b *testing.B) {
	for _, n := range []int{10_000, 1_000_000} {
		b.Run(fmt.Sprintf("keys=%d", n), func(b *testing.B) {
			f := newFixture(b, n, true)
			defer f.release()
			for _, impl := range f.impls {
				b.Run(impl.name, func(b *testing.B) {
					var clock atomic.Int64
					clock.Store(startNow)
					var seed atomic.Uint64
					b.ReportAllocs()
					b.RunParallel(func(pb *testing.PB) {
						rng := rand.New(rand.NewPCG(seed.Add(1), 3))
						var dst [NumSpans]Counts
						var g keyGen
						i := 0
						for pb.Next() {
							k := g.key(rng.IntN(f.n))
							if i%11 == 0 {
								now := clock.Add(1)
								impl.s.Add(k, now, now, Counts{Impressions: 1, Clicks: 1})
							} else {
								impl.s.Read(k, clock.Load(), &dst)
								if c := dst[Span1m]; c.Clicks > c.Impressions {
									panic("torn read")
								}
							}
							i++
						}
					})
				})
			}
		})
	}
}

// BenchmarkGC measures one forced full garbage collection with 10k and 1M
// keys live: the Store's pointer-free state gives the collector nothing to
// scan per key; the map+mutex baseline makes it mark every key.
func BenchmarkGC(b *testing.B) {
	for _, n := range []int{10_000, 1_000_000} {
		impls := []struct {
			name string
			make func() benchStore
		}{
			{"Store", func() benchStore { return mustStore(b, Config{MaxKeys: n}) }},
			{"map+mutex", func() benchStore { return newMapStore(b) }},
		}
		for _, impl := range impls {
			b.Run(fmt.Sprintf("keys=%d/%s", n, impl.name), func(b *testing.B) {
				s := impl.make()
				var g keyGen // no slice of keys: it would be the GC's work
				for i := 0; i < n; i++ {
					s.Add(g.key(i), t0, t0, Counts{Impressions: 1})
				}
				runtime.GC()
				b.ReportAllocs()
				ms := []metrics.Sample{{Name: "/cpu/classes/gc/total:cpu-seconds"}, {Name: "/gc/scan/heap:bytes"}}
				metrics.Read(ms)
				cpu0 := ms[0].Value.Float64()
				for b.Loop() {
					runtime.GC()
				}
				metrics.Read(ms)
				// Wall time of a forced GC on a small heap is mostly scheduling
				// (waking workers on a busy 2-vCPU VM); the GC CPU and the bytes
				// it must scan are the work that grows with pointers, or not.
				b.ReportMetric((ms[0].Value.Float64()-cpu0)*1e9/float64(b.N), "gc-cpu-ns/op")
				b.ReportMetric(float64(ms[1].Value.Uint64()), "scan-heap-bytes")
				runtime.KeepAlive(s)
			})
			runtime.GC()
			runtime.GC()
		}
	}
}
