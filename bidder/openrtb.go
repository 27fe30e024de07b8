package bidder

import (
	"math"
	"strconv"
	"sync"

	"github.com/VictoriaMetrics/metrics"
	"github.com/valyala/fasthttp"

	"github.com/bidpulse/bidpulse/windows"
)

// POST /v1/openrtb/multipliers: an OpenRTB 2.6 BidRequest, with the
// bidder's candidates per impression (imp[].ext.bidpulse.candidates) or for
// every impression (ext.bidpulse.candidates), answered per impression and
// candidate with the multiplier GET /v1/multiplier gives for the same
// dimensions, the site included (docs/OPENRTB.md). The body is read by a single pass that
// keeps offsets (openrtb_parse.go) and every candidate is decided by the
// bid path's decide, so a request allocates nothing in steady state.
//
// Query parameters: explain=1 (each candidate's explain; with a read token
// configured, it needs the token), format=bidpulse|prebid (prebid: the
// answer in Prebid Server's ext.prebid.bidadjustments shape,
// openrtb_prebid.go).

// ortbScratch is the working memory of one OpenRTB request, pooled.
type ortbScratch struct {
	q       ortbRequest
	country [3]byte
}

var ortbScratchPool = sync.Pool{New: func() any { return &ortbScratch{} }}

// Fields of an impression's key that can be left out, in
// bidpulse_openrtb_fields_dropped_total{field}.
const (
	droppedPlacement = iota // longer than an event field
	droppedSite             // longer than an event field
	droppedCountry          // not an ISO 3166-1 code
	droppedDevice           // devicetype outside 1..8 and no user agent
	numDropped
)

var droppedNames = [numDropped]string{
	`field="placement",reason="too_long"`,
	`field="site",reason="too_long"`,
	`field="country",reason="unknown_code"`,
	`field="device",reason="unknown_type"`,
}

// ortbMetrics counts what the OpenRTB path does besides answering.
type ortbMetrics struct {
	expired  *metrics.Counter
	dropped  [numDropped]*metrics.Counter
	duration *metrics.PrometheusHistogram
}

func newORTBMetrics(set *metrics.Set) *ortbMetrics {
	m := &ortbMetrics{
		expired:  set.NewCounter(`bidpulse_openrtb_tmax_expired_total`),
		duration: set.NewPrometheusHistogramExt(`bidpulse_bid_duration_seconds{route="openrtb"}`, bidBuckets),
	}
	for i := range m.dropped {
		m.dropped[i] = set.NewCounter(`bidpulse_openrtb_fields_dropped_total{` + droppedNames[i] + `}`)
	}
	return m
}

// ortbKey is an impression's dimension values, as slices into the
// request's reader or the scratch.
type ortbKey struct {
	placement, site, country []byte
	device                   string
}

// keyOf returns the key of impression im, counting what it leaves out.
func (s *Service) keyOf(os *ortbScratch, im *ortbImp) ortbKey {
	q := &os.q
	var k ortbKey
	if p := placementOf(q, im); usable(p) {
		k.placement = p
	} else if len(p) > 0 {
		s.ortb.dropped[droppedPlacement].Inc()
	}
	if st := siteOf(q); usable(st) {
		k.site = st
	} else if len(st) > 0 {
		s.ortb.dropped[droppedSite].Inc()
	}
	if q.country.n > 0 {
		if k.country = countryOf(q.bytes(q.country), &os.country); k.country == nil {
			s.ortb.dropped[droppedCountry].Inc()
		}
	}
	k.device = deviceOf(q.devicetype, q.bytes(q.ua))
	if k.device == "" && q.devicetype != 0 {
		s.ortb.dropped[droppedDevice].Inc()
	}
	return k
}

