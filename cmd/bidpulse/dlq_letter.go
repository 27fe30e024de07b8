package main

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/bidpulse/bidpulse/bidder/event"
	"github.com/bidpulse/bidpulse/bidder/ingest"
)

// dlqLetter is a dead letter as read from BIDPULSE_DLQ (docs/EVENTS.md,
// "Dead letters"), in the form dlq prints it.
type dlqLetter struct {
	Seq     uint64    `json:"seq"`
	Time    time.Time `json:"time"`
	Reason  string    `json:"reason"`
	Subject string    `json:"subject,omitempty"`
	// Body is the Bidpulse-Body header: "fields", "raw", or "raw" for a
	// letter of an earlier bidpulse, which has no such header and whose
	// body is the payload (Legacy then).
	Body         string `json:"body"`
	Legacy       bool   `json:"legacy,omitempty"`
	Hash         string `json:"payload_hash,omitempty"`
	PayloadBytes int    `json:"payload_bytes,omitempty"`
	RawOmitted   string `json:"raw_omitted,omitempty"`
	MsgID        string `json:"msg_id,omitempty"`
	// Fields is the body of a fields letter (a JSON object).
	Fields json.RawMessage `json:"fields,omitempty"`
	// Payload is the body of a raw letter, which may not be JSON (a
	// bad_json payload), hence a string.
	Payload string `json:"payload,omitempty"`

	data []byte
}

func decodeLetter(m *jetstream.RawStreamMsg) *dlqLetter {
	l := &dlqLetter{Seq: m.Sequence, Time: m.Time.UTC(), data: m.Data}
	h := m.Header
	l.Reason = h.Get(ingest.RejectHeader)
	l.Subject = h.Get(ingest.SubjectHeader)
	l.Hash = h.Get(ingest.PayloadHashHeader)
	l.PayloadBytes, _ = strconv.Atoi(h.Get(ingest.PayloadBytesHeader))
	l.RawOmitted = h.Get(ingest.RawOmittedHeader)
	l.MsgID = h.Get("Nats-Msg-Id")
	switch l.Body = h.Get(ingest.BodyHeader); l.Body {
	case ingest.BodyFields:
		if json.Valid(m.Data) {
			l.Fields = json.RawMessage(m.Data)
		} else { // never written so; shown rather than hidden
			l.Payload = string(m.Data)
		}
	case "":
		l.Body, l.Legacy = ingest.BodyRaw, true
		fallthrough
	default:
		l.Payload = string(m.Data)
		if l.PayloadBytes == 0 {
			l.PayloadBytes = len(m.Data)
		}
	}
	return l
}

// raw reports whether the letter holds the payload as it was published.
func (l *dlqLetter) raw() bool { return l.Body == ingest.BodyRaw }

// line is the letter on one line, its body cut to 120 characters.
func (l *dlqLetter) line() string {
	body := string(l.data)
	if len(body) > 120 {
		cut := 117
		for cut > 0 && !utf8.RuneStart(body[cut]) {
			cut--
		}
		body = body[:cut] + "..."
	}
	return fmt.Sprintf("%-6d %s  %-14s %-24s %-6s %6d B  %s", l.Seq, l.Time.Format(time.RFC3339), l.Reason, l.Subject, l.Body, l.PayloadBytes, escapeControls(body))
}

// escapeControls writes the control bytes of s (a bad_json payload may hold
// line breaks, escape sequences) as \xNN, so a letter stays on its line and
// cannot drive the terminal; the rest, quotes included, is left as it is.
func escapeControls(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == 0x7f {
			fmt.Fprintf(&b, "\\x%02x", c)
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// text is the letter in full, with what replay can do with it.
func (l *dlqLetter) text() string {
	var b strings.Builder
	fmt.Fprintf(&b, "letter    %d, stored %s\n", l.Seq, l.Time.Format(time.RFC3339Nano))
	fmt.Fprintf(&b, "reason    %s\n", l.Reason)
	fmt.Fprintf(&b, "subject   %s\n", orNone(l.Subject))
	fmt.Fprintf(&b, "payload   %d bytes, %s\n", l.PayloadBytes, orNone(l.Hash))
	switch {
	case l.Legacy:
		b.WriteString("body      raw: the payload (a letter of an earlier bidpulse, without Bidpulse-Body)\n")
	case l.raw():
		b.WriteString("body      raw: the payload as it was published (serve --dlq-raw)\n")
	default:
		b.WriteString("body      fields: the event's known fields; the payload was not kept (serve --dlq-raw keeps it)\n")
	}
	if l.RawOmitted != "" {
		fmt.Fprintf(&b, "raw omitted: %s\n", l.RawOmitted)
	}
	if l.MsgID != "" {
		fmt.Fprintf(&b, "msg id    %s\n", l.MsgID)
	}
	switch {
	case l.Subject == "":
		b.WriteString("replay    no: the letter does not say which subject the event came on\n")
	case l.raw():
		b.WriteString("replay    yes, as it was: bidpulse dlq replay --from-seq " + strconv.FormatUint(l.Seq, 10) + " --to-seq " + strconv.FormatUint(l.Seq, 10) + "\n")
	default:
		b.WriteString("replay    only its known fields, with --from-fields (fields outside the schema are gone)\n")
	}
	b.WriteString("\n")
	if l.Fields != nil {
		var out []byte
		if ind, err := json.MarshalIndent(l.Fields, "", "  "); err == nil {
			out = ind
		} else {
			out = l.Fields
		}
		b.Write(out)
	} else {
		b.WriteString(l.Payload)
	}
	b.WriteString("\n")
	return b.String()
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

func knownReason(r string) bool {
	for _, n := range event.ReasonNames[1:] {
		if r == n {
			return true
		}
	}
	return false
}

func reasonNames() []string { return event.ReasonNames[1:] }
