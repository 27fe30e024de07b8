package bidder

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/bidpulse/bidpulse/bidder/event"
	"github.com/bidpulse/bidpulse/bidder/ingest"
)

// The soak's event producers (see TestSoak). Each runs on its own NATS
// connection, publishes with acknowledged JetStream publishes carrying a
// Nats-Msg-Id, and adds a message's outcome to the ledger only once the
// stream has acknowledged it.

// Rates of the producers: a few hundred messages and about a thousand events
// a second in all, which the race detector on two shared cores keeps up with.
const (
	soakValidEvery   = 25 * time.Millisecond // per valid producer (two of them)
	soakInvalidEvery = 50 * time.Millisecond
	soakDupEvery     = 100 * time.Millisecond
	// soakBigMessages bounds the messages at the stream's size limit over
	// the whole soak, whatever its length: they are 8 MiB each, on disk.
	soakBigMessages = 10
	// soakAckWait bounds one publish attempt (an acknowledgement of an 8 MiB
	// message under the race detector included).
	soakAckWait = 3 * time.Second
)

// soakLoop calls op(i) every interval, the first at once, until end or ctx
// is done: at most as many times as the interval fits in the time left.
func soakLoop(ctx context.Context, end time.Time, every time.Duration, op func(i int)) {
	n := int(time.Until(end)/every) + 1
	tick := time.NewTicker(every)
	defer tick.Stop()
	for i := 0; i < n && time.Now().Before(end); i++ {
		op(i)
		select {
		case <-tick.C:
		case <-ctx.Done():
			return
		}
	}
}

// soakPublisher publishes on its own connection, which reconnects without
// end (the soak restarts the server).
type soakPublisher struct {
	ctx    context.Context // done: the test ended early, give up
	js     jetstream.JetStream
	ledger *soakLedger
	errs   *soakErrs
	giveUp time.Time // retries stop here
}

