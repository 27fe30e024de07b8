// Package event is the bidpulse event wire format: the JSON payloads that trackers publish under
// bidpulse.events.>, their validation and normalisation (Parser), and their encoding (AppendJSON).
//
// The package is shared by the bidder (ingest), `bidpulse publish` and the bench suite, so every
// producer and the consumer agree on one definition of a valid event.
package event

import "github.com/bidpulse/bidpulse/windows"

// Type is the kind of an event.
type Type uint8

// Event types. TypeNone is the zero value and never the type of a valid event.
const (
	TypeNone Type = iota
	Impression
	Click
	Conversion
	NumTypes
)

var typeNames = [NumTypes]string{"", "impression", "click", "conversion"}

// String returns the wire name of t ("impression", "click", "conversion"), or "" for TypeNone
// and out-of-range values.
func (t Type) String() string {
	if t >= NumTypes {
		return ""
	}
	return typeNames[t]
}

// ParseType returns the Type whose wire name is exactly s (case-sensitive), or TypeNone.
func ParseType(s []byte) Type {
	switch string(s) {
	case "impression":
		return Impression
	case "click":
		return Click
	case "conversion":
		return Conversion
	}
	return TypeNone
}

// Reason says why an event was rejected; OK for a valid event. The names in ReasonNames are
// part of the contract: they appear in /v1/stats and in the Bidpulse-Reject-Reason header of
// dead-lettered payloads.
type Reason uint8

// Reject reasons, in the fixed order of DESIGN.md. The values are stable (a checkpoint's queued dead
// letters hold them as numbers): a new reason goes last.
const (
	OK Reason = iota
	BadJSON
	NotObject
	BadID
	BadType
	BadCampaign
	BadDimension
	FieldTooLong
	BadTS
	BadMoney
	BadClickTS
	// WrongPartition is not the Parser's: a consumer of a partitioned stream gives it to a valid
	// event whose campaign is not the one its message's subject names (bidpulse.events.<campaign>.
	// <rest>), so that no event is applied by the owner of another campaign's partition.
	WrongPartition
	NumReasons
)

// ReasonNames holds the wire name of every Reason; OK has the empty name.
var ReasonNames = [NumReasons]string{"", "bad_json", "not_object", "bad_id", "bad_type", "bad_campaign", "bad_dimension", "field_too_long", "bad_ts", "bad_money", "bad_click_ts", "wrong_partition"}

// String returns the wire name of r ("" for OK and out-of-range values).
func (r Reason) String() string {
	if r >= NumReasons {
		return ""
	}
	return ReasonNames[r]
}

// MaxFieldLen is the maximum length in bytes (after JSON unescaping) of id, campaign, creative,
// placement, device, country and site.
const MaxFieldLen = 128

// MaxMoney is the largest accepted cost or value, in account currency units.
const MaxMoney = 9e12

// maxMoneyMicros is MaxMoney in micros; it fits uint64 (and int64) with room to spare.
const maxMoneyMicros = uint64(MaxMoney * 1e6)

// The accepted range of ts and click_ts: Unix milliseconds of this era. A time in another unit is
// a plausible producer mistake that no later check would name: in seconds (1.7e9 in 2026) it
// would count as late, in microseconds (1.7e15) or nanoseconds (1.7e18) as future, both only
// counted in the stats. Outside the range it is rejected (bad_ts, bad_click_ts) and so
// dead-lettered.
const (
	// MinTS is the earliest accepted time: 1e12 ms, 2001-09-09T01:46:40Z. Every Unix-ms time
	// since then has 13 digits; a time in seconds has at most 10 until the year 2286, so it falls
	// below, as do 0 and small counters.
	MinTS = 1_000_000_000_000
	// MaxTSAhead is how far past the consumer's clock (Parser.NowMs) a time may be: 24 h, past
	// any time-zone mistake (at most 14 h) or clock skew. A time ahead by less is valid here; the
	// ingest counts it as future when it is more than 5 s ahead.
	MaxTSAhead = 24 * 3600 * 1000
	// MaxTS is the latest accepted time for a Parser without a clock (NowMs 0), and the cap of
	// NowMs + MaxTSAhead: 9999999999999 ms, 2286-11-20T17:46:39.999Z, the last 13-digit time.
	// Microseconds and nanoseconds of this era are above it.
	MaxTS = 9_999_999_999_999
)

// Event is one parsed and validated event.
//
// An Event handed out by Parser.Parse borrows its byte slices from the Parser: they are valid only
// during the callback. Copy what must outlive it.
type Event struct {
	// ID is the producer's event id, 1..MaxFieldLen bytes of UTF-8. The dedup key is (Type, ID).
	ID []byte
	// Type is Impression, Click or Conversion.
	Type Type
	// TS is the event time in Unix milliseconds, in [MinTS, NowMs+MaxTSAhead] (see Parser.NowMs);
	// valid only when HasTS. When absent the consumer uses the JetStream message time, else the
	// receive time.
	TS    int64
	HasTS bool
	// Dims holds campaign (always present) and the optional creative, placement, device,
	// country and site (nil when absent), each 1..MaxFieldLen bytes of UTF-8. country is upper-cased and
	// device lower-cased (ASCII letters only); the others are kept as sent.
	Dims windows.Values
	// CostMicros is the spend of this event in micro units of the account currency:
	// round(cost*1e6), half away from zero, computed exactly from the decimal text. 0 when absent.
	CostMicros uint64
	// ValueMicros is the conversion value in micro units, like CostMicros.
	ValueMicros uint64
	// ClickTS is the Unix ms time of the click a conversion is attributed to, in the range of TS;
	// valid only when HasClickTS, which is never set for impressions and clicks.
	ClickTS    int64
	HasClickTS bool
}

// Reset clears ev, dropping its references to borrowed bytes.
func (ev *Event) Reset() {
	*ev = Event{}
}
