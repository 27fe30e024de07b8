package ingest

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"hash"
	"strconv"

	"github.com/nats-io/nats.go"

	"github.com/bidpulse/bidpulse/bidder/event"
)

// Headers of a dead letter, besides RejectHeader and Nats-Msg-Id.
const (
	// SubjectHeader names the subject the rejected payload came on.
	SubjectHeader = "Bidpulse-Subject"
	// PayloadHashHeader holds the keyed hash of the rejected payload,
	// "hmac-sha256:<64 hex digits>" (see payloadHasher).
	PayloadHashHeader = "Bidpulse-Payload-Hash"
	// PayloadBytesHeader holds the length of the rejected payload.
	PayloadBytesHeader = "Bidpulse-Payload-Bytes"
	// BodyHeader says what the body is: BodyFields or BodyRaw.
	BodyHeader = "Bidpulse-Body"
	// RawOmittedHeader, on a letter whose payload was asked for
	// (Options.DLQRaw), says why the body holds the known fields instead:
	// the payload and the letter's headers would pass the largest message
	// the server takes, and a letter that cannot be stored would hold up
	// the acknowledgement of its message for ever.
	RawOmittedHeader = "Bidpulse-Raw-Omitted"
)

// letterHeaderRoom is what a letter's headers may take, counted against the
// server's max payload with its body.
const letterHeaderRoom = 4 << 10

// Values of BodyHeader.
const (
	// BodyFields: the body is a JSON object of the event's known fields
	// (event.Parser.AppendKnown), {} when none could be read.
	BodyFields = "fields"
	// BodyRaw: the body is the rejected payload verbatim (Options.DLQRaw).
	BodyRaw = "raw"
)

// DeadLetter is a rejected event on its way to the DLQ. It keeps what the
// parser could read of the event, never the fields outside the schema
// (user ids, IP addresses: personal data a producer may add), unless
// Options.DLQRaw asks for the payload itself. Letters still queued are
// saved, in this form, in each checkpoint.
type DeadLetter struct {
	Seq     uint64       `json:"seq"` // stream sequence of its message (0: core mode)
	Index   int          `json:"index"`
	Subject string       `json:"subject,omitempty"`
	Reason  event.Reason `json:"reason"`
	// Fields holds the event's known fields, a JSON object.
	Fields json.RawMessage `json:"fields,omitempty"`
	// Hash is the keyed hash of the rejected payload (PayloadHashHeader).
	Hash string `json:"hash,omitempty"`
	// Size is the length of the rejected payload, in bytes.
	Size int `json:"size,omitempty"`
	// Data is the rejected payload itself, kept only with Options.DLQRaw
	// (nil otherwise). A checkpoint of an earlier bidpulse holds it in every
	// letter, without Fields nor Hash: see upgradeLetters.
	Data []byte `json:"data,omitempty"`
}

// bytes is what the letter holds in memory, for the queue's bound.
func (l *DeadLetter) bytes() int {
	return len(l.Fields) + len(l.Data) + len(l.Subject) + len(l.Hash)
}

// msg encodes the letter as its DLQ message (without Nats-Msg-Id), whose
// headers and body must fit in maxPayload bytes (0: no limit).
func (l *DeadLetter) msg(maxPayload int64) *nats.Msg {
	m := &nats.Msg{Subject: DLQSubject, Header: nats.Header{}}
	m.Header.Set(RejectHeader, event.ReasonNames[l.Reason])
	if l.Subject != "" {
		m.Header.Set(SubjectHeader, l.Subject)
	}
	m.Header.Set(PayloadHashHeader, l.Hash)
	m.Header.Set(PayloadBytesHeader, strconv.Itoa(l.Size))
	tooLarge := maxPayload > 0 && int64(len(l.Data)+letterHeaderRoom) > maxPayload
	switch {
	case l.Data != nil && !tooLarge:
		m.Header.Set(BodyHeader, BodyRaw)
		m.Data = l.Data
	case len(l.Fields) > 0:
		m.Header.Set(BodyHeader, BodyFields)
		m.Data = l.Fields
	default:
		m.Header.Set(BodyHeader, BodyFields)
		m.Data = []byte("{}")
	}
	if l.Data != nil && tooLarge {
		m.Header.Set(RawOmittedHeader, "payload of "+strconv.Itoa(len(l.Data))+" bytes: with the letter's headers it passes the server's max payload of "+
			strconv.FormatInt(maxPayload, 10)+" bytes")
	}
	return m
}

// payloadHasher computes the keyed hash of rejected payloads: HMAC-SHA256
// under a secret key (the service keeps it in its data dir). A plain
// SHA-256 would not do: an event is small and mostly known (its known
// fields are in the same letter), so the personal data it carries (an IPv4
// address: 2^32 values; a user id of a known shape) could be found again by
// hashing every guess. Without the key the guesses cannot be checked. The
// hash still tells identical payloads apart from different ones, under one
// key. Not safe for concurrent use.
type payloadHasher struct {
	mac hash.Hash
	sum []byte
}

// hashPrefix names the hash function in PayloadHashHeader and DeadLetter.Hash.
const hashPrefix = "hmac-sha256:"

// DLQKeySize is the length of the payload hash key, in bytes.
const DLQKeySize = 32

func newPayloadHasher(key []byte) *payloadHasher {
	return &payloadHasher{mac: hmac.New(sha256.New, key)}
}

// hash returns the keyed hash of raw, "hmac-sha256:<hex>".
func (h *payloadHasher) hash(raw []byte) string {
	h.mac.Reset()
	h.mac.Write(raw)
	h.sum = h.mac.Sum(h.sum[:0])
	return hashPrefix + hex.EncodeToString(h.sum)
}

// newDLQKey returns a random key: the hashes of a process that is never
// given one (tests) are keyed all the same.
func newDLQKey() []byte {
	k := make([]byte, DLQKeySize)
	rand.Read(k)
	return k
}

// upgradeLetters brings letters read from a checkpoint to what this
// process keeps: a letter of an earlier bidpulse (the payload in Data, no
// Hash) gets its known fields (by parsing the payload again), its hash and
// its size; the payload is then kept only when keepRaw is set, as it is
// dropped from any letter when keepRaw is not (the setting of the running
// process decides, whatever the one that queued the letter).
func upgradeLetters(ls []DeadLetter, h *payloadHasher, keepRaw bool) {
	var p event.Parser
	for i := range ls {
		l := &ls[i]
		if l.Hash == "" {
			l.Hash, l.Size = h.hash(l.Data), len(l.Data)
			l.Fields = nil
			p.Parse(l.Data, func(ev *event.Event, reason event.Reason, _ []byte) {
				switch {
				case l.Fields != nil:
				case reason != event.OK:
					l.Fields = p.AppendKnown(nil)
				default: // valid by today's rules: its fields are all known
					l.Fields = event.AppendJSON(nil, ev)
				}
			})
			if l.Fields == nil {
				l.Fields = json.RawMessage("{}")
			}
		}
		if !keepRaw {
			l.Data = nil
		}
	}
}
