package windows

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"time"
)

// modelEvent is one accepted Add as the reference sees it.
type modelEvent struct {
	ts   int64   // clamped event time
	kept [8]bool // whether each ring took it (its bucket was still in the ring at the Add)
	c    Counts
}

// model is the naive reference: a plain list of events per live key.
type model struct {
	res     []Resolution
	maxKeys int
	events  map[string][]modelEvent
	newest  map[string]int64
	heads   map[string]*[8]int64 // newest epoch each ring took
	stats   *modelStats
}

// modelStats proves that the random cases reach the interesting paths.
type modelStats struct {
	dropped, refused, evicted, nonzero, zero int
}

func (m *model) add(key string, ts, now int64, c Counts) bool {
	now = max(now, 0)
	ts = min(max(ts, 0), now)
	if _, ok := m.events[key]; !ok {
		if len(m.events) >= m.maxKeys {
			m.stats.refused++
			return false
		}
		m.events[key] = nil
		m.newest[key] = math.MinInt64
		m.heads[key] = &[8]int64{-1, -1, -1, -1, -1, -1, -1, -1}
	}
	heads := m.heads[key]
	ev := modelEvent{ts: ts, c: c}
	for i, r := range m.res {
		w := r.Width.Milliseconds()
		// A ring takes the event unless its bucket has left the ring at now, or
		// the ring's slot holds a newer bucket (an earlier Add passed a later now).
		e := ts / w
		ev.kept[i] = e > now/w-int64(r.Buckets) && e > heads[i]-int64(r.Buckets)
		if ev.kept[i] {
			heads[i] = max(heads[i], e)
		}
		if !ev.kept[i] {
			m.stats.dropped++
		}
	}
	m.events[key] = append(m.events[key], ev)
	m.newest[key] = max(m.newest[key], ts)
	return true
}

// plan picks the ring of a span the way the documentation says: the finest
// ring covering the span whose width divides it.
func (m *model) plan(sp Span) (ring int, k int64) {
	d := sp.Duration()
	ring = -1
	for i, r := range m.res {
		if r.Width*time.Duration(r.Buckets) >= d && d%r.Width == 0 && (ring < 0 || r.Width < m.res[ring].Width) {
			ring = i
		}
	}
	return ring, int64(d / m.res[ring].Width)
}

func (m *model) read(key string, sp Span, now int64) (Counts, bool) {
	evs, ok := m.events[key]
	if !ok {
		return Counts{}, false
	}
	now = max(now, 0)
	ri, k := m.plan(sp)
	w := m.res[ri].Width.Milliseconds()
	cur := now / w
	// Each bucket saturates at its counter widths; the sum of buckets does not.
	perBucket := map[int64]*Counts{}
	for _, ev := range evs {
		// A ring keeps its newest buckets: a read before the head does not see
		// what the head pushed out.
		if e := ev.ts / w; ev.kept[ri] && e <= cur && e > cur-k && e > m.heads[key][ri]-int64(m.res[ri].Buckets) {
			if perBucket[e] == nil {
				perBucket[e] = &Counts{}
			}
			perBucket[e].Add(ev.c)
		}
	}
	var c Counts
	for _, b := range perBucket {
		c.Add(Counts{
			Impressions: min(b.Impressions, MaxBucketEvents),
			Clicks:      min(b.Clicks, MaxBucketEvents),
			Conversions: min(b.Conversions, MaxBucketEvents),
			CostMicros:  min(b.CostMicros, MaxBucketMicros),
			ValueMicros: min(b.ValueMicros, MaxBucketMicros),
		})
	}
	if c == (Counts{}) {
		m.stats.zero++
	} else {
		m.stats.nonzero++
	}
	return c, true
}

