// Package jsonscan holds the byte-level scanners of bidpulse's single-pass
// JSON fast paths (events in bidder/event, bid batches in bidder): strict
// JSON of a known flat shape, where anything else goes to a general parser.
package jsonscan

// PlainString returns the index of the quote that closes the string whose
// contents start at b[i], when every byte up to it is plain (PlainByte);
// false otherwise (an escape, a control character or a non-ASCII byte
// need the general parser, as does a string that does not end).
func PlainString(b []byte, i int) (int, bool) {
	for ; i < len(b); i++ {
		if c := b[i]; !PlainByte[c] {
			if c == '"' {
				return i, true
			}
			return 0, false
		}
	}
	return 0, false
}

// PlainByte says which bytes a plain string holds as they are: ASCII, not
// a control character, not '"' or '\\'.
var PlainByte = func() (t [256]bool) {
	for c := 0x20; c < 0x80; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// Number returns the index after the strict JSON number that starts at
// b[i] (-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?); false when there
// is none.
func Number(b []byte, i int) (int, bool) {
	if b[i] == '-' {
		i++
	}
	switch {
	case i >= len(b):
		return 0, false
	case b[i] == '0':
		i++
	case b[i] >= '1' && b[i] <= '9':
		i = SkipDigits(b, i+1)
	default:
		return 0, false
	}
	if i < len(b) && b[i] == '.' {
		j := SkipDigits(b, i+1)
		if j == i+1 {
			return 0, false
		}
		i = j
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		j := SkipDigits(b, i)
		if j == i {
			return 0, false
		}
		i = j
	}
	return i, true
}

// SkipDigits returns the index of the first byte at or after i that is not
// an ASCII digit.
func SkipDigits(b []byte, i int) int {
	for i < len(b) && b[i] >= '0' && b[i] <= '9' {
		i++
	}
	return i
}

// SkipSpace returns the index of the first byte at or after i that is not
// JSON whitespace.
func SkipSpace(b []byte, i int) int {
	for i < len(b) {
		switch b[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// HasWord reports whether b holds w at i.
func HasWord(b []byte, i int, w string) bool {
	return len(b)-i >= len(w) && string(b[i:i+len(w)]) == w
}

// AfterMember reads what follows an object member's value, from b[i] on
// (whitespace first): the object's closing brace (closed; next is its
// index) or a comma (next is the first byte of the next member); false for
// anything else.
func AfterMember(b []byte, i int) (next int, closed, ok bool) {
	i = SkipSpace(b, i)
	switch {
	case i >= len(b):
		return 0, false, false
	case b[i] == '}':
		return i, true, true
	case b[i] == ',':
		return SkipSpace(b, i+1), false, true
	}
	return 0, false, false
}

// Colon reads the colon after an object member's name, from b[i] on
// (whitespace first), and returns the index of the value that follows
// it; false when there is no colon or no value.
func Colon(b []byte, i int) (int, bool) {
	i = SkipSpace(b, i)
	if i >= len(b) || b[i] != ':' {
		return 0, false
	}
	i = SkipSpace(b, i+1)
	return i, i < len(b)
}
