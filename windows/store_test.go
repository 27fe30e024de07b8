package windows

import (
	"fmt"
	"math"
	"strings"
	"sync"
	"testing"
	"time"
)

// t0 is a day boundary (2023-11-14T00:00:00Z), so every bucket starts there.
const t0 = int64(1_699_920_000_000)

func mustStore(t testing.TB, cfg Config) *Store {
	t.Helper()
	s, err := NewStore(cfg)
	if err != nil {
		t.Fatalf("unexpected error: %s", err)
	}
	return s
}

func testKey(level int, campaign string) []byte {
	return append([]byte{byte(level)}, campaign...)
}

func TestNewStorePlans(t *testing.T) {
	f := func(res []Resolution, want [NumSpans]string) {
		t.Helper()
		s := mustStore(t, Config{Resolutions: res})
		for sp := Span(0); sp < NumSpans; sp++ {
			r, k := s.SpanResolution(sp)
			if got := fmt.Sprintf("%d x %s", k, r.Width); got != want[sp] {
				t.Fatalf("unexpected plan of %s with %v; got %s; want %s", sp, res, got, want[sp])
			}
			if time.Duration(k)*r.Width != sp.Duration() {
				t.Fatalf("unexpected plan of %s: %d x %s", sp, k, r.Width)
			}
		}
	}
	f(nil, [NumSpans]string{"12 x 5s", "5 x 1m0s", "15 x 1m0s", "12 x 5m0s", "24 x 1h0m0s"})
	f(DefaultResolutions(), [NumSpans]string{"12 x 5s", "5 x 1m0s", "15 x 1m0s", "12 x 5m0s", "24 x 1h0m0s"})
	f(threeRings, [NumSpans]string{"12 x 5s", "5 x 1m0s", "15 x 1m0s", "60 x 1m0s", "24 x 1h0m0s"})
	// Widths need not divide each other; the finest fitting ring wins whatever the order.
	f([]Resolution{{time.Hour, 24}, {100 * time.Second, 36}, {12 * time.Second, 5}},
		[NumSpans]string{"5 x 12s", "3 x 1m40s", "9 x 1m40s", "36 x 1m40s", "24 x 1h0m0s"})
	// One ring may serve everything.
	f([]Resolution{{time.Minute, 1440}}, [NumSpans]string{"1 x 1m0s", "5 x 1m0s", "15 x 1m0s", "60 x 1m0s", "1440 x 1m0s"})
	// A ring whose width does not divide a span is skipped for it.
	f([]Resolution{{7 * time.Second, 100000 / 7}, {time.Minute, 24 * 60}},
		[NumSpans]string{"1 x 1m0s", "5 x 1m0s", "15 x 1m0s", "60 x 1m0s", "1440 x 1m0s"})

	s := mustStore(t, Config{})
	if s.MaxKeys() != DefaultMaxKeys {
		t.Fatalf("unexpected MaxKeys; got %d; want %d", s.MaxKeys(), DefaultMaxKeys)
	}
	if got := s.Resolutions(); len(got) != 4 || got[3] != (Resolution{time.Hour, 24}) {
		t.Fatalf("unexpected resolutions; got %v", got)
	}
	// The oldest bucket of the 24 x 1h ring at 10:30 starts at 11:00 the day before.
	if got, want := s.Oldest(t0+10*hourMs+30*minuteMs), t0-13*hourMs; got != want {
		t.Fatalf("unexpected Oldest; got %d; want %d", got, want)
	}
}

