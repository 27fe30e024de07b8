package bidder

import (
	"strconv"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/bidpulse/bidpulse/internal/jsonscan"
)

// The JSON reader of the OpenRTB path: a single pass over the body that
// reads the few fields bidpulse needs (openrtb_parse.go) and skips the rest,
// checking that all of it is JSON as encoding/json reads it (the
// prebid/openrtb types' decoder, which FuzzOpenRTBParse compares it with).
// It keeps what it reads as offsets: into the body for a string without
// escapes, into its arena for a decoded one; both are pooled, so reading a
// request allocates nothing in steady state.

// ortbMaxDepth is encoding/json's nesting limit: a deeper body is refused
// by both.
const ortbMaxDepth = 10000

// ortbStr is a string the reader kept: n bytes at off, in the body, or in
// the arena when arena is set (the string had escapes or invalid UTF-8).
// The zero value is the absent string.
type ortbStr struct {
	off, n uint32
	arena  bool
}

// Kinds of ortbError, which FuzzOpenRTBParse tells apart: a body that is
// not JSON, a field of the wrong type (the prebid/openrtb types refuse it
// too), or a request bidpulse cannot answer (no candidates, a limit).
const (
	ortbErrSyntax = iota
	ortbErrType
	ortbErrRequest
)

// ortbError is why a request was refused: its status and message.
type ortbError struct {
	kind   int
	status int
	msg    string
}

func (e *ortbError) Error() string { return e.msg }

// ortbReader reads one body. Its slices are reused from request to request.
type ortbReader struct {
	b     []byte
	arena []byte // decoded strings
	key   []byte // a decoded object key with escapes
	stack []byte // skipValue's open containers
	// depth is the number of objects and arrays open around the value
	// being read, which skipValue adds to its own for the nesting limit.
	depth int
	err   *ortbError
}

// leave closes a level of depth.
func (r *ortbReader) leave() { r.depth-- }

func (r *ortbReader) reset(b []byte) {
	r.b, r.arena, r.err, r.depth = b, r.arena[:0], nil, 0
}

// bytes returns the contents of s; valid until the next reset.
func (r *ortbReader) bytes(s ortbStr) []byte {
	if s.arena {
		return r.arena[s.off : s.off+s.n]
	}
	return r.b[s.off : s.off+s.n]
}

// syntax records a syntax error at i and returns false. Only the first
// error is kept.
func (r *ortbReader) syntax(i int, what string) bool {
	if r.err == nil {
		r.err = &ortbError{kind: ortbErrSyntax, status: 400, msg: "body is not valid JSON: " + what + " at offset " + strconv.Itoa(i)}
	}
	return false
}

// typeErr records that the field at path is not of the type OpenRTB gives
// it, and returns false.
func (r *ortbReader) typeErr(path, want string) bool {
	if r.err == nil {
		r.err = &ortbError{kind: ortbErrType, status: 400, msg: path + " must be " + want}
	}
	return false
}

// requestErr records a request bidpulse cannot answer and returns false.
func (r *ortbReader) requestErr(status int, msg string) bool {
	if r.err == nil {
		r.err = &ortbError{kind: ortbErrRequest, status: status, msg: msg}
	}
	return false
}

// isNull reports whether the value at i is null (which every field reads as
// absent, as encoding/json does), and returns the index after it.
func (r *ortbReader) isNull(i int) (int, bool) {
	if jsonscan.HasWord(r.b, i, "null") {
		return i + 4, true
	}
	return i, false
}

// objectStart reads '{' at i and returns the index of its first member's
// key, or of its closing brace (empty is set).
func (r *ortbReader) objectStart(i int) (next int, empty, ok bool) {
	if i >= len(r.b) || r.b[i] != '{' {
		return 0, false, false
	}
	i = jsonscan.SkipSpace(r.b, i+1)
	if i < len(r.b) && r.b[i] == '}' {
		return i, true, true
	}
	return i, false, true
}

// member reads the key at i (a string, its colon) and returns the key's
// decoded bytes (valid until the next member call) and the index of its
// value.
func (r *ortbReader) member(i int) (key []byte, val int, ok bool) {
	if i >= len(r.b) || r.b[i] != '"' {
		return nil, 0, r.syntax(i, "expected an object key")
	}
	end, esc, ok := r.scanString(i + 1)
	if !ok {
		return nil, 0, false
	}
	key = r.b[i+1 : end]
	if esc {
		r.key = r.decodeInto(r.key[:0], i+1, end)
		key = r.key
	}
	val, ok = jsonscan.Colon(r.b, end+1)
	if !ok {
		return nil, 0, r.syntax(end+1, "expected ':' and a value")
	}
	return key, val, true
}

