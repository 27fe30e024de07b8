package bidder

import (
	"math"
	"strconv"

	"github.com/bidpulse/bidpulse/internal/jsonscan"
)

// The BidRequest as the OpenRTB path reads it: only the fields that make
// an impression's key (docs/OPENRTB.md gives the rule for each), the
// deadline, and the bidder's candidates; every other field is checked to
// be JSON and skipped. A field the prebid/openrtb types give a Go type
// (a string, an int8, an object) must have that type, as there; inside
// an ext (json.RawMessage there) anything goes, and a gpid or pbadslot
// that is not a string is absent, as Prebid Server reads them. A key
// given twice counts the last time, object members merged, as
// encoding/json does. Names are case-sensitive, as OpenRTB says
// (encoding/json is not).

const (
	// maxOpenRTBImps bounds the impressions of a request (413 past it).
	maxOpenRTBImps = 64
	// maxOpenRTBCandidates bounds the candidates of an impression, or of
	// the request-level list (413 past it).
	maxOpenRTBCandidates = 32
	// maxOpenRTBBodySize bounds the body of POST /v1/openrtb/multipliers
	// (413 past it): BidRequests run to tens of KiB with their user and
	// source extensions, well under it.
	maxOpenRTBBodySize = 512 << 10
)

// Media types of an impression: the objects it has.
const (
	mediaBanner = 1 << iota
	mediaVideo
	mediaAudio
	mediaNative
)

// ortbRange is a run of ortbRequest.cands; set when the list was given.
type ortbRange struct {
	lo, hi int32
	set    bool
}

// ortbCand is a candidate: a campaign (required), its creative, and, for
// the Prebid answer, the bidder (the PBS bidder code) and the deal id.
type ortbCand struct {
	campaign, creative, bidder, deal ortbStr
}

// ortbImp is an impression as read.
type ortbImp struct {
	id, tagid, gpid, pbadslot ortbStr
	media                     uint8
	plcmt, placement          int64 // imp.video's, 0 when absent
	cands                     ortbRange
}

// ortbRequest is a BidRequest as read, with the reader that holds its
// strings. Pooled (openrtb.go).
type ortbRequest struct {
	ortbReader
	id             ortbStr
	tmax           int64
	domain, bundle ortbStr
	devicetype     int64 // 0 when absent
	ua, country    ortbStr
	auctionStart   int64 // ext.bidpulse.auction_start, Unix ms; 0 when absent
	imps           []ortbImp
	cands          []ortbCand
	reqCands       ortbRange
}

// ortbObject names the objects the reader walks, so that object can call
// the member reader of each without a func value.
type ortbObject uint8

const (
	objNone ortbObject = iota
	objRequest
	objSite
	objApp
	objDevice
	objGeo
	objRequestExt
	objRequestBidpulse
	objImp
	objVideo
	objImpExt
	objImpExtData
	objImpBidpulse
	objCandidate
)

// objMember reads one member of an object of kind.
func (q *ortbRequest) objMember(kind ortbObject, key []byte, v int) (int, bool) {
	switch kind {
	case objRequest:
		return q.requestMember(key, v)
	case objSite:
		return q.oneString(key, v, "domain", "site.domain", &q.domain)
	case objApp:
		return q.oneString(key, v, "bundle", "app.bundle", &q.bundle)
	case objDevice:
		return q.deviceMember(key, v)
	case objGeo:
		return q.oneString(key, v, "country", "device.geo.country", &q.country)
	case objRequestExt:
		return q.requestExtMember(key, v)
	case objRequestBidpulse:
		return q.requestBidpulseMember(key, v)
	case objImp:
		return q.impMember(key, v)
	case objVideo:
		return q.videoMember(key, v)
	case objImpExt:
		return q.impExtMember(key, v)
	case objImpExtData:
		return q.impExtDataMember(key, v)
	case objImpBidpulse:
		return q.impBidpulseMember(key, v)
	case objCandidate:
		return q.candidateMember(key, v)
	}
	panic("BUG: no member reader for object kind " + strconv.Itoa(int(kind)))
}

