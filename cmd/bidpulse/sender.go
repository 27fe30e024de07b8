package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// maxInFlight bounds the JetStream publishes awaiting their ack.
const maxInFlight = 512

// sender publishes messages: with acknowledged JetStream publishes carrying
// a Nats-Msg-Id (so a retry is never stored twice), retried until
// acknowledged or retryFor passes; or, in core mode, fire-and-forget.
type sender struct {
	nc       *nats.Conn
	js       jetstream.JetStream // nil: core publishes
	subject  string
	retryFor time.Duration
	inFlight []jetstream.PubAckFuture
	sent     int
	acked    int
	dupes    int // acknowledged as duplicates by the stream
	retries  int
}

func newSender(nc *nats.Conn, o *publishOptions) (*sender, error) {
	s := &sender{nc: nc, subject: o.subject, retryFor: o.retryFor}
	switch o.jetstream {
	case "false":
		return s, nil
	case "auto", "true":
	default:
		return nil, fmt.Errorf("invalid --jetstream %q: want auto, true or false", o.jetstream)
	}
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(maxInFlight))
	if err != nil {
		return nil, fmt.Errorf("cannot use JetStream: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	name, err := js.StreamNameBySubject(ctx, o.subject)
	if err != nil {
		if o.jetstream == "true" {
			return nil, fmt.Errorf("--jetstream=true but no stream captures %q (is `bidpulse serve` running in JetStream mode?): %w", o.subject, err)
		}
		fmt.Fprintf(os.Stderr, "no JetStream stream captures %q: publishing with core NATS (at-most-once)\n", o.subject)
		return s, nil
	}
	fmt.Fprintf(os.Stderr, "publishing to stream %s with acknowledged publishes\n", name)
	s.js = js
	return s, nil
}

func (s *sender) mode() string {
	if s.js != nil {
		return "JetStream, acknowledged"
	}
	return "core NATS"
}

// send publishes a copy of data with the message id msgID.
func (s *sender) send(data []byte, msgID string) error {
	s.sent++
	if s.js == nil {
		if err := s.nc.Publish(s.subject, data); err != nil {
			return fmt.Errorf("cannot publish: %w", err)
		}
		return nil
	}
	m := &nats.Msg{Subject: s.subject, Data: append([]byte(nil), data...), Header: nats.Header{}}
	m.Header.Set(jetstream.MsgIDHeader, msgID)
	if len(s.inFlight) >= maxInFlight {
		if err := s.wait(); err != nil {
			return err
		}
	}
	f, err := s.js.PublishMsgAsync(m)
	if err != nil {
		// The async buffer is full or the connection is down: retry it
		// synchronously.
		return s.retry(m, err)
	}
	s.inFlight = append(s.inFlight, f)
	return nil
}

// wait collects the acks of the publishes in flight, retrying failures.
func (s *sender) wait() error {
	for _, f := range s.inFlight {
		select {
		case ack := <-f.Ok():
			s.count(ack)
		case err := <-f.Err():
			if err := s.retry(f.Msg(), err); err != nil {
				return err
			}
		case <-time.After(30 * time.Second):
			if err := s.retry(f.Msg(), errors.New("no ack after 30s")); err != nil {
				return err
			}
		}
	}
	s.inFlight = s.inFlight[:0]
	return nil
}

// retry publishes m synchronously until it is acknowledged or retryFor
// passes. The same Nats-Msg-Id makes a retry of a stored message a
// duplicate, not a second copy.
func (s *sender) retry(m *nats.Msg, cause error) error {
	deadline := time.Now().Add(s.retryFor)
	backoff := 50 * time.Millisecond
	for {
		s.retries++
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		ack, err := s.js.PublishMsg(ctx, m)
		cancel()
		if err == nil {
			s.count(ack)
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("publish not acknowledged after %s (first error: %v): %w", s.retryFor, cause, err)
		}
		time.Sleep(backoff)
		backoff = min(backoff*2, time.Second)
	}
}

// finish waits for every ack (JetStream) or flushes (core).
func (s *sender) finish() error {
	if s.js != nil {
		return s.wait()
	}
	if err := s.nc.FlushTimeout(10 * time.Second); err != nil {
		return fmt.Errorf("cannot flush to NATS: %w", err)
	}
	return nil
}

func (s *sender) progress() string {
	if s.js == nil {
		return fmt.Sprintf("%d messages sent (core, unacknowledged)", s.sent)
	}
	s.collect()
	return fmt.Sprintf("%d messages acknowledged (%d duplicates, %d retries)", s.acked, s.dupes, s.retries)
}

// collect counts the acks already received, without waiting for the
// others; failed publishes stay in flight for wait to retry.
func (s *sender) collect() {
	keep := s.inFlight[:0]
	for _, f := range s.inFlight {
		select {
		case ack := <-f.Ok():
			s.count(ack)
		default:
			keep = append(keep, f)
		}
	}
	clear(s.inFlight[len(keep):])
	s.inFlight = keep
}

// count records an acknowledgement.
func (s *sender) count(ack *jetstream.PubAck) {
	s.acked++
	if ack.Duplicate {
		s.dupes++
	}
}