func TestNewStoreErrors(t *testing.T) {
	f := func(cfg Config, wantSubstr string) {
		t.Helper()
		_, err := NewStore(cfg)
		if err == nil {
			t.Fatalf("unexpected success for %+v", cfg)
		}
		if !strings.Contains(err.Error(), wantSubstr) {
			t.Fatalf("unexpected error; got %q; want it to contain %q", err, wantSubstr)
		}
	}
	f(Config{Resolutions: []Resolution{{5 * time.Second, 12}, {time.Minute, 60}}}, "cannot serve span 24h")
	f(Config{Resolutions: []Resolution{{2 * time.Minute, 720}, {time.Hour, 24}}}, "cannot serve span 1m")
	f(Config{Resolutions: []Resolution{{5 * time.Second, 11}, {2 * time.Minute, 720}}}, "cannot serve span 1m")
	f(Config{Resolutions: []Resolution{{7 * time.Second, 1000}, {time.Hour, 24}}}, "cannot serve span 1m")
	f(Config{Resolutions: []Resolution{{1500 * time.Microsecond, 12}}}, "whole number of milliseconds")
	f(Config{Resolutions: []Resolution{{0, 12}}}, "whole number of milliseconds")
	f(Config{Resolutions: []Resolution{{-time.Second, 12}}}, "whole number of milliseconds")
	f(Config{Resolutions: []Resolution{{time.Second, 0}}}, "buckets must be in")
	f(Config{Resolutions: []Resolution{{time.Second, 1 << 20}}}, "buckets must be in")
	f(Config{Resolutions: []Resolution{{200 * 24 * time.Hour, 2}}}, "at most")
	f(Config{MaxKeys: -1}, "MaxKeys")
}

const (
	secondMs = int64(1000)
	minuteMs = 60 * secondMs
	hourMs   = 60 * minuteMs
)

func readAll(t *testing.T, s *Store, key []byte, now int64) [NumSpans]uint64 {
	t.Helper()
	var dst [NumSpans]Counts
	if !s.Read(key, now, &dst) {
		t.Fatalf("unexpected Read miss for %q", key)
	}
	var imps [NumSpans]uint64
	for sp := range dst {
		imps[sp] = dst[sp].Impressions
		c, ok := s.ReadSpan(key, Span(sp), now)
		if !ok || c != dst[sp] {
			t.Fatalf("unexpected ReadSpan(%s); got %+v, %v; want %+v", Span(sp), c, ok, dst[sp])
		}
	}
	return imps
}

// threeRings are the resolutions with a 60 x 1 min ring (96 buckets).
var threeRings = []Resolution{{5 * time.Second, 12}, {time.Minute, 60}, {time.Hour, 24}}

func TestStoreRotation(t *testing.T) {
	s := mustStore(t, Config{Resolutions: threeRings})
	key := testKey(0, "c")
	one := Counts{Impressions: 1}
	// One impression every 5 s for 2 minutes, checked after each.
	for i := int64(0); i < 24; i++ {
		now := t0 + i*5*secondMs
		if !s.Add(key, now, now, one) {
			t.Fatalf("unexpected Add failure")
		}
		got := readAll(t, s, key, now)
		want1m := uint64(min(i+1, 12))
		if got[Span1m] != want1m || got[Span5m] != uint64(i+1) || got[Span24h] != uint64(i+1) {
			t.Fatalf("unexpected counts after %d adds; got %v; want 1m=%d, 5m=24h=%d", i+1, got, want1m, i+1)
		}
		// Mid-bucket reads see the same thing.
		if got2 := readAll(t, s, key, now+4999); got2 != got {
			t.Fatalf("unexpected counts at the end of the bucket; got %v; want %v", got2, got)
		}
	}
	now := t0 + 115*secondMs
	f := func(at int64, want [NumSpans]uint64) {
		t.Helper()
		if got := readAll(t, s, key, at); got != want {
			t.Fatalf("unexpected counts at +%dms; got %v; want %v", at-now, got, want)
		}
	}
	// 1m = current 5 s bucket + 11 before; the minute buckets hold 12 each.
	f(now+5*secondMs, [NumSpans]uint64{11, 24, 24, 24, 24})
	f(now+60*secondMs, [NumSpans]uint64{0, 24, 24, 24, 24})
	f(t0+4*minuteMs+59*secondMs, [NumSpans]uint64{0, 24, 24, 24, 24})
	f(t0+5*minuteMs, [NumSpans]uint64{0, 12, 24, 24, 24})
	f(t0+6*minuteMs, [NumSpans]uint64{0, 0, 24, 24, 24})
	f(t0+hourMs-1, [NumSpans]uint64{0, 0, 0, 24, 24})
	f(t0+hourMs, [NumSpans]uint64{0, 0, 0, 12, 24})
	f(t0+hourMs+minuteMs, [NumSpans]uint64{0, 0, 0, 0, 24})
	f(t0+24*hourMs-1, [NumSpans]uint64{0, 0, 0, 0, 24})
	f(t0+24*hourMs, [NumSpans]uint64{0, 0, 0, 0, 0})
	// Reads before the data exist see nothing of it.
	f(t0-1, [NumSpans]uint64{0, 0, 0, 0, 0})
	f(0, [NumSpans]uint64{0, 0, 0, 0, 0})
}

