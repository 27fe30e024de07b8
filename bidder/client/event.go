package client

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/bidpulse/bidpulse/bidder/event"
)

// EventType is an event's type.
type EventType uint8

// The event types (docs/EVENTS.md).
const (
	Impression EventType = iota + 1
	Click
	Conversion
)

var typeNames = [...]string{"", "impression", "click", "conversion"}

func (t EventType) String() string {
	if int(t) < len(typeNames) && t > 0 {
		return typeNames[t]
	}
	return "invalid"
}

// Event is one event as bidpulse ingests it (docs/EVENTS.md).
type Event struct {
	// ID is the producer's id, 1..128 bytes; bidpulse deduplicates on
	// (Type, ID), so a click may reuse its impression's id.
	ID   string
	Type EventType
	// TS is the event time in Unix milliseconds; 0 leaves it to the
	// stream's time.
	TS int64
	// Campaign is required; the others are optional (1..128 bytes each).
	Campaign, Creative, Placement, Device, Country, Site string
	// Cost and Value are money in account currency, 0..9e12.
	Cost, Value float64
	// ClickTS is a conversion's click time in Unix ms (0: none).
	ClickTS int64
}

// maxMoney is the largest cost or value bidpulse accepts.
const maxMoney = 9e12

// check refuses an event that bidpulse would dead-letter, so the producer
// learns at once.
func (ev *Event) check() error {
	if ev.Type < Impression || ev.Type > Conversion {
		return fmt.Errorf("bidpulse client: event %q: invalid type %d", ev.ID, ev.Type)
	}
	for _, f := range [...]struct {
		name, v  string
		required bool
	}{
		{"id", ev.ID, true}, {"campaign", ev.Campaign, true}, {"creative", ev.Creative, false},
		{"placement", ev.Placement, false}, {"device", ev.Device, false}, {"country", ev.Country, false},
		{"site", ev.Site, false},
	} {
		switch {
		case f.v == "" && f.required:
			return fmt.Errorf("bidpulse client: event %q: %s is required", ev.ID, f.name)
		case len(f.v) > event.MaxFieldLen:
			return fmt.Errorf("bidpulse client: event %q: %s longer than %d bytes", ev.ID, f.name, event.MaxFieldLen)
		case !utf8.ValidString(f.v):
			return fmt.Errorf("bidpulse client: event %q: %s is not valid UTF-8", ev.ID, f.name)
		}
	}
	for _, m := range [...]struct {
		name string
		v    float64
	}{{"cost", ev.Cost}, {"value", ev.Value}} {
		if math.IsNaN(m.v) || m.v < 0 || m.v > maxMoney {
			return fmt.Errorf("bidpulse client: event %q: %s %v outside 0..9e12", ev.ID, m.name, m.v)
		}
	}
	// bidpulse's own range: from MinTS to 24 h past its clock (this
	// clock here; a producer's clock far off is a reason to refuse too).
	maxTS := min(time.Now().UnixMilli()+event.MaxTSAhead, event.MaxTS)
	if ev.TS != 0 && (ev.TS < event.MinTS || ev.TS > maxTS) {
		return fmt.Errorf("bidpulse client: event %q: ts %d is not Unix milliseconds of this era (from %d to 24 h ahead of now)", ev.ID, ev.TS, event.MinTS)
	}
	if ev.ClickTS != 0 {
		if ev.Type != Conversion {
			return errors.New("bidpulse client: event " + strconv.Quote(ev.ID) + ": click_ts on a " + ev.Type.String())
		}
		if ev.ClickTS < event.MinTS || ev.ClickTS > maxTS {
			return fmt.Errorf("bidpulse client: event %q: click_ts %d is not Unix milliseconds of this era (from %d to 24 h ahead of now)", ev.ID, ev.ClickTS, event.MinTS)
		}
	}
	return nil
}

// AppendJSON appends ev as the JSON object bidpulse ingests. Money is
// written as the shortest decimal of the float, which bidpulse rounds to
// micros exactly.
func (ev *Event) AppendJSON(dst []byte) []byte {
	dst = append(dst, `{"id":`...)
	dst = event.AppendJSONString(dst, ev.ID)
	dst = append(dst, `,"type":"`...)
	dst = append(dst, ev.Type.String()...)
	dst = append(dst, '"')
	if ev.TS != 0 {
		dst = append(dst, `,"ts":`...)
		dst = strconv.AppendInt(dst, ev.TS, 10)
	}
	field := func(dst []byte, name, v string) []byte {
		if v == "" {
			return dst
		}
		dst = append(dst, name...)
		return event.AppendJSONString(dst, v)
	}
	dst = field(dst, `,"campaign":`, ev.Campaign)
	dst = field(dst, `,"creative":`, ev.Creative)
	dst = field(dst, `,"placement":`, ev.Placement)
	dst = field(dst, `,"device":`, ev.Device)
	dst = field(dst, `,"country":`, ev.Country)
	dst = field(dst, `,"site":`, ev.Site)
	if ev.Cost != 0 {
		dst = append(dst, `,"cost":`...)
		dst = strconv.AppendFloat(dst, ev.Cost, 'f', -1, 64)
	}
	if ev.Value != 0 {
		dst = append(dst, `,"value":`...)
		dst = strconv.AppendFloat(dst, ev.Value, 'f', -1, 64)
	}
	if ev.ClickTS != 0 {
		dst = append(dst, `,"click_ts":`...)
		dst = strconv.AppendInt(dst, ev.ClickTS, 10)
	}
	return append(dst, '}')
}
