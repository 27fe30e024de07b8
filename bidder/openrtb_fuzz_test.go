package bidder

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/prebid/openrtb/v20/openrtb2"
)

// ortbReadFields are the BidRequest fields the OpenRTB reader gives a type to, as
// encoding/json names them in an UnmarshalTypeError: a body the reader accepts may be refused
// by the prebid/openrtb types only for a field outside this list.
var ortbReadFields = map[string]bool{
	"": true, "id": true, "tmax": true, "imp": true, "site": true, "site.domain": true, "app": true, "app.bundle": true,
	"device": true, "device.devicetype": true, "device.ua": true, "device.geo": true, "device.geo.country": true,
	"imp.id": true, "imp.tagid": true, "imp.banner": true, "imp.video": true, "imp.audio": true, "imp.native": true,
	"imp.video.plcmt": true, "imp.video.placement": true,
}

// ortbReadNames are the member names the reader matches, for keysOf.
var ortbReadNames = []string{"id", "tmax", "imp", "site", "domain", "app", "bundle", "device", "devicetype", "ua", "geo",
	"country", "tagid", "banner", "video", "audio", "native", "plcmt", "placement", "ext", "gpid", "data", "pbadslot",
	"bidpulse", "candidates", "campaign", "creative", "bidder", "deal", "auction_start"}

// keysOf reports whether the JSON body has an object with a name twice, or a name that matches
// one the reader reads only without regard to case. encoding/json reads both its own way
// (members merged or replaced, names matched without case), which OpenRTB leaves undefined or
// forbids; the reader takes the last value, merging objects, and matches names exactly.
func keysOf(body []byte) (dup, caseVariant bool) {
	dec := json.NewDecoder(bytes.NewReader(body))
	type frame struct {
		obj     bool
		keys    map[string]bool
		wantKey bool
	}
	var stack []frame
	for {
		tok, err := dec.Token()
		if err != nil {
			return dup, caseVariant
		}
		top := len(stack) - 1
		if top >= 0 && stack[top].obj && stack[top].wantKey {
			if k, ok := tok.(string); ok {
				if stack[top].keys[k] {
					dup = true
				}
				stack[top].keys[k] = true
				for _, n := range ortbReadNames {
					if k != n && strings.EqualFold(k, n) {
						caseVariant = true
					}
				}
				stack[top].wantKey = false
				continue
			}
		}
		switch tok {
		case json.Delim('{'):
			if top >= 0 {
				stack[top].wantKey = stack[top].obj
			}
			stack = append(stack, frame{obj: true, keys: map[string]bool{}, wantKey: true})
			continue
		case json.Delim('['):
			if top >= 0 {
				stack[top].wantKey = stack[top].obj
			}
			stack = append(stack, frame{})
			continue
		case json.Delim('}'), json.Delim(']'):
			stack = stack[:top]
			top--
		}
		if top >= 0 {
			stack[top].wantKey = stack[top].obj
		}
	}
}

// impExt is what the reader takes from an imp.ext: Prebid Server's gpid and pbadslot, read
// only when they are strings.
func impExt(raw json.RawMessage) (gpid, pbadslot string) {
	var m map[string]any
	if json.Unmarshal(raw, &m) != nil {
		return "", ""
	}
	gpid, _ = m["gpid"].(string)
	if d, ok := m["data"].(map[string]any); ok {
		pbadslot, _ = d["pbadslot"].(string)
	}
	return gpid, pbadslot
}

