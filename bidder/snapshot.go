package bidder

import (
	"bytes"
	"strconv"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/bidpulse/bidpulse/windows"
)

const (
	defaultSnapshotLimit = 100
	maxSnapshotLimit     = 1000
	defaultMinImpr       = 100
)

const (
	sortImpressions = iota
	sortClicks
	sortConversions
	sortCTR
	sortCVR
	sortMultiplier
)

var sortNames = [...]string{"impressions", "clicks", "conversions", "ctr", "cvr", "multiplier"}

// GET /v1/snapshot?level=..&window=..&sort=..&limit=..[&campaign=..][&min_impressions=..]
func (s *Service) handleSnapshot(ctx *fasthttp.RequestCtx) {
	q, err := s.parseSnapshotQuery(ctx.QueryArgs())
	if err != nil {
		writeError(ctx, fasthttp.StatusBadRequest, err.Error())
		return
	}
	body, err := s.snapshotBody(&q, s.clock.NowMs(), s.scans.ttl, false)
	if err != nil {
		writeScanError(ctx, err)
		return
	}
	writeJSON(ctx, fasthttp.StatusOK, body)
}

// writeScanError answers a snapshot that could not be had: 503, with
// Retry-After when the scan budget is spent.
func writeScanError(ctx *fasthttp.RequestCtx, err error) {
	retry := 1
	if b, ok := err.(errScanBudget); ok {
		retry = b.retryAfter
	}
	ctx.Response.Header.Set("Retry-After", strconv.Itoa(retry))
	writeError(ctx, fasthttp.StatusServiceUnavailable, err.Error())
}

// snapshotBody returns the answer of q from a scan of its level and window
// made less than maxAge ago (scanCache.get). With stale, a scan older than
// that is used when the budget allows no new one (the streams); err is then
// nil. The answer is cached with its scan.
func (s *Service) snapshotBody(q *snapshotQuery, nowMs int64, maxAge time.Duration, stale bool) ([]byte, error) {
	r, err := s.scans.get(s, scanShape{level: q.level, span: q.span}, nowMs, maxAge, stale)
	if r == nil {
		return nil, err
	}
	qk := q.key()
	if b, ok := r.body(qk); ok {
		return b, nil
	}
	// A new query's answer walks the scan's sorted order: limit entries
	// without a filter, but as far as its filters make it with one (a
	// campaign with few keys: all of them). The walk is charged to the scan
	// budget, and a filtered GET is refused while the budget is spent; a
	// stream renders anyway (at most one per stream and interval), charged.
	filtered := q.campaign != nil || (q.minImpr > 0 && (q.sortBy == sortCTR || q.sortBy == sortCVR))
	if !stale && filtered {
		if err := s.scans.allow(time.Now()); err != nil {
			return nil, err
		}
	}
	b, visited := s.renderSnapshot(r, q)
	s.scans.chargeRender(visited)
	r.keepBody(qk, b)
	return b, nil
}

// renderSnapshot answers q from the scan r: the first limit keys of r in
// q's sort that pass its filters (campaign; min_impressions for the ctr and
// cvr sorts). It walks r's sorted order, so it costs the keys it skips and
// the multipliers of the keys it shows, never a scan; it returns the
// entries it visited.
func (s *Service) renderSnapshot(r *scanResult, q *snapshotQuery) ([]byte, int) {
	order := r.order(s, q.sortBy)
	var mults []float64
	if q.sortBy == sortMultiplier {
		mults = r.multipliers(s)
	}
	minImpr := uint64(0)
	if q.sortBy == sortCTR || q.sortBy == sortCVR {
		minImpr = q.minImpr
	}
	sc := getScratch()
	defer putScratch(sc)
	sc.noTrack = true
	defer func() { sc.noTrack = false }()
	var vals windows.Values
	b := []byte(`{"level":`)
	b = appendStr(b, s.rollups.Levels[q.level].Name)
	b = append(b, `,"window":`...)
	b = appendStr(b, q.span.String())
	b = append(b, `,"sort":`...)
	b = appendStr(b, sortNames[q.sortBy])
	b = append(b, `,"keys":[`...)
	n, visited := 0, 0
	for _, i := range order {
		if n == q.limit {
			break
		}
		visited++
		e := &r.entries[i]
		if e.impressions < minImpr {
			continue
		}
		key := r.key(int(i))
		if q.campaign != nil && !bytes.Equal(campaignOf(key), q.campaign) {
			continue
		}
		var mult float64
		if mults != nil {
			mult = mults[i]
		} else {
			mult = s.multiplierOfKey(sc, key, r.nowMs)
		}
		if n > 0 {
			b = append(b, ',')
		}
		n++
		lvl, _ := windows.DecodeKey(key, s.rollups, &vals)
		c := e.counts()
		b = append(b, `{"key":`...)
		b = s.appendKeyObject(b, lvl, &vals)
		b = append(b, `,"impressions":`...)
		b = appendUint(b, c.Impressions)
		b = append(b, `,"clicks":`...)
		b = appendUint(b, c.Clicks)
		b = append(b, `,"conversions":`...)
		b = appendUint(b, c.Conversions)
		b = append(b, `,"ctr":`...)
		b = appendFloat(b, c.CTR())
		b = append(b, `,"cvr":`...)
		b = appendFloat(b, c.CVR())
		b = append(b, `,"multiplier":`...)
		b = appendRounded(b, mult)
		b = append(b, '}')
	}
	return append(b, "]}"...), visited
}

// multiplierOfKey returns the multiplier a request naming exactly the
// dimensions of key gets at nowMs (1 for a key that does not decode). sc
// must have noTrack set: a snapshot does not make keys tracked.
func (s *Service) multiplierOfKey(sc *bidScratch, key []byte, nowMs int64) float64 {
	if _, err := windows.DecodeKey(key, s.rollups, &sc.Vals); err != nil {
		return 1
	}
	s.decide(sc, nowMs)
	return sc.a.multiplier
}

func indexOf(list []string, s string) int {
	for i, v := range list {
		if v == s {
			return i
		}
	}
	return -1
}
