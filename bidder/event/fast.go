package event

import "github.com/bidpulse/bidpulse/windows"

// The fast path: a single pass over the payload for the shape trackers send, an event object or
// an array of them whose values are plain strings (ASCII, no escapes), numbers, true, false or
// null. It accepts a payload only when the whole of it is strict JSON of that shape and every
// object in it is a valid event; anything else (a rejection, an escape, a non-ASCII byte, a
// nested value, a repeated known field, more than maxFastEvents objects) goes to the general
// path, which decides. So the fast path never rejects: for a payload it accepts it yields the
// events the general path would, which FuzzParse checks.

// fieldDims maps each dimension field to its dimension (the inverse of dimFields).
var fieldDims = func() (m [numFields]windows.Dim) {
	for d, f := range dimFields {
		m[f] = windows.Dim(d)
	}
	return m
}()

// maxFastEvents bounds the events the fast path holds before it hands them out (they are all
// checked first, so that a payload the general path must handle is not half applied). Larger
// arrays take the general path.
const maxFastEvents = 4096

// fastParse parses payload into p.evs on the fast path; false when the general path must.
func (p *Parser) fastParse(b []byte) (int, bool) {
	i := skipSpace(b, 0)
	if i >= len(b) {
		return 0, false
	}
	n := 0
	switch b[i] {
	case '{':
		p.evs = p.evs[:0]
		p.evs = append(p.evs, Event{})
		j, ok := fastObject(b, i, &p.evs[0])
		if !ok {
			return 0, false
		}
		i, n = j, 1
	case '[':
		p.evs = p.evs[:0]
		i = skipSpace(b, i+1)
		if i < len(b) && b[i] == ']' {
			return 0, false // an empty array: rare, the general path counts it
		}
		for {
			if i >= len(b) || b[i] != '{' || n == maxFastEvents {
				return 0, false
			}
			p.evs = append(p.evs, Event{})
			j, ok := fastObject(b, i, &p.evs[n])
			if !ok {
				return 0, false
			}
			n++
			i = skipSpace(b, j)
			if i >= len(b) {
				return 0, false
			}
			if b[i] == ']' {
				i++
				break
			}
			if b[i] != ',' {
				return 0, false
			}
			i = skipSpace(b, i+1)
		}
	default:
		return 0, false
	}
	if skipSpace(b, i) != len(b) {
		return 0, false
	}
	return n, true
}

// emitFast hands out the n events fastParse left in p.evs.
func (p *Parser) emitFast(n int, fn func(ev *Event, reason Reason, raw []byte)) {
	if p.BeforeEvents != nil && n > 1 {
		p.BeforeEvents(p.evs[:n])
	}
	for k := range p.evs[:n] {
		ev := &p.evs[k]
		ev.Dims[windows.DimDevice] = lowerASCII(p.device[:0], ev.Dims[windows.DimDevice])
		ev.Dims[windows.DimCountry] = upperASCII(p.country[:0], ev.Dims[windows.DimCountry])
		fn(ev, OK, nil)
		*ev = Event{} // drop the references to payload bytes
	}
}