func TestStoreLazyReset(t *testing.T) {
	s := mustStore(t, Config{})
	key := testKey(0, "c")
	s.Add(key, t0, t0, Counts{Impressions: 5, Clicks: 1})
	// t0+60s lands in t0's 5 s slot: it resets it, and t0's minute slot is untouched.
	now := t0 + minuteMs
	s.Add(key, now, now, Counts{Impressions: 2})
	if c, _ := s.ReadSpan(key, Span1m, now); c != (Counts{Impressions: 2}) {
		t.Fatalf("unexpected 1m; got %+v; want 2 impressions", c)
	}
	if c, _ := s.ReadSpan(key, Span5m, now); c != (Counts{Impressions: 7, Clicks: 1}) {
		t.Fatalf("unexpected 5m; got %+v; want 7 impressions, 1 click", c)
	}
	// A late event whose 5 s bucket has left the ring still counts in the longer rings.
	s.Add(key, t0+5*secondMs, now+10*secondMs, Counts{Impressions: 1})
	var dst [NumSpans]Counts
	s.Read(key, now+10*secondMs, &dst)
	if dst[Span1m].Impressions != 2 || dst[Span5m].Impressions != 8 || dst[Span24h].Impressions != 8 {
		t.Fatalf("unexpected counts after a late event; got %+v", dst)
	}
	// An event older than every ring changes no count (but it is remembered as the key's newest time only if newer).
	s.Add(key, t0-25*hourMs, now+10*secondMs, Counts{Impressions: 100})
	s.Read(key, now+10*secondMs, &dst)
	if dst[Span24h].Impressions != 8 {
		t.Fatalf("unexpected 24h after an event older than the rings; got %+v", dst[Span24h])
	}
	// A future event is clamped to now.
	s.Add(key, now+hourMs, now+10*secondMs, Counts{Clicks: 1})
	s.Read(key, now+10*secondMs, &dst)
	if dst[Span1m].Clicks != 1 || dst[Span24h].Clicks != 2 {
		t.Fatalf("unexpected counts after a future event; got %+v", dst)
	}
}

func TestStoreEarlierNow(t *testing.T) {
	// Concurrent callers may pass slightly different nows: an Add with an earlier
	// now whose slot already holds a newer bucket is dropped for that ring only.
	s := mustStore(t, Config{})
	key := testKey(0, "c")
	s.Add(key, t0+hourMs, t0+hourMs, Counts{Impressions: 1})
	s.Add(key, t0, t0, Counts{Impressions: 10})
	f := func(now int64, want [NumSpans]uint64) {
		t.Helper()
		if got := readAll(t, s, key, now); got != want {
			t.Fatalf("unexpected counts at %d; got %v; want %v", now-t0, got, want)
		}
	}
	f(t0+hourMs, [NumSpans]uint64{1, 1, 1, 1, 11})
	// Read at the earlier time: the newer buckets are not counted, the dropped event is not there.
	f(t0, [NumSpans]uint64{0, 0, 0, 0, 10})
	// Times before the Unix epoch are treated as 0.
	s2 := mustStore(t, Config{})
	s2.Add(key, -5, -1, Counts{Impressions: 1})
	if got := readAll(t, s2, key, -100); got != [NumSpans]uint64{1, 1, 1, 1, 1} {
		t.Fatalf("unexpected counts near the epoch; got %v", got)
	}
}

