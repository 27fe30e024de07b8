package bidder

import (
	"bytes"
	"sort"
	"sync"

	"github.com/valyala/fasthttp"

	"github.com/bidpulse/bidpulse/internal/pace"
	"github.com/bidpulse/bidpulse/windows"
)

const (
	defaultSnapshotLimit = 100
	maxSnapshotLimit     = 1000
	defaultMinImpr       = 100
	// snapshotTTLMs is how long an identical snapshot query is answered
	// from cache: a snapshot scans every key of a level, and dashboards
	// poll it.
	snapshotTTLMs = 1000
	// maxCachedSnapshots bounds the cache; past it the cache is emptied.
	maxCachedSnapshots = 256
)

const (
	sortImpressions = iota
	sortClicks
	sortConversions
	sortCTR
	sortCVR
	sortMultiplier
)

var sortNames = []string{"impressions", "clicks", "conversions", "ctr", "cvr", "multiplier"}

type snapshotEntry struct {
	key        []byte // into the scan's arena
	counts     windows.Counts
	multiplier float64
}

type snapshotCache struct {
	mu sync.Mutex
	m  map[string]cachedSnapshot
}

type cachedSnapshot struct {
	atMs int64
	body []byte
}

func newSnapshotCache() *snapshotCache {
	return &snapshotCache{m: map[string]cachedSnapshot{}}
}

func (c *snapshotCache) get(q []byte, nowMs int64) ([]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[string(q)]
	if !ok || nowMs-e.atMs >= snapshotTTLMs || nowMs < e.atMs {
		return nil, false
	}
	return e.body, true
}

func (c *snapshotCache) put(q []byte, nowMs int64, body []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= maxCachedSnapshots {
		clear(c.m)
	}
	c.m[string(q)] = cachedSnapshot{atMs: nowMs, body: body}
}

// GET /v1/snapshot?level=..&window=..&sort=..&limit=..[&campaign=..][&min_impressions=..]
func (s *Service) handleSnapshot(ctx *fasthttp.RequestCtx) {
	q, err := s.parseSnapshotQuery(ctx.QueryArgs())
	if err != nil {
		writeError(ctx, fasthttp.StatusBadRequest, err.Error())
		return
	}
	now := s.clock.NowMs()
	ck := q.key()
	if body, ok := s.snapshots.get([]byte(ck), now); ok {
		writeJSON(ctx, fasthttp.StatusOK, body)
		return
	}
	body := s.computeSnapshot(&q, now)
	s.snapshots.put([]byte(ck), now, body)
	writeJSON(ctx, fasthttp.StatusOK, body)
}

// snapshot computes the top keys of level in span. It scans every key of the
// level, so its cost grows with the level's keys; answers are cached for
// about a second.
func (s *Service) snapshot(level int, span windows.Span, sortBy, limit int, minImpr uint64, campaign []byte, now int64) []byte {
	var arena []byte
	var entries []snapshotEntry
	var vals windows.Values
	// The scan and the answers run on a request goroutine: they step aside
	// every 2 ms of work, so bids get the CPU on a one-core service.
	var p pace.Pacer
	s.store.Scan(level, span, now, func(key []byte, c windows.Counts) bool {
		p.Step()
		if c.Impressions == 0 && c.Clicks == 0 && c.Conversions == 0 {
			return true
		}
		if (sortBy == sortCTR || sortBy == sortCVR) && c.Impressions < minImpr {
			return true
		}
		if campaign != nil {
			if _, err := windows.DecodeKey(key, s.rollups, &vals); err != nil || !bytes.Equal(vals[windows.DimCampaign], campaign) {
				return true
			}
		}
		off := len(arena)
		arena = append(arena, key...)
		entries = append(entries, snapshotEntry{key: arena[off:len(arena):len(arena)], counts: c})
		return true
	})
	// The arena may have moved while growing: re-slice every key.
	off := 0
	for i := range entries {
		n := len(entries[i].key)
		entries[i].key = arena[off : off+n : off+n]
		off += n
	}
	sc := getScratch()
	defer putScratch(sc)
	sc.noTrack = true
	defer func() { sc.noTrack = false }()
	multiplierOf := func(e *snapshotEntry) {
		p.Step()
		if _, err := windows.DecodeKey(e.key, s.rollups, &sc.Vals); err != nil {
			e.multiplier = 1
			return
		}
		s.decide(sc, now)
		e.multiplier = sc.a.multiplier
	}
	if sortBy == sortMultiplier {
		for i := range entries {
			multiplierOf(&entries[i])
		}
	}
	metric := func(e *snapshotEntry) float64 {
		switch sortBy {
		case sortClicks:
			return float64(e.counts.Clicks)
		case sortConversions:
			return float64(e.counts.Conversions)
		case sortCTR:
			return e.counts.CTR()
		case sortCVR:
			return e.counts.CVR()
		case sortMultiplier:
			return e.multiplier
		}
		return float64(e.counts.Impressions)
	}
	sort.Slice(entries, func(i, j int) bool {
		a, b := metric(&entries[i]), metric(&entries[j])
		if a != b {
			return a > b
		}
		return bytes.Compare(entries[i].key, entries[j].key) < 0
	})
	if len(entries) > limit {
		entries = entries[:limit]
	}
	b := []byte(`{"level":`)
	b = appendStr(b, s.rollups.Levels[level].Name)
	b = append(b, `,"window":`...)
	b = appendStr(b, span.String())
	b = append(b, `,"sort":`...)
	b = appendStr(b, sortNames[sortBy])
	b = append(b, `,"keys":[`...)
	for i := range entries {
		e := &entries[i]
		if sortBy != sortMultiplier {
			multiplierOf(e)
		}
		if i > 0 {
			b = append(b, ',')
		}
		lvl, _ := windows.DecodeKey(e.key, s.rollups, &vals)
		b = append(b, `{"key":`...)
		b = s.appendKeyObject(b, lvl, &vals)
		b = append(b, `,"impressions":`...)
		b = appendUint(b, e.counts.Impressions)
		b = append(b, `,"clicks":`...)
		b = appendUint(b, e.counts.Clicks)
		b = append(b, `,"conversions":`...)
		b = appendUint(b, e.counts.Conversions)
		b = append(b, `,"ctr":`...)
		b = appendFloat(b, e.counts.CTR())
		b = append(b, `,"cvr":`...)
		b = appendFloat(b, e.counts.CVR())
		b = append(b, `,"multiplier":`...)
		b = appendRounded(b, e.multiplier)
		b = append(b, '}')
	}
	return append(b, "]}"...)
}

func indexOf(list []string, s string) int {
	for i, v := range list {
		if v == s {
			return i
		}
	}
	return -1
}
