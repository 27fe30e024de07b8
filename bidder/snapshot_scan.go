package bidder

import (
	"bytes"
	"encoding/binary"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/bidpulse/bidpulse/internal/pace"
	"github.com/bidpulse/bidpulse/windows"
)

// A snapshot scans every key of a level; what a query asks beyond the level
// and the window (the sort, the limit, min_impressions, the campaign) only
// picks from what the scan found. So the scan is shared: scanCache keeps
// one scan per shape (level and window) for about a second, runs at most
// one scan of a shape at a time (the others wait for it and share its
// result), and bounds the keys all scans visit per second
// (Options.SnapshotScanRate). However many distinct queries the snapshot
// endpoints get, the scans are at most one per shape per second, the
// levels times the five windows, and the keys they visit are bounded.

const (
	// defaultScanTTL is how long a scan answers GET /v1/snapshot.
	defaultScanTTL = time.Second
	// scanKeep is how long a scan is kept after it was made, for streams
	// to reuse while the budget is spent; past it, it is dropped, so the
	// scans held are those of the last few seconds.
	scanKeep = 5 * time.Second
	// maxBodiesPerScan bounds the answers cached with one scan.
	maxBodiesPerScan = 64
)

// scanShape is what a scan depends on.
type scanShape struct {
	level int
	span  windows.Span
}

// errScanBudget is a snapshot refused because the scans have spent their
// budget of keys.
type errScanBudget struct {
	rate       int
	retryAfter int // seconds
}

func (e errScanBudget) Error() string {
	return "snapshot scans are over their budget of " + strconv.Itoa(e.rate) +
		" keys per second (--snapshot-scan-rate); retry in " + strconv.Itoa(e.retryAfter) + " s, or query a level and window already scanned"
}

// scanCache holds the latest scan of every shape. Safe for concurrent use;
// mu is never held while scanning.
type scanCache struct {
	rate int // keys per second; <= 0: no budget
	// ttl is how long a scan answers GET /v1/snapshot (tests lengthen it).
	ttl time.Duration

	mu      sync.Mutex
	entries map[scanShape]*scanEntry
	tokens  float64 // keys the scans may still visit; negative: a debt
	refill  time.Time

	scans   *metrics.Counter
	keys    *metrics.Counter
	shared  *metrics.Counter
	refused *metrics.Counter
}

// scanEntry is the latest scan of a shape: in flight until done is closed.
type scanEntry struct {
	done chan struct{}
	res  *scanResult // set before done is closed; nil if the scan failed
	prev *scanResult // the shape's scan before this one, for stale use
}

func newScanCache(rate int, set *metrics.Set) *scanCache {
	c := &scanCache{
		rate:    rate,
		ttl:     defaultScanTTL,
		entries: map[scanShape]*scanEntry{},
		tokens:  float64(rate),
		refill:  time.Now(),
		scans:   set.NewCounter(`bidpulse_snapshot_scans_total`),
		keys:    set.NewCounter(`bidpulse_snapshot_scanned_keys_total`),
		shared:  set.NewCounter(`bidpulse_snapshot_scans_shared_total`),
		refused: set.NewCounter(`bidpulse_snapshot_scans_refused_total`),
	}
	set.NewGauge(`bidpulse_snapshot_scan_rate_max`, func() float64 { return float64(max(rate, 0)) })
	return c
}