func TestStoreKeyCap(t *testing.T) {
	s := mustStore(t, Config{MaxKeys: 3})
	one := Counts{Impressions: 1}
	for i := 0; i < 3; i++ {
		if !s.Add(testKey(0, fmt.Sprint(i)), t0, t0, one) {
			t.Fatalf("unexpected Add failure for key %d", i)
		}
	}
	extra := testKey(0, "extra")
	if s.Add(extra, t0, t0, one) {
		t.Fatalf("unexpected Add success past the cap")
	}
	if s.Contains(extra) || s.Len() != 3 {
		t.Fatalf("unexpected state after a refused Add; contains=%v len=%d", s.Contains(extra), s.Len())
	}
	var dst [NumSpans]Counts
	dst[0].Clicks = 9
	if s.Read(extra, t0, &dst) || dst[0] != (Counts{}) {
		t.Fatalf("unexpected Read of a refused key: %+v", dst)
	}
	if _, ok := s.ReadSpan(extra, Span1h, t0); ok {
		t.Fatalf("unexpected ReadSpan hit for a refused key")
	}
	if !s.Add(testKey(0, "1"), t0+hourMs, t0+hourMs, one) {
		t.Fatalf("unexpected Add failure on an existing key at the cap")
	}
	if n := s.EvictIdle(t0 + 24*hourMs + 1); n != 2 {
		t.Fatalf("unexpected evictions; got %d; want 2", n)
	}
	if !s.Add(extra, t0+24*hourMs, t0+24*hourMs, one) || s.Len() != 2 {
		t.Fatalf("unexpected Add failure after eviction; len=%d", s.Len())
	}
}

func slotsAndBuckets(s *Store) (slots, buckets int) {
	for c := range s.slabs {
		sl := &s.slabs[c]
		slots += int(sl.next)
		buckets += int(sl.next) * int(sl.blockBytes)
	}
	return slots, buckets
}

func TestStoreEvictIdle(t *testing.T) {
	s := mustStore(t, Config{})
	long := strings.Repeat("k", 200) // big enough keys to trigger arena compaction
	old := func(i int) []byte { return testKey(1, fmt.Sprintf("old%d%s", i, long)) }
	young := func(i int) []byte { return testKey(2, fmt.Sprintf("young%d", i)) }
	for i := 0; i < 3000; i++ {
		s.Add(old(i), t0, t0, Counts{Impressions: 1})
	}
	for i := 0; i < 500; i++ {
		s.Add(young(i), t0+12*hourMs, t0+12*hourMs, Counts{Impressions: 2})
	}
	if s.Len() != 3500 {
		t.Fatalf("unexpected Len; got %d; want 3500", s.Len())
	}
	if n := s.EvictIdle(t0 + 24*hourMs); n != 0 {
		t.Fatalf("unexpected evictions while the old keys are still in the 24h span; got %d", n)
	}
	slots, buckets := slotsAndBuckets(s)
	mem := s.MemoryBytes()
	if n := s.EvictIdle(t0 + 24*hourMs + 1); n != 3000 {
		t.Fatalf("unexpected evictions; got %d; want 3000", n)
	}
	if s.Len() != 500 || s.Contains(old(7)) || !s.Contains(young(7)) {
		t.Fatalf("unexpected state after eviction; len=%d", s.Len())
	}
	// The arenas were compacted and the young keys still read right.
	arena := 0
	for i := range s.shards {
		arena += s.shards[i].arenaLen
		if s.shards[i].arenaDead != 0 {
			t.Fatalf("unexpected dead arena bytes after compaction: %d", s.shards[i].arenaDead)
		}
	}
	if arena > 500*32 {
		t.Fatalf("unexpected arena size after compaction; got %d bytes", arena)
	}
	for i := 0; i < 500; i++ {
		if c, ok := s.ReadSpan(young(i), Span24h, t0+24*hourMs+1); !ok || c.Impressions != 2 {
			t.Fatalf("unexpected young key counts; got %+v, %v", c, ok)
		}
	}
	seen := 0
	s.Scan(-1, Span24h, t0+24*hourMs+1, func(key []byte, c Counts) bool {
		if KeyLevel(key) != 2 || c.Impressions != 2 {
			t.Fatalf("unexpected key in scan: %q %+v", key, c)
		}
		seen++
		return true
	})
	if seen != 500 {
		t.Fatalf("unexpected scanned keys; got %d; want 500", seen)
	}
	// Keys added again reuse the evicted slots and buckets (the same key bytes
	// land in the same shards), and start from zero.
	now := t0 + 25*hourMs
	for i := 0; i < 3000; i++ {
		s.Add(old(i), now, now, Counts{Clicks: 1})
	}
	slots2, buckets2 := slotsAndBuckets(s)
	if slots2 != slots || buckets2 != buckets {
		t.Fatalf("unexpected growth after reuse; slots %d -> %d, buckets %d -> %d", slots, slots2, buckets, buckets2)
	}
	if mem2 := s.MemoryBytes(); mem2 > mem+mem/10 {
		t.Fatalf("unexpected memory growth after reuse; got %d; want <= %d", mem2, mem+mem/10)
	}
	var dst [NumSpans]Counts
	s.Read(old(42), now, &dst)
	for sp, c := range dst {
		if c != (Counts{Clicks: 1}) {
			t.Fatalf("unexpected counts of a new key in a reused slot in %s; got %+v", Span(sp), c)
		}
	}
}

