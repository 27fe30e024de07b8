package event

import (
	"unicode/utf8"

	"github.com/valyala/fastjson"
)

// fieldNames holds the wire name of every known field, in the order they are checked.
var fieldNames = [numFields]string{"id", "type", "campaign", "creative", "placement", "device", "country",
	"site", "ts", "cost", "value", "click_ts"}

// maxKnownNumber bounds the text of a number AppendKnown keeps: every valid ts, cost or value is
// shorter (a money amount may carry more decimals, but one of 32 bytes says enough).
const maxKnownNumber = 32

// AppendKnown appends to dst, as one JSON object, the known fields of the event just rejected,
// and returns the extended slice. Call it only from Parse's callback, for a rejection; it appends
// {} for a payload or element that is not an object (bad_json, not_object).
//
// It is what a dead letter keeps of a rejected event instead of its payload: fields outside the
// schema (a user id, an IP address, a device id) never leave the Parser; raw, in the callback,
// is the only way they could, and a consumer keeps it only by explicit choice. A known field is
// kept when the Parser could read it, whether or not it is the one that failed: a string field
// as sent (escaped anew) when it is a string of 1..MaxFieldLen bytes of UTF-8, whatever its value
// (an unknown type name included); a number field (ts, cost, value, click_ts) as its JSON text
// when it is a number of at most 32 bytes (a ts in seconds is kept: it says why the event was
// refused). A value of the wrong JSON type, empty, too long or not UTF-8 is left out. The fields
// come in the checking order: id, type, campaign, creative, placement, device, country, site, ts,
// cost, value, click_ts; a field given twice is kept once, the first time (the one checked).
func (p *Parser) AppendKnown(dst []byte) []byte {
	dst = append(dst, '{')
	start := len(dst)
	for f, v := range p.fields {
		if v == nil {
			continue
		}
		var text []byte
		isString := false
		switch v.Type() {
		case fastjson.TypeString:
			if f >= fTS {
				continue
			}
			s, _ := v.StringBytes()
			if len(s) == 0 || len(s) > MaxFieldLen || !utf8.Valid(s) {
				continue
			}
			text, isString = s, true
		case fastjson.TypeNumber:
			if f < fTS {
				continue
			}
			p.num = v.MarshalTo(p.num[:0])
			if len(p.num) > maxKnownNumber {
				continue
			}
			text = p.num
		default:
			continue
		}
		if len(dst) > start {
			dst = append(dst, ',')
		}
		dst = append(dst, '"')
		dst = append(dst, fieldNames[f]...)
		dst = append(dst, '"', ':')
		if isString {
			dst = appendString(dst, text)
		} else {
			dst = append(dst, text...)
		}
	}
	return append(dst, '}')
}
