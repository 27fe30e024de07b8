package event

import (
	"bytes"
	"unicode/utf8"

	"github.com/bidpulse/bidpulse/windows"
	"github.com/valyala/fastjson"
)

// Parser parses event payloads without reflection. The payloads trackers send (an event object
// or an array of them, with plain ASCII strings) take a single-pass fast path (fast.go); any
// other payload, and every payload with a rejection, takes the general path built on
// github.com/valyala/fastjson, which decides. Both give the same events (FuzzParse checks it).
//
// A Parser is not safe for concurrent use; reuse one per goroutine. Steady state allocates
// nothing per event: buffers grow to the largest payload seen and are kept. Rejections may
// allocate (error texts inside fastjson, re-serialised elements growing a buffer).
//
// Rules, checked in this fixed order for each object; the first failure decides the reason:
//
//  1. The payload must be strict JSON (RFC 8259: no NaN/Inf, no raw control characters in
//     strings, no lax numbers, nesting at most fastjson.MaxDepth), else bad_json. An empty or
//     all-whitespace payload is bad_json.
//  2. It must be an object or an array; a top-level scalar is not_object, and so is an array
//     element that is not an object (nested arrays included).
//  3. id, type, campaign, creative, placement, device, country, site, ts, cost, value, click_ts, in
//     this order. A JSON null is the same as an absent field. Unknown fields are ignored; when a
//     field appears twice the first occurrence counts. Within a string field the checks are:
//     present and a string, non-empty, length, UTF-8 (an over-long invalid string is
//     field_too_long). Strings are measured and checked after JSON unescaping.
//     - id: required string (bad_id), non-empty (bad_id), at most MaxFieldLen bytes after
//     unescaping (field_too_long), valid UTF-8 (bad_id).
//     - type: required, exactly "impression", "click" or "conversion" (bad_type).
//     - campaign: as id, with bad_campaign.
//     - creative, placement, device, country, site: optional; when present as id, with
//     bad_dimension. country is then upper-cased and device lower-cased (ASCII letters); the
//     others, site included, are kept as sent.
//     - ts: optional; an integer written as plain digits, Unix milliseconds in [MinTS, max],
//     where max is NowMs+MaxTSAhead, or MaxTS when NowMs is 0 (bad_ts: 1.5, 1.0, 1e3, -1, -0,
//     "123", true, 0, a time in seconds, microseconds or nanoseconds).
//     - cost, value: optional numbers, 0 <= x <= MaxMoney (bad_money; -0 is 0), converted to
//     micros exactly.
//     - click_ts: optional; like ts (bad_click_ts). It is checked on every type but kept only
//     on conversions.
type Parser struct {
	jp fastjson.Parser
	ev Event
	// evs holds the events of the payload on the fast path (see fastParse).
	evs []Event

	// NowMs is the consumer's clock, in Unix ms, for the upper bound of ts and click_ts:
	// NowMs + MaxTSAhead (at most MaxTS). 0 means no clock: the bound is MaxTS. The ingest sets it
	// to the service time of each message before Parse.
	NowMs int64

	// BeforeEvents, when set, is called with every event of a payload that
	// took the fast path and holds more than one, before fn is called for
	// the first: a consumer can start the memory loads the events will need
	// (a batch's cache misses then overlap). The events are not normalised
	// yet (device and country keep their case); evs is valid only during the
	// call.
	BeforeEvents func(evs []Event)

	// fields holds the values of the known keys of the object being checked (nil = absent).
	fields [numFields]*fastjson.Value
	// num receives a number's text; raw receives a re-serialised rejected element.
	num []byte
	raw []byte
	// device and country hold the case-normalised copies of those dimensions.
	device  [MaxFieldLen]byte
	country [MaxFieldLen]byte
}

// Known object keys, in the order they are checked.
const (
	fID = iota
	fType
	fCampaign
	fCreative
	fPlacement
	fDevice
	fCountry
	fSite
	fTS
	fCost
	fValue
	fClickTS
	numFields
)

// dimFields maps each dimension to its field.
var dimFields = [windows.NumDims]int{
	windows.DimCampaign:  fCampaign,
	windows.DimCreative:  fCreative,
	windows.DimPlacement: fPlacement,
	windows.DimDevice:    fDevice,
	windows.DimCountry:   fCountry,
	windows.DimSite:      fSite,
}