// fastObject parses the object at b[i] == '{' into ev and returns the index after it; false
// when the object is not a valid event of the fast path's shape.
func fastObject(b []byte, i int, ev *Event) (int, bool) {
	var seen, present uint16
	var clickTS int64
	i = skipSpace(b, i+1)
	for {
		if i >= len(b) || b[i] != '"' {
			return 0, false // an empty object, a trailing comma, or not a key
		}
		end, ok := scanString(b, i+1)
		if !ok {
			return 0, false
		}
		f := fieldIndex(b[i+1 : end])
		if f >= 0 {
			if seen&(1<<f) != 0 {
				return 0, false
			}
			seen |= 1 << f
		}
		i = skipSpace(b, end+1)
		if i >= len(b) || b[i] != ':' {
			return 0, false
		}
		i = skipSpace(b, i+1)
		if i >= len(b) {
			return 0, false
		}
		switch c := b[i]; {
		case c == '"':
			end, ok := scanString(b, i+1)
			if !ok {
				return 0, false
			}
			s := b[i+1 : end : end]
			i = end + 1
			switch {
			case f < 0:
			case f == fID:
				ev.ID = s
			case f == fType:
				if ev.Type = ParseType(s); ev.Type == TypeNone {
					return 0, false
				}
			case f >= fCampaign && f <= fCountry:
				ev.Dims[fieldDims[f]] = s
			default:
				return 0, false // a string where a number belongs
			}
			if f >= 0 {
				present |= 1 << f
				if len(s) == 0 || len(s) > MaxFieldLen {
					return 0, false
				}
			}
		case c == '-' || c >= '0' && c <= '9':
			end, ok := scanNumber(b, i)
			if !ok {
				return 0, false
			}
			num := b[i:end]
			i = end
			switch f {
			case -1:
			case fTS:
				if ev.TS, ok = parseTS(num); !ok {
					return 0, false
				}
				ev.HasTS = true
			case fCost:
				if ev.CostMicros, ok = parseMicros(num); !ok {
					return 0, false
				}
			case fValue:
				if ev.ValueMicros, ok = parseMicros(num); !ok {
					return 0, false
				}
			case fClickTS:
				if clickTS, ok = parseTS(num); !ok {
					return 0, false
				}
				present |= 1 << fClickTS
			default:
				return 0, false // a number where a string belongs
			}
		case c == 'n' && hasWord(b, i, "null"):
			i += 4 // null is an absent field
		case c == 't' && f < 0 && hasWord(b, i, "true"):
			i += 4
		case c == 'f' && f < 0 && hasWord(b, i, "false"):
			i += 5
		default:
			return 0, false // a nested object or array, or not JSON
		}
		i = skipSpace(b, i)
		if i >= len(b) {
			return 0, false
		}
		if b[i] == '}' {
			break
		}
		if b[i] != ',' {
			return 0, false
		}
		i = skipSpace(b, i+1)
	}
	const required = 1<<fID | 1<<fType | 1<<fCampaign
	if present&required != required {
		return 0, false
	}
	if present&(1<<fClickTS) != 0 && ev.Type == Conversion {
		ev.ClickTS, ev.HasClickTS = clickTS, true
	}
	return i + 1, true
}

// scanString returns the index of the quote that closes the string whose contents start at b[i];
// false for an escape, a control character, a non-ASCII byte or no closing quote.
func scanString(b []byte, i int) (int, bool) {
	for ; i < len(b); i++ {
		if c := b[i]; !plainByte[c] {
			if c == '"' {
				return i, true
			}
			return 0, false
		}
	}
	return 0, false
}

// plainByte says which bytes a fast-path string holds as they are: ASCII,
// not a control character, not '"' or '\\'.
var plainByte = func() (t [256]bool) {
	for c := 0x20; c < 0x80; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// scanNumber returns the index after the strict JSON number that starts at b[i]
// (-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?); false when there is none.
func scanNumber(b []byte, i int) (int, bool) {
	if b[i] == '-' {
		i++
	}
	switch {
	case i >= len(b):
		return 0, false
	case b[i] == '0':
		i++
	case b[i] >= '1' && b[i] <= '9':
		i = skipDigits(b, i+1)
	default:
		return 0, false
	}
	if i < len(b) && b[i] == '.' {
		j := skipDigits(b, i+1)
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
		j := skipDigits(b, i)
		if j == i {
			return 0, false
		}
		i = j
	}
	return i, true
}

func skipDigits(b []byte, i int) int {
	for i < len(b) && b[i] >= '0' && b[i] <= '9' {
		i++
	}
	return i
}

// skipSpace returns the index of the first byte at or after i that is not JSON whitespace.
func skipSpace(b []byte, i int) int {
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

// hasWord reports whether b holds w at i.
func hasWord(b []byte, i int, w string) bool {
	return len(b)-i >= len(w) && string(b[i:i+len(w)]) == w
}
