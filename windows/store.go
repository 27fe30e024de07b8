package windows

import (
	"fmt"
	"hash/maphash"
	"runtime"
	"sync/atomic"
	"unsafe"

	"github.com/bidpulse/bidpulse/internal/pace"
)

// Config configures a Store.
type Config struct {
	Resolutions []Resolution // nil: DefaultResolutions()
	MaxKeys     int          // 0: 1_000_000
}

// DefaultMaxKeys is the key cap of a Store whose Config.MaxKeys is 0.
const DefaultMaxKeys = 1_000_000

// maxMaxKeys keeps slot numbers within 31 bits.
const maxMaxKeys = 1 << 31

// Store holds the sliding-window counters of every key. All methods are safe
// for concurrent use.
//
// Layout: keys are spread over 64 shards by a seeded hash. A shard indexes
// its keys in an open-addressing table (hash -> slot and arena offset) and
// keeps their bytes in an append-only arena; a key's counters live in a
// fixed-size block in a slab (off the Go heap on Linux, on huge pages when
// large). Nothing per key holds a Go pointer, so garbage collection work does
// not grow with the number of keys.
//
// Concurrency: each shard has a seqlock (see seqlock). Adds, evictions and
// checkpoint loads are writers and exclude each other per shard; Read,
// ReadSpan, Contains, Scan and WriteCheckpoint are readers that take no lock
// and retry when a writer ran meanwhile, so they never see half of an Add
// (no CTR above 1 from a click counted without its impression). Lock order:
// a shard's writer lock, then a slab's allocation mutex; no code holds two
// shard locks.
//
// Event time: every ring is bucketed by event time (epoch = ts / width). A
// span is the current, partial bucket plus the whole buckets before it, in
// the finest ring that serves it. Times before the Unix epoch are treated as
// 0.
//
// Storage tiers: a new key gets a sparse block with room for 4 buckets per
// ring; the first Add that needs a fifth distinct bucket in a ring moves it
// to a dense block with every bucket and a running total per span (it stays
// dense until evicted). A long-tail key that saw a handful of events thus
// costs about a third of a busy one. The sparse slab keeps its high-water
// mark resident: a store whose keys all start sparse and all become dense
// holds 488 more bytes per key until later keys reuse the freed slots.
//
// Counters: impressions, clicks and conversions are 32-bit and cost and value
// 48-bit micros per bucket (see MaxBucketEvents, MaxBucketMicros); a counter
// that would pass its maximum saturates there and Saturated counts it. Sums
// of a span and running totals are uint64 and cannot overflow.
//
// Memory per key, in bytes, with R rings, B buckets over all rings, S = 5
// spans, K the key length (defaults: R = 4, B = 63):
//
//	block:  dense 8 + 16R + 40S + 24B (1,784); sparse 8 + 8R + 28*sum(min(4, buckets)) (488)
//	index:  16 per entry at a load of 3/8..3/4 (21..43)
//	metas:  16 (x1..1.25 as it grows)
//	arena:  8 + K (x1..1.25 as it grows)
//
// so about 1,784 + 70 + K for a busy key and 488 + 70 + K for a sparse one;
// docs/PERFORMANCE.md has the resident memory measured. Evicted slots are
// reused by later keys; memory goes back to the system only when the Store
// is garbage collected.
type Store struct {
	seed    maphash.Seed
	res     []Resolution
	rings   []ring
	plans   [NumSpans]spanPlan
	spanIdx [NumSpans]int // index of each span in its ring's spans
	longest int           // ring with the longest window
	finest  int           // ring with the narrowest buckets
	nested  bool          // every width is a multiple of the finest one
	maxKeys int64
	slabs   [numClasses]slab
	mem     *slabMem
	scratch chan *batchScratch // AddBatch's free list

	_         [64]byte
	keys      atomic.Int64 // live keys over all shards
	saturated atomic.Uint64
	snap      atomic.Pointer[Snapshot] // being written, or nil
	_         [64]byte

	shards [numShards]shard
}

