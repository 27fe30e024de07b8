package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/bidpulse/bidpulse/bidder/ingest"
	"github.com/bidpulse/bidpulse/bidder/natsauth"
)

const dlqSynopsis = `Usage: bidpulse dlq <count|tail|show SEQ|replay> [flags]

Reads the dead letters of the stream BIDPULSE_DLQ (docs/EVENTS.md).

  count         letters held, by reason (by reading each of them)
  tail          the last --n letters, one line each
  show SEQ      one letter: its reason, subject, payload size and hash, body
  replay        republish selected letters to the subject they came on,
                acknowledged by the event stream, after a fix

count, tail and show only read the stream by sequence: with the embedded
server's --nats-auth, the monitor user (--nats-nkey DATA/nats-auth/monitor.nk)
may run them. replay also publishes events: the service's user (bidpulse.nk).

Replay republishes a letter's payload as it was, which only a letter stored
with serve --dlq-raw holds (Bidpulse-Body: raw). A letter of the default form
holds only the event's known fields: fields outside the schema are gone, so
it is skipped unless --from-fields asks to publish those fields as the event.
Each replayed letter carries the Nats-Msg-Id "bidpulse-dlq-<seq>-<hash>"
(its DLQ sequence and payload hash), so a second replay within the event
stream's duplicate window (serve --stream-duplicates, 2 min) is dropped by
the stream and reported as a duplicate; later, bidpulse's (type, id) dedup
counts the events as duplicate.

Examples:
  bidpulse dlq count
  bidpulse dlq tail --n 20 --reason bad_ts
  bidpulse dlq show 42
  bidpulse dlq replay --reason bad_ts --from-seq 100 --to-seq 200 --dry-run
  bidpulse dlq replay --reason bad_ts --from-seq 100 --to-seq 200`

type dlqOptions struct {
	natsURL    string
	auth       *natsauth.Config
	stream     string
	jsonOut    bool
	n          int
	reasons    string
	fromSeq    uint64
	toSeq      uint64
	dryRun     bool
	fromFields bool
	timeout    time.Duration

	reasonSet map[string]bool
	out       io.Writer
}

func runDLQ(args []string) error { return runDLQTo(args, os.Stdout) }