// TestStoreEvictIdleChunked evicts through a wrapper, as a caller holding a
// lock of its own per chunk would: every chunk goes through it, Len is exact
// after each, keys written or created between chunks stay, and exactly the
// idle keys go.
func TestStoreEvictIdleChunked(t *testing.T) {
	s := mustStore(t, Config{})
	old := func(i int) []byte { return testKey(1, fmt.Sprintf("old%d", i)) }
	young := func(i int) []byte { return testKey(2, fmt.Sprintf("young%d", i)) }
	fresh := func(i int) []byte { return testKey(3, fmt.Sprintf("fresh%d", i)) }
	const nOld, nYoung = 30_000, 10_000 // about 625 keys a shard: several chunks each
	for i := range nOld {
		s.Add(old(i), t0, t0, Counts{Impressions: 1})
	}
	for i := range nYoung {
		s.Add(young(i), t0+12*hourMs, t0+12*hourMs, Counts{Impressions: 2})
	}
	// Each shard takes one chunk per 256 local ids and one more that ends
	// its walk (and compacts its arena).
	wantCalls := 0
	for i := range s.shards {
		wantCalls += (len(s.shards[i].metas.Load().m)+evictChunk-1)/evictChunk + 1
	}
	now := t0 + 24*hourMs + 1
	live := func() int {
		n := 0
		s.Scan(-1, Span24h, now, func([]byte, Counts) bool { n++; return true })
		return n
	}
	var mu sync.Mutex // the caller's lock
	calls, revived := 0, 0
	n := s.EvictIdleChunked(now, func(chunk func()) {
		mu.Lock()
		defer mu.Unlock()
		// Between chunks the caller goes on writing: an idle key written
		// again (before or after its chunk) and a new key must both stay.
		if calls%10 == 0 {
			s.Add(old(calls), now, now, Counts{Clicks: 1})
			s.Add(fresh(calls), now, now, Counts{Clicks: 1})
			revived++
		}
		calls++
		chunk()
		if calls%50 == 0 {
			if got, want := s.Len(), live(); got != want {
				t.Fatalf("unexpected Len after chunk %d; got %d; want %d", calls, got, want)
			}
		}
	})
	if calls <= numShards {
		t.Fatalf("unexpected wrapper calls; got %d; want more than one per shard (%d shards)", calls, numShards)
	}
	if calls < wantCalls {
		t.Fatalf("unexpected wrapper calls; got %d; want at least %d", calls, wantCalls)
	}
	if got, want := s.Len(), nYoung+2*revived; got != want || live() != want {
		t.Fatalf("unexpected Len after eviction; got %d (%d scanned); want %d", got, live(), want)
	}
	// A revived key was counted when its chunk ran before the write (it was
	// evicted, then created again), not when it ran after.
	if n < nOld-revived || n > nOld {
		t.Fatalf("unexpected evictions; got %d; want %d..%d", n, nOld-revived, nOld)
	}
	for i := range nOld {
		want := i%10 == 0 && i < calls
		if got := s.Contains(old(i)); got != want {
			t.Fatalf("unexpected Contains(old %d) after eviction; got %v; want %v", i, got, want)
		}
		if want {
			if c, _ := s.ReadSpan(old(i), Span24h, now); c.Clicks != 1 {
				t.Fatalf("unexpected counts of old %d written between chunks; got %+v", i, c)
			}
		}
	}
	for i := range nYoung {
		if c, ok := s.ReadSpan(young(i), Span24h, now); !ok || c.Impressions != 2 {
			t.Fatalf("unexpected young key %d after eviction; got %+v, %v", i, c, ok)
		}
	}
	for i := 0; i < calls; i += 10 {
		if !s.Contains(fresh(i)) {
			t.Fatalf("unexpected miss of key %d created between chunks", i)
		}
	}

	// A nil wrapper runs the same pass; a wrapper that skips its chunk is a bug.
	if n := s.EvictIdleChunked(now+24*hourMs+1, nil); n != nYoung+2*revived {
		t.Fatalf("unexpected evictions with a nil wrapper; got %d; want %d", n, nYoung+2*revived)
	}
	func() {
		defer func() {
			if r := recover(); r == nil {
				t.Fatalf("unexpected return of a pass whose wrapper skipped its chunk")
			}
		}()
		s.EvictIdleChunked(now, func(func()) {})
	}()
}

