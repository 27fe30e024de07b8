package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// maxAuditRing bounds the entries kept in memory for GET /v1/audit without
// JetStream.
const maxAuditRing = 1000

// AuditEntry is one change that moves money.
type AuditEntry struct {
	At     time.Time `json:"at"`
	Who    string    `json:"who"`
	Action string    `json:"action"`
	Target string    `json:"target"`
	// ClaimedBy is the set_by an unsigned record claimed: not proof of
	// anything, kept for the investigation.
	ClaimedBy string `json:"claimed_by,omitempty"`
	// Revision is the KV bucket's revision of the change (0: memory only,
	// or a reload of the config file).
	Revision uint64 `json:"revision,omitempty"`
	// Late marks a change whose admin call was answered 503 (NATS away)
	// and that the NATS client delivered once it was back.
	Late bool            `json:"late,omitempty"`
	Old  json.RawMessage `json:"old"`
	New  json.RawMessage `json:"new"`
}

// auditLog writes each change to the service log, the local audit.log (JSON
// lines, mode 0600), the BIDPULSE_AUDIT stream when there is JetStream, and a
// ring for RecentAudit without it.
type auditLog struct {
	c *Control

	mu   sync.Mutex
	ring []AuditEntry
	file *os.File

	// delayed queues the publications postponed by addDelayed, in order,
	// for one goroutine (started by Start with JetStream); close publishes
	// what is left at once.
	delayed chan delayedEntry
	stop    chan struct{}
	stopped sync.Once
	wg      sync.WaitGroup
}

// delayedEntry is work for the audit goroutine: run at due, or at once when
// the control plane stops.
type delayedEntry struct {
	run func()
	due time.Time
}

// maxDelayedAudits bounds the audit goroutine's queue. Past it an entry's
// publication to the stream is dropped and counted (its lines in the
// service log and audit.log are written anyway): the KV watch, which queues
// them, never waits on the audit stream.
const maxDelayedAudits = 1024

// sharedAuditDelay is how long an instance waits before it publishes the
// audit entry of a change it read, unsigned, from the bucket: the instance
// that made the change through its admin API (with another control key)
// publishes its own entry, naming the caller, under the same Nats-Msg-Id
// first, and the stream keeps that one.
const sharedAuditDelay = time.Second

func (a *auditLog) open(path string) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("cannot open audit log: %w", err)
	}
	// A file created 0644 by an older bidpulse.
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return fmt.Errorf("cannot restrict the audit log to its owner: %w", err)
	}
	a.mu.Lock()
	a.file = f
	a.mu.Unlock()
	return nil
}

func (a *auditLog) close() {
	a.stopped.Do(func() { close(a.stop) })
	a.wg.Wait()
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.file != nil {
		a.file.Close()
		a.file = nil
	}
}

// add records a change. A change with a KV revision is published under the
// Nats-Msg-Id "kv-<revision>", so the instances that each see a change made
// outside the admin API store it once. delay postpones the publication to
// the shared stream (see sharedAuditDelay).
func (a *auditLog) add(who, action, target, claimed string, rev uint64, old, new any) {
	a.addDelayed(AuditEntry{Who: who, Action: action, Target: target, ClaimedBy: claimed, Revision: rev}, old, new, 0, false)
}

// addLate records a change made through the admin API; late: one whose
// call failed and that landed later (lateWrite).
func (a *auditLog) addLate(who, action, target string, rev uint64, late bool, old, new any) {
	// A late entry is written from the KV watch: its publication goes
	// through the audit goroutine, so the watch never waits on the stream.
	a.addDelayed(AuditEntry{Who: who, Action: action, Target: target, Revision: rev, Late: late}, old, new, 0, late)
}