// parse reads body into q; false with q.err set when it cannot.
func (q *ortbRequest) parse(body []byte) bool {
	rd := q.ortbReader
	*q = ortbRequest{ortbReader: rd, imps: q.imps[:0], cands: q.cands[:0]}
	q.reset(body)
	if len(body) > math.MaxUint32 {
		return q.requestErr(413, "request body too large")
	}
	i := jsonscan.SkipSpace(body, 0)
	if i >= len(body) {
		return q.syntax(i, "empty body")
	}
	if body[i] != '{' {
		j, ok := q.skipValue(i)
		if !ok {
			return false
		}
		if j = jsonscan.SkipSpace(body, j); j != len(body) {
			return q.syntax(j, "data after the request")
		}
		if _, null := q.isNull(i); null {
			// encoding/json reads null as an empty request: bidpulse
			// has nothing to answer.
			return q.requestErr(400, "the body must be a JSON object: an OpenRTB 2.6 BidRequest")
		}
		return q.typeErr("the body", "a JSON object: an OpenRTB 2.6 BidRequest")
	}
	end, ok := q.object(i, objRequest)
	if !ok {
		return false
	}
	if j := jsonscan.SkipSpace(body, end); j != len(body) {
		return q.syntax(j, "data after the request object")
	}
	return true
}

// object reads the object at i, calling the member reader of kind for each
// member with its key and value index, which returns the index after the
// value. object returns the index after the closing brace.
func (q *ortbRequest) object(i int, kind ortbObject) (int, bool) {
	q.depth++
	defer q.leave()
	i, empty, ok := q.objectStart(i)
	if !ok {
		return 0, q.syntax(i, "expected an object")
	}
	if empty {
		return i + 1, true
	}
	for {
		key, v, ok := q.member(i)
		if !ok {
			return 0, false
		}
		if v, ok = q.objMember(kind, key, v); !ok {
			return 0, false
		}
		next, closed, ok := q.afterMember(v)
		if !ok {
			return 0, false
		}
		if closed {
			return next + 1, true
		}
		i = next
	}
}

// child reads the member value at v that OpenRTB types as an object
// (null: absent) through the member reader of kind.
func (q *ortbRequest) child(v int, path string, kind ortbObject) (int, bool) {
	if j, null := q.isNull(v); null {
		return j, true
	}
	if q.b[v] != '{' {
		if _, ok := q.skipValue(v); !ok {
			return 0, false
		}
		return 0, q.typeErr(path, "an object")
	}
	return q.object(v, kind)
}

// extObject reads an ext member's value at v (json.RawMessage in OpenRTB:
// anything) through the member reader of kind when it is an object; any other value is skipped.
func (q *ortbRequest) extObject(v int, kind ortbObject) (int, bool) {
	if q.b[v] != '{' {
		return q.skipValue(v)
	}
	return q.object(v, kind)
}

// optString reads a string inside an ext into *s; another type leaves *s
// as it is (absent), as Prebid Server reads gpid and pbadslot.
func (q *ortbRequest) optString(v int, s *ortbStr) (int, bool) {
	if q.b[v] != '"' {
		return q.skipValue(v)
	}
	return q.readString(v, "", s)
}

func (q *ortbRequest) requestMember(key []byte, v int) (int, bool) {
	switch string(key) {
	case "id":
		return q.readString(v, "id", &q.id)
	case "tmax":
		return q.readInt(v, "tmax", math.MinInt64, math.MaxInt64, &q.tmax)
	case "imp":
		return q.readImps(v)
	case "site":
		return q.child(v, "site", objSite)
	case "app":
		return q.child(v, "app", objApp)
	case "device":
		return q.child(v, "device", objDevice)
	case "ext":
		return q.extObject(v, objRequestExt)
	}
	return q.skipValue(v)
}

// oneString reads the member key of an object of which only the string
// member name is read (into dst, reported as path); it skips any other.
func (q *ortbRequest) oneString(key []byte, v int, name, path string, dst *ortbStr) (int, bool) {
	if string(key) == name {
		return q.readString(v, path, dst)
	}
	return q.skipValue(v)
}