func TestStoreScan(t *testing.T) {
	s := mustStore(t, Config{})
	for i := 0; i < 100; i++ {
		s.Add(testKey(i%3, fmt.Sprint(i)), t0, t0, Counts{Impressions: uint64(i)})
	}
	f := func(level int, want int, wantSum uint64) {
		t.Helper()
		n, sum := 0, uint64(0)
		s.Scan(level, Span1m, t0+30*secondMs, func(key []byte, c Counts) bool {
			if level >= 0 && KeyLevel(key) != level {
				t.Fatalf("unexpected level of %q; want %d", key, level)
			}
			n++
			sum += c.Impressions
			return true
		})
		if n != want || sum != wantSum {
			t.Fatalf("unexpected scan of level %d; got %d keys, %d impressions; want %d, %d", level, n, sum, want, wantSum)
		}
	}
	f(-1, 100, 4950)
	f(0, 34, 1683)
	f(2, 33, 1650)
	f(5, 0, 0)
	n := 0
	s.Scan(-1, Span1h, t0, func([]byte, Counts) bool { n++; return n < 10 })
	if n != 10 {
		t.Fatalf("unexpected scan length after stop; got %d; want 10", n)
	}
}

func TestStoreCollision(t *testing.T) {
	// Force two keys onto one hash: both take an entry under it and the key
	// bytes tell them apart, through compaction and removal.
	s := mustStore(t, Config{})
	a, b := testKey(0, "a"), testKey(0, "b")
	sh, h := s.shardOf(a)
	lock := func(fn func()) { sh.lock(); fn(); sh.unlock() }
	lock(func() {
		s.insert(sh, h^2, testKey(0, "dead"), false) // removed below, so compaction moves the others
		s.insert(sh, h, b, false)                    // b stored under a's hash, as a true collision would
	})
	s.Add(a, t0, t0, Counts{Impressions: 1})
	s.Add(b, t0, t0, Counts{Impressions: 2}) // hashes to its own value: a new key
	f := func(key []byte, want uint64) {
		t.Helper()
		c, ok := s.ReadSpan(key, Span1m, t0)
		if !ok || c.Impressions != want {
			t.Fatalf("unexpected counts of %q; got %+v, %v; want %d impressions", key, c, ok, want)
		}
	}
	f(a, 1)
	n := 0
	for _, e := range sh.index.Load().ents {
		if e.hash == h {
			n++
		}
	}
	if n != 2 {
		t.Fatalf("unexpected entries under the shared hash; got %d; want 2", n)
	}
	_, rb, ok := sh.find(h, b)
	if !ok {
		t.Fatalf("unexpected miss for the key stored under the shared hash")
	}
	// Compaction moves the records and keeps both keys reachable.
	lock(func() {
		pos, r, _ := sh.find(h^2, testKey(0, "dead"))
		s.remove(sh, pos, h^2, r)
		sh.arenaDead += minArenaCompaction // force it
		s.compactArena(sh)
	})
	s.keys.Add(-1)
	f(a, 1)
	if _, rb2, ok := sh.find(h, b); !ok || rb2.off() == rb.off() || rb2.slot() != rb.slot() {
		t.Fatalf("unexpected ref after compaction; got %x, %v; before %x", rb2, ok, rb)
	}
	// Remove b's colliding entry; a stays reachable.
	lock(func() {
		pos, r, _ := sh.find(h, b)
		s.remove(sh, pos, h, r)
	})
	s.keys.Add(-1)
	f(a, 1)
	if _, _, ok := sh.find(h, b); ok {
		t.Fatalf("unexpected hit for the removed key")
	}
	if n := s.EvictIdle(t0 + 25*hourMs); n != 2 || s.Len() != 0 {
		t.Fatalf("unexpected eviction; n=%d len=%d", n, s.Len())
	}
}