// NewStore returns an empty Store. It fails when a resolution is invalid
// (width not a positive whole number of milliseconds, buckets out of
// 1..65536, a ring over 366 days, more than 16 rings) or when a span (1m, 5m,
// 15m, 1h, 24h) cannot be served: each span is served by the finest
// resolution whose Width*Buckets >= the span and whose width divides the span
// evenly. Widths need not divide each other.
func NewStore(cfg Config) (*Store, error) {
	res := cfg.Resolutions
	if len(res) == 0 {
		res = DefaultResolutions()
	}
	res = append([]Resolution(nil), res...)
	rings, plans, err := planRings(res)
	if err != nil {
		return nil, err
	}
	maxKeys := cfg.MaxKeys
	if maxKeys == 0 {
		maxKeys = DefaultMaxKeys
	}
	if maxKeys < 0 || maxKeys > maxMaxKeys {
		return nil, fmt.Errorf("cannot use MaxKeys %d: it must be in 1..%d (0 for %d)", cfg.MaxKeys, maxMaxKeys, DefaultMaxKeys)
	}
	s := &Store{
		seed:    maphash.MakeSeed(),
		res:     res,
		rings:   rings,
		plans:   plans,
		maxKeys: int64(maxKeys),
		mem:     &slabMem{},
		scratch: make(chan *batchScratch, batchScratches),
	}
	for _, r := range rings {
		for i, sp := range r.spans {
			s.spanIdx[sp] = i
		}
	}
	for i, r := range rings {
		lr := &rings[s.longest]
		if r.width*r.buckets > lr.width*lr.buckets {
			s.longest = i
		}
		if r.width < rings[s.finest].width {
			s.finest = i
		}
	}
	s.nested = true
	for _, r := range rings {
		s.nested = s.nested && r.width%rings[s.finest].width == 0
	}
	dense, sparse := blockSizes(rings)
	s.slabs[classSparse].init(sparse, maxKeys, s.mem)
	s.slabs[classDense].init(dense, maxKeys, s.mem)
	runtime.AddCleanup(s, func(m *slabMem) { m.release() }, s.mem)
	for i := range s.shards {
		s.shards[i].init()
	}
	return s, nil
}

// Resolutions returns the store's rings, in configured order, in a new slice.
func (s *Store) Resolutions() []Resolution {
	return append([]Resolution(nil), s.res...)
}

// SpanResolution returns the resolution serving span and the number of its
// buckets the span sums (the current one included).
func (s *Store) SpanResolution(span Span) (Resolution, int) {
	p := s.plans[span]
	return s.res[p.ring], int(p.k)
}

// Oldest returns the start (Unix ms) of the oldest bucket of the longest ring
// at nowMs; an event with ts < Oldest(now) is "late": no span can count it.
func (s *Store) Oldest(nowMs int64) int64 {
	r := &s.rings[s.longest]
	return (max(nowMs, 0)/r.width - r.buckets + 1) * r.width
}

// MaxKeys returns the key cap.
func (s *Store) MaxKeys() int {
	return int(s.maxKeys)
}

// Len returns the number of live keys.
func (s *Store) Len() int {
	return int(s.keys.Load())
}

// Saturated returns how many Adds (or AddBatch events) met a bucket counter
// at its maximum; the counter then holds the maximum instead of the true sum.
func (s *Store) Saturated() uint64 {
	return s.saturated.Load()
}

func (s *Store) shardOf(key []byte) (*shard, uint64) {
	h := maphash.Bytes(s.seed, key)
	return &s.shards[h>>(64-shardBits)], hashOf(h)
}

// Contains reports whether key is live.
func (s *Store) Contains(key []byte) bool {
	sh, h := s.shardOf(key)
	for {
		seq := sh.readBegin()
		_, _, ok := sh.find(h, key)
		if sh.readValid(seq) {
			return ok
		}
	}
}