func (q *ortbRequest) deviceMember(key []byte, v int) (int, bool) {
	switch string(key) {
	case "devicetype":
		return q.readInt(v, "device.devicetype", math.MinInt8, math.MaxInt8, &q.devicetype)
	case "ua":
		return q.readString(v, "device.ua", &q.ua)
	case "geo":
		return q.child(v, "device.geo", objGeo)
	}
	return q.skipValue(v)
}

func (q *ortbRequest) requestExtMember(key []byte, v int) (int, bool) {
	if string(key) != "bidpulse" {
		return q.skipValue(v)
	}
	if j, null := q.isNull(v); null {
		return j, true
	}
	if q.b[v] != '{' {
		return 0, q.requestErr(400, "ext.bidpulse must be an object")
	}
	return q.object(v, objRequestBidpulse)
}

func (q *ortbRequest) requestBidpulseMember(key []byte, v int) (int, bool) {
	switch string(key) {
	case "candidates":
		return q.readCandidates(v, "ext.bidpulse.candidates", &q.reqCands)
	case "auction_start":
		j, ok := q.readInt(v, "ext.bidpulse.auction_start", 0, math.MaxInt64, &q.auctionStart)
		if !ok && q.err.kind == ortbErrType {
			q.err.kind = ortbErrRequest
		}
		return j, ok
	}
	return q.skipValue(v)
}

// readImps reads the imp array at v.
func (q *ortbRequest) readImps(v int) (int, bool) {
	q.imps = q.imps[:0]
	if j, null := q.isNull(v); null {
		return j, true
	}
	q.depth++
	defer q.leave()
	i, empty, ok := q.arrayStart(v)
	if !ok {
		if q.err != nil {
			return 0, false
		}
		if _, ok := q.skipValue(v); !ok {
			return 0, false
		}
		return 0, q.typeErr("imp", "an array")
	}
	if empty {
		return i + 1, true
	}
	for {
		if len(q.imps) == maxOpenRTBImps {
			return 0, q.requestErr(413, "too many impressions: the limit is "+strconv.Itoa(maxOpenRTBImps)+" per request")
		}
		q.imps = append(q.imps, ortbImp{})
		if q.b[i] != '{' {
			if j, null := q.isNull(i); null {
				// encoding/json leaves a null element zero: an impression
				// without an id, which answering refuses.
				i = j
			} else {
				if _, ok := q.skipValue(i); !ok {
					return 0, false
				}
				return 0, q.typeErr("imp["+strconv.Itoa(len(q.imps)-1)+"]", "an object")
			}
		} else {
			j, ok := q.object(i, objImp)
			if !ok {
				if q.err.kind != ortbErrSyntax {
					q.err.msg = "imp[" + strconv.Itoa(len(q.imps)-1) + "]." + q.err.msg
				}
				return 0, false
			}
			i = j
		}
		next, closed, ok := q.afterElement(i)
		if !ok {
			return 0, false
		}
		if closed {
			return next + 1, true
		}
		i = next
	}
}

// imp returns the impression being read.
func (q *ortbRequest) imp() *ortbImp { return &q.imps[len(q.imps)-1] }

func (q *ortbRequest) impMember(key []byte, v int) (int, bool) {
	im := q.imp()
	switch string(key) {
	case "id":
		return q.readString(v, "id", &im.id)
	case "tagid":
		return q.readString(v, "tagid", &im.tagid)
	case "banner":
		return q.mediaObject(v, "banner", mediaBanner, objNone)
	case "video":
		return q.mediaObject(v, "video", mediaVideo, objVideo)
	case "audio":
		return q.mediaObject(v, "audio", mediaAudio, objNone)
	case "native":
		return q.mediaObject(v, "native", mediaNative, objNone)
	case "ext":
		return q.extObject(v, objImpExt)
	}
	return q.skipValue(v)
}

// mediaObject reads a media object of the impression (banner, video,
// audio, native): present when it is an object; its members are skipped
// unless kind's reader reads them.
func (q *ortbRequest) mediaObject(v int, path string, bit uint8, kind ortbObject) (int, bool) {
	if j, null := q.isNull(v); null {
		return j, true
	}
	if q.b[v] != '{' {
		if _, ok := q.skipValue(v); !ok {
			return 0, false
		}
		return 0, q.typeErr(path, "an object")
	}
	q.imp().media |= bit
	if kind == objNone {
		return q.skipValue(v)
	}
	return q.object(v, kind)
}