// handleOpenRTB answers POST /v1/openrtb/multipliers.
func (s *Service) handleOpenRTB(ctx *fasthttp.RequestCtx) {
	explain, prebid := false, false
	for k, v := range ctx.QueryArgs().All() {
		switch string(k) {
		case "explain":
			on, ok := parseBool(v)
			if !ok {
				writeError(ctx, fasthttp.StatusBadRequest, "explain must be 0 or 1")
				return
			}
			explain = on
		case "format":
			switch string(v) {
			case "bidpulse":
			case "prebid":
				prebid = true
			default:
				writeError(ctx, fasthttp.StatusBadRequest, "format must be bidpulse or prebid")
				return
			}
		}
	}
	if explain && prebid {
		writeError(ctx, fasthttp.StatusBadRequest, "explain is not available with format=prebid: Prebid Server's bidadjustments have no place for it")
		return
	}
	os := ortbScratchPool.Get().(*ortbScratch)
	defer ortbScratchPool.Put(os)
	q := &os.q
	if !q.parse(ctx.PostBody()) || !q.check(prebid) {
		writeError(ctx, q.err.status, q.err.msg)
		return
	}
	sc := getScratch()
	defer putScratch(sc)
	now := s.clock.NowMs()
	deadline := int64(math.MaxInt64)
	if q.tmax > 0 {
		start := now
		if q.auctionStart > 0 {
			start = q.auctionStart
		}
		deadline = start + min(q.tmax, math.MaxInt64-start)
	}
	var out []byte
	expired := false
	if prebid {
		out, expired = s.appendPrebid(sc.out[:0], os, sc, now, deadline)
	} else {
		out, expired = s.appendORTB(sc.out[:0], os, sc, now, deadline, explain)
	}
	if expired {
		s.ortb.expired.Inc()
	}
	sc.out = out
	writeJSON(ctx, fasthttp.StatusOK, out)
}

// check refuses what parse read but bidpulse cannot answer: no
// impression, an impression without an id or without candidates, a
// candidate value longer than an event field; with prebid, a candidate
// without a bidder, or two of an impression with the same bidder and deal.
func (q *ortbRequest) check(prebid bool) bool {
	if len(q.imps) == 0 {
		return q.requestErr(400, "no impressions: imp must hold at least one")
	}
	for k := range q.imps {
		im := &q.imps[k]
		if im.id.n == 0 {
			return q.requestErr(400, "imp["+strconv.Itoa(k)+"]: missing id")
		}
		rg := q.candsOf(im)
		if !rg.set {
			return q.requestErr(400, "imp["+strconv.Itoa(k)+"]: no candidates: give imp[].ext.bidpulse.candidates or ext.bidpulse.candidates")
		}
		for c := rg.lo; c < rg.hi; c++ {
			cd := &q.cands[c]
			if !usable(q.bytes(cd.campaign)) || (cd.creative.n > 0 && !usable(q.bytes(cd.creative))) {
				return q.requestErr(400, "imp["+strconv.Itoa(k)+"]: candidate "+strconv.Itoa(int(c-rg.lo))+": campaign and creative are at most 128 bytes")
			}
			if !prebid {
				continue
			}
			if cd.bidder.n == 0 {
				return q.requestErr(400, "imp["+strconv.Itoa(k)+"]: candidate "+strconv.Itoa(int(c-rg.lo))+": missing bidder (format=prebid needs the PBS bidder code of each candidate)")
			}
			for o := rg.lo; o < c; o++ {
				if string(q.bytes(q.cands[o].bidder)) == string(q.bytes(cd.bidder)) && string(dealOf(q, &q.cands[o])) == string(dealOf(q, cd)) {
					return q.requestErr(400, "imp["+strconv.Itoa(k)+"]: candidates "+strconv.Itoa(int(o-rg.lo))+" and "+strconv.Itoa(int(c-rg.lo))+
						" have the same bidder and deal: a bidadjustments rule holds one multiplier for each")
				}
			}
		}
	}
	return true
}

// candsOf returns the candidates of im: its own list, else the request's.
func (q *ortbRequest) candsOf(im *ortbImp) ortbRange {
	if im.cands.set {
		return im.cands
	}
	return q.reqCands
}