// Add adds c to key's bucket at event time tsMs (ts is clamped to nowMs; a
// ring whose window no longer holds ts is skipped for that ring only). It
// creates the key when missing; it returns false, changing nothing, when the
// key is missing and the store holds MaxKeys keys. key may be modified after
// Add returns. A non-empty key is required (AppendKey always makes one).
// Callers refuse late events (tsMs < Oldest(nowMs)) before calling Add: Add
// would still create a missing key for one, though no span counts it.
// Add does not allocate when the key exists. AddBatch is faster per event.
func (s *Store) Add(key []byte, tsMs, nowMs int64, c Counts) bool {
	if len(key) == 0 {
		panic("BUG: windows: Add with an empty key")
	}
	nowMs = max(nowMs, 0)
	tsMs = min(max(tsMs, 0), nowMs)
	sh, h := s.shardOf(key)
	sh.lock()
	ok := s.addLocked(sh, h, key, tsMs, nowMs, &c, true)
	sh.unlock()
	return ok
}

// addLocked is Add with the shard's writer lock held and times clamped;
// prefetch is false when the caller prefetched already (AddBatch).
func (s *Store) addLocked(sh *shard, h uint64, key []byte, tsMs, nowMs int64, c *Counts, prefetch bool) bool {
	pfTs := int64(-1) // no prefetch
	if prefetch {
		pfTs = tsMs
	}
	r, p, ok := s.lookup(sh, h, key, true, pfTs)
	if !ok {
		if r, p, ok = s.insert(sh, h, key, false); !ok {
			return false
		}
	}
	if s.apply(sh, h, r, p, tsMs, nowMs, c) {
		s.saturated.Add(1)
	}
	return true
}

// apply adds c at tsMs to the block p of key ref r; it reports a saturation.
// The caller holds the writer lock.
func (s *Store) apply(sh *shard, h uint64, r ref, p unsafe.Pointer, tsMs, nowMs int64, c *Counts) bool {
	s.beforeChange(sh, r, p, true)
	if nw := blockNewest(p); tsMs > *nw {
		*nw = tsMs
	}
	sat := false
	for ri := range s.rings {
		rg := &s.rings[ri]
		e := rg.wdiv.div(tsMs)
		nowE := e
		if tsMs != nowMs {
			nowE = rg.wdiv.div(nowMs)
		}
		if !r.dense() {
			st, full := rg.addSparse(p, ri, e, nowE, c)
			if !full {
				sat = sat || st
				continue
			}
			r, p = s.promote(sh, h, r)
		}
		sat = rg.addDense(p, ri, e, nowE, c) || sat
	}
	return sat
}

// lookup finds key and returns its ref and block. As soon as the index
// entry names the block it prefetches the lines the caller will touch (the
// header and running totals for a read; for an Add also the bucket of tsMs
// in each ring, unless tsMs < 0), so that they load while the key bytes, compared next, do:
// two cache misses in parallel instead of one after the other. (Measured at
// 1M keys: about -60 ns for a read, -200 ns for an Add; a hot key pays a few
// ns for the hints.) A reader calls it between readBegin and readValid; a
// writer with the lock held.
func (s *Store) lookup(sh *shard, h uint64, key []byte, forAdd bool, tsMs int64) (ref, unsafe.Pointer, bool) {
	ar := sh.arena.Load()
	t := sh.index.Load()
	i := h & t.mask
	for n := uint64(0); n <= t.mask; n++ {
		e := &t.ents[i]
		eh := atomic.LoadUint64(&e.hash)
		if eh == 0 {
			break
		}
		if eh == h {
			r := ref(atomic.LoadUint64(&e.ref))
			p := s.blockOf(r)
			switch {
			case p == nil:
			case !forAdd:
				s.prefetchHeader(p, r.dense())
			case tsMs >= 0:
				s.prefetchBlock(p, r.dense(), tsMs)
			}
			if k, ok := recKey(ar.b, r.off()); ok && p != nil && string(k) == string(key) {
				return r, p, true
			}
		}
		i = (i + 1) & t.mask
	}
	return 0, nil, false
}