// Parse parses payload, one JSON object or a JSON array of them, and calls fn once per event, in
// payload order: for a valid one with reason OK and ev set; for a rejected one with ev == nil,
// its reason, and raw = the rejected JSON (the whole payload for bad_json, for a rejected single
// object and for a top-level scalar; the element re-serialised as valid JSON for an element of
// an array: same keys in the same order, numbers verbatim, strings re-escaped, no whitespace,
// invalid UTF-8 as U+FFFD). ev, its slices and raw are valid only during fn; fn must not call
// p.Parse. ev holds known fields only. raw holds whatever the producer sent, fields outside the
// schema (personal data) included: what a consumer keeps of a rejection is AppendKnown's output,
// and raw only by explicit choice.
//
// Parse returns the number of events seen: an unparsable payload counts 1, an empty array 0.
// payload is not modified nor retained.
func (p *Parser) Parse(payload []byte, fn func(ev *Event, reason Reason, raw []byte)) int {
	if n, ok := p.fastParse(payload); ok {
		p.emitFast(n, fn)
		return n
	}
	return p.parseGeneral(payload, fn)
}

// parseGeneral is Parse without the fast path.
func (p *Parser) parseGeneral(payload []byte, fn func(ev *Event, reason Reason, raw []byte)) int {
	// fastjson's Parser bounds the nesting depth; its Validate does not, so it runs second, on a
	// document already known to be shallow, to reject what the lax Parser accepts.
	v, err := p.jp.ParseBytes(payload)
	if err != nil || fastjson.ValidateBytes(payload) != nil || hasRawControl(payload) {
		fn(nil, BadJSON, payload)
		return 1
	}
	switch v.Type() {
	case fastjson.TypeObject:
		p.parseObject(v, fn, payload)
		return 1
	case fastjson.TypeArray:
		a, _ := v.Array()
		for _, elem := range a {
			if elem.Type() != fastjson.TypeObject {
				p.raw = appendValue(p.raw[:0], elem)
				fn(nil, NotObject, p.raw)
				continue
			}
			p.parseObject(elem, fn, nil)
		}
		return len(a)
	default:
		fn(nil, NotObject, payload)
		return 1
	}
}

// hasRawControl reports whether a string in payload holds a raw control character. It completes
// fastjson.Validate, which misses those that precede an escape sequence in the same string; it
// only needs to look when there is an escape at all.
func hasRawControl(payload []byte) bool {
	if bytes.IndexByte(payload, '\\') < 0 {
		return false
	}
	inString := false
	for i := 0; i < len(payload); i++ {
		c := payload[i]
		switch {
		case !inString:
			inString = c == '"'
		case c == '\\':
			i++
		case c == '"':
			inString = false
		case c < 0x20:
			return true
		}
	}
	return false
}

// parseObject checks the object v and calls fn. raw is the rejected JSON to report, or nil to
// re-serialise v.
func (p *Parser) parseObject(v *fastjson.Value, fn func(ev *Event, reason Reason, raw []byte), raw []byte) {
	reason := p.check(v)
	if reason == OK {
		fn(&p.ev, OK, nil)
	} else {
		if raw == nil {
			p.raw = appendValue(p.raw[:0], v)
			raw = p.raw
		}
		fn(nil, reason, raw)
	}
	p.ev.Reset()
	clear(p.fields[:])
}

