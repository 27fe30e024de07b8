package bench

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
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

// publisher sends event batches and tallies what was sent and what was acknowledged. publish
// is called from one goroutine; the counters are safe to read from any.
type publisher interface {
	// publish sends data (which the publisher may not keep after return) holding the events
	// tallied in t.
	publish(data []byte, t *Tally) error
	// finish waits until every publish is acknowledged or given up (at ctx's end) and returns
	// the acknowledged and the given-up tallies.
	finish(ctx context.Context) (acked, unacked Tally, err error)
	// ackedEvents returns the events acknowledged so far (all published ones for core NATS).
	ackedEvents() uint64
	// retries returns the publishes sent again after an error or a timeout.
	retries() uint64
}

// corePublisher publishes with core NATS. Nothing is acknowledged: an event counts as sent
// when the client took it and the final flush succeeded.
type corePublisher struct {
	nc      *nats.Conn
	subject string
	mu      sync.Mutex
	sent    Tally
	events  atomic.Uint64
}

func (p *corePublisher) publish(data []byte, t *Tally) error {
	if err := p.nc.Publish(p.subject, data); err != nil {
		return fmt.Errorf("cannot publish on %s: %w", p.subject, err)
	}
	p.mu.Lock()
	p.sent.Add(t)
	p.mu.Unlock()
	p.events.Add(t.Events)
	return nil
}

func (p *corePublisher) finish(ctx context.Context) (Tally, Tally, error) {
	err := p.nc.FlushWithContext(ctx)
	p.mu.Lock()
	defer p.mu.Unlock()
	if err != nil {
		return Tally{}, p.sent, fmt.Errorf("cannot flush the events to NATS: %w", err)
	}
	return p.sent, Tally{}, nil
}

func (p *corePublisher) ackedEvents() uint64 { return p.events.Load() }
func (p *corePublisher) retries() uint64     { return 0 }

// jsPublisher publishes with acknowledged asynchronous JetStream publishes. Every message
// carries a Nats-Msg-Id ("<run id>-m<n>"), so a publish sent again after a timeout or a
// disconnection (the service restarting with its embedded server) is stored once by the
// stream's duplicate window. A collector goroutine waits for the acknowledgements in order and
// resends what failed, until finish's context ends.
type jsPublisher struct {
	js      jetstream.JetStream
	subject string
	runID   string
	seq     uint64
	pending chan *pendingPub
	done    chan struct{}
	stop    atomic.Pointer[context.Context]

	mu      sync.Mutex
	acked   Tally
	unacked Tally
	lastErr error
	events  atomic.Uint64
	resent  atomic.Uint64

	// inflight is the bytes of the publishes not yet acknowledged or given up, at most
	// maxPendingBytes (guarded by flightMu; publish waits on room).
	flightMu sync.Mutex
	room     *sync.Cond
	inflight int
}

type pendingPub struct {
	msg   *nats.Msg
	tally Tally
	fut   jetstream.PubAckFuture
	err   error
}

// maxPendingPubs bounds the unacknowledged publishes, and maxPendingBytes their bytes (a
// message may hold 10,000 events, over 2 MB); past either publish waits. Each is kept until
// acknowledged, for a resend.
const (
	maxPendingPubs  = 4096
	maxPendingBytes = 256 << 20
)

// newJSPublisher checks that a stream captures subject and starts the collector.
func newJSPublisher(ctx context.Context, nc *nats.Conn, subject, runID string) (*jsPublisher, error) {
	js, err := jetstream.New(nc,
		jetstream.WithPublishAsyncMaxPending(maxPendingPubs),
		jetstream.WithPublishAsyncTimeout(5*time.Second))
	if err != nil {
		return nil, fmt.Errorf("cannot use JetStream: %w", err)
	}
	if _, err := streamFor(ctx, js, subject); err != nil {
		return nil, err
	}
	p := &jsPublisher{
		js: js, subject: subject, runID: runID,
		pending: make(chan *pendingPub, 2*maxPendingPubs),
		done:    make(chan struct{}),
	}
	p.room = sync.NewCond(&p.flightMu)
	go p.collect()
	return p, nil
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

func (p *jsPublisher) publish(data []byte, t *Tally) error {
	p.flightMu.Lock()
	for p.inflight > 0 && p.inflight+len(data) > maxPendingBytes {
		p.room.Wait()
	}
	p.inflight += len(data)
	p.flightMu.Unlock()
	p.seq++
	msg := nats.NewMsg(p.subject)
	msg.Data = append([]byte(nil), data...) // kept until acknowledged, for a resend
	msg.Header.Set(jetstream.MsgIDHeader, p.runID+"-m"+strconv.FormatUint(p.seq, 36))
	pp := &pendingPub{msg: msg, tally: *t}
	pp.fut, pp.err = p.js.PublishMsgAsync(msg)
	p.pending <- pp
	return nil
}

// collect waits for each publish's acknowledgement in order, resending the failed ones with
// their Nats-Msg-Id until finish's context ends.
func (p *jsPublisher) collect() {
	defer close(p.done)
	for pp := range p.pending {
		p.settle(pp)
		p.flightMu.Lock()
		p.inflight -= len(pp.msg.Data)
		p.room.Broadcast()
		p.flightMu.Unlock()
	}
}

// settle waits for pp's acknowledgement, resending it with its Nats-Msg-Id after an error,
// until it is acknowledged or finish's context ends, and tallies the outcome.
func (p *jsPublisher) settle(pp *pendingPub) {
	backoff := 50 * time.Millisecond
	for {
		if pp.err == nil {
			select {
			case <-pp.fut.Ok():
			case pp.err = <-pp.fut.Err():
			}
		}
		if pp.err == nil {
			p.mu.Lock()
			p.acked.Add(&pp.tally)
			p.mu.Unlock()
			p.events.Add(pp.tally.Events)
			return
		}
		p.mu.Lock()
		p.lastErr = pp.err
		p.mu.Unlock()
		if ctx := p.stop.Load(); ctx != nil && (*ctx).Err() != nil {
			p.mu.Lock()
			p.unacked.Add(&pp.tally)
			p.mu.Unlock()
			return
		}
		time.Sleep(backoff)
		backoff = min(2*backoff, time.Second)
		p.resent.Add(1)
		pp.fut, pp.err = p.js.PublishMsgAsync(pp.msg)
	}
}

func (p *jsPublisher) finish(ctx context.Context) (Tally, Tally, error) {
	p.stop.Store(&ctx)
	close(p.pending)
	<-p.done
	p.mu.Lock()
	defer p.mu.Unlock()
	var err error
	if p.unacked.Events > 0 {
		err = fmt.Errorf("%d events in %d messages were never acknowledged (last error: %v)", p.unacked.Events, p.unacked.Messages, p.lastErr)
	}
	return p.acked, p.unacked, err
}

func (p *jsPublisher) ackedEvents() uint64 { return p.events.Load() }
func (p *jsPublisher) retries() uint64     { return p.resent.Load() }
