package bidder

// The Prebid answer of POST /v1/openrtb/multipliers (format=prebid): the
// multipliers as Prebid Server's bid adjustment rules
// (ext.prebid.bidadjustments: mediatype -> bidder -> deal ->
// [{"adjtype":"multiplier","value":..}]), so that a PBS host applies them
// as it applies its own. Each candidate names its PBS bidder code (and
// optionally a deal id; "*" otherwise). PBS's rules are per request, not
// per impression: every impression gets its own rules, and the request
// level ext.prebid.bidadjustments, which PBS applies as it is, is given
// only when the request has one impression (docs/OPENRTB.md, the module
// outline).

// ortbMaxRules is the most candidates an impression has.
const ortbMaxRules = maxOpenRTBCandidates

// Prebid Server's media type names in bidadjustments.
const (
	pbsBanner         = `"banner"`
	pbsVideoInstream  = `"video-instream"`
	pbsVideoOutstream = `"video-outstream"`
	pbsAudio          = `"audio"`
	pbsNative         = `"native"`
	pbsAny            = `"*"`
)

// mediaTypesOf returns the bidadjustments media types of im, as JSON
// strings: one per media object it has (a video is instream when its plcmt
// is 1, or, without plcmt, its placement is 1, as Prebid Server decides),
// "*" when it has none.
func mediaTypesOf(im *ortbImp, dst *[4]string) []string {
	out := dst[:0]
	if im.media&mediaBanner != 0 {
		out = append(out, pbsBanner)
	}
	if im.media&mediaVideo != 0 {
		if im.plcmt == 1 || im.plcmt == 0 && im.placement == 1 {
			out = append(out, pbsVideoInstream)
		} else {
			out = append(out, pbsVideoOutstream)
		}
	}
	if im.media&mediaAudio != 0 {
		out = append(out, pbsAudio)
	}
	if im.media&mediaNative != 0 {
		out = append(out, pbsNative)
	}
	if len(out) == 0 {
		out = append(out, pbsAny)
	}
	return out
}

// dealOf returns a candidate's deal id, "*" (any deal) when it has none.
func dealOf(q *ortbRequest, cd *ortbCand) []byte {
	if cd.deal.n == 0 {
		return anyDeal
	}
	return q.bytes(cd.deal)
}

var anyDeal = []byte("*")

// appendPrebid appends the Prebid answer to q; expired: some impression
// was answered past the request's deadline (its rules are 1).
func (s *Service) appendPrebid(dst []byte, os *ortbScratch, sc *bidScratch, now, deadline int64) ([]byte, bool) {
	q := &os.q
	expired := false
	var vals [ortbMaxRules]float64
	var types [4]string
	rulesStart, rulesEnd := 0, 0
	dst = append(dst, `{"id":`...)
	dst = appendString(dst, q.bytes(q.id))
	dst = append(dst, `,"imp":[`...)
	for k := range q.imps {
		im := &q.imps[k]
		if k > 0 {
			dst = append(dst, ',')
		}
		key := s.keyOf(os, im)
		if !expired && s.clock.NowMs() > deadline {
			expired = true
		}
		rg := q.candsOf(im)
		for c := rg.lo; c < rg.hi; c++ {
			vals[c-rg.lo] = 1
			if !expired {
				s.decideCandidate(sc, q, &q.cands[c], &key, now)
				vals[c-rg.lo] = sc.a.multiplier
			}
		}
		dst = append(dst, `{"id":`...)
		dst = appendString(dst, q.bytes(im.id))
		dst = append(dst, `,"key":`...)
		dst = appendORTBKey(dst, &key)
		dst = append(dst, `,"bidadjustments":`...)
		rulesStart = len(dst)
		dst = append(dst, `{"mediatype":{`...)
		for t, mt := range mediaTypesOf(im, &types) {
			if t > 0 {
				dst = append(dst, ',')
			}
			dst = append(dst, mt...)
			dst = append(dst, ":{"...)
			dst = appendBidderRules(dst, q, rg, &vals)
			dst = append(dst, '}')
		}
		dst = append(dst, "}}"...)
		rulesEnd = len(dst)
		dst = append(dst, '}')
	}
	dst = append(dst, ']')
	if len(q.imps) == 1 {
		dst = append(dst, `,"ext":{"prebid":{"bidadjustments":`...)
		dst = append(dst, dst[rulesStart:rulesEnd]...)
		dst = append(dst, "}}"...)
	}
	if expired {
		dst = append(dst, `,"tmax_expired":true`...)
	}
	return append(dst, '}'), expired
}

// appendBidderRules appends the bidder -> deal -> rules members of the
// candidates rg, whose multipliers are vals: one member per bidder, in the
// order of first appearance, with one member per deal (check made them
// unique).
func appendBidderRules(dst []byte, q *ortbRequest, rg ortbRange, vals *[ortbMaxRules]float64) []byte {
	first := true
	for c := rg.lo; c < rg.hi; c++ {
		bidder := q.bytes(q.cands[c].bidder)
		seen := false
		for o := rg.lo; o < c && !seen; o++ {
			seen = string(q.bytes(q.cands[o].bidder)) == string(bidder)
		}
		if seen {
			continue
		}
		if !first {
			dst = append(dst, ',')
		}
		first = false
		dst = appendString(dst, bidder)
		dst = append(dst, ":{"...)
		for d := c; d < rg.hi; d++ {
			if string(q.bytes(q.cands[d].bidder)) != string(bidder) {
				continue
			}
			if d > c {
				dst = append(dst, ',')
			}
			dst = appendString(dst, dealOf(q, &q.cands[d]))
			dst = append(dst, `:[{"adjtype":"multiplier","value":`...)
			dst = appendRounded(dst, vals[d-rg.lo])
			dst = append(dst, "}]"...)
		}
		dst = append(dst, '}')
	}
	return dst
}
