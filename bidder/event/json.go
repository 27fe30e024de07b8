package event

import (
	"strconv"
	"unicode/utf8"

	"github.com/bidpulse/bidpulse/windows"
	"github.com/valyala/fastjson"
)

// AppendJSON appends ev to dst as one JSON object and returns the extended slice.
//
// Fields come in a fixed order (id, type, ts, campaign, creative, placement, device, country, site,
// cost, value, click_ts); absent ones are omitted: an empty ID or dimension, TypeNone, ts without
// HasTS, zero cost or value, click_ts without HasClickTS. Money is written in currency units with
// at most six decimals, exactly (CostMicros 2100 -> 0.0021). Strings are escaped so the output is
// always valid JSON; bytes that are not UTF-8 become U+FFFD. A valid Event parsed by Parser
// encodes to JSON that parses back to an equal Event. AppendJSON does not allocate beyond
// growing dst.
func AppendJSON(dst []byte, ev *Event) []byte {
	dst = append(dst, '{')
	start := len(dst)
	key := func(dst []byte, name string) []byte {
		if len(dst) > start {
			dst = append(dst, ',')
		}
		dst = append(dst, '"')
		dst = append(dst, name...)
		return append(dst, '"', ':')
	}
	if len(ev.ID) > 0 {
		dst = key(dst, "id")
		dst = appendString(dst, ev.ID)
	}
	if ev.Type != TypeNone && ev.Type < NumTypes {
		dst = key(dst, "type")
		dst = append(dst, '"')
		dst = append(dst, ev.Type.String()...)
		dst = append(dst, '"')
	}
	if ev.HasTS {
		dst = key(dst, "ts")
		dst = strconv.AppendInt(dst, ev.TS, 10)
	}
	for d := windows.Dim(0); d < windows.NumDims; d++ {
		if len(ev.Dims[d]) > 0 {
			dst = key(dst, windows.DimNames[d])
			dst = appendString(dst, ev.Dims[d])
		}
	}
	if ev.CostMicros != 0 {
		dst = key(dst, "cost")
		dst = appendMicros(dst, ev.CostMicros)
	}
	if ev.ValueMicros != 0 {
		dst = key(dst, "value")
		dst = appendMicros(dst, ev.ValueMicros)
	}
	if ev.HasClickTS {
		dst = key(dst, "click_ts")
		dst = strconv.AppendInt(dst, ev.ClickTS, 10)
	}
	return append(dst, '}')
}

// appendMicros appends m micros as a decimal number of units with no trailing fraction zeros.
func appendMicros(dst []byte, m uint64) []byte {
	dst = strconv.AppendUint(dst, m/1e6, 10)
	frac := m % 1e6
	if frac == 0 {
		return dst
	}
	var buf [7]byte
	buf[0] = '.'
	for i := 6; i >= 1; i-- {
		buf[i] = byte('0' + frac%10)
		frac /= 10
	}
	n := 7
	for buf[n-1] == '0' {
		n--
	}
	return append(dst, buf[:n]...)
}

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string. It escapes '"', '\\', control characters and
// U+2028/U+2029 (so the output can also be embedded in JavaScript), and replaces invalid UTF-8
// with U+FFFD.
func appendString(dst, s []byte) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRune(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i++
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// appendValue re-serialises a parsed JSON value as valid JSON. fastjson's own MarshalTo is not
// used because, once a string has been read through the API, it re-escapes it the Go way
// (strconv.Quote: \x00, \a, ...), which is not JSON. Numbers keep their original text, which the
// Parser has already validated.
func appendValue(dst []byte, v *fastjson.Value) []byte {
	switch v.Type() {
	case fastjson.TypeObject:
		o, _ := v.Object()
		dst = append(dst, '{')
		first := true
		o.Visit(func(k []byte, vv *fastjson.Value) {
			if !first {
				dst = append(dst, ',')
			}
			first = false
			dst = appendString(dst, k)
			dst = append(dst, ':')
			dst = appendValue(dst, vv)
		})
		return append(dst, '}')
	case fastjson.TypeArray:
		a, _ := v.Array()
		dst = append(dst, '[')
		for i, vv := range a {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendValue(dst, vv)
		}
		return append(dst, ']')
	case fastjson.TypeString:
		s, _ := v.StringBytes()
		return appendString(dst, s)
	default:
		// Numbers, true, false and null marshal as their JSON text.
		return v.MarshalTo(dst)
	}
}
