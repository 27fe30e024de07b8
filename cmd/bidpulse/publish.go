package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/bidpulse/bidpulse/bench"
	"github.com/bidpulse/bidpulse/bidder/client"
	"github.com/bidpulse/bidpulse/bidder/natsauth"
)

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
	// partitioned: publish to <base>.<campaign>.<name> (partitionedSubject of subject), batches
	// split by campaign.
	partitioned bool
	base, name  string
}

func runPublish(args []string) error {
	fs := flag.NewFlagSet("publish", flag.ContinueOnError)
	fs.Usage = usageWithEnv(fs, `Usage: bidpulse publish [flags]

Publishes events to NATS: JSON (one object or an array) or NDJSON from
--file (default stdin), or --synthetic traffic at --rate for --duration.

With --partitioned, for a stream partitioned by campaign (docs/SCALING.md):
--subject <base>.<name> publishes each event to <base>.<campaign>.<name>
(default bidpulse.events.<campaign>.publish), every message holding one
campaign; an event with no campaign that can be a subject token is refused
with a warning, and publish then fails naming how many.`)
	var o publishOptions
	fs.StringVar(&o.natsURL, "nats-url", "nats://127.0.0.1:4222", "NATS server URLs, comma-separated: the embedded server of bidpulse serve by default")
	fs.StringVar(&o.subject, "subject", "bidpulse.events.publish", "subject to publish on (under bidpulse.events.)")
	fs.BoolVar(&o.partitioned, "partitioned", false, "publish for a stream partitioned by campaign: --subject <base>.<name> sends each event to <base>.<campaign>.<name>, batches split by campaign")
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
	err := parseFlags(fs, args)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if o.batch < 1 || o.batch > 10000 {
		return fmt.Errorf("invalid --batch %d: must be in 1..10000", o.batch)
	}
	if o.partitioned {
		if o.base, o.name, err = partitionedSubject(o.subject); err != nil {
			return err
		}
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
	pub, err := newEventPublisher(nc, &o)
	if err != nil {
		return err
	}
	if o.synthetic {
		err = publishSynthetic(pub, nc, &o)
	} else {
		err = publishFile(pub, &o)
	}
	if cerr := pub.Close(context.Background()); err == nil && cerr != nil {
		err = cerr
	}
	return err
}

// newEventPublisher returns the client's Publisher for o: batches are formed
// here (synthetic traffic, the file's events), so each goes as one raw
// message.
func newEventPublisher(nc *nats.Conn, o *publishOptions) (*client.Publisher, error) {
	mode := map[string]string{"auto": client.ModeAuto, "true": client.ModeJetStream, "false": client.ModeCore}[o.jetstream]
	if mode == "" {
		return nil, fmt.Errorf("invalid --jetstream %q: want auto, true or false", o.jetstream)
	}
	po := client.PublisherOptions{Subject: o.subject, Mode: mode, RetryFor: o.retryFor, MsgIDPrefix: o.runID}
	if o.partitioned {
		po.Subject, po.PartitionedBase, po.Producer = "", o.base, o.name
	}
	pub, err := client.NewPublisher(nc, po)
	if err != nil {
		if o.jetstream == "true" {
			return nil, fmt.Errorf("--jetstream=true: %w (is `bidpulse serve` running in JetStream mode?)", err)
		}
		return nil, err
	}
	if pub.JetStream() {
		fmt.Fprintf(os.Stderr, "publishing to the stream that captures %s with acknowledged publishes\n", o.target())
	} else if o.jetstream == "auto" {
		fmt.Fprintf(os.Stderr, "no JetStream stream captures %q: publishing with core NATS (at-most-once)\n", o.target())
	}
	return pub, nil
}

// target names the subjects published to, for messages.
func (o *publishOptions) target() string {
	if o.partitioned {
		return o.base + ".<campaign>." + o.name
	}
	return o.subject
}

func publishMode(pub *client.Publisher) string {
	if pub.JetStream() {
		return "JetStream, acknowledged"
	}
	return "core NATS"
}

func publishProgress(pub *client.Publisher) string {
	st := pub.Stats()
	if !pub.JetStream() {
		return fmt.Sprintf("%d messages sent (core, unacknowledged)", st.Messages)
	}
	return fmt.Sprintf("%d messages acknowledged (%d duplicates, %d retries)", st.AckedMessages, st.Duplicates, st.Resent)
}

// publishSynthetic publishes synthetic traffic at o.rate events/s for
// o.duration, in batches, and prints a progress line every second.
func publishSynthetic(pub *client.Publisher, nc *nats.Conn, o *publishOptions) error {
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
		natsauth.Redact(nc.ConnectedUrl()), o.target(), publishMode(pub), o.rate, o.duration, o.batch)
	start := time.Now()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	var sent, msgs, lastSent uint64
	lastReport := start
	var buf []byte
	// Partitioned: each generated batch is split by campaign, and each campaign's part (at
	// most --batch events) goes to its subject; ids stay derived from the run.
	split := newCampaignBatcher(o.batch, func(campaign string, data []byte, _ string, events int) error {
		err := pub.PublishRawTo(campaign, data, events, runID+"-"+strconv.FormatUint(msgs, 36), nil)
		msgs++
		return err
	})
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
			if o.partitioned {
				if err := split.addBatch(buf); err != nil {
					return err
				}
			} else {
				if err := pub.PublishRaw(buf, int(syn.Events()-before), runID+"-"+strconv.FormatUint(msgs, 36), nil); err != nil {
					return err
				}
				msgs++
			}
			sent += syn.Events() - before
		}
		if err := split.flush(); err != nil {
			return err
		}
		if now.Sub(lastReport) >= time.Second || elapsed >= o.duration {
			fmt.Fprintf(os.Stderr, "%6.1fs  %d events (%d/s)  %d messages  %s\n",
				elapsed.Seconds(), sent, int(float64(sent-lastSent)/now.Sub(lastReport).Seconds()), msgs, publishProgress(pub))
			lastSent, lastReport = sent, now
		}
		if elapsed >= o.duration {
			break
		}
	}
	if err := pub.Flush(context.Background()); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "done: %d events in %d messages; %s\n", sent, msgs, publishProgress(pub))
	fmt.Fprintf(os.Stderr, "try: curl 'localhost:8080/v1/multiplier?campaign=c1&placement=news.example/top&explain=1'\n")
	fmt.Fprintf(os.Stderr, "     curl 'localhost:8080/v1/snapshot?level=campaign/placement&sort=multiplier'\n")
	return nil
}