func TestZeroAllocs(t *testing.T) {
	r, err := ParseRollups(DefaultRollupNames())
	if err != nil {
		t.Fatalf("unexpected error: %s", err)
	}
	s := mustStore(t, Config{})
	var v Values
	v[DimCampaign] = []byte("c42")
	v[DimCreative] = []byte("cr7")
	v[DimPlacement] = []byte("news.example/top")
	buf := make([]byte, 0, 256)
	key := AppendKey(buf, 3, r, &v)
	s.Add(key, t0, t0, Counts{Impressions: 1})
	now := t0
	var dst [NumSpans]Counts
	var sink uint64
	f := func(name string, fn func()) {
		t.Helper()
		if n := testing.AllocsPerRun(1000, fn); n != 0 {
			t.Fatalf("unexpected allocations in %s; got %v; want 0", name, n)
		}
	}
	f("Add", func() {
		now += 1500
		s.Add(key, now-700, now, Counts{Impressions: 1, Clicks: 1})
	})
	batch := []Event{{Key: key, TsMs: now, C: Counts{Impressions: 1}}, {Key: key, TsMs: now - 7000, C: Counts{Clicks: 1}}}
	f("AddBatch", func() {
		now += 1500
		batch[0].TsMs, batch[1].TsMs = now, now-7000
		s.AddBatch(batch, now, nil)
	})
	f("Read", func() { s.Read(key, now, &dst) })
	f("ReadSpan", func() {
		c, _ := s.ReadSpan(key, Span1h, now)
		sink += c.Impressions
	})
	f("Contains", func() { s.Contains(key) })
	f("Scan", func() {
		s.Scan(3, Span5m, now, func(_ []byte, c Counts) bool { sink += c.Clicks; return true })
	})
	f("AppendKey", func() { buf = AppendKey(buf[:0], 3, r, &v) })
	var out Values
	f("DecodeKey", func() {
		if _, err := DecodeKey(key, r, &out); err != nil {
			panic(err)
		}
	})
	f("Chain", func() { buf2 := [8]int{}; _ = r.Chain(buf2[:0], 3) })
	f("Covers", func() { r.Covers(3, &v) })
	if dst[Span24h].Impressions != 2003 || sink == 0 {
		t.Fatalf("unexpected 24h impressions; got %d; want 2003", dst[Span24h].Impressions)
	}
}

