package main

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/valyala/fastjson"

	"github.com/bidpulse/bidpulse/bench"
	"github.com/bidpulse/bidpulse/bidder/natsauth"
)

// maxLine bounds one NDJSON line (and one JSON document read from a file).
const maxLine = 8 << 20

type publishOptions struct {
	natsURL   string
	subject   string
	file      string
	batch     int
	synthetic bool
	rate      int
	duration  time.Duration
	campaigns int
	creatives int
	places    int
	seed      int64
	runID     string
	jetstream string
	retryFor  time.Duration
	auth      *natsauth.Config
}

func runPublish(args []string) error {
	fs := flag.NewFlagSet("publish", flag.ContinueOnError)
	fs.Usage = usageWithEnv(fs, `Usage: bidpulse publish [flags]

Publishes events to NATS: JSON (one object or an array) or NDJSON from
--file (default stdin), or --synthetic traffic at --rate for --duration.`)
	var o publishOptions
	fs.StringVar(&o.natsURL, "nats-url", "nats://127.0.0.1:4222", "NATS server URLs, comma-separated (default: the embedded server of `bidpulse serve`)")
	fs.StringVar(&o.subject, "subject", "bidpulse.events.publish", "subject to publish on (under bidpulse.events.)")
	fs.StringVar(&o.file, "file", "-", "file of JSON or NDJSON events; - for stdin")
	fs.IntVar(&o.batch, "batch", 100, "events per NATS message (a JSON array); 1 sends single objects")
	fs.BoolVar(&o.synthetic, "synthetic", false, "publish synthetic traffic instead of reading events")
	fs.IntVar(&o.rate, "rate", 2000, "synthetic events per second")
	fs.DurationVar(&o.duration, "duration", 60*time.Second, "how long to publish synthetic traffic")
	fs.IntVar(&o.campaigns, "campaigns", bench.DefaultSyntheticCampaigns, "synthetic campaigns (c1..cN)")
	fs.IntVar(&o.creatives, "creatives", bench.DefaultSyntheticCreatives, "synthetic creatives per campaign (cr1..crN)")
	fs.IntVar(&o.places, "placements", bench.DefaultSyntheticPlacements, "synthetic placements")
	fs.Int64Var(&o.seed, "seed", 1, "seed of the synthetic traffic (same seed: same true rates)")
	fs.StringVar(&o.runID, "run-id", "", "prefix of synthetic event ids (default: derived from the start time, unique per run)")
	fs.StringVar(&o.jetstream, "jetstream", "auto", "auto: acknowledged JetStream publishes when a stream captures the subject, else core; true; false")
	fs.DurationVar(&o.retryFor, "retry-for", 2*time.Minute, "how long to retry a JetStream publish that is not acknowledged (e.g. during a NATS restart)")
	o.auth = natsClientFlags(fs)
	if err := parseFlags(fs, args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if o.batch < 1 || o.batch > 10000 {
		return fmt.Errorf("invalid --batch %d: must be in 1..10000", o.batch)
	}
	if !strings.HasPrefix(o.subject, "bidpulse.events.") {
		fmt.Fprintf(os.Stderr, "warning: subject %q is outside bidpulse.events.>; the default service subscription will not see it\n", o.subject)
	}
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
	nc, err := nats.Connect(o.natsURL, append(authOpts, nats.Name("bidpulse publish"), nats.MaxReconnects(-1))...)
	if err != nil {
		return fmt.Errorf("cannot connect to NATS at %s (is `bidpulse serve` running?): %w", natsauth.Redact(o.natsURL), err)
	}
	defer nc.Close()
	snd, err := newSender(nc, &o)
	if err != nil {
		return err
	}
	if o.synthetic {
		err = publishSynthetic(snd, &o)
	} else {
		err = publishFile(snd, &o)
	}
	if err != nil {
		return err
	}
	return snd.finish()
}

// publishSynthetic publishes synthetic traffic at o.rate events/s for
// o.duration, in batches, and prints a progress line every second.
func publishSynthetic(snd *sender, o *publishOptions) error {
	if o.rate < 1 {
		return fmt.Errorf("invalid --rate %d: must be positive", o.rate)
	}
	if o.duration <= 0 {
		return fmt.Errorf("invalid --duration %s: must be positive", o.duration)
	}
	runID := o.runID
	if runID == "" {
		runID = "syn" + time.Now().UTC().Format("20060102T150405.000")
	}
	syn := bench.NewSynthetic(bench.SyntheticConfig{
		Campaigns: o.campaigns, Creatives: o.creatives, Placements: o.places,
		Seed: o.seed, RunID: runID,
	})
	fmt.Fprintf(os.Stderr, "publishing synthetic traffic to %s on %s (%s): %d events/s for %s, batches of %d\n",
		natsauth.Redact(snd.nc.ConnectedUrl()), o.subject, snd.mode(), o.rate, o.duration, o.batch)
	start := time.Now()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	var sent, msgs, lastSent uint64
	lastReport := start
	var buf []byte
	for {
		now := <-tick.C
		elapsed := now.Sub(start)
		if elapsed > o.duration {
			elapsed = o.duration
		}
		target := uint64(elapsed.Seconds() * float64(o.rate))
		for sent < target {
			n := min(int(target-sent), o.batch)
			before := syn.Events()
			buf = syn.AppendBatch(buf[:0], n, now.UnixMilli())
			if err := snd.send(buf, runID+"-"+strconv.FormatUint(msgs, 36)); err != nil {
				return err
			}
			sent += syn.Events() - before
			msgs++
		}
		if now.Sub(lastReport) >= time.Second || elapsed >= o.duration {
			fmt.Fprintf(os.Stderr, "%6.1fs  %d events (%d/s)  %d messages  %s\n",
				elapsed.Seconds(), sent, int(float64(sent-lastSent)/now.Sub(lastReport).Seconds()), msgs, snd.progress())
			lastSent, lastReport = sent, now
		}
		if elapsed >= o.duration {
			break
		}
	}
	if err := snd.finish(); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "done: %d events in %d messages; %s\n", sent, msgs, snd.progress())
	fmt.Fprintf(os.Stderr, "try: curl 'localhost:8080/v1/multiplier?campaign=c1&placement=news.example/top&explain=1'\n")
	fmt.Fprintf(os.Stderr, "     curl 'localhost:8080/v1/snapshot?level=campaign/placement&sort=multiplier'\n")
	return nil
}

