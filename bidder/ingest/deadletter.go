package ingest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// deadLetters publishes dead letters in the background, in order, retrying
// each until the DLQ stream stores it: the applier only queues them, so a bad
// batch or a DLQ that does not answer never stalls ingest while the queue
// has room. The queue is bounded in bytes (of letters: a letter holds the
// event's known fields, the payload only with Options.DLQRaw, see
// DeadLetter); when it is full, add waits (the
// applier with it) until there is room: nothing is dropped. In JetStream mode
// a message is acknowledged only once its dead letters are stored (see
// jsIngest.markApplied), and the letters still queued are saved in each
// checkpoint, so none is lost to a restart. Each letter carries a
// Nats-Msg-Id naming its message and index, so a retry of a letter that was
// in fact stored is dropped by the DLQ stream.
//
// add and oldestSeq may be called from any goroutine.
type deadLetters struct {
	nc       *nats.Conn
	js       jetstream.JetStream // nil in core mode
	stream   string
	maxBytes int
	stats    *Stats
	warn     func(key, msg string, err error)

	mu    sync.Mutex
	q     []DeadLetter
	bytes int
	room  *sync.Cond // signalled when letters leave the queue
	wake  chan struct{}
	// failingSince is when the head letter first failed (Unix ms; 0: the
	// DLQ answers).
	failingSince atomic.Int64
	stopCh       chan struct{}
	done         chan struct{}
	// recreate creates the DLQ stream again (nil in core mode).
	recreate func(ctx context.Context) error
}

// maxDeadLetterBytes bounds the queued dead letters.
const maxDeadLetterBytes = 16 << 20

func newDeadLetters(st *Stats, warn func(key, msg string, err error)) *deadLetters {
	d := &deadLetters{maxBytes: maxDeadLetterBytes, stats: st, warn: warn, wake: make(chan struct{}, 1)}
	d.room = sync.NewCond(&d.mu)
	return d
}

// start begins publishing through nc (and js in JetStream mode).
func (d *deadLetters) start(nc *nats.Conn, js jetstream.JetStream, stream string) {
	d.nc, d.js, d.stream = nc, js, stream
	d.stopCh, d.done = make(chan struct{}), make(chan struct{})
	go d.run()
}

// add queues a copy of l (of its Fields and Data); it waits while the queue
// is full.
func (d *deadLetters) add(l DeadLetter) {
	d.addBounded(l, true)
}

// requeue queues the letters of a checkpoint, before the publisher runs:
// the bound does not apply (they were within it when saved, but a stop lifts
// it, see unbound).
func (d *deadLetters) requeue(ls []DeadLetter) {
	for _, l := range ls {
		d.addBounded(l, false)
	}
}

// unbound lifts the bound for good: a stopping service must not wait for a
// DLQ that does not answer (the letters left are saved by the final
// checkpoint).
func (d *deadLetters) unbound() {
	d.mu.Lock()
	d.maxBytes = 1 << 62
	d.room.Broadcast()
	d.mu.Unlock()
}

// clear drops the queued letters (the state they belong to is dropped).
func (d *deadLetters) clear() {
	d.mu.Lock()
	d.q, d.bytes = nil, 0
	d.room.Broadcast()
	d.mu.Unlock()
}

func (d *deadLetters) addBounded(l DeadLetter, bounded bool) {
	if l.Data != nil {
		// Not nil when empty: nil means the payload is not kept.
		l.Data = append(make([]byte, 0, len(l.Data)), l.Data...)
	}
	l.Fields = append(json.RawMessage(nil), l.Fields...)
	n := l.bytes()
	d.mu.Lock()
	for bounded && d.bytes > 0 && d.bytes+n > d.maxBytes {
		d.room.Wait()
	}
	d.q = append(d.q, l)
	d.bytes += n
	d.mu.Unlock()
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// oldestSeq is the stream sequence of the oldest letter not stored yet (0:
// none queued).
func (d *deadLetters) oldestSeq() uint64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.q) == 0 {
		return 0
	}
	return d.q[0].Seq
}