// get returns a scan of shape made less than maxAge ago at about nowMs:
// the cached one, the one in flight (waiting for it), or a new one if the
// budget allows. Past the budget it returns errScanBudget, and with it the
// shape's latest scan when stale is set and there is one (the streams show
// it rather than nothing).
func (c *scanCache) get(s *Service, shape scanShape, nowMs int64, maxAge time.Duration, stale bool) (*scanResult, error) {
	c.mu.Lock()
	now := time.Now()
	c.expire(now)
	e := c.entries[shape]
	var last *scanResult
	if e != nil {
		select {
		case <-e.done:
			if e.res != nil && e.res.fresh(now, nowMs, maxAge) {
				c.mu.Unlock()
				c.shared.Inc()
				return e.res, nil
			}
			last = e.res
			if last == nil {
				last = e.prev
			}
		default:
			c.mu.Unlock()
			c.shared.Inc()
			<-e.done
			if e.res == nil {
				return e.prev, errScanFailed
			}
			return e.res, nil
		}
	}
	if err := c.take(now); err != nil {
		c.mu.Unlock()
		c.refused.Inc()
		if stale && last != nil {
			return last, err
		}
		return nil, err
	}
	ne := &scanEntry{done: make(chan struct{}), prev: last}
	c.entries[shape] = ne
	c.mu.Unlock()

	defer close(ne.done)
	res := s.scanLevel(shape, nowMs)
	c.charge(res.visited)
	c.scans.Inc()
	ne.res, ne.prev = res, nil
	return res, nil
}

var errScanFailed = queryError("the snapshot scan failed")

// take returns nil when a scan may start: the budget has keys left.
// Called with mu held.
func (c *scanCache) take(now time.Time) error {
	if c.rate <= 0 {
		return nil
	}
	r := float64(c.rate)
	c.tokens = min(r, c.tokens+now.Sub(c.refill).Seconds()*r)
	c.refill = now
	if c.tokens > 0 {
		return nil
	}
	return errScanBudget{rate: c.rate, retryAfter: max(1, int(-c.tokens/r)+1)}
}

// allow returns nil while the budget has keys left (see take); a refusal is
// counted with the refused scans.
func (c *scanCache) allow(now time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	err := c.take(now)
	if err != nil {
		c.refused.Inc()
	}
	return err
}

// chargeRender takes the n entries an answer's rendering visited from the
// budget (not counted as keys scanned).
func (c *scanCache) chargeRender(n int) {
	c.mu.Lock()
	c.tokens -= float64(n)
	c.mu.Unlock()
}

// charge takes n visited keys from the budget (a scan is charged after it
// ran: the budget may go into debt by one scan, which delays the next).
func (c *scanCache) charge(n int) {
	c.keys.Add(n)
	c.mu.Lock()
	c.tokens -= float64(n)
	c.mu.Unlock()
}

// expire drops the scans made more than scanKeep ago. Called with mu held.
func (c *scanCache) expire(now time.Time) {
	for k, e := range c.entries {
		select {
		case <-e.done:
			if e.res == nil || now.Sub(e.res.at) > scanKeep {
				delete(c.entries, k)
			}
		default:
		}
	}
}

// scanEntryRec is one key of a scan: its bytes in the scan's arena and the
// counts a snapshot shows.
type scanEntryRec struct {
	off                              uint32
	n                                uint16
	impressions, clicks, conversions uint64
}

func (e *scanEntryRec) counts() windows.Counts {
	return windows.Counts{Impressions: e.impressions, Clicks: e.clicks, Conversions: e.conversions}
}

// scanResult is one scan: the keys of a level with any count in a window,
// at nowMs. Immutable once made, but for its lazily built sort orders and
// multipliers, and its cached answers, each under its own guard.
type scanResult struct {
	shape   scanShape
	nowMs   int64
	at      time.Time
	visited int // keys visited, counts or not
	arena   []byte
	entries []scanEntryRec

	orderOnce [len(sortNames)]sync.Once
	orders    [len(sortNames)][]int32 // entry indexes, best first
	multOnce  sync.Once
	mults     []float64 // by entry, for the multiplier sort

	mu     sync.Mutex
	bodies map[string][]byte
}

// fresh reports whether r may answer at nowMs (service time) for a reader
// that accepts maxAge (wall time).
func (r *scanResult) fresh(now time.Time, nowMs int64, maxAge time.Duration) bool {
	return now.Sub(r.at) < maxAge && nowMs >= r.nowMs && nowMs-r.nowMs < defaultScanTTL.Milliseconds()
}