// afterMember reads what follows a member's value at i: the next member's
// key index, or the closing brace's index with closed set.
func (r *ortbReader) afterMember(i int) (next int, closed, ok bool) {
	next, closed, ok = jsonscan.AfterMember(r.b, i)
	if !ok {
		return 0, false, r.syntax(i, "expected ',' or '}'")
	}
	return next, closed, true
}

// arrayStart reads '[' at i and returns the index of its first element, or
// of its closing bracket (empty is set).
func (r *ortbReader) arrayStart(i int) (next int, empty, ok bool) {
	if i >= len(r.b) || r.b[i] != '[' {
		return 0, false, false
	}
	i = jsonscan.SkipSpace(r.b, i+1)
	if i < len(r.b) && r.b[i] == ']' {
		return i, true, true
	}
	if i >= len(r.b) {
		return 0, false, r.syntax(i, "unexpected end")
	}
	return i, false, true
}

// afterElement reads what follows an array element at i: the next
// element's index, or the closing bracket's index with closed set.
func (r *ortbReader) afterElement(i int) (next int, closed, ok bool) {
	i = jsonscan.SkipSpace(r.b, i)
	switch {
	case i >= len(r.b):
	case r.b[i] == ']':
		return i, true, true
	case r.b[i] == ',':
		next = jsonscan.SkipSpace(r.b, i+1)
		if next < len(r.b) {
			return next, false, true
		}
	}
	return 0, false, r.syntax(i, "expected ',' or ']'")
}

// scanString finds the end of the string whose contents start at i: the
// index of its closing quote, and whether it holds escapes or non-ASCII
// bytes (so that its value must be decoded). Escapes are checked as
// encoding/json checks them; control characters are refused.
func (r *ortbReader) scanString(i int) (end int, esc, ok bool) {
	b := r.b
	for i < len(b) {
		c := b[i]
		switch {
		case c == '"':
			return i, esc, true
		case c == '\\':
			esc = true
			if i+1 >= len(b) {
				return 0, false, r.syntax(i, "unterminated string")
			}
			switch b[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if i+6 > len(b) {
					return 0, false, r.syntax(i, "bad \\u escape")
				}
				for _, h := range b[i+2 : i+6] {
					if unhex(h) < 0 {
						return 0, false, r.syntax(i, "bad \\u escape")
					}
				}
				i += 6
			default:
				return 0, false, r.syntax(i, "bad escape")
			}
		case c < 0x20:
			return 0, false, r.syntax(i, "control character in string")
		default:
			if c >= utf8.RuneSelf {
				esc = true
			}
			i++
		}
	}
	return 0, false, r.syntax(i, "unterminated string")
}

func unhex(c byte) rune {
	switch {
	case '0' <= c && c <= '9':
		return rune(c - '0')
	case 'a' <= c && c <= 'f':
		return rune(c - 'a' + 10)
	case 'A' <= c && c <= 'F':
		return rune(c - 'A' + 10)
	}
	return -1
}

// decodeInto appends the value of the string whose contents are b[i:end]
// (checked by scanString) to dst, as encoding/json decodes it: escapes
// resolved, an unpaired surrogate and each invalid UTF-8 byte as U+FFFD.
func (r *ortbReader) decodeInto(dst []byte, i, end int) []byte {
	b := r.b
	for i < end {
		c := b[i]
		switch {
		case c == '\\':
			switch b[i+1] {
			case 'b':
				dst = append(dst, '\b')
			case 'f':
				dst = append(dst, '\f')
			case 'n':
				dst = append(dst, '\n')
			case 'r':
				dst = append(dst, '\r')
			case 't':
				dst = append(dst, '\t')
			case 'u':
				rr := hex4(b[i+2:])
				i += 6
				if utf16.IsSurrogate(rr) {
					if i+6 <= end && b[i] == '\\' && b[i+1] == 'u' {
						if r2 := utf16.DecodeRune(rr, hex4(b[i+2:])); r2 != utf8.RuneError {
							dst = utf8.AppendRune(dst, r2)
							i += 6
							continue
						}
					}
					rr = utf8.RuneError
				}
				dst = utf8.AppendRune(dst, rr)
				continue
			default: // '"', '\\', '/'
				dst = append(dst, b[i+1])
			}
			i += 2
		case c < utf8.RuneSelf:
			dst = append(dst, c)
			i++
		default:
			rr, size := utf8.DecodeRune(b[i:end])
			if rr == utf8.RuneError && size == 1 {
				dst = utf8.AppendRune(dst, utf8.RuneError)
			} else {
				dst = append(dst, b[i:i+size]...)
			}
			i += size
		}
	}
	return dst
}

func hex4(b []byte) rune {
	return unhex(b[0])<<12 | unhex(b[1])<<8 | unhex(b[2])<<4 | unhex(b[3])
}

