package bidder

import (
	"math"
	"strconv"
	"unicode/utf8"
)

// Append-style JSON encoding for the API's answers: no reflection and no
// allocation beyond growing dst.

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string. Invalid UTF-8 becomes U+FFFD.
func appendString(dst []byte, s []byte) []byte {
	dst = append(dst, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if jsonPlain[c] {
			// A run that needs no escaping is copied whole: keys and
			// names mostly are one.
			j := i + 1
			for j < len(s) && jsonPlain[s[j]] {
				j++
			}
			dst = append(dst, s[i:j]...)
			i = j
			continue
		}
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				dst = append(dst, '\\', c)
			case c == '\n':
				dst = append(dst, '\\', 'n')
			case c == '\r':
				dst = append(dst, '\\', 'r')
			case c == '\t':
				dst = append(dst, '\\', 't')
			case c < 0x20 || c == '<' || c == '>' || c == '&':
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			default:
				dst = append(dst, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRune(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, "\\ufffd"...)
		} else if r == '\u2028' || r == '\u2029' {
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
		} else {
			dst = append(dst, s[i:i+size]...)
		}
		i += size
	}
	return append(dst, '"')
}

// jsonPlain says which bytes appendString copies as they are: printable
// ASCII but '"', '\\' and the HTML-sensitive '<', '>', '&'.
var jsonPlain = func() (t [256]bool) {
	for c := 0x20; c < 0x80; c++ {
		t[c] = c != '"' && c != '\\' && c != '<' && c != '>' && c != '&'
	}
	return t
}()

func appendStr(dst []byte, s string) []byte {
	return appendString(dst, []byte(s))
}

// appendFloat appends f in the shortest form that round-trips; NaN and
// infinities, which JSON cannot carry, become 0.
func appendFloat(dst []byte, f float64) []byte {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return append(dst, '0')
	}
	if a := math.Abs(f); a >= 1e21 || (a < 1e-7 && a != 0) {
		// Exponent form, as JSON.stringify prints it: never 309 digits.
		return strconv.AppendFloat(dst, f, 'g', -1, 64)
	}
	return strconv.AppendFloat(dst, f, 'f', -1, 64)
}

// appendRounded appends f rounded to 6 decimals (enough for a multiplier
// or a rate, and stable to read).
func appendRounded(dst []byte, f float64) []byte {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return append(dst, '0')
	}
	return appendFloat(dst, math.Round(f*1e6)/1e6)
}

func appendUint(dst []byte, n uint64) []byte { return strconv.AppendUint(dst, n, 10) }

// appendMoney appends micros as currency units.
func appendMoney(dst []byte, micros uint64) []byte {
	return appendFloat(dst, float64(micros)/1e6)
}

func appendKeyField(dst []byte, name string) []byte {
	dst = appendStr(dst, name)
	return append(dst, ':')
}
