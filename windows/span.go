package windows

import (
	"strconv"
	"time"
)

// Span is one of the fixed read windows. A span is the current (partial)
// bucket plus the whole buckets before it, in the resolution that serves it.
type Span uint8

// The spans served by every Store.
const (
	Span1m Span = iota
	Span5m
	Span15m
	Span1h
	Span24h
	NumSpans
)

// SpanNames holds the name of every span as used in APIs and config.
var SpanNames = [NumSpans]string{"1m", "5m", "15m", "1h", "24h"}

var spanDurations = [NumSpans]time.Duration{time.Minute, 5 * time.Minute, 15 * time.Minute, time.Hour, 24 * time.Hour}

// ParseSpan returns the span named s ("1m", "5m", "15m", "1h" or "24h").
func ParseSpan(s string) (Span, bool) {
	for i, name := range SpanNames {
		if s == name {
			return Span(i), true
		}
	}
	return 0, false
}

// String returns the span's name.
func (s Span) String() string {
	if s < NumSpans {
		return SpanNames[s]
	}
	return "Span(" + strconv.Itoa(int(s)) + ")"
}

// Duration returns the span's length; 0 for an invalid span.
func (s Span) Duration() time.Duration {
	if s < NumSpans {
		return spanDurations[s]
	}
	return 0
}