// publishFile publishes the events of o.file: a JSON document (one object
// or an array, sent in batches of o.batch) or NDJSON (one object per line,
// grouped into arrays of o.batch). A line that is not valid JSON is sent
// alone, as it is, so the service rejects it with a reason and dead-letters
// it rather than spoiling a whole batch.
func publishFile(snd *sender, o *publishOptions) error {
	var r io.Reader = os.Stdin
	name := "stdin"
	if o.file != "-" {
		f, err := os.Open(o.file)
		if err != nil {
			return fmt.Errorf("cannot open events: %w", err)
		}
		defer f.Close()
		r, name = f, o.file
	}
	br := bufio.NewReaderSize(r, 64<<10)
	p := &batcher{snd: snd, size: o.batch}
	first, err := peekNonSpace(br)
	if err != nil && err != io.EOF {
		return fmt.Errorf("cannot read %s: %w", name, err)
	}
	if first == '[' {
		// One JSON array: read it whole and send its elements in batches.
		data, err := io.ReadAll(io.LimitReader(br, 1<<30))
		if err != nil {
			return fmt.Errorf("cannot read %s: %w", name, err)
		}
		var jp fastjson.Parser
		v, err := jp.ParseBytes(data)
		if err != nil {
			return fmt.Errorf("cannot parse %s as a JSON array: %w", name, err)
		}
		for _, el := range v.GetArray() {
			if err := p.add(el.MarshalTo(nil)); err != nil {
				return err
			}
		}
	} else {
		sc := bufio.NewScanner(br)
		sc.Buffer(make([]byte, 64<<10), maxLine)
		line := 0
		for sc.Scan() {
			line++
			b := bytes.TrimSpace(sc.Bytes())
			if len(b) == 0 {
				continue
			}
			if fastjson.ValidateBytes(b) != nil {
				fmt.Fprintf(os.Stderr, "warning: %s line %d is not valid JSON; sent alone (the service will dead-letter it)\n", name, line)
				p.events++
				if err := p.sendRaw(b); err != nil {
					return err
				}
				continue
			}
			if err := p.add(b); err != nil {
				return err
			}
		}
		if err := sc.Err(); err != nil {
			return fmt.Errorf("cannot read %s at line %d: %w", name, line+1, err)
		}
	}
	if err := p.flush(); err != nil {
		return err
	}
	if err := snd.finish(); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "published %d events in %d messages to %s; %s\n", p.events, p.msgs, o.subject, snd.progress())
	return nil
}

func peekNonSpace(br *bufio.Reader) (byte, error) {
	for {
		b, err := br.Peek(1)
		if err != nil {
			return 0, err
		}
		switch b[0] {
		case ' ', '\t', '\r', '\n':
			br.ReadByte()
			continue
		}
		return b[0], nil
	}
}

// batcher groups JSON values into arrays of size and publishes them.
type batcher struct {
	snd    *sender
	size   int
	buf    []byte
	n      int
	events int
	msgs   int
}

func (b *batcher) add(v []byte) error {
	if b.size == 1 {
		b.events++
		return b.sendRaw(v)
	}
	if b.n == 0 {
		b.buf = append(b.buf[:0], '[')
	} else {
		b.buf = append(b.buf, ',')
	}
	b.buf = append(b.buf, v...)
	b.n++
	b.events++
	if b.n >= b.size {
		return b.flush()
	}
	return nil
}

func (b *batcher) flush() error {
	if b.n == 0 {
		return nil
	}
	b.buf = append(b.buf, ']')
	b.n = 0
	return b.sendRaw(b.buf)
}

// sendRaw publishes data with a message id derived from its content, so
// that publishing the same file again within the stream's duplicate
// window is recognised by JetStream.
func (b *batcher) sendRaw(data []byte) error {
	sum := sha256.Sum256(data)
	if err := b.snd.send(data, hex.EncodeToString(sum[:16])); err != nil {
		return err
	}
	b.msgs++
	return nil
}