func (m *model) evictIdle(now int64) int {
	longest := time.Duration(0)
	for _, r := range m.res {
		longest = max(longest, r.Width*time.Duration(r.Buckets))
	}
	threshold := max(now, 0) - longest.Milliseconds()
	n := 0
	for key, newest := range m.newest {
		if newest < threshold {
			delete(m.events, key)
			delete(m.newest, key)
			delete(m.heads, key)
			m.stats.evicted++
			n++
		}
	}
	return n
}

func TestStoreModel(t *testing.T) {
	configs := [][]Resolution{
		DefaultResolutions(),
		{{10 * time.Second, 6}, {time.Minute, 15}, {15 * time.Minute, 4}, {time.Hour, 24}},
		{{time.Hour, 26}, {100 * time.Second, 40}, {12 * time.Second, 5}},
		threeRings,
	}
	cases := 2000
	if testing.Short() {
		cases = 300
	}
	rng := rand.New(rand.NewPCG(1, 2))
	var stats modelStats
	for i := 0; i < cases; i++ {
		cfg := i % len(configs)
		seed := rng.Uint64()
		t.Run(fmt.Sprintf("cfg%d/seed%d", cfg, seed), func(t *testing.T) {
			runModelCase(t, configs[cfg], seed, &stats)
		})
		if t.Failed() {
			return
		}
	}
	t.Logf("%d cases: %+v", cases, stats)
	if stats.dropped == 0 || stats.refused == 0 || stats.evicted == 0 || stats.nonzero < cases || stats.zero < cases {
		t.Fatalf("unexpected coverage of the model cases: %+v", stats)
	}
}

