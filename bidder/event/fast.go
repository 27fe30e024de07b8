package event

import (
	"github.com/bidpulse/bidpulse/internal/jsonscan"
	"github.com/bidpulse/bidpulse/windows"
)

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
	i := jsonscan.SkipSpace(b, 0)
	if i >= len(b) {
		return 0, false
	}
	n := 0
	maxTS := p.maxTS()
	switch b[i] {
	case '{':
		p.evs = p.evs[:0]
		p.evs = append(p.evs, Event{})
		j, ok := fastObject(b, i, &p.evs[0], maxTS)
		if !ok {
			return 0, false
		}
		i, n = j, 1
	case '[':
		p.evs = p.evs[:0]
		i = jsonscan.SkipSpace(b, i+1)
		if i < len(b) && b[i] == ']' {
			return 0, false // an empty array: rare, the general path counts it
		}
		for {
			if i >= len(b) || b[i] != '{' || n == maxFastEvents {
				return 0, false
			}
			p.evs = append(p.evs, Event{})
			j, ok := fastObject(b, i, &p.evs[n], maxTS)
			if !ok {
				return 0, false
			}
			n++
			i = jsonscan.SkipSpace(b, j)
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
			i = jsonscan.SkipSpace(b, i+1)
		}
	default:
		return 0, false
	}
	if jsonscan.SkipSpace(b, i) != len(b) {
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
		ev.Dims[windows.DimDevice] = Normal(p.device[:0], windows.DimDevice, ev.Dims[windows.DimDevice])
		ev.Dims[windows.DimCountry] = Normal(p.country[:0], windows.DimCountry, ev.Dims[windows.DimCountry])
		fn(ev, OK, nil)
		*ev = Event{} // drop the references to payload bytes
	}
}

// fastObject parses the object at b[i] == '{' into ev and returns the index after it; false
// when the object is not a valid event of the fast path's shape. maxTS is the latest accepted ts
// and click_ts (Parser.maxTS).
func fastObject(b []byte, i int, ev *Event, maxTS int64) (int, bool) {
	var seen, present uint16
	var clickTS int64
	i = jsonscan.SkipSpace(b, i+1)
	for {
		if i >= len(b) || b[i] != '"' {
			return 0, false // an empty object, a trailing comma, or not a key
		}
		end, ok := jsonscan.PlainString(b, i+1)
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
		if i, ok = jsonscan.Colon(b, end+1); !ok {
			return 0, false
		}
		switch c := b[i]; {
		case c == '"':
			end, ok := jsonscan.PlainString(b, i+1)
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
			case f >= fCampaign && f <= fSite:
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
			end, ok := jsonscan.Number(b, i)
			if !ok {
				return 0, false
			}
			num := b[i:end]
			i = end
			switch f {
			case -1:
			case fTS:
				if ev.TS, ok = parseTS(num); !ok || !tsInRange(ev.TS, maxTS) {
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
				if clickTS, ok = parseTS(num); !ok || !tsInRange(clickTS, maxTS) {
					return 0, false
				}
				present |= 1 << fClickTS
			default:
				return 0, false // a number where a string belongs
			}
		case c == 'n' && jsonscan.HasWord(b, i, "null"):
			i += 4 // null is an absent field
		case c == 't' && f < 0 && jsonscan.HasWord(b, i, "true"):
			i += 4
		case c == 'f' && f < 0 && jsonscan.HasWord(b, i, "false"):
			i += 5
		default:
			return 0, false // a nested object or array, or not JSON
		}
		next, closed, ok := jsonscan.AfterMember(b, i)
		if !ok {
			return 0, false
		}
		i = next
		if closed {
			break
		}
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
