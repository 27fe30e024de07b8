package cluster

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// liveWatch is a running KV watch and what stops it.
type liveWatch struct {
	w      jetstream.KeyWatcher
	cancel context.CancelFunc
}

// stop ends the watch and drains its channel until the watcher closes it: nats.go's watch
// callback blocks on a full channel, and would keep the subscription from ending. A nil watch
// is a no-op.
func (lw *liveWatch) stop() {
	if lw == nil {
		return
	}
	lw.cancel()
	_ = lw.w.Stop()
	for range lw.w.Updates() {
	}
}

// watch starts a KV watch of the whole bucket and reads its initial values (each key's current
// record, or the marker of its delete or expiry) into a new view; ctx bounds that start only.
// The watch then carries the live changes: puts (joins and renewals), deletes (Leave) and
// purges (limit markers of expired leases).
//
// The watch lives as long as the context WatchAll was given (nats.go unsubscribes when it is
// done, and waits for it in a goroutine), so it gets its own, cancelled by stop.
func (m *Membership) watch(ctx context.Context) (*liveWatch, map[string]viewEntry, error) {
	wctx, cancel := context.WithCancel(context.Background())
	w, err := m.kv.WatchAll(wctx)
	if err != nil {
		cancel()
		return nil, nil, fmt.Errorf("cannot watch membership bucket %q: %w", m.kv.Bucket(), err)
	}
	lw := &liveWatch{w: w, cancel: cancel}
	view := make(map[string]viewEntry)
	for {
		select {
		case e, ok := <-w.Updates():
			if !ok {
				lw.stop()
				return nil, nil, fmt.Errorf("cannot watch membership bucket %q: watch closed before its initial values", m.kv.Bucket())
			}
			if e == nil { // the end of the initial values
				return lw, view, nil
			}
			m.apply(view, e, false)
		case <-ctx.Done():
			lw.stop()
			return nil, nil, fmt.Errorf("cannot watch membership bucket %q: initial values: %w", m.kv.Bucket(), ctx.Err())
		}
	}
}

// watchLoop applies the watch's changes to the view until Leave or a failure, and replaces the
// watch with a fresh one every resync period, or as soon as it closes.
func (m *Membership) watchLoop(w *liveWatch) {
	defer close(m.wDone)
	resync := time.NewTimer(m.resync)
	defer resync.Stop()
	for {
		var updates <-chan jetstream.KeyValueEntry
		if w != nil {
			updates = w.w.Updates()
		}
		select {
		case <-m.stopW:
			w.stop()
			return
		case <-m.failed:
			w.stop()
			return
		case e, ok := <-updates:
			if !ok {
				// The subscription ended under the watch (its connection closed, say).
				w.stop()
				w = nil
				resync.Reset(0)
				continue
			}
			if e == nil {
				continue
			}
			m.mu.Lock()
			changed := m.apply(m.view, e, true)
			m.mu.Unlock()
			if changed {
				m.notify()
			}
		case <-resync.C:
			w.stop()
			var err error
			w, err = m.rewatch()
			switch {
			case err == nil:
				resync.Reset(m.resync)
			case errors.Is(err, nats.ErrConnectionClosed):
				m.fail(err)
				return
			default:
				m.stats.setLastError(err)
				resync.Reset(m.renewGap)
			}
		}
	}
}

// rewatch starts a fresh watch and makes its initial values the view.
func (m *Membership) rewatch() (*liveWatch, error) {
	ctx, cancel := context.WithTimeout(context.Background(), m.ttl)
	defer cancel()
	w, view, err := m.watch(ctx)
	if err != nil {
		return nil, err
	}
	m.stats.resyncs.Add(1)
	m.mu.Lock()
	changed := !maps.EqualFunc(view, m.view, func(a, b viewEntry) bool { return a.raw == b.raw })
	m.view = view
	m.mu.Unlock()
	if changed {
		m.notify()
	}
	return w, nil
}

// apply applies one watch entry to view and says whether the view changed. live is false for
// the initial values of a watch, whose deletes and purges are old news rather than events.
// Callers hold m.mu when view is m.view.
func (m *Membership) apply(view map[string]viewEntry, e jetstream.KeyValueEntry, live bool) bool {
	key := e.Key()
	if key == m.self.Instance && live && !m.leaving.Load() &&
		(e.Operation() != jetstream.KeyValuePut || string(e.Value()) != string(m.rec)) {
		// Self's key was deleted, expired or written by someone else: the renew loop finds out
		// which and acts now rather than at its next tick.
		select {
		case m.renewNow <- struct{}{}:
		default:
		}
	}
	old, had := view[key]
	if e.Operation() != jetstream.KeyValuePut {
		if !had {
			return false
		}
		delete(view, key)
		if live {
			if e.Operation() == jetstream.KeyValueDelete {
				m.stats.left.Add(1)
			} else {
				m.stats.expired.Add(1)
			}
		}
		return true
	}
	if had && old.raw == string(e.Value()) {
		return false // a renewal
	}
	mem, err := decodeMember(key, e.Value())
	if err != nil {
		m.stats.bad.Add(1)
		m.stats.setLastError(err)
		if had {
			delete(view, key)
			return true
		}
		return false
	}
	view[key] = viewEntry{m: mem, raw: string(e.Value())}
	if live && !had {
		m.stats.joined.Add(1)
	}
	return true
}

// notify signals Changes without blocking: a signal already pending covers this change too.
func (m *Membership) notify() {
	select {
	case m.changes <- struct{}{}:
	default:
	}
}