// checkOpenRTBParse compares the reader with encoding/json into the prebid/openrtb types on
// body:
//   - the reader refuses a body as not JSON exactly when encoding/json's Valid does;
//   - a body the types read is read by the reader too, unless the reader refuses it for
//     bidpulse's own reasons (ext.bidpulse, a limit);
//   - a body the reader reads, the types read too, or refuse for a field the reader does not
//     read;
//   - when both read it, they agree on every field the reader reads.
func checkOpenRTBParse(t *testing.T, body []byte) {
	var q ortbRequest
	fastOK := q.parse(body)
	var req openrtb2.BidRequest
	refErr := json.Unmarshal(body, &req)
	valid := json.Valid(body)
	if !fastOK && q.err.kind == ortbErrSyntax && valid {
		t.Fatalf("unexpected syntax error %q for valid JSON %q", q.err.msg, body)
	}
	if fastOK && !valid {
		t.Fatalf("unexpected acceptance of invalid JSON %q", body)
	}
	if !fastOK && q.err.kind != ortbErrSyntax && !valid {
		// The reader stopped at a field before reaching what is not JSON.
		return
	}
	if refErr == nil && !fastOK && q.err.kind != ortbErrRequest {
		t.Fatalf("unexpected refusal %q of a body the prebid/openrtb types read: %q", q.err.msg, body)
	}
	if dup, caseVariant := keysOf(body); fastOK && (dup || caseVariant) {
		return // read differently on purpose (keysOf)
	}
	if fastOK && refErr != nil {
		var te *json.UnmarshalTypeError
		if !errors.As(refErr, &te) || ortbReadFields[te.Field] {
			t.Fatalf("unexpected acceptance of a body the prebid/openrtb types refuse for a field the reader reads (%v): %q", refErr, body)
		}
		return
	}
	if !fastOK || refErr != nil {
		return
	}
	eq := func(what, got, want string) {
		t.Helper()
		if got != want {
			t.Fatalf("unexpected %s; got %q; want %q (the prebid/openrtb types') in %q", what, got, want, body)
		}
	}
	str := func(s ortbStr) string { return string(q.bytes(s)) }
	eq("id", str(q.id), req.ID)
	if q.tmax != req.TMax {
		t.Fatalf("unexpected tmax %d; want %d in %q", q.tmax, req.TMax, body)
	}
	site, app := "", ""
	if req.Site != nil {
		site = req.Site.Domain
	}
	if req.App != nil {
		app = req.App.Bundle
	}
	eq("site.domain", str(q.domain), site)
	eq("app.bundle", str(q.bundle), app)
	var dt int64
	ua, country := "", ""
	if req.Device != nil {
		dt, ua = int64(req.Device.DeviceType), req.Device.UA
		if req.Device.Geo != nil {
			country = req.Device.Geo.Country
		}
	}
	if q.devicetype != dt {
		t.Fatalf("unexpected devicetype %d; want %d in %q", q.devicetype, dt, body)
	}
	eq("device.ua", str(q.ua), ua)
	eq("device.geo.country", str(q.country), country)
	if len(q.imps) != len(req.Imp) {
		t.Fatalf("unexpected impressions %d; want %d in %q", len(q.imps), len(req.Imp), body)
	}
	for i := range req.Imp {
		im, ri := &q.imps[i], &req.Imp[i]
		eq("imp.id", str(im.id), ri.ID)
		eq("imp.tagid", str(im.tagid), ri.TagID)
		gpid, pbadslot := impExt(ri.Ext)
		eq("imp.ext.gpid", str(im.gpid), gpid)
		eq("imp.ext.data.pbadslot", str(im.pbadslot), pbadslot)
		var media uint8
		var plcmt, placement int64
		if ri.Banner != nil {
			media |= mediaBanner
		}
		if ri.Video != nil {
			media |= mediaVideo
			plcmt, placement = int64(ri.Video.Plcmt), int64(ri.Video.Placement)
		}
		if ri.Audio != nil {
			media |= mediaAudio
		}
		if ri.Native != nil {
			media |= mediaNative
		}
		if im.media != media || im.plcmt != plcmt || im.placement != placement {
			t.Fatalf("unexpected media of imp %d; got %b %d %d; want %b %d %d in %q", i, im.media, im.plcmt, im.placement, media, plcmt, placement, body)
		}
		checkCandidates(t, &q, im.cands, ri.Ext, body)
	}
	checkCandidates(t, &q, q.reqCands, req.Ext, body)
}

// checkCandidates compares the candidate list rg the reader took from an ext with the one
// encoding/json reads from it: ext.bidpulse.candidates, when ext is an object.
func checkCandidates(t *testing.T, q *ortbRequest, rg ortbRange, ext json.RawMessage, body []byte) {
	t.Helper()
	var e struct {
		Bidpulse *struct {
			Candidates []ortbCandidate `json:"candidates"`
		} `json:"bidpulse"`
	}
	var want []ortbCandidate
	set := false
	if len(ext) > 0 && ext[0] == '{' {
		if err := json.Unmarshal(ext, &e); err != nil {
			t.Fatalf("unexpected candidates the reader read, which encoding/json refuses (%v), in %q", err, body)
		}
		if e.Bidpulse != nil && e.Bidpulse.Candidates != nil {
			want, set = e.Bidpulse.Candidates, true
		}
	}
	if rg.set != set || int(rg.hi-rg.lo) != len(want) {
		t.Fatalf("unexpected candidates %+v; want %v %+v in %q", rg, set, want, body)
	}
	for i, w := range want {
		c := &q.cands[int(rg.lo)+i]
		got := ortbCandidate{string(q.bytes(c.campaign)), string(q.bytes(c.creative)), string(q.bytes(c.bidder)), string(q.bytes(c.deal))}
		if got != w {
			t.Fatalf("unexpected candidate %d; got %+v; want %+v in %q", i, got, w, body)
		}
	}
}