// reserveKey counts one more live key unless the cap is reached.
func (s *Store) reserveKey() bool {
	for {
		n := s.keys.Load()
		if n >= s.maxKeys {
			return false
		}
		if s.keys.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// Read fills dst with the counts of every span at nowMs; false when the key is
// not live (dst is then zeroed). It does not allocate.
func (s *Store) Read(key []byte, nowMs int64, dst *[NumSpans]Counts) bool {
	nowMs = max(nowMs, 0)
	sh, h := s.shardOf(key)
	for {
		// dst is filled in place: a read that a writer overlapped is redone
		// whole before Read returns.
		seq := sh.readBegin()
		r, p, ok := s.lookup(sh, h, key, false, 0)
		if ok {
			s.sumSpans(p, r.dense(), nowMs, dst)
		}
		if sh.readValid(seq) {
			if !ok {
				*dst = [NumSpans]Counts{}
			}
			return ok
		}
	}
}

func (s *Store) sumSpans(p unsafe.Pointer, dense bool, nowMs int64, dst *[NumSpans]Counts) {
	for ri := range s.rings {
		rg := &s.rings[ri]
		if len(rg.spans) == 0 {
			continue
		}
		cur := rg.wdiv.div(nowMs)
		for i, sp := range rg.spans {
			rg.span(p, ri, dense, i, cur, &dst[sp])
		}
		if midReadHook != nil {
			midReadHook(ri)
		}
	}
}

// ReadSpan returns key's counts in span at nowMs; false when the key is not
// live. It does not allocate.
func (s *Store) ReadSpan(key []byte, span Span, nowMs int64) (Counts, bool) {
	nowMs = max(nowMs, 0)
	pl := s.plans[span]
	rg := &s.rings[pl.ring]
	cur := rg.wdiv.div(nowMs)
	sh, h := s.shardOf(key)
	var c Counts
	for {
		seq := sh.readBegin()
		r, p, ok := s.lookup(sh, h, key, false, 0)
		if ok {
			rg.span(p, pl.ring, r.dense(), s.spanIdx[span], cur, &c)
		}
		if sh.readValid(seq) {
			if !ok {
				return Counts{}, false
			}
			return Counts{c.Impressions, c.Clicks, c.Conversions, c.CostMicros, c.ValueMicros}, true
		}
	}
}

// Scan calls fn for every live key whose level byte is level (or every key
// when level < 0) with its counts in span at nowMs, until fn returns false.
// key is valid only during fn and must not be modified; fn may call the
// Store (Scan holds no lock while fn runs). Keys come in no particular
// order; a key live for the whole scan is seen exactly once; keys added or
// evicted during the scan may or may not be seen.
func (s *Store) Scan(level int, span Span, nowMs int64, fn func(key []byte, c Counts) bool) {
	nowMs = max(nowMs, 0)
	pl := s.plans[span]
	rg := &s.rings[pl.ring]
	cur := rg.wdiv.div(nowMs)
	for i := range s.shards {
		sh := &s.shards[i]
		for id := 0; ; id++ {
			var key []byte
			var c Counts
			found, end := false, false
			for {
				seq := sh.readBegin()
				ar := sh.arena.Load()
				mb := sh.metas.Load()
				found, end = false, id >= len(mb.m)
				if !end {
					m := &mb.m[id]
					if h := atomic.LoadUint64(&m.hash); h != 0 {
						r := ref(atomic.LoadUint64(&m.ref))
						k, ok := recKey(ar.b, r.off())
						p := s.blockOf(r)
						if ok && p != nil && len(k) > 0 && (level < 0 || int(k[0]) == level) {
							key, found = k, true
							rg.span(p, pl.ring, r.dense(), s.spanIdx[span], cur, &c)
						}
					}
				}
				if sh.readValid(seq) {
					break
				}
			}
			if end {
				break
			}
			if found && !fn(key, c) {
				return
			}
		}
	}
}

// evictChunk bounds how many keys eviction examines per writer-lock hold,
// so bid reads of a shard (and, through EvictIdleChunked, the caller's own
// writer) wait at most for that many.
const evictChunk = 256

// evictAhead is how many keys ahead eviction prefetches.
const evictAhead = 8

// EvictIdle removes keys whose newest event time is older than nowMs minus the
// longest ring's span (Width*Buckets), so no span holds any of their events;
// it returns how many. Memory of evicted keys is reused by later keys. It
// takes each shard's writer lock for up to 256 keys at a time, so run it from
// a periodic housekeeping task, not per event. It is EvictIdleChunked with
// the chunks run as they come.
func (s *Store) EvictIdle(nowMs int64) int {
	return s.EvictIdleChunked(nowMs, nil)
}

// EvictIdleChunked is EvictIdle with every chunk of the pass run through
// each: each(chunk) must call chunk exactly once, before it returns, and may
// hold a lock of its own around it. A chunk is one hold of a shard's writer
// lock over up to 256 keys (or the compaction of the shard's key arena that
// ends its walk) and the update of Len for the keys it removed, so Len is
// exact again when the chunk returns. That lets a caller whose writes rely
// on the key set not changing under them (a key-cap check, then the writes)
// exclude eviction from those writes one chunk at a time instead of for the
// whole pass over every key; BeginSnapshot's rule (no eviction during it)
// then holds if each takes the lock BeginSnapshot is called under. A nil
// each runs the chunks as they come.
//
// Between chunks the pass steps aside: it yields the processor, so a
// goroutine that waited for the lock each released runs and takes it before
// the next chunk does (sync.Mutex lets the releasing goroutine barge back
// in, and a waiter would wait up to milliseconds), and every 2 ms of work it
// sleeps briefly, as the checkpoint walk does (internal/pace), so a
// one-core process polls the network meanwhile.
//
// The threshold is fixed by nowMs at the start: a key written between
// chunks carries a newer time and is kept; a key created between chunks may
// or may not be examined.
func (s *Store) EvictIdleChunked(nowMs int64, each func(chunk func())) int {
	r := &s.rings[s.longest]
	threshold := max(nowMs, 0) - r.width*r.buckets
	var (
		sh        *shard
		start, n  int
		done, ran bool
		pacer     pace.Pacer
	)
	// One closure for the whole pass: chunk reads where the pass stands.
	chunk := func() {
		if ran {
			panic("BUG: windows: EvictIdleChunked's chunk called twice")
		}
		ran = true
		k, end := s.evictRange(sh, start, threshold)
		if k > 0 {
			s.keys.Add(int64(-k))
			n += k
		}
		done = end
	}
	for i := range s.shards {
		sh = &s.shards[i]
		for start, done = 0, false; !done; start += evictChunk {
			ran = false
			if each != nil {
				each(chunk)
			} else {
				chunk()
			}
			if !ran {
				panic("BUG: windows: EvictIdleChunked's each returned without calling chunk")
			}
			runtime.Gosched()
			pacer.Check()
		}
	}
	return n
}

// evictRange removes the idle keys among sh's local ids start..start+255
// under sh's writer lock and returns how many (the caller updates s.keys);
// end reports that start is past the last id, in which case it compacted
// the shard's arena instead.
func (s *Store) evictRange(sh *shard, start int, threshold int64) (k int, end bool) {
	sh.lock()
	defer sh.unlock()
	mb := sh.metas.Load()
	if start >= len(mb.m) {
		s.compactArena(sh)
		return 0, true
	}
	stop := min(start+evictChunk, len(mb.m))
	for id := start; id < stop; id++ {
		// The newest times live in the blocks: keep a few loads ahead.
		if ahead := id + evictAhead; ahead < stop && mb.m[ahead].hash != 0 {
			prefetch(s.blockOf(ref(mb.m[ahead].ref)))
		}
		m := &mb.m[id]
		if m.hash == 0 {
			continue
		}
		rf := ref(m.ref)
		if *blockNewest(s.blockOf(rf)) < threshold {
			s.remove(sh, sh.index.Load().findRef(m.hash, rf), m.hash, rf)
			k++
		}
	}
	return k, false
}

// MemoryBytes estimates the bytes held by the store: slab blocks handed out
// (live and free), indexes, metas and arenas (allocated capacity).
func (s *Store) MemoryBytes() int64 {
	n := int64(unsafe.Sizeof(*s))
	for i := range s.slabs {
		n += s.slabs[i].usedBytes() + int64(len(s.slabs[i].chunks))*8
	}
	for i := range s.shards {
		sh := &s.shards[i]
		sh.lock()
		n += sh.memoryBytes()
		sh.unlock()
	}
	return n
}