func (q *ortbRequest) videoMember(key []byte, v int) (int, bool) {
	im := q.imp()
	switch string(key) {
	case "plcmt":
		return q.readInt(v, "video.plcmt", math.MinInt8, math.MaxInt8, &im.plcmt)
	case "placement":
		return q.readInt(v, "video.placement", math.MinInt8, math.MaxInt8, &im.placement)
	}
	return q.skipValue(v)
}

func (q *ortbRequest) impExtMember(key []byte, v int) (int, bool) {
	im := q.imp()
	switch string(key) {
	case "gpid":
		return q.optString(v, &im.gpid)
	case "data":
		return q.extObject(v, objImpExtData)
	case "bidpulse":
		if j, null := q.isNull(v); null {
			return j, true
		}
		if q.b[v] != '{' {
			return 0, q.requestErr(400, "ext.bidpulse must be an object")
		}
		return q.object(v, objImpBidpulse)
	}
	return q.skipValue(v)
}

func (q *ortbRequest) impExtDataMember(key []byte, v int) (int, bool) {
	if string(key) == "pbadslot" {
		return q.optString(v, &q.imp().pbadslot)
	}
	return q.skipValue(v)
}

func (q *ortbRequest) impBidpulseMember(key []byte, v int) (int, bool) {
	if string(key) == "candidates" {
		return q.readCandidates(v, "ext.bidpulse.candidates", &q.imp().cands)
	}
	return q.skipValue(v)
}

// readCandidates reads a candidate list at v into q.cands, its run into
// *rg. Every error here is the request's (the list is bidpulse's own).
func (q *ortbRequest) readCandidates(v int, path string, rg *ortbRange) (int, bool) {
	if j, null := q.isNull(v); null {
		return j, true
	}
	q.depth++
	defer q.leave()
	i, empty, ok := q.arrayStart(v)
	if !ok {
		if q.err != nil {
			return 0, false
		}
		return 0, q.requestErr(400, path+" must be an array of {\"campaign\":..} objects")
	}
	*rg = ortbRange{lo: int32(len(q.cands)), hi: int32(len(q.cands)), set: true}
	if empty {
		return i + 1, true
	}
	for {
		if int(rg.hi-rg.lo) == maxOpenRTBCandidates {
			return 0, q.requestErr(413, "too many candidates in "+path+": the limit is "+strconv.Itoa(maxOpenRTBCandidates))
		}
		if q.b[i] != '{' {
			return 0, q.requestErr(400, path+"["+strconv.Itoa(int(rg.hi-rg.lo))+"] must be an object")
		}
		q.cands = append(q.cands, ortbCand{})
		rg.hi++
		j, ok := q.object(i, objCandidate)
		if !ok {
			if q.err.kind != ortbErrSyntax {
				q.err.kind = ortbErrRequest
				q.err.msg = path + "[" + strconv.Itoa(int(rg.hi-rg.lo-1)) + "]." + q.err.msg
			}
			return 0, false
		}
		if q.cands[len(q.cands)-1].campaign.n == 0 {
			return 0, q.requestErr(400, path+"["+strconv.Itoa(int(rg.hi-rg.lo-1))+"]: missing campaign")
		}
		next, closed, ok := q.afterElement(j)
		if !ok {
			return 0, false
		}
		if closed {
			return next + 1, true
		}
		i = next
	}
}

func (q *ortbRequest) candidateMember(key []byte, v int) (int, bool) {
	c := &q.cands[len(q.cands)-1]
	switch string(key) {
	case "campaign":
		return q.readString(v, "campaign", &c.campaign)
	case "creative":
		return q.readString(v, "creative", &c.creative)
	case "bidder":
		return q.readString(v, "bidder", &c.bidder)
	case "deal":
		return q.readString(v, "deal", &c.deal)
	}
	return q.skipValue(v)
}