// readString reads the string value at i into *s (null leaves *s as it
// is) and returns the index after it; false with a type error naming path
// for another type.
func (r *ortbReader) readString(i int, path string, s *ortbStr) (int, bool) {
	if j, null := r.isNull(i); null {
		return j, true
	}
	if r.b[i] != '"' {
		if _, ok := r.skipValue(i); !ok {
			return 0, false
		}
		return 0, r.typeErr(path, "a string")
	}
	end, esc, ok := r.scanString(i + 1)
	if !ok {
		return 0, false
	}
	if !esc {
		*s = ortbStr{off: uint32(i + 1), n: uint32(end - i - 1)}
		return end + 1, true
	}
	off := len(r.arena)
	r.arena = r.decodeInto(r.arena, i+1, end)
	*s = ortbStr{off: uint32(off), n: uint32(len(r.arena) - off), arena: true}
	return end + 1, true
}

// readInt reads the integer value at i, for a field whose Go type holds
// [lo, hi], into *v (null leaves it) and returns the index after it. A
// number with a fraction or an exponent, or out of range, is a type error
// naming path, as encoding/json refuses it for an integer field.
func (r *ortbReader) readInt(i int, path string, lo, hi int64, v *int64) (int, bool) {
	if j, null := r.isNull(i); null {
		return j, true
	}
	c := r.b[i]
	if c != '-' && (c < '0' || c > '9') {
		if _, ok := r.skipValue(i); !ok {
			return 0, false
		}
		return 0, r.typeErr(path, "an integer")
	}
	end, ok := jsonscan.Number(r.b, i)
	if !ok {
		return 0, r.syntax(i, "bad number")
	}
	n, ok := parseSmallInt(r.b[i:end])
	if !ok || n < lo || n > hi {
		return 0, r.typeErr(path, "an integer in ["+strconv.FormatInt(lo, 10)+", "+strconv.FormatInt(hi, 10)+"]")
	}
	*v = n
	return end, true
}

// skipValue checks the JSON value at i and returns the index after it.
func (r *ortbReader) skipValue(i int) (int, bool) {
	b := r.b
	r.stack = r.stack[:0]
	for {
		if i >= len(b) {
			return 0, r.syntax(i, "unexpected end")
		}
		// A value starts at i.
		switch c := b[i]; {
		case c == '{' || c == '[':
			if r.depth+len(r.stack) >= ortbMaxDepth {
				return 0, r.syntax(i, "nesting too deep")
			}
			r.stack = append(r.stack, c)
			i = jsonscan.SkipSpace(b, i+1)
			if i < len(b) && (c == '{' && b[i] == '}' || c == '[' && b[i] == ']') {
				r.stack = r.stack[:len(r.stack)-1]
				i++
				break
			}
			if c == '{' {
				_, v, ok := r.member(i)
				if !ok {
					return 0, false
				}
				i = v
			}
			continue
		case c == '"':
			end, _, ok := r.scanString(i + 1)
			if !ok {
				return 0, false
			}
			i = end + 1
		case c == '-' || c >= '0' && c <= '9':
			end, ok := jsonscan.Number(b, i)
			if !ok {
				return 0, r.syntax(i, "bad number")
			}
			i = end
		case jsonscan.HasWord(b, i, "true"):
			i += 4
		case jsonscan.HasWord(b, i, "false"):
			i += 5
		case jsonscan.HasWord(b, i, "null"):
			i += 4
		default:
			return 0, r.syntax(i, "unexpected character")
		}
		// A value ended before i: close what it ends.
		for {
			if len(r.stack) == 0 {
				return i, true
			}
			i = jsonscan.SkipSpace(b, i)
			if i >= len(b) {
				return 0, r.syntax(i, "unexpected end")
			}
			top := r.stack[len(r.stack)-1]
			switch {
			case b[i] == ',':
				i = jsonscan.SkipSpace(b, i+1)
				if top == '{' {
					_, v, ok := r.member(i)
					if !ok {
						return 0, false
					}
					i = v
				}
			case top == '{' && b[i] == '}' || top == '[' && b[i] == ']':
				r.stack = r.stack[:len(r.stack)-1]
				i++
				continue
			default:
				return 0, r.syntax(i, "expected ',' or a closing bracket")
			}
			break
		}
	}
}

// parseSmallInt reads a JSON integer (no fraction, no exponent) that fits
// an int64, as encoding/json does for an integer field; false otherwise.
func parseSmallInt(b []byte) (int64, bool) {
	neg := len(b) > 0 && b[0] == '-'
	if neg {
		b = b[1:]
	}
	if len(b) == 0 || len(b) > 19 {
		return 0, false
	}
	var n uint64 // 19 digits fit
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + uint64(c-'0')
	}
	switch {
	case neg && n <= 1<<63:
		return int64(-n), true
	case !neg && n < 1<<63:
		return int64(n), true
	}
	return 0, false
}