func TestStoreSaturation(t *testing.T) {
	s := mustStore(t, Config{})
	key := testKey(0, "c")
	big := Counts{Impressions: math.MaxUint32 - 1, Clicks: 1, CostMicros: MaxBucketMicros - 5, ValueMicros: 7}
	// Three 5 s buckets (each within the widths), one minute bucket
	// (saturating on the second and third Add).
	for i := int64(0); i < 3; i++ {
		now := t0 + i*10*secondMs
		s.Add(key, now, now, big)
	}
	if got := s.Saturated(); got != 2 {
		t.Fatalf("unexpected saturations; got %d; want 2", got)
	}
	var dst [NumSpans]Counts
	s.Read(key, t0+20*secondMs, &dst)
	want1m := Counts{Impressions: 3 * (math.MaxUint32 - 1), Clicks: 3, CostMicros: 3 * (MaxBucketMicros - 5), ValueMicros: 21}
	wantMin := Counts{Impressions: math.MaxUint32, Clicks: 3, CostMicros: MaxBucketMicros, ValueMicros: 21}
	if dst[Span1m] != want1m {
		t.Fatalf("unexpected 1m; got %+v; want %+v", dst[Span1m], want1m)
	}
	for _, sp := range []Span{Span5m, Span15m, Span1h, Span24h} {
		if dst[sp] != wantMin {
			t.Fatalf("unexpected %s; got %+v; want %+v", sp, dst[sp], wantMin)
		}
	}
	// One event can saturate alone (a value of 9e12 currency units is allowed
	// on the wire); counters that reach the maximum exactly are not saturated.
	s.Add(testKey(0, "d"), t0, t0, Counts{Impressions: math.MaxUint32, ValueMicros: 9e18})
	if got := s.Saturated(); got != 3 {
		t.Fatalf("unexpected saturations; got %d; want 3", got)
	}
	if c, _ := s.ReadSpan(testKey(0, "d"), Span1m, t0); c.Impressions != math.MaxUint32 || c.ValueMicros != MaxBucketMicros {
		t.Fatalf("unexpected saturated counts; got %+v", c)
	}
	// The sum of the widest span of full buckets fits a uint64.
	wide := mustStore(t, Config{Resolutions: []Resolution{{time.Second, maxRingBuckets}, {time.Hour, 24}}})
	for i := int64(0); i < maxRingBuckets; i++ {
		now := t0 + i*secondMs
		wide.Add(key, now, now, Counts{Impressions: math.MaxUint64, CostMicros: math.MaxUint64})
	}
	c, _ := wide.ReadSpan(key, Span1m, t0+(maxRingBuckets-1)*secondMs)
	if c.Impressions != 60*math.MaxUint32 || c.CostMicros != 60*MaxBucketMicros {
		t.Fatalf("unexpected 1m of full buckets; got %+v", c)
	}
}

func TestStoreMemoryPerKey(t *testing.T) {
	f := func(events int, lo, hi int64) {
		t.Helper()
		s := mustStore(t, Config{})
		const n = 10000
		for i := 0; i < n; i++ {
			key := testKey(3, fmt.Sprint("campaign-", i%100, "/creative-", i))
			for j := 0; j < events; j++ {
				s.Add(key, t0+int64(j)*minuteMs, t0+int64(j)*minuteMs, Counts{Impressions: 1})
			}
		}
		if perKey := s.MemoryBytes() / n; perKey < lo || perKey > hi {
			t.Fatalf("unexpected memory per key with %d events; got %d bytes; want %d..%d", events, perKey, lo, hi)
		}
	}
	dense, sparse := blockSizes(mustStore(t, Config{}).rings)
	if dense != 1784 || sparse != 488 {
		t.Fatalf("unexpected block sizes; got %d, %d; want 1784, 488", dense, sparse)
	}
	// Blocks plus index entries, metas and key records (about 30 bytes here).
	f(1, 488+60, 488+180)
	f(6, 1784+60, 1784+180)
}