func runModelCase(t *testing.T, res []Resolution, seed uint64, stats *modelStats) {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	maxKeys := 2 + rng.IntN(6)
	s := mustStore(t, Config{Resolutions: res, MaxKeys: maxKeys})
	m := &model{res: res, maxKeys: maxKeys, events: map[string][]modelEvent{}, newest: map[string]int64{}, heads: map[string]*[8]int64{}, stats: stats}
	var now int64
	switch rng.IntN(4) {
	case 0:
		now = rng.Int64N(3 * hourMs) // near the Unix epoch: spans reach before time 0
	default:
		now = t0 + rng.Int64N(365*24*hourMs)
	}
	keys := make([][]byte, 3+rng.IntN(6))
	for i := range keys {
		keys[i] = []byte(fmt.Sprintf("%c/key%d", byte(rng.IntN(4)), i))
	}
	// The time steps mix sub-bucket moves with jumps past every ring.
	step := func() int64 {
		switch rng.IntN(10) {
		case 0, 1:
			return 0
		case 2, 3, 4:
			return rng.Int64N(10 * secondMs)
		case 5, 6:
			return rng.Int64N(10 * minuteMs)
		case 7, 8:
			return rng.Int64N(3 * hourMs)
		default:
			return rng.Int64N(30 * hourMs)
		}
	}
	lateness := func() int64 {
		switch rng.IntN(10) {
		case 0, 1, 2, 3:
			return 0
		case 4:
			return -rng.Int64N(20 * secondMs) // future: clamped to now
		case 5, 6:
			return rng.Int64N(2 * minuteMs)
		case 7:
			return rng.Int64N(2 * hourMs)
		default:
			return rng.Int64N(30 * hourMs)
		}
	}
	counts := func() Counts {
		if rng.IntN(50) == 0 {
			big := uint64(math.MaxUint64/2 + rng.Uint64N(1<<40))
			return Counts{Impressions: big, Clicks: 1, CostMicros: big, ValueMicros: big}
		}
		return Counts{
			Impressions: rng.Uint64N(5),
			Clicks:      rng.Uint64N(3),
			Conversions: rng.Uint64N(2),
			CostMicros:  rng.Uint64N(10000),
			ValueMicros: rng.Uint64N(10000),
		}
	}
	check := func(at int64) {
		t.Helper()
		var dst [NumSpans]Counts
		for _, key := range keys {
			ok := s.Read(key, at, &dst)
			for sp := Span(0); sp < NumSpans; sp++ {
				want, wantOK := m.read(string(key), sp, at)
				if ok != wantOK || dst[sp] != want {
					t.Fatalf("unexpected Read(%q) %s at %d; got %+v, %v; want %+v, %v", key, sp, at, dst[sp], ok, want, wantOK)
				}
			}
			sp := Span(rng.IntN(int(NumSpans)))
			want, wantOK := m.read(string(key), sp, at)
			if got, ok := s.ReadSpan(key, sp, at); ok != wantOK || got != want {
				t.Fatalf("unexpected ReadSpan(%q) %s at %d; got %+v, %v; want %+v, %v", key, sp, at, got, ok, want, wantOK)
			}
			if s.Contains(key) != wantOK {
				t.Fatalf("unexpected Contains(%q); got %v; want %v", key, !wantOK, wantOK)
			}
		}
		if s.Len() != len(m.events) {
			t.Fatalf("unexpected Len; got %d; want %d", s.Len(), len(m.events))
		}
		if rng.IntN(3) != 0 {
			return
		}
		level := rng.IntN(5) - 1
		sp := Span(rng.IntN(int(NumSpans)))
		n := 0
		s.Scan(level, sp, at, func(key []byte, c Counts) bool {
			want, ok := m.read(string(key), sp, at)
			if !ok || c != want || (level >= 0 && KeyLevel(key) != level) {
				t.Fatalf("unexpected Scan(%d) %s of %q; got %+v; want %+v, %v", level, sp, key, c, want, ok)
			}
			n++
			return true
		})
		want := 0
		for key := range m.events {
			if level < 0 || KeyLevel([]byte(key)) == level {
				want++
			}
		}
		if n != want {
			t.Fatalf("unexpected Scan(%d) length; got %d; want %d", level, n, want)
		}
	}
	steps := 20 + rng.IntN(50)
	for i := 0; i < steps; i++ {
		now += step()
		switch x := rng.IntN(100); {
		case x < 70:
			key := keys[rng.IntN(len(keys))]
			addNow := now
			if rng.IntN(8) == 0 {
				// A caller whose now is behind another's: its event may find its
				// slot holding a newer bucket.
				addNow -= rng.Int64N(2 * hourMs)
			}
			ts := addNow - lateness()
			c := counts()
			if got, want := s.Add(key, ts, addNow, c), m.add(string(key), ts, addNow, c); got != want {
				t.Fatalf("unexpected Add(%q, %d, %d) result; got %v; want %v", key, ts, addNow, got, want)
			}
		case x < 74:
			// A batch at one now, often with one key several times.
			batch := make([]Event, 1+rng.IntN(40))
			for j := range batch {
				batch[j] = Event{Key: keys[rng.IntN(len(keys))], TsMs: now - lateness(), C: counts()}
				if j > 0 && rng.IntN(3) == 0 {
					batch[j].Key, batch[j].TsMs = batch[j-1].Key, batch[j-1].TsMs-rng.Int64N(3*secondMs)
				}
			}
			added := make([]bool, len(batch))
			n := s.AddBatch(batch, now, added)
			want := 0
			for j, ev := range batch {
				ok := m.add(string(ev.Key), ev.TsMs, now, ev.C)
				if ok != added[j] {
					t.Fatalf("unexpected AddBatch result %d (%q); got %v; want %v", j, ev.Key, added[j], ok)
				}
				if ok {
					want++
				}
			}
			if n != want {
				t.Fatalf("unexpected AddBatch count; got %d; want %d", n, want)
			}
		case x < 80:
			check(now)
		case x < 85:
			check(now - rng.Int64N(3*hourMs)) // a read behind the heads
		default:
			if got, want := s.EvictIdle(now), m.evictIdle(now); got != want {
				t.Fatalf("unexpected EvictIdle at %d; got %d; want %d", now, got, want)
			}
		}
	}
	// Reads further and further ahead (reads do not change the state).
	for i := 0; i < 5; i++ {
		check(now)
		now += step()
	}
}