// decideCandidate decides candidate cd on impression key k into sc.a.
func (s *Service) decideCandidate(sc *bidScratch, q *ortbRequest, cd *ortbCand, k *ortbKey, now int64) {
	sc.Vals.Reset()
	// Every value was checked (check, keyOf, countryOf): setDim cannot
	// refuse one.
	_ = sc.setDim(windows.DimCampaign, q.bytes(cd.campaign))
	if cd.creative.n > 0 {
		_ = sc.setDim(windows.DimCreative, q.bytes(cd.creative))
	}
	if k.placement != nil {
		_ = sc.setDim(windows.DimPlacement, k.placement)
	}
	if k.device != "" {
		sc.Vals[windows.DimDevice] = append(sc.norm[windows.DimDevice][:0], k.device...)
		sc.norm[windows.DimDevice] = sc.Vals[windows.DimDevice]
	}
	if k.country != nil {
		_ = sc.setDim(windows.DimCountry, k.country)
	}
	// The site is a dimension like the others: it changes the answer only
	// where a configured rollup names it (campaign/site), as for GET
	// /v1/multiplier?site=.
	if k.site != nil {
		_ = sc.setDim(windows.DimSite, k.site)
	}
	s.decide(sc, now)
}

// appendORTB appends bidpulse's answer to q; expired: some impression was
// answered past the request's deadline.
func (s *Service) appendORTB(dst []byte, os *ortbScratch, sc *bidScratch, now, deadline int64, explain bool) ([]byte, bool) {
	q := &os.q
	expired := false
	dst = append(dst, `{"id":`...)
	dst = appendString(dst, q.bytes(q.id))
	dst = append(dst, `,"imp":[`...)
	for k := range q.imps {
		im := &q.imps[k]
		if k > 0 {
			dst = append(dst, ',')
		}
		key := s.keyOf(os, im)
		dst = append(dst, `{"id":`...)
		dst = appendString(dst, q.bytes(im.id))
		dst = append(dst, `,"key":`...)
		dst = appendORTBKey(dst, &key)
		dst = append(dst, `,"candidates":[`...)
		if !expired && s.clock.NowMs() > deadline {
			expired = true
		}
		rg := q.candsOf(im)
		for c := rg.lo; c < rg.hi; c++ {
			cd := &q.cands[c]
			if c > rg.lo {
				dst = append(dst, ',')
			}
			dst = append(dst, `{"campaign":`...)
			dst = appendString(dst, q.bytes(cd.campaign))
			if cd.creative.n > 0 {
				dst = append(dst, `,"creative":`...)
				dst = appendString(dst, q.bytes(cd.creative))
			}
			if expired {
				dst = append(dst, `,"multiplier":1,"level":"none","key":null,"neutral":"tmax"}`...)
				continue
			}
			s.decideCandidate(sc, q, cd, &key, now)
			a := &sc.a
			dst = append(dst, `,"multiplier":`...)
			dst = appendRounded(dst, a.multiplier)
			dst = append(dst, `,"level":`...)
			if a.level < 0 {
				dst = append(dst, `"none","key":null`...)
			} else {
				dst = append(dst, s.levelJSON[a.level]...)
				dst = append(dst, `,"key":`...)
				dst = s.appendKeyObject(dst, a.level, &sc.Vals)
			}
			if explain {
				dst = append(dst, `,"explain":`...)
				dst = appendExplain(dst, a)
			}
			dst = append(dst, '}')
		}
		dst = append(dst, "]}"...)
	}
	dst = append(dst, ']')
	if expired {
		dst = append(dst, `,"tmax_expired":true`...)
	}
	return append(dst, '}'), expired
}

// appendORTBKey appends an impression's key: the dimensions it has, the
// site included.
func appendORTBKey(dst []byte, k *ortbKey) []byte {
	dst = append(dst, '{')
	n := len(dst)
	field := func(name string, v []byte) {
		if len(v) == 0 {
			return
		}
		if len(dst) > n {
			dst = append(dst, ',')
		}
		dst = append(dst, name...)
		dst = appendString(dst, v)
	}
	field(`"placement":`, k.placement)
	if k.device != "" {
		if len(dst) > n {
			dst = append(dst, ',')
		}
		dst = append(dst, `"device":`...)
		dst = appendStr(dst, k.device)
	}
	field(`"country":`, k.country)
	field(`"site":`, k.site)
	return append(dst, '}')
}