// ortbParseSeeds are bodies at the edges of what the reader reads, besides the fixtures.
var ortbParseSeeds = []string{
	`{}`, `{"imp":null}`, `{"imp":[null]}`, `{"imp":{}}`, `{"imp":[1]}`, `[]`, `null`, `"x"`, ``, ` `, `{"id":1}`,
	`{"tmax":1.5}`, `{"tmax":-9223372036854775808}`, `{"tmax":9223372036854775808}`, `{"tmax":1e3}`, `{"tmax":-0}`,
	`{"device":{"devicetype":127}}`, `{"device":{"devicetype":128}}`, `{"device":{"devicetype":-128}}`, `{"device":{"devicetype":null}}`,
	`{"device":{"geo":{"country":"\ud800\u0041"}}}`, `{"device":{"ua":"\udc00\ud800\udc00x"}}`, "{\"id\":\"\xff\xfe a\"}",
	`{"site":{"domain":"a\"b\\c\/d\b\f\n\r\t\u00e9"}}`, `{"site":null,"app":{"bundle":"com.x"}}`, `{"site":5}`, `{"app":[]}`,
	`{"imp":[{"id":"1","video":{"plcmt":1,"placement":"x"}}]}`, `{"imp":[{"id":"1","video":{"plcmt":300}}]}`,
	`{"imp":[{"banner":{"w":"x"}}]}`, `{"imp":[{"banner":[]}]}`, `{"imp":[{"native":null,"audio":{}}]}`,
	`{"imp":[{"ext":{"gpid":7,"data":{"pbadslot":null}}}]}`, `{"imp":[{"ext":[1,{"gpid":"x"}]}]}`, `{"imp":[{"ext":"gpid"}]}`,
	`{"ext":{"bidpulse":{"candidates":[{"campaign":"c1"}]}}}`, `{"ext":{"bidpulse":{"candidates":{}}}}`, `{"ext":{"bidpulse":7}}`,
	`{"ext":{"bidpulse":{"auction_start":-1}}}`, `{"ext":{"bidpulse":{"candidates":[{"campaign":1}]}}}`,
	`{"TagID":"x","imp":[{"TAGID":"y"}]}`, `{"id":"a","id":"b"}`, `{"device":{"ua":"a"},"device":{"devicetype":2}}`,
	`{"id":"a"} `, `{"id":"a"}x`, `{"id":"a",}`, `{"id" "a"}`, `{"id":"a"`, `{"a":[1,2,]}`, `{"a":01}`, `{"a":-}`, `{"a":1.}`,
	`{"imp":[{"ext":{"x":` + strings.Repeat("[", 9996) + strings.Repeat("]", 9996) + `}}]}`, // 10,000 deep: JSON
	`{"imp":[{"ext":{"x":` + strings.Repeat("[", 9997) + strings.Repeat("]", 9997) + `}}]}`, // 10,001: not for encoding/json
	`{"a":` + strings.Repeat("[", 9999) + strings.Repeat("]", 9999) + `}`, `{"a":` + strings.Repeat("[", 10000) + strings.Repeat("]", 10000) + `}`,
	`{"a":tru}`, `{"a":nul}`, "{\"a\":\"\x01\"}", `{"a":"\x"}`, `{"a":"\u12"}`, `{"\u0069d":"esc"}`, `{"a":[[[[{}]]]]}`,
}

// FuzzOpenRTBParse is the differential test of the OpenRTB reader against the prebid/openrtb
// types (github.com/prebid/openrtb/v20, read with encoding/json): checkOpenRTBParse on every
// input. The seeds are the fixtures and ortbParseSeeds.
func FuzzOpenRTBParse(f *testing.F) {
	_, fixtures := loadORTBFixtures(f)
	for _, fx := range fixtures {
		f.Add(fx.body())
	}
	for _, s := range ortbParseSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		checkOpenRTBParse(t, body)
	})
}