// check fills p.ev from the object v and returns OK, or the reason v is rejected.
func (p *Parser) check(v *fastjson.Value) Reason {
	o, _ := v.Object()
	p.ev.Reset()
	clear(p.fields[:])
	o.Visit(func(k []byte, fv *fastjson.Value) {
		f := fieldIndex(k)
		if f >= 0 && p.fields[f] == nil {
			p.fields[f] = fv
		}
	})
	for f, fv := range p.fields {
		if fv != nil && fv.Type() == fastjson.TypeNull {
			p.fields[f] = nil
		}
	}
	ev := &p.ev

	var r Reason
	if ev.ID, r = checkString(p.fields[fID], true, BadID); r != OK {
		return r
	}
	if ev.Type = checkType(p.fields[fType]); ev.Type == TypeNone {
		return BadType
	}
	for d := windows.Dim(0); d < windows.NumDims; d++ {
		bad := BadDimension
		if d == windows.DimCampaign {
			bad = BadCampaign
		}
		if ev.Dims[d], r = checkString(p.fields[dimFields[d]], d == windows.DimCampaign, bad); r != OK {
			return r
		}
	}
	ev.Dims[windows.DimDevice] = Normal(p.device[:0], windows.DimDevice, ev.Dims[windows.DimDevice])
	ev.Dims[windows.DimCountry] = Normal(p.country[:0], windows.DimCountry, ev.Dims[windows.DimCountry])

	maxTS := p.maxTS()
	if fv := p.fields[fTS]; fv != nil {
		if ev.TS, ev.HasTS = p.integer(fv); !ev.HasTS || !tsInRange(ev.TS, maxTS) {
			return BadTS
		}
	}
	var ok bool
	if fv := p.fields[fCost]; fv != nil {
		if ev.CostMicros, ok = p.money(fv); !ok {
			return BadMoney
		}
	}
	if fv := p.fields[fValue]; fv != nil {
		if ev.ValueMicros, ok = p.money(fv); !ok {
			return BadMoney
		}
	}
	if fv := p.fields[fClickTS]; fv != nil {
		ts, ok := p.integer(fv)
		if !ok || !tsInRange(ts, maxTS) {
			return BadClickTS
		}
		if ev.Type == Conversion {
			ev.ClickTS, ev.HasClickTS = ts, true
		}
	}
	return OK
}

// TSRange returns the accepted range of ts and click_ts, in Unix ms: [MinTS, max] with max
// NowMs+MaxTSAhead, or MaxTS without a clock (see NowMs).
func (p *Parser) TSRange() (lo, hi int64) { return MinTS, p.maxTS() }

// maxTS returns the latest accepted ts and click_ts (see NowMs).
func (p *Parser) maxTS() int64 {
	if p.NowMs <= 0 || p.NowMs > MaxTS-MaxTSAhead {
		return MaxTS
	}
	return p.NowMs + MaxTSAhead
}

// tsInRange reports whether ts is a Unix-ms time of this era: in [MinTS, maxTS].
func tsInRange(ts, maxTS int64) bool {
	return ts >= MinTS && ts <= maxTS
}

// fieldIndex returns the field of key k, or -1 for an unknown key.
func fieldIndex(k []byte) int {
	switch string(k) {
	case "id":
		return fID
	case "type":
		return fType
	case "campaign":
		return fCampaign
	case "creative":
		return fCreative
	case "placement":
		return fPlacement
	case "device":
		return fDevice
	case "country":
		return fCountry
	case "site":
		return fSite
	case "ts":
		return fTS
	case "cost":
		return fCost
	case "value":
		return fValue
	case "click_ts":
		return fClickTS
	}
	return -1
}

// checkString validates a string field: absent (nil) is fine unless required; otherwise it must
// be a non-empty string of at most MaxFieldLen bytes of valid UTF-8. It returns nil for an absent
// field.
func checkString(v *fastjson.Value, required bool, bad Reason) ([]byte, Reason) {
	if v == nil {
		if required {
			return nil, bad
		}
		return nil, OK
	}
	if v.Type() != fastjson.TypeString {
		return nil, bad
	}
	s, _ := v.StringBytes()
	switch {
	case len(s) == 0:
		return nil, bad
	case len(s) > MaxFieldLen:
		return nil, FieldTooLong
	case !utf8.Valid(s):
		return nil, bad
	}
	return s, OK
}

// checkType returns the event type named by v, or TypeNone.
func checkType(v *fastjson.Value) Type {
	if v == nil || v.Type() != fastjson.TypeString {
		return TypeNone
	}
	s, _ := v.StringBytes()
	return ParseType(s)
}

// integer returns the value of a timestamp field.
func (p *Parser) integer(v *fastjson.Value) (int64, bool) {
	if v.Type() != fastjson.TypeNumber {
		return 0, false
	}
	p.num = v.MarshalTo(p.num[:0])
	return parseTS(p.num)
}

// money returns the value of a money field in micros.
func (p *Parser) money(v *fastjson.Value) (uint64, bool) {
	if v.Type() != fastjson.TypeNumber {
		return 0, false
	}
	p.num = v.MarshalTo(p.num[:0])
	return parseMicros(p.num)
}