// runDLQTo runs the dlq command, its report written to out.
func runDLQTo(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("dlq", flag.ContinueOnError)
	fs.Usage = usageWithEnv(fs, dlqSynopsis)
	var o dlqOptions
	fs.StringVar(&o.natsURL, "nats-url", "nats://127.0.0.1:4222", "NATS server URLs, comma-separated: the embedded server of bidpulse serve by default")
	o.auth = natsClientFlags(fs)
	fs.StringVar(&o.stream, "stream", ingest.DLQStream, "the dead-letter stream")
	fs.BoolVar(&o.jsonOut, "json", false, "print JSON instead of text")
	fs.IntVar(&o.n, "n", 10, "tail: how many letters")
	fs.StringVar(&o.reasons, "reason", "", "tail, count, replay: only letters of these reasons, comma-separated (e.g. bad_ts,bad_money; empty: all)")
	fs.Uint64Var(&o.fromSeq, "from-seq", 0, "count, replay: first DLQ sequence (0: the stream's first)")
	fs.Uint64Var(&o.toSeq, "to-seq", 0, "count, replay: last DLQ sequence (0: the stream's last)")
	fs.BoolVar(&o.dryRun, "dry-run", false, "replay: say what would be replayed and skipped, publish nothing")
	fs.BoolVar(&o.fromFields, "from-fields", false, "replay: publish a fields-only letter's known fields as its event (fields outside the schema are lost)")
	fs.DurationVar(&o.timeout, "timeout", 10*time.Second, "time for each NATS request (a read, a publish's acknowledgement)")
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "-help") {
			fs.SetOutput(os.Stderr)
			fs.Usage()
			return nil
		}
		return errors.New("want an action: count, tail, show SEQ or replay (bidpulse dlq -h)")
	}
	action := args[0]
	// Flags may come before and after show's SEQ.
	var pos []string
	for rest := args[1:]; ; {
		if err := fs.Parse(rest); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil
			}
			return err
		}
		if fs.NArg() == 0 {
			break
		}
		pos, rest = append(pos, fs.Arg(0)), fs.Args()[1:]
	}
	var showSeq uint64
	if action == "show" {
		if len(pos) != 1 {
			return errors.New("show wants one letter's sequence: bidpulse dlq show SEQ")
		}
		n, err := strconv.ParseUint(pos[0], 10, 64)
		if err != nil || n == 0 {
			return fmt.Errorf("invalid sequence %q: want a positive integer", pos[0])
		}
		showSeq = n
	} else if len(pos) > 0 {
		return fmt.Errorf("unexpected argument %q", pos[0])
	}
	if err := applyEnv(fs); err != nil {
		return err
	}
	switch action {
	case "count", "tail", "show", "replay":
	default:
		return fmt.Errorf("unknown action %q: want count, tail, show SEQ or replay", action)
	}
	if o.n < 1 {
		return fmt.Errorf("invalid --n %d: must be positive", o.n)
	}
	if o.toSeq != 0 && o.fromSeq > o.toSeq {
		return fmt.Errorf("invalid --from-seq %d: past --to-seq %d", o.fromSeq, o.toSeq)
	}
	if o.reasonSet, o.reasons = map[string]bool{}, strings.TrimSpace(o.reasons); o.reasons != "" {
		for _, r := range strings.Split(o.reasons, ",") {
			r = strings.TrimSpace(r)
			if !knownReason(r) {
				return fmt.Errorf("invalid --reason %q: want one of %s", r, strings.Join(reasonNames(), ", "))
			}
			o.reasonSet[r] = true
		}
	}
	o.out = out
	for _, w := range natsSecretWarnings(args, o.natsURL) {
		fmt.Fprintf(os.Stderr, "warning: %s\n", w)
	}
	if err := o.auth.CheckURL(o.natsURL); err != nil {
		return err
	}
	authOpts, err := o.auth.Options()
	if err != nil {
		return err
	}
	nc, err := nats.Connect(o.natsURL, append(authOpts, nats.Name("bidpulse dlq"))...)
	if err != nil {
		return fmt.Errorf("cannot connect to NATS at %s (is `bidpulse serve` running?): %w", natsauth.Redact(o.natsURL), err)
	}
	defer nc.Close()
	r, err := openDLQ(nc, o.stream, o.timeout)
	if err != nil {
		return err
	}
	switch action {
	case "count":
		return dlqCount(r, &o)
	case "tail":
		return dlqTail(r, &o)
	case "show":
		return dlqShow(r, &o, showSeq)
	default:
		return dlqReplay(nc, r, &o)
	}
}

// dlqReader reads a dead-letter stream by sequence only (STREAM.INFO and
// STREAM.MSG.GET): no consumer, so a read-only user may use it.
type dlqReader struct {
	stream  jetstream.Stream
	name    string
	timeout time.Duration
}

func openDLQ(nc *nats.Conn, name string, timeout time.Duration) (*dlqReader, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	s, err := js.Stream(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("cannot open the dead-letter stream %s (JetStream mode only: in core mode letters are only published on %s): %w", name, ingest.DLQSubject, err)
	}
	return &dlqReader{stream: s, name: name, timeout: timeout}, nil
}

// bounds returns the stream's first and last sequences and its letters.
func (r *dlqReader) bounds() (first, last, msgs uint64, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), r.timeout)
	defer cancel()
	info, err := r.stream.Info(ctx)
	if err != nil {
		return 0, 0, 0, fmt.Errorf("cannot read stream %s: %w", r.name, err)
	}
	return info.State.FirstSeq, info.State.LastSeq, info.State.Msgs, nil
}

// next returns the first letter at or after seq, nil past the last.
func (r *dlqReader) next(seq uint64) (*dlqLetter, error) {
	ctx, cancel := context.WithTimeout(context.Background(), r.timeout)
	defer cancel()
	m, err := r.stream.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(ingest.DLQSubject))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("cannot read letter %d of %s: %w", seq, r.name, err)
	}
	return decodeLetter(m), nil
}

