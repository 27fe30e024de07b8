package event

import (
	"unsafe"

	"github.com/bidpulse/bidpulse/windows"
)

// One normalisation for every side that forms a key: ingest (Parser), the
// bid and rates queries, OpenRTB and the Go client (bidder/client) all call
// Normal or AppendNormal, so an event and a bid for the same key can never
// be normalised apart. The rule: device is lower-cased and country
// upper-cased, ASCII letters only (a non-ASCII byte is kept as it is, so
// UTF-8 stays valid); the other dimensions (campaign, creative, placement,
// site) are kept as sent: a site is a domain or an app bundle id, and
// bundle ids are case-sensitive.

// fold is what a dimension's normalisation does to a byte.
type fold uint8

const (
	foldNone fold = iota
	foldLower
	foldUpper
)

func foldOf(d windows.Dim) fold {
	switch d {
	case windows.DimDevice:
		return foldLower
	case windows.DimCountry:
		return foldUpper
	}
	return foldNone
}

func (f fold) apply(c byte) byte {
	switch f {
	case foldLower:
		if 'A' <= c && c <= 'Z' {
			return c + 'a' - 'A'
		}
	case foldUpper:
		if 'a' <= c && c <= 'z' {
			return c - ('a' - 'A')
		}
	}
	return c
}

// Normal returns value normalised for dimension d. It returns value itself
// when nothing changes, else the normalised copy appended to buf[:0]; buf
// is reused, so the result is valid until buf's next use.
func Normal(buf []byte, d windows.Dim, value []byte) []byte {
	f := foldOf(d)
	if f == foldNone {
		return value
	}
	for i, c := range value {
		if f.apply(c) != c {
			buf = append(buf[:0], value[:i]...)
			for _, c := range value[i:] {
				buf = append(buf, f.apply(c))
			}
			return buf
		}
	}
	return value
}

// AppendNormal appends value normalised for dimension d to dst, for keys
// held as strings. It never allocates beyond growing dst.
func AppendNormal(dst []byte, d windows.Dim, value string) []byte {
	f := foldOf(d)
	if f == foldNone {
		return append(dst, value...)
	}
	for i := 0; i < len(value); i++ {
		dst = append(dst, f.apply(value[i]))
	}
	return dst
}

// AppendJSONString appends s as a JSON string, escaped as AppendJSON
// escapes its strings.
func AppendJSONString(dst []byte, s string) []byte {
	// appendString only reads s.
	return appendString(dst, unsafe.Slice(unsafe.StringData(s), len(s)))
}

// AppendMoney appends micros as a decimal number of currency units, as
// AppendJSON writes cost and value (2100 -> 0.0021).
func AppendMoney(dst []byte, micros uint64) []byte { return appendMicros(dst, micros) }