func newSoakPublisher(t *testing.T, ctx context.Context, url string, ledger *soakLedger, errs *soakErrs, giveUp time.Time) *soakPublisher {
	t.Helper()
	nc, err := nats.Connect(url, nats.Name("soak producer"), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		t.Fatalf("cannot connect a producer to %s: %v", url, err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatalf("cannot use JetStream: %v", err)
	}
	return &soakPublisher{ctx: ctx, js: js, ledger: ledger, errs: errs, giveUp: giveUp}
}

// publish publishes data with Nats-Msg-Id id until the stream acknowledges
// it (ack) or refuses it as larger than its limit (refused). Every other
// failure (the server down, a timeout, the reconnect buffer full) is retried
// with the same id, as a producer that must not lose events does
// (docs/EVENTS.md): a message that an attempt stored although its
// acknowledgement was lost is then stored once, the stream dropping the
// copy. Past giveUp the failure is an error of the soak.
func (p *soakPublisher) publish(subject, id string, data []byte) (ack *jetstream.PubAck, refused bool) {
	m := &nats.Msg{Subject: subject, Data: data, Header: nats.Header{}}
	m.Header.Set(jetstream.MsgIDHeader, id)
	backoff := 50 * time.Millisecond
	for {
		ctx, cancel := context.WithTimeout(p.ctx, soakAckWait)
		ack, err := p.js.PublishMsg(ctx, m)
		cancel()
		if err == nil {
			return ack, false
		}
		var apiErr *jetstream.APIError
		if errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamMessageExceedsMaximum {
			return nil, true
		}
		p.ledger.count(&p.ledger.retries)
		if time.Now().After(p.giveUp) || p.ctx.Err() != nil {
			p.errs.add("message %s (%d bytes) not acknowledged by %s: %v", id, len(data), p.giveUp.Format(time.TimeOnly), err)
			return nil, false
		}
		select { // a producer's back-off between retries
		case <-time.After(backoff):
		case <-p.ctx.Done():
		}
		backoff = min(2*backoff, time.Second)
	}
}

// soakHeaderLen is the size of the header block nats.go sends with a message
// whose only header is Nats-Msg-Id: id. The stream's size limit counts it
// with the payload (nats-server: len(hdr)+len(msg) > max_msg_size).
func soakHeaderLen(id string) int {
	return len("NATS/1.0\r\n") + len(jetstream.MsgIDHeader) + len(": ") + len(id) + len("\r\n") + len("\r\n")
}

// soakValidEvent returns the k-th valid event of a producer and what the
// service must do with it. Clicks reuse the id of the event before them
// (trackers reuse the impression's id on its click; the dedup key is the
// type and the id), so every (type, id) is still sent once. One event in 97
// is late (two days old), one in 89 is in the future (ten minutes ahead),
// one in 7 has no ts (the service takes the message time).
func soakValidEvent(prefix string, k int, nowMs int64) (soakEvent, soakClass) {
	e := soakEvent{
		id:        prefix + "-" + strconv.Itoa(k),
		typ:       event.Impression,
		campaign:  soakCampaigns[k%len(soakCampaigns)],
		placement: soakPlacements[(k/len(soakCampaigns))%len(soakPlacements)],
		ts:        nowMs - int64(k%600)*1000,
	}
	if k%11 == 0 {
		e.placement = ""
	}
	if k%2 == 0 {
		e.creative = soakCreatives[k%len(soakCreatives)]
	}
	if k%3 == 0 {
		e.device = "Mobile"
	}
	if k%5 == 0 {
		e.country = "fr"
	}
	switch k % 20 {
	case 16, 17, 18:
		e.typ = event.Click
		e.id = prefix + "-" + strconv.Itoa(k-1)
	case 19:
		e.typ = event.Conversion
		e.clickTs = e.ts - 60_000
	default:
		if k%4 == 0 {
			e.cost = "0.0125"
		}
	}
	c := soakCounted
	switch {
	case k%97 == 0:
		e.ts, c = nowMs-48*3600*1000, soakLate
	case k%89 == 0:
		e.ts, c = nowMs+10*60*1000, soakFuture
	case k%7 == 0:
		e.ts = 0
	}
	return e, c
}

// soakProducers are the event producers of one soak, all stopping at end.
type soakProducers struct {
	ctx    context.Context
	ledger *soakLedger
	errs   *soakErrs
	end    time.Time
}

// valid publishes batches of 1 to 16 valid events, and every 50th message a
// batch of 500.
func (p *soakProducers) valid(pub *soakPublisher, prefix string) {
	k := 0
	var buf []byte
	soakLoop(p.ctx, p.end, soakValidEvery, func(i int) {
		n := 1 + i%16
		if i%50 == 49 {
			n = 500
		}
		var o soakOutcome
		var alone *soakEvent
		now := time.Now().UnixMilli()
		buf = buf[:0]
		if n > 1 {
			buf = append(buf, '[')
		}
		subject := ""
		for j := 0; j < n; j++ {
			e, c := soakValidEvent(prefix, k, now)
			k++
			if j > 0 {
				buf = append(buf, ',')
			} else {
				// Partition-style subjects, bidpulse.events.<campaign>.
				subject = "bidpulse.events." + e.campaign
			}
			buf = e.appendJSON(buf)
			o.addValid(&e, c)
			if n == 1 && c == soakCounted {
				alone = &e
			}
		}
		if n > 1 {
			buf = append(buf, ']')
		}
		if ack, _ := pub.publish(subject, prefix+"-m"+strconv.Itoa(i), buf); ack != nil {
			p.ledger.acked(&o, alone)
		}
	})
}

// invalid publishes invalid payloads of every reason, and every third
// message a batch mixing valid events with invalid elements (the valid ones
// count; each invalid element is rejected and dead-lettered on its own).
func (p *soakProducers) invalid(pub *soakPublisher) {
	var elems []soakInvalid
	for _, inv := range soakInvalids {
		if inv.elem {
			elems = append(elems, inv)
		}
	}
	k := 0
	soakLoop(p.ctx, p.end, soakInvalidEvery, func(i int) {
		var o soakOutcome
		var data []byte
		if i%3 != 2 {
			inv := soakInvalids[i%len(soakInvalids)]
			data = []byte(inv.payload)
			o.rejected[inv.reason]++
		} else {
			now := time.Now().UnixMilli()
			data = append(data, '[')
			for j := 0; j < 3; j++ {
				e := soakEvent{id: "mix-" + strconv.Itoa(k), typ: event.Impression, ts: now,
					campaign: soakCampaigns[k%len(soakCampaigns)], placement: soakPlacements[k%len(soakPlacements)]}
				k++
				data = append(e.appendJSON(data), ',')
				o.addValid(&e, soakCounted)
				inv := elems[(i/3+j)%len(elems)]
				data = append(data, inv.payload...)
				o.rejected[inv.reason]++
				data = append(data, ',')
			}
			data = append(data, "7,[1]]"...)
			o.rejected[event.NotObject] += 2
		}
		if ack, _ := pub.publish("bidpulse.events.soak", "inv-"+strconv.Itoa(i), data); ack != nil {
			p.ledger.acked(&o, nil)
		}
	})
}

// duplicates publishes, in turn: an event counted before, again in a message
// of its own (a duplicate for the service's dedup set); a new event twice in
// one batch (counted, then a duplicate); and the previous message again with
// its message id (the stream drops it: nothing reaches the service).
func (p *soakProducers) duplicates(pub *soakPublisher) {
	var last struct {
		subject, id string
		data        []byte
		events      int
	}
	soakLoop(p.ctx, p.end, soakDupEvery, func(i int) {
		var o soakOutcome
		var data []byte
		subject := "bidpulse.events.soak"
		switch i % 3 {
		case 0:
			e, ok := p.ledger.pick(i * 7919)
			if !ok {
				return
			}
			data = e.appendJSON(nil)
			o.addValid(&e, soakDuplicate)
			subject = "bidpulse.events." + e.campaign
		case 1:
			e := soakEvent{id: "dup-" + strconv.Itoa(i), typ: event.Click, ts: time.Now().UnixMilli(),
				campaign: soakCampaigns[i%len(soakCampaigns)], placement: soakPlacements[i%len(soakPlacements)]}
			data = append(e.appendJSON(append(e.appendJSON([]byte{'['}), ',')), ']')
			o.addValid(&e, soakCounted)
			o.addValid(&e, soakDuplicate)
		case 2:
			if last.id == "" {
				return
			}
			ack, _ := pub.publish(last.subject, last.id, last.data)
			switch {
			case ack == nil:
			case ack.Duplicate:
				p.ledger.count(&p.ledger.streamDups)
			default:
				p.errs.add("the stream stored message %s again within its duplicate window (seq %d)", last.id, ack.Sequence)
				// Its events were counted already: duplicates now.
				p.ledger.acked(&soakOutcome{duplicates: last.events}, nil)
			}
			return
		}
		id := "dup-m" + strconv.Itoa(i)
		if ack, _ := pub.publish(subject, id, data); ack != nil {
			p.ledger.acked(&o, nil)
			last.subject, last.id, last.data, last.events = subject, id, data, o.events()
		}
	})
}

// big publishes messages at the stream's size limit, headers included, in
// turn: a batch of valid events padded with an unknown field (accepted, each
// event counted), unterminated JSON (bad_json), an event with an 8 MiB
// placement (field_too_long), and the valid batch one byte over the limit
// (refused by the stream: the producer sees it refused, the service never).
// The first is a valid batch, so the parser's buffers reach their size
// during the warm-up.
func (p *soakProducers) big(pub *soakPublisher, every time.Duration) {
	soakLoop(p.ctx, p.end, every, func(i int) {
		id := "big-" + strconv.Itoa(i)
		size := ingest.MaxMessageBytes - soakHeaderLen(id)
		var o soakOutcome
		var data []byte
		over := false
		switch i % 4 {
		case 0:
			data = soakFatBatch(id, size, &o)
		case 1:
			data = []byte(`{"id":"` + id + `","type":"click","campaign":"c0","note":"`)
			data = append(data, strings.Repeat("n", size-len(data))...)
			o.rejected[event.BadJSON]++
		case 2:
			data = []byte(`{"id":"` + id + `","type":"click","campaign":"c0","placement":"`)
			data = append(data, strings.Repeat("p", size-len(data)-2)...)
			data = append(data, `"}`...)
			o.rejected[event.FieldTooLong]++
		case 3:
			data = soakFatBatch(id, size+1, &o)
			over = true
		}
		if len(data) != size && !over {
			panic("BUG: a message at the limit has " + strconv.Itoa(len(data)) + " bytes; want " + strconv.Itoa(size))
		}
		ack, refused := pub.publish("bidpulse.events.soak", id, data)
		switch {
		case over && refused:
			p.ledger.count(&p.ledger.refused)
		case refused:
			p.errs.add("message %s of exactly the stream's limit (%d bytes and %d of headers) refused", id, len(data), soakHeaderLen(id))
		case over && ack != nil:
			p.errs.add("message %s, one byte over the stream's limit, stored (seq %d)", id, ack.Sequence)
			p.ledger.acked(&o, nil) // the service will count it
		case ack != nil:
			p.ledger.acked(&o, nil)
		}
	})
}

// soakFatBatch returns a batch of 32 valid impressions padded with an unknown
// field to exactly size bytes, and adds them to o.
func soakFatBatch(id string, size int, o *soakOutcome) []byte {
	const n = 32
	now := time.Now().UnixMilli()
	pad := strings.Repeat("n", size/n)
	b := []byte{'['}
	for j := 0; j < n; j++ {
		e := soakEvent{id: id + "-" + strconv.Itoa(j), typ: event.Impression, ts: now,
			campaign: soakCampaigns[j%len(soakCampaigns)], placement: soakPlacements[j%len(soakPlacements)]}
		o.addValid(&e, soakCounted)
		if j < n-1 {
			e.note = pad
			b = append(e.appendJSON(b), ',')
			continue
		}
		// The last one takes what is left, so the batch has exactly size bytes.
		rest := size - len(b) - len(e.appendJSON(nil)) - len(`,"note":""`) - len("]")
		e.note = strings.Repeat("n", rest)
		b = append(e.appendJSON(b), ']')
	}
	return b
}