// get returns the letter at seq exactly, nil when there is none.
func (r *dlqReader) get(seq uint64) (*dlqLetter, error) {
	ctx, cancel := context.WithTimeout(context.Background(), r.timeout)
	defer cancel()
	m, err := r.stream.GetMsg(ctx, seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("cannot read letter %d of %s: %w", seq, r.name, err)
	}
	return decodeLetter(m), nil
}

// scan calls fn with each letter of sequence from..to (0: the stream's
// bounds) matching o's reasons, in order; fn returns false to stop.
func (r *dlqReader) scan(o *dlqOptions, fn func(*dlqLetter) (bool, error)) error {
	first, last, _, err := r.bounds()
	if err != nil {
		return err
	}
	from, to := max(o.fromSeq, first), last
	if o.toSeq != 0 {
		to = min(o.toSeq, last)
	}
	for seq := from; seq <= to && seq != 0; {
		l, err := r.next(seq)
		if err != nil {
			return err
		}
		if l == nil || l.Seq > to {
			return nil
		}
		seq = l.Seq + 1
		if len(o.reasonSet) > 0 && !o.reasonSet[l.Reason] {
			continue
		}
		if more, err := fn(l); err != nil || !more {
			return err
		}
	}
	return nil
}

func dlqCount(r *dlqReader, o *dlqOptions) error {
	first, last, msgs, err := r.bounds()
	if err != nil {
		return err
	}
	byReason := map[string]uint64{}
	var n uint64
	err = r.scan(o, func(l *dlqLetter) (bool, error) {
		byReason[l.Reason]++
		n++
		return true, nil
	})
	if err != nil {
		return err
	}
	if o.jsonOut {
		return writeJSONTo(o.out, map[string]any{"stream": r.name, "letters": msgs, "first_seq": first, "last_seq": last,
			"counted": n, "by_reason": byReason})
	}
	fmt.Fprintf(o.out, "%s: %d letters (sequences %d..%d)\n", r.name, msgs, first, last)
	if len(o.reasonSet) > 0 || o.fromSeq != 0 || o.toSeq != 0 {
		fmt.Fprintf(o.out, "selected: %d\n", n)
	}
	reasons := make([]string, 0, len(byReason))
	for k := range byReason {
		reasons = append(reasons, k)
	}
	sort.Slice(reasons, func(i, j int) bool {
		return byReason[reasons[i]] > byReason[reasons[j]] || byReason[reasons[i]] == byReason[reasons[j]] && reasons[i] < reasons[j]
	})
	for _, k := range reasons {
		fmt.Fprintf(o.out, "  %-16s %d\n", k, byReason[k])
	}
	return nil
}

// dlqTail prints the last o.n letters (of o's reasons), oldest first. It
// walks back from the stream's last sequence, one exact read each.
func dlqTail(r *dlqReader, o *dlqOptions) error {
	first, last, _, err := r.bounds()
	if err != nil {
		return err
	}
	var ls []*dlqLetter
	for seq := last; seq >= first && seq != 0 && len(ls) < o.n; seq-- {
		l, err := r.get(seq)
		if err != nil {
			return err
		}
		if l != nil && (len(o.reasonSet) == 0 || o.reasonSet[l.Reason]) {
			ls = append(ls, l)
		}
	}
	for i, j := 0, len(ls)-1; i < j; i, j = i+1, j-1 {
		ls[i], ls[j] = ls[j], ls[i]
	}
	if o.jsonOut {
		if ls == nil {
			ls = []*dlqLetter{}
		}
		return writeJSONTo(o.out, ls)
	}
	if len(ls) == 0 {
		fmt.Fprintf(o.out, "no letters in %s\n", r.name)
	}
	for _, l := range ls {
		fmt.Fprintln(o.out, l.line())
	}
	return nil
}

func dlqShow(r *dlqReader, o *dlqOptions, seq uint64) error {
	l, err := r.get(seq)
	if err != nil {
		return err
	}
	if l == nil {
		first, last, _, _ := r.bounds()
		return fmt.Errorf("no letter %d in %s (it holds %d..%d; letters older than 7 days or past --dlq-max-bytes are dropped)", seq, r.name, first, last)
	}
	if o.jsonOut {
		return writeJSONTo(o.out, l)
	}
	fmt.Fprint(o.out, l.text())
	return nil
}

func writeJSONTo(w io.Writer, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}
