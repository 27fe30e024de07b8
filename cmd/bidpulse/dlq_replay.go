package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/bidpulse/bidpulse/bidder/event"
	"github.com/bidpulse/bidpulse/bidder/ingest"
)

// Why replay skips a selected letter (dlqReplayReport.Skipped keys).
const (
	skipFieldsOnly = "fields_only" // its payload was not kept; --from-fields not given
	skipNoSubject  = "no_subject"  // the letter does not name the subject
	skipDLQSubject = "dlq_subject" // it names the DLQ's own subject: it would loop
	// skipWrongPartition: its event's campaign is not its subject's; sent to
	// the same subject it would be rejected again (the producer must send it
	// to its campaign's subject).
	skipWrongPartition = "wrong_partition"
)

// dlqReplayReport is what a replay did, printed as text or JSON.
type dlqReplayReport struct {
	DryRun bool `json:"dry_run"`
	// Selected letters: in the sequence range and of the reasons asked.
	Selected int `json:"selected"`
	// Replayed letters: published and acknowledged by the event stream
	// (with --dry-run: would be), Duplicates among them the ones the
	// stream had already stored (an earlier replay within its duplicate
	// window), so not stored again.
	Replayed   int            `json:"replayed"`
	Duplicates int            `json:"duplicates"`
	FromFields int            `json:"from_fields"`
	Skipped    map[string]int `json:"skipped"`
	Letters    []dlqReplayed  `json:"letters"`
}

type dlqReplayed struct {
	Seq     uint64 `json:"seq"`
	Reason  string `json:"reason"`
	Subject string `json:"subject,omitempty"`
	// Action: replayed, duplicate, would_replay, or skipped:<why>.
	Action string `json:"action"`
	MsgID  string `json:"msg_id,omitempty"`
	Stream string `json:"stream,omitempty"`
	// StreamSeq is the event stream's sequence of the stored message.
	StreamSeq uint64 `json:"stream_seq,omitempty"`
}

// replayMsgID is the Nats-Msg-Id of a replayed letter: its DLQ sequence and
// the start of its payload hash, so the same letter always has the same id
// (a second run is dropped by the event stream's duplicate window) and a
// letter of a re-created DLQ, whose sequences start again, does not take
// the id of another.
func replayMsgID(l *dlqLetter) string {
	id := "bidpulse-dlq-" + strconv.FormatUint(l.Seq, 10)
	if h, ok := strings.CutPrefix(l.Hash, "hmac-sha256:"); ok && len(h) >= 16 {
		id += "-" + h[:16]
	}
	return id
}

// dlqReplay republishes the selected letters to their subjects with a
// JetStream publish each, waiting for its acknowledgement before the next
// (so the order of the letters is kept). It stops at the first publish
// that fails, after printing what was done.
func dlqReplay(nc *nats.Conn, r *dlqReader, o *dlqOptions) error {
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	rep := dlqReplayReport{DryRun: o.dryRun, Skipped: map[string]int{}, Letters: []dlqReplayed{}}
	var pubErr error
	err = r.scan(o, func(l *dlqLetter) (bool, error) {
		rep.Selected++
		d := dlqReplayed{Seq: l.Seq, Reason: l.Reason, Subject: l.Subject}
		skip := ""
		switch {
		case l.Subject == "":
			skip = skipNoSubject
		case l.Subject == ingest.DLQSubject:
			skip = skipDLQSubject
		case l.Reason == event.WrongPartition.String():
			skip = skipWrongPartition
		case !l.raw() && !o.fromFields:
			skip = skipFieldsOnly
		}
		if skip != "" {
			rep.Skipped[skip]++
			d.Action = "skipped:" + skip
			rep.Letters = append(rep.Letters, d)
			return true, nil
		}
		body := l.data
		if !l.raw() {
			rep.FromFields++
		}
		d.MsgID = replayMsgID(l)
		if o.dryRun {
			rep.Replayed++
			d.Action = "would_replay"
			rep.Letters = append(rep.Letters, d)
			return true, nil
		}
		m := &nats.Msg{Subject: l.Subject, Data: body, Header: nats.Header{}}
		m.Header.Set(jetstream.MsgIDHeader, d.MsgID)
		ctx, cancel := context.WithTimeout(context.Background(), o.timeout)
		ack, err := js.PublishMsg(ctx, m)
		cancel()
		if err != nil {
			if errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, nats.ErrNoResponders) {
				err = fmt.Errorf("%w (no stream captures %s: is the service in JetStream mode, and the subject under its --subject?)", err, l.Subject)
			}
			pubErr = fmt.Errorf("cannot replay letter %d to %s: %w", l.Seq, l.Subject, err)
			return false, nil
		}
		rep.Replayed++
		d.Action, d.Stream, d.StreamSeq = "replayed", ack.Stream, ack.Sequence
		if ack.Duplicate {
			rep.Duplicates++
			d.Action = "duplicate"
		}
		rep.Letters = append(rep.Letters, d)
		return true, nil
	})
	if err != nil {
		return err
	}
	if o.jsonOut {
		if err := writeJSONTo(o.out, rep); err != nil {
			return err
		}
	} else {
		fmt.Fprint(o.out, rep.text())
	}
	return pubErr
}

func (rep *dlqReplayReport) text() string {
	var b strings.Builder
	for _, d := range rep.Letters {
		fmt.Fprintf(&b, "%-6d %-14s %-24s %s", d.Seq, d.Reason, d.Subject, strings.ReplaceAll(d.Action, "_", " "))
		if d.StreamSeq != 0 {
			fmt.Fprintf(&b, " (%s seq %d)", d.Stream, d.StreamSeq)
		}
		b.WriteString("\n")
	}
	verb := "replayed"
	if rep.DryRun {
		verb = "would replay (dry run)"
	}
	fmt.Fprintf(&b, "selected %d; %s %d", rep.Selected, verb, rep.Replayed)
	if rep.FromFields > 0 {
		fmt.Fprintf(&b, " (%d from their known fields)", rep.FromFields)
	}
	if rep.Duplicates > 0 {
		fmt.Fprintf(&b, ", of which %d already in the event stream (an earlier replay: dropped as duplicates)", rep.Duplicates)
	}
	skipped := 0
	for _, n := range rep.Skipped {
		skipped += n
	}
	fmt.Fprintf(&b, "; skipped %d\n", skipped)
	if n := rep.Skipped[skipFieldsOnly]; n > 0 {
		fmt.Fprintf(&b, "  %d fields-only letters: their payload was not kept (serve --dlq-raw keeps it); --from-fields publishes their known fields, without the fields outside the schema\n", n)
	}
	if n := rep.Skipped[skipNoSubject]; n > 0 {
		fmt.Fprintf(&b, "  %d letters without Bidpulse-Subject: the subject they came on is unknown\n", n)
	}
	if n := rep.Skipped[skipDLQSubject]; n > 0 {
		fmt.Fprintf(&b, "  %d letters whose subject is %s: replaying them would loop\n", n, ingest.DLQSubject)
	}
	return b.String()
}
