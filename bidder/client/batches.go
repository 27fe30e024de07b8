package client

import (
	"context"
	"time"
)

// openBatch is one batch being filled: the events of one campaign in partitioned mode, of every
// event otherwise. Its buffer is reused when the batch is sent and another one opens.
type openBatch struct {
	campaign string // the map key; "" outside partitioned mode
	subject  string
	buf      []byte // '[' and the events so far, comma-separated
	events   int
	first    time.Time // when its first event came: the linger counts from here
	// prev and next link the open batches in the order they were opened, which is the order of
	// their first events: the linger and MaxOpenBatches take the oldest from the head.
	prev, next *openBatch
}

// batches are a Publisher's open batches; p.mu guards them. Outside partitioned mode there is
// at most one, keyed "". Every batch in the list holds at least one event whenever p.mu is
// released.
type batches struct {
	byCampaign map[string]*openBatch
	head, tail *openBatch
	free       []*openBatch // sent batches, kept for their buffers (at most MaxOpenBatches)
}

// batchFor returns the open batch of campaign, opening it (after sending the oldest open batch
// when MaxOpenBatches are open) if there is none. p.mu is held.
func (p *Publisher) batchFor(campaign string) (*openBatch, error) {
	bs := &p.open
	if b := bs.byCampaign[campaign]; b != nil {
		return b, nil
	}
	if len(bs.byCampaign) >= p.o.MaxOpenBatches {
		if err := p.sendBatch(bs.head, false, context.Background()); err != nil {
			return nil, err
		}
	}
	var b *openBatch
	if n := len(bs.free); n > 0 {
		b, bs.free = bs.free[n-1], bs.free[:n-1]
	} else {
		b = &openBatch{}
	}
	b.campaign, b.subject = campaign, p.subjectOf(campaign)
	b.prev, b.next = bs.tail, nil
	if bs.tail != nil {
		bs.tail.next = b
	} else {
		bs.head = b
	}
	bs.tail = b
	bs.byCampaign[campaign] = b
	return b, nil
}

// subjectOf returns the subject of campaign's messages: <PartitionedBase>.<campaign>.<Producer>
// in partitioned mode, Subject otherwise.
func (p *Publisher) subjectOf(campaign string) string {
	if p.o.PartitionedBase == "" {
		return p.o.Subject
	}
	return p.o.PartitionedBase + "." + campaign + "." + p.o.Producer
}

// sendBatch closes b, whatever the outcome (an error means its events were not sent, and says
// how many), and sends its events as one message. p.mu is held. final and ctx: see send.
func (p *Publisher) sendBatch(b *openBatch, final bool, ctx context.Context) error {
	bs := &p.open
	if b.prev != nil {
		b.prev.next = b.next
	} else {
		bs.head = b.next
	}
	if b.next != nil {
		b.next.prev = b.prev
	} else {
		bs.tail = b.prev
	}
	b.prev, b.next = nil, nil
	delete(bs.byCampaign, b.campaign)
	b.buf = append(b.buf, ']')
	data := append([]byte(nil), b.buf...)
	n, subject := b.events, b.subject
	b.buf, b.events, b.campaign, b.subject = b.buf[:0], 0, "", ""
	bs.free = append(bs.free, b)
	return p.send(subject, data, n, "", nil, final, ctx)
}

// sendAll sends every open batch, oldest first, and returns the first error. p.mu is held.
func (p *Publisher) sendAll(final bool, ctx context.Context) error {
	var first error
	for p.open.head != nil {
		if err := p.sendBatch(p.open.head, final, ctx); err != nil && first == nil {
			first = err
		}
	}
	return first
}