func (a *auditLog) addDelayed(e AuditEntry, old, new any, delay time.Duration, queued bool) {
	c := a.c
	e.At = time.UnixMilli(c.now()).UTC()
	rev := e.Revision
	e.Old, _ = json.Marshal(old)
	e.New, _ = json.Marshal(new)
	line, _ := json.Marshal(e)
	c.log.Info().RawJSON("audit", line).Msg("audit")
	a.mu.Lock()
	a.ring = append(a.ring, e)
	if len(a.ring) > maxAuditRing {
		a.ring = append(a.ring[:0], a.ring[len(a.ring)-maxAuditRing:]...)
	}
	if a.file != nil {
		if _, err := a.file.Write(append(line, '\n')); err != nil {
			c.log.Error().Err(err).Msg("cannot write audit.log")
		}
	}
	a.mu.Unlock()
	if c.js == nil {
		return
	}
	if queued && a.delayed != nil {
		a.enqueue(delay, func() { a.publish(line, rev) })
		return
	}
	a.publish(line, rev)
}

// enqueue hands run to the audit goroutine, to run after delay; it never
// waits: with the queue full, run is dropped and counted.
func (a *auditLog) enqueue(delay time.Duration, run func()) {
	select {
	case a.delayed <- delayedEntry{run: run, due: time.Now().Add(delay)}:
	default:
		a.c.auditDropped.Inc()
		a.c.warn.Warn("audit-queue", "audit queue full: an entry is not published to "+AuditStream+" (it is in the service log and audit.log)", nil)
	}
}

// startDelayed starts the goroutine of the postponed publications.
func (a *auditLog) startDelayed() {
	a.delayed = make(chan delayedEntry, maxDelayedAudits)
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		t := time.NewTimer(time.Hour)
		defer t.Stop()
		for {
			var e delayedEntry
			select {
			case e = <-a.delayed:
			case <-a.stop:
				a.drainDelayed()
				return
			}
			if d := time.Until(e.due); d > 0 {
				t.Reset(d)
				select {
				case <-t.C:
				case <-a.stop:
					e.run()
					a.drainDelayed()
					return
				}
			}
			e.run()
		}
	}()
}

// drainDelayed publishes the queued entries now (the watch has stopped:
// nothing more is queued).
func (a *auditLog) drainDelayed() {
	for {
		select {
		case e := <-a.delayed:
			e.run()
		default:
			return
		}
	}
}

func (a *auditLog) publish(line []byte, rev uint64) {
	c := a.c
	msg := &nats.Msg{Subject: AuditSubject, Data: line, Header: nats.Header{}}
	if rev != 0 {
		msg.Header.Set(jetstream.MsgIDHeader, "kv-"+strconv.FormatUint(rev, 10))
	}
	ctx, cancel := context.WithTimeout(context.Background(), kvTimeout)
	defer cancel()
	if _, err := c.js.PublishMsg(ctx, msg); err != nil {
		c.log.Error().Err(err).Msg("cannot publish the audit entry to " + AuditStream)
	}
}

// Audit records a change made outside the control plane's own methods (who
// is the authenticated identity of its author).
func (c *Control) Audit(who, action, target string, old, new any) {
	c.audit.add(who, action, target, "", 0, old, new)
}

// RecentAudit returns up to limit of the newest audit entries, newest first:
// from the shared stream when there is one, else from memory.
func (c *Control) RecentAudit(ctx context.Context, limit int) ([]AuditEntry, error) {
	if c.js == nil {
		a := &c.audit
		a.mu.Lock()
		defer a.mu.Unlock()
		var out []AuditEntry
		for i := len(a.ring) - 1; i >= 0 && len(out) < limit; i-- {
			out = append(out, a.ring[i])
		}
		return out, nil
	}
	st, err := c.js.Stream(ctx, AuditStream)
	if err != nil {
		return nil, err
	}
	info, err := st.Info(ctx)
	if err != nil {
		return nil, err
	}
	var out []AuditEntry
	for seq := info.State.LastSeq; seq >= info.State.FirstSeq && seq > 0 && len(out) < limit; seq-- {
		m, err := st.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		var e AuditEntry
		if json.Unmarshal(m.Data, &e) == nil {
			out = append(out, e)
		}
	}
	return out, nil
}
