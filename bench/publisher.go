package bench

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/bidpulse/bidpulse/bidder/client"
)

// Publish modes.
const (
	// PublishAuto publishes with JetStream when a stream captures the subject, core otherwise.
	PublishAuto = "auto"
	// PublishJetStream publishes with acknowledged JetStream publishes; a stream must capture
	// the subject (the bench creates none).
	PublishJetStream = "jetstream"
	// PublishCore publishes with core NATS: no acknowledgement, at-most-once.
	PublishCore = "core"
)

// maxPendingBytes bounds the bytes of the publishes not yet acknowledged (a message may hold
// 10,000 events, over 2 MB); past it publish waits. Each is kept until acknowledged, for a
// resend.
const maxPendingBytes = 256 << 20

// publishRetryFor is the client's bound on resending a message: longer than any run, so that
// only finish's context ends the resends (a service restarting mid-run is waited for).
const publishRetryFor = 24 * time.Hour

// publisher sends event batches through bidpulse's client Publisher (bidder/client) and
// tallies what was sent and what was acknowledged: each message's Tally travels as the
// client's tag, and the client's OnSettled adds it to the acknowledged or the given-up tally.
// publish is called from one goroutine; the counters are safe to read from any.
//
// JetStream: every message carries a Nats-Msg-Id ("<run id>-m-<n>"), so one sent again after a
// timeout or a disconnection (the service restarting with its embedded server) is stored once
// by the stream's duplicate window; the client resends it until acknowledged or until finish's
// context ends. Core NATS: nothing is acknowledged, a message counts when the connection took
// it and the final flush succeeded.
type publisher struct {
	p    *client.Publisher
	core bool
	// split, when set, splits each batch by campaign (partitioned mode, bench/partitioned.go).
	split *batchSplitter

	mu      sync.Mutex
	acked   Tally
	unacked Tally
	events  atomic.Uint64
	// finished is set by finish (Run's goroutine only).
	finished bool
}

// newPublisher publishes on subject in mode (PublishJetStream or PublishCore). In JetStream
// mode a stream must capture subject. partitioned publishes for a stream partitioned by
// campaign: subject <base>.<name> (PartitionedSubject) sends each campaign's part of a batch
// to <base>.<campaign>.<name>; it needs JetStream.
func newPublisher(ctx context.Context, nc *nats.Conn, subject, runID, mode string, partitioned bool) (*publisher, error) {
	pub := &publisher{core: mode == PublishCore}
	po := client.PublisherOptions{
		Subject: subject, Mode: client.ModeJetStream, MaxPendingBytes: maxPendingBytes, RetryFor: publishRetryFor,
		MsgIDPrefix: runID + "-m", OnSettled: pub.settled,
	}
	lookup := subject
	if partitioned {
		if pub.core {
			return nil, errors.New("partitioned publishing needs JetStream: a partitioned service consumes only its stream")
		}
		base, name, err := PartitionedSubject(subject)
		if err != nil {
			return nil, err
		}
		po.Subject, po.PartitionedBase, po.Producer = "", base, name
		lookup = base + ".x." + name // a subject the partitioned stream binds, as the client looks it up
		pub.split = &batchSplitter{}
	}
	if pub.core {
		po.Mode = client.ModeCore
	} else {
		js, err := jetstream.New(nc)
		if err != nil {
			return nil, fmt.Errorf("cannot use JetStream: %w", err)
		}
		if _, err := streamFor(ctx, js, lookup); err != nil {
			return nil, err
		}
	}
	p, err := client.NewPublisher(nc, po)
	if err != nil {
		return nil, err
	}
	pub.p = p
	return pub, nil
}

// streamFor returns the stream that captures subject, or an error that says what to do.
func streamFor(ctx context.Context, js jetstream.JetStream, subject string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	name, err := js.StreamNameBySubject(ctx, subject)
	switch {
	case errors.Is(err, jetstream.ErrStreamNotFound):
		return "", fmt.Errorf("no JetStream stream captures subject %s: JetStream publishing needs one "+
			"(bidpulse serve --jetstream=true creates BIDPULSE_EVENTS; the bench creates none); "+
			"or publish with --publish core", subject)
	case err != nil:
		return "", fmt.Errorf("cannot look up the JetStream stream of %s: %w", subject, err)
	}
	return name, nil
}

// settled tallies one message's outcome (the client's OnSettled: its goroutine, in order).
func (p *publisher) settled(s client.Settled) {
	t := s.Tag.(*Tally)
	p.mu.Lock()
	if s.Err == nil {
		p.acked.Add(t)
	} else {
		p.unacked.Add(t)
	}
	p.mu.Unlock()
	if s.Err == nil {
		p.events.Add(t.Events)
	}
}

// publish sends data (which the publisher does not keep after return) holding the events
// tallied in t.
func (p *publisher) publish(data []byte, t *Tally) error {
	if p.split != nil {
		return p.publishSplit(data, t)
	}
	tag := *t
	if err := p.p.PublishRaw(data, int(t.Events), "", &tag); err != nil {
		return fmt.Errorf("cannot publish events: %w", err)
	}
	return nil
}

// publishSplit sends data split by campaign (batchSplitter.split): each campaign's part to
// its subject, then the injected events to InjectedCampaign's, each with its share of t.
func (p *publisher) publishSplit(data []byte, t *Tally) error {
	parts, injected, err := p.split.split(data, t)
	if err != nil {
		return err
	}
	send := func(c *campaignPart) error {
		tag := c.t
		if err := p.p.PublishRawTo(c.campaign, c.data, int(c.t.Events), "", &tag); err != nil {
			return fmt.Errorf("cannot publish events of campaign %s: %w", c.campaign, err)
		}
		return nil
	}
	for i := range parts {
		if err := send(&parts[i]); err != nil {
			return err
		}
	}
	if injected != nil {
		return send(injected)
	}
	return nil
}

// finish waits until every publish is acknowledged or given up (at ctx's end) and returns the
// acknowledged and the given-up tallies. In core mode a failed final flush gives up every
// message: none is sure to have reached the server.
func (p *publisher) finish(ctx context.Context) (acked, unacked Tally, err error) {
	p.finished = true
	err = p.p.Close(ctx)
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.core && err != nil {
		all := p.acked
		all.Add(&p.unacked)
		return Tally{}, all, err
	}
	return p.acked, p.unacked, err
}

// abandon stops a publisher that finish never ran for (a run that failed): it waits for
// what is in flight without resending.
func (p *publisher) abandon() {
	if p.finished {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, _, _ = p.finish(ctx)
}

// ackedEvents returns the events acknowledged so far (handed to the connection, in core mode).
func (p *publisher) ackedEvents() uint64 { return p.events.Load() }

// retries returns the publishes sent again after an error or a timeout.
func (p *publisher) retries() uint64 { return p.p.Stats().Resent }