// pending returns the letters queued and their bytes.
func (d *deadLetters) pending() (int, int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.q), d.bytes
}

// queued returns a copy of the queued letters, for a checkpoint.
func (d *deadLetters) queued() []DeadLetter {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]DeadLetter(nil), d.q...)
}

func (d *deadLetters) run() {
	defer close(d.done)
	wait := 50 * time.Millisecond
	for {
		d.mu.Lock()
		var l DeadLetter
		ok := len(d.q) > 0
		if ok {
			l = d.q[0]
		}
		d.mu.Unlock()
		if !ok {
			select {
			case <-d.stopCh:
				return
			case <-d.wake:
			}
			continue
		}
		if err := d.publish(&l); err != nil {
			d.stats.DLQErrors.Inc()
			if d.failingSince.Load() == 0 {
				d.failingSince.Store(time.Now().UnixMilli())
			}
			d.warn("dlq", "cannot store dead letter (retrying; the message it came from is not acknowledged until it is stored)", err)
			select {
			case <-d.stopCh:
				return
			case <-time.After(wait):
			}
			wait = min(2*wait, 5*time.Second)
			continue
		}
		wait = 50 * time.Millisecond
		d.failingSince.Store(0)
		d.stats.DLQStored.Inc()
		d.mu.Lock()
		d.q[0] = DeadLetter{}
		d.q = d.q[1:]
		d.bytes -= l.bytes()
		if len(d.q) == 0 {
			d.q = nil
		}
		d.room.Broadcast()
		d.mu.Unlock()
	}
}

func (d *deadLetters) publish(l *DeadLetter) error {
	m := l.msg(d.nc.MaxPayload())
	if d.js == nil {
		return d.nc.PublishMsg(m)
	}
	m.Header.Set(nats.MsgIdHdr, d.stream+"-"+strconv.FormatUint(l.Seq, 10)+"-"+strconv.Itoa(l.Index))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, err := d.js.PublishMsg(ctx, m)
	if errors.Is(err, jetstream.ErrNoStreamResponse) && d.recreate != nil &&
		time.Now().UnixMilli()-d.failingSince.Load() > recreateDLQAfter.Milliseconds() && d.failingSince.Load() != 0 {
		// No stream answers on the subject: deleted. Make it again.
		if cerr := d.recreate(ctx); cerr != nil {
			return fmt.Errorf("%w (and cannot re-create the DLQ stream: %v)", err, cerr)
		}
	}
	return err
}

// recreateDLQAfter is how long the DLQ stream may give no answer before it
// is taken as deleted and created again.
const recreateDLQAfter = 10 * time.Second

// stop waits, until ctx is done, for the queue to empty, then stops the
// publisher. It returns how many letters were left (saved by the final
// checkpoint in JetStream mode).
func (d *deadLetters) stop(ctx context.Context) int {
	if d.stopCh == nil {
		return 0
	}
	for {
		n, _ := d.pending()
		if n == 0 || ctx.Err() != nil {
			break
		}
		select {
		case <-ctx.Done():
		case <-time.After(10 * time.Millisecond):
		}
	}
	close(d.stopCh)
	<-d.done
	n, _ := d.pending()
	// An add waiting for room would wait forever.
	d.unbound()
	return n
}

// DLQState is the dead-letter queue's state.
type DLQState struct {
	Pending, PendingBytes int
	// FailingSince is when the oldest queued letter first failed to be
	// stored (Unix ms; 0: the DLQ answers).
	FailingSince int64
}

// DLQ returns the dead-letter queue's state.
func (in *Ingester) DLQ() DLQState {
	n, b := in.deadLetters.pending()
	return DLQState{Pending: n, PendingBytes: b, FailingSince: in.deadLetters.failingSince.Load()}
}