func (r *scanResult) key(i int) []byte {
	e := &r.entries[i]
	return r.arena[e.off : e.off+uint32(e.n) : e.off+uint32(e.n)]
}

// campaignOf returns the campaign of an encoded key (the first dimension of
// every level: a uvarint length, then the bytes).
func campaignOf(key []byte) []byte {
	if len(key) < 2 {
		return nil
	}
	n, w := binary.Uvarint(key[1:])
	if w <= 0 || n > uint64(len(key)-1-w) {
		return nil
	}
	return key[1+w : 1+w+int(n)]
}

// scanLevel scans the keys of shape's level at nowMs. It steps aside every
// 2 ms of work (pace), so bids get the CPU on a one-core service.
func (s *Service) scanLevel(shape scanShape, nowMs int64) *scanResult {
	r := &scanResult{shape: shape, nowMs: nowMs, at: time.Now()}
	var p pace.Pacer
	s.store.Scan(shape.level, shape.span, nowMs, func(key []byte, c windows.Counts) bool {
		p.Step()
		r.visited++
		if c.Impressions == 0 && c.Clicks == 0 && c.Conversions == 0 {
			return true
		}
		off := len(r.arena)
		r.arena = append(r.arena, key...)
		r.entries = append(r.entries, scanEntryRec{off: uint32(off), n: uint16(len(key)),
			impressions: c.Impressions, clicks: c.Clicks, conversions: c.Conversions})
		return true
	})
	return r
}

// order returns the entries sorted by sortBy, best first, ties by key
// bytes; built once per scan and sort.
func (r *scanResult) order(s *Service, sortBy int) []int32 {
	r.orderOnce[sortBy].Do(func() {
		var vals []float64
		if sortBy == sortMultiplier {
			vals = r.multipliers(s)
		} else {
			vals = make([]float64, len(r.entries))
			for i := range r.entries {
				vals[i] = metricOf(&r.entries[i], sortBy)
			}
		}
		o := make([]int32, len(r.entries))
		for i := range o {
			o[i] = int32(i)
		}
		var p pace.Pacer
		slices.SortFunc(o, func(a, b int32) int {
			p.Step()
			switch va, vb := vals[a], vals[b]; {
			case va > vb:
				return -1
			case va < vb:
				return 1
			}
			return bytes.Compare(r.key(int(a)), r.key(int(b)))
		})
		r.orders[sortBy] = o
	})
	return r.orders[sortBy]
}

func metricOf(e *scanEntryRec, sortBy int) float64 {
	switch sortBy {
	case sortClicks:
		return float64(e.clicks)
	case sortConversions:
		return float64(e.conversions)
	case sortCTR:
		return e.counts().CTR()
	case sortCVR:
		return e.counts().CVR()
	}
	return float64(e.impressions)
}

// multipliers returns the multiplier of every entry, computed once per scan
// (a second pass as long as the scan, charged to the same budget).
func (r *scanResult) multipliers(s *Service) []float64 {
	r.multOnce.Do(func() {
		m := make([]float64, len(r.entries))
		var p pace.Pacer
		sc := getScratch()
		sc.noTrack = true
		for i := range r.entries {
			p.Step()
			m[i] = s.multiplierOfKey(sc, r.key(i), r.nowMs)
		}
		sc.noTrack = false
		putScratch(sc)
		s.scans.charge(len(r.entries))
		r.mults = m
	})
	return r.mults
}

// body returns the cached answer of query key q, if any.
func (r *scanResult) body(q string) ([]byte, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	b, ok := r.bodies[q]
	return b, ok
}

// keepBody caches b as the answer of query key q, up to maxBodiesPerScan.
func (r *scanResult) keepBody(q string, b []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.bodies == nil {
		r.bodies = map[string][]byte{}
	}
	if len(r.bodies) < maxBodiesPerScan {
		r.bodies[q] = b
	}
}