// publishFile publishes the events of o.file (readEventFile) in batches
// of o.batch.
func publishFile(pub *client.Publisher, o *publishOptions) error {
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
	if o.partitioned {
		return publishFilePartitioned(pub, o, r, name)
	}
	p := &batcher{publish: func(data []byte, msgID string, events int) error {
		return pub.PublishRaw(data, events, msgID, nil)
	}, size: o.batch}
	err := readEventFile(r, name, p.add, func(line int, b []byte) error {
		fmt.Fprintf(os.Stderr, "warning: %s line %d is not valid JSON; sent alone (the service will dead-letter it)\n", name, line)
		p.events++
		return p.sendRaw(b, 1)
	})
	if err != nil {
		return err
	}
	if err := p.flush(); err != nil {
		return err
	}
	if err := pub.Flush(context.Background()); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "published %d events in %d messages to %s; %s\n", p.events, p.msgs, o.subject, publishProgress(pub))
	return nil
}

// publishFilePartitioned publishes the events of r by campaign (campaignBatcher): each batch
// holds one campaign's events and goes to its subject, with an id derived from its content. An
// event with no campaign that can be a subject token (and a line that is not JSON) is refused
// with a warning rather than sent: a partitioned stream has no subject for it. Every other event
// is published, and the refusals are then returned as an error.
func publishFilePartitioned(pub *client.Publisher, o *publishOptions, r io.Reader, name string) error {
	cb := newCampaignBatcher(o.batch, func(campaign string, data []byte, msgID string, events int) error {
		return pub.PublishRawTo(campaign, data, events, msgID, nil)
	})
	n, refused := 0, 0
	err := readEventFile(r, name, func(v []byte) error {
		n++
		err := cb.add(v)
		if errors.Is(err, errNoCampaign) {
			refused++
			fmt.Fprintf(os.Stderr, "warning: %s event %d refused: %v\n", name, n, err)
			return nil
		}
		return err
	}, func(line int, b []byte) error {
		n++
		refused++
		fmt.Fprintf(os.Stderr, "warning: %s line %d is not valid JSON; refused (a partitioned stream has no campaign subject for it)\n", name, line)
		return nil
	})
	if err != nil {
		return err
	}
	if err := cb.flush(); err != nil {
		return err
	}
	if err := pub.Flush(context.Background()); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "published %d events in %d messages to %s; %s\n", cb.events, cb.msgs, o.target(), publishProgress(pub))
	if refused > 0 {
		return fmt.Errorf("%d events of %s were refused, not published: no campaign that can be a subject token (see the warnings)", refused, name)
	}
	return nil
}
