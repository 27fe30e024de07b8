package bidder

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/bidpulse/bidpulse/windows"
)

// The control plane: operator decisions that move money (overrides, the
// kill switch) live in a NATS KV bucket, so they survive restarts and every
// bidpulse on the same NATS shares them; each instance watches the bucket
// and applies changes to its in-memory tables. Without JetStream they are
// held in memory only. Every change is written to the audit log.
const (
	controlBucket = "bidpulse_control"
	auditSubject  = "bidpulse.audit"
	auditStream   = "BIDPULSE_AUDIT"
	killKey       = "killswitch"
	overridePre   = "override."
	maxAuditRing  = 1000
)

// overrideRecord is an override as stored in the KV bucket.
type overrideRecord struct {
	Level      string            `json:"level"`
	Dims       map[string]string `json:"dims"`
	Multiplier float64           `json:"multiplier"`
	Freeze     bool              `json:"freeze,omitempty"`
	ExpiresMs  int64             `json:"expires_at_ms,omitempty"`
	SetBy      string            `json:"set_by"`
	SetAtMs    int64             `json:"set_at_ms"`
}

// killRecord is the kill switch as stored in the KV bucket.
type killRecord struct {
	Enabled bool   `json:"enabled"`
	Reason  string `json:"reason,omitempty"`
	SetBy   string `json:"set_by"`
	SetAtMs int64  `json:"set_at_ms"`
}

// auditEntry is one change that moves money.
type auditEntry struct {
	At     time.Time       `json:"at"`
	Who    string          `json:"who"`
	Action string          `json:"action"`
	Target string          `json:"target"`
	Old    json.RawMessage `json:"old"`
	New    json.RawMessage `json:"new"`
}

type control struct {
	svc     *Service
	js      jetstream.JetStream
	kv      jetstream.KeyValue // nil: memory only
	watcher jetstream.KeyWatcher
	done    chan struct{}

	kill     atomic.Bool
	killInfo atomic.Pointer[killRecord]

	auditMu   sync.Mutex
	auditRing []auditEntry
	auditFile *os.File
}

// startControl opens the KV bucket and the audit stream when the server
// offers JetStream, loads their content and starts watching.
func (s *Service) startControl(ctx context.Context) error {
	c := &control{svc: s, done: make(chan struct{})}
	s.control = c
	if err := os.MkdirAll(s.opts.DataDir, 0o755); err != nil {
		return fmt.Errorf("cannot create data dir: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(s.opts.DataDir, "audit.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("cannot open audit log: %w", err)
	}
	c.auditFile = f
	js, err := jetstream.New(s.nc)
	if err == nil {
		_, err = js.AccountInfo(ctx)
	}
	if err != nil {
		s.log.Warn().Err(err).Msg("no JetStream: overrides and the kill switch are held in memory only (lost on restart, not shared)")
		close(c.done)
		return nil
	}
	c.js = js
	c.kv, err = js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      controlBucket,
		Description: "bidpulse overrides and kill switch",
		History:     5,
		Storage:     jetstream.FileStorage,
	})
	if err != nil {
		return fmt.Errorf("cannot open KV bucket %s: %w", controlBucket, err)
	}
	if _, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        auditStream,
		Description: "bidpulse audit log: changes that move money",
		Subjects:    []string{auditSubject},
		Storage:     jetstream.FileStorage,
		MaxAge:      365 * 24 * time.Hour,
		MaxBytes:    256 << 20,
		Discard:     jetstream.DiscardOld,
	}); err != nil {
		return fmt.Errorf("cannot create stream %s: %w", auditStream, err)
	}
	c.watcher, err = c.kv.WatchAll(context.Background())
	if err != nil {
		return fmt.Errorf("cannot watch KV bucket %s: %w", controlBucket, err)
	}
	// The initial values arrive first, then a nil entry: wait for it so
	// the first answers already honour the stored overrides.
	initial := true
	for initial {
		select {
		case e := <-c.watcher.Updates():
			if e == nil {
				initial = false
				continue
			}
			c.apply(e)
		case <-ctx.Done():
			return fmt.Errorf("cannot load KV bucket %s: %w", controlBucket, ctx.Err())
		}
	}
	go c.watch()
	return nil
}

func (c *control) watch() {
	defer close(c.done)
	for e := range c.watcher.Updates() {
		if e != nil {
			c.apply(e)
		}
	}
}

func (c *control) stop() {
	if c == nil {
		return
	}
	if c.watcher != nil {
		c.watcher.Stop()
		<-c.done
	}
	c.auditMu.Lock()
	if c.auditFile != nil {
		c.auditFile.Close()
		c.auditFile = nil
	}
	c.auditMu.Unlock()
}

// apply applies one KV entry (a put or a delete) to the in-memory tables.
func (c *control) apply(e jetstream.KeyValueEntry) {
	s := c.svc
	key := e.Key()
	deleted := e.Operation() != jetstream.KeyValuePut
	switch {
	case key == killKey:
		var k killRecord
		if !deleted {
			if err := json.Unmarshal(e.Value(), &k); err != nil {
				s.log.Error().Err(err).Str("key", key).Msg("bad kill switch record in KV; ignored")
				return
			}
		}
		c.setKill(&k)
	case strings.HasPrefix(key, policyPre):
		name, err := unb64(key[len(policyPre):])
		if err != nil {
			s.log.Error().Err(err).Str("key", key).Msg("bad policy key in KV; ignored")
			return
		}
		if deleted {
			s.applyPolicyRecord(string(name), nil)
			return
		}
		var r policyRecord
		if err := json.Unmarshal(e.Value(), &r); err != nil {
			s.log.Error().Err(err).Str("key", key).Msg("bad policy record in KV; ignored")
			return
		}
		s.applyPolicyRecord(string(name), &r)
	case strings.HasPrefix(key, overridePre):
		raw, err := base64.RawURLEncoding.DecodeString(key[len(overridePre):])
		if err != nil {
			s.log.Error().Err(err).Str("key", key).Msg("bad override key in KV; ignored")
			return
		}
		if deleted {
			s.overrides.delete(raw)
			return
		}
		var r overrideRecord
		if err := json.Unmarshal(e.Value(), &r); err != nil {
			s.log.Error().Err(err).Str("key", key).Msg("bad override record in KV; ignored")
			return
		}
		ov, err := s.overrideFromRecord(&r)
		if err != nil {
			s.log.Warn().Err(err).Str("key", key).Msg("override in KV does not fit this instance's rollups; ignored")
			return
		}
		s.overrides.set(ov)
	}
}

func (c *control) setKill(k *killRecord) {
	c.killInfo.Store(k)
	if c.kill.Swap(k.Enabled) != k.Enabled {
		c.svc.log.Warn().Bool("enabled", k.Enabled).Str("by", k.SetBy).Str("reason", k.Reason).Msg("kill switch changed")
	}
}

// overrideFromRecord builds the in-memory override of a KV record.
func (s *Service) overrideFromRecord(r *overrideRecord) (*override, error) {
	lvl, ok := s.rollups.ByName(r.Level)
	if !ok {
		return nil, fmt.Errorf("level %q is not configured", r.Level)
	}
	var vals windows.Values
	for name, v := range r.Dims {
		d, ok := windows.ParseDim(name)
		if !ok {
			return nil, fmt.Errorf("unknown dimension %q", name)
		}
		vals[d] = []byte(v)
	}
	if vals.Mask() != s.rollups.Levels[lvl].Mask {
		return nil, fmt.Errorf("dimensions do not form level %s", r.Level)
	}
	ov := &override{level: lvl, multiplier: r.Multiplier, expiresMs: r.ExpiresMs, freeze: r.Freeze, setBy: r.SetBy, setAtMs: r.SetAtMs}
	ov.key = string(windows.AppendKey(nil, lvl, s.rollups, &vals))
	for _, d := range s.rollups.Levels[lvl].Dims {
		ov.vals[d] = string(vals[d])
	}
	return ov, nil
}

func (s *Service) recordOf(ov *override) *overrideRecord {
	r := &overrideRecord{
		Level: s.rollups.Levels[ov.level].Name, Dims: map[string]string{}, Multiplier: ov.multiplier,
		Freeze: ov.freeze, ExpiresMs: ov.expiresMs, SetBy: ov.setBy, SetAtMs: ov.setAtMs,
	}
	for _, d := range s.rollups.Levels[ov.level].Dims {
		r.Dims[windows.DimNames[d]] = ov.vals[d]
	}
	return r
}

func b64(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

func unb64(s string) ([]byte, error) { return base64.RawURLEncoding.DecodeString(s) }

func overrideKVKey(key string) string {
	return overridePre + base64.RawURLEncoding.EncodeToString([]byte(key))
}

// putOverride stores ov (in KV when there is one, and in memory) and
// audits the change.
func (c *control) putOverride(ov *override, old *override) error {
	s := c.svc
	rec := s.recordOf(ov)
	if c.kv != nil {
		b, _ := json.Marshal(rec)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if _, err := c.kv.Put(ctx, overrideKVKey(ov.key), b); err != nil {
			return fmt.Errorf("cannot store the override: %w", err)
		}
	}
	if err := s.overrides.set(ov); err != nil {
		return err
	}
	var oldRec any
	if old != nil {
		oldRec = s.recordOf(old)
	}
	c.audit(ov.setBy, "override.set", overrideTarget(rec), oldRec, rec)
	return nil
}

func (c *control) deleteOverride(old *override, who string) error {
	s := c.svc
	if c.kv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := c.kv.Delete(ctx, overrideKVKey(old.key)); err != nil {
			return fmt.Errorf("cannot delete the override: %w", err)
		}
	}
	s.overrides.delete([]byte(old.key))
	rec := s.recordOf(old)
	c.audit(who, "override.delete", overrideTarget(rec), rec, nil)
	return nil
}

// setKillSwitch stores the kill switch and audits the change.
func (c *control) setKillSwitch(k *killRecord) error {
	// Read before the put: the KV watcher may apply the new value first.
	old := c.killInfo.Load()
	if c.kv != nil {
		b, _ := json.Marshal(k)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if _, err := c.kv.Put(ctx, killKey, b); err != nil {
			return fmt.Errorf("cannot store the kill switch: %w", err)
		}
	}
	c.setKill(k)
	c.audit(k.SetBy, "killswitch.set", "global", old, k)
	return nil
}

func overrideTarget(r *overrideRecord) string {
	var b strings.Builder
	b.WriteString(r.Level)
	for _, name := range windows.DimNames {
		if v, ok := r.Dims[name]; ok {
			b.WriteString(" ")
			b.WriteString(name)
			b.WriteString("=")
			b.WriteString(v)
		}
	}
	return b.String()
}

// audit records a change: in the log, the local audit.log (JSON lines),
// the BIDPULSE_AUDIT stream when there is JetStream, and a ring for
// GET /v1/audit.
func (c *control) audit(who, action, target string, old, new any) {
	s := c.svc
	e := auditEntry{At: time.UnixMilli(s.clock.NowMs()).UTC(), Who: who, Action: action, Target: target}
	e.Old, _ = json.Marshal(old)
	e.New, _ = json.Marshal(new)
	line, _ := json.Marshal(e)
	s.log.Info().RawJSON("audit", line).Msg("audit")
	c.auditMu.Lock()
	c.auditRing = append(c.auditRing, e)
	if len(c.auditRing) > maxAuditRing {
		c.auditRing = append(c.auditRing[:0], c.auditRing[len(c.auditRing)-maxAuditRing:]...)
	}
	if c.auditFile != nil {
		if _, err := c.auditFile.Write(append(line, '\n')); err != nil {
			s.log.Error().Err(err).Msg("cannot write audit.log")
		}
	}
	c.auditMu.Unlock()
	if c.js != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if _, err := c.js.Publish(ctx, auditSubject, line); err != nil {
			s.log.Error().Err(err).Msg("cannot publish the audit entry to " + auditStream)
		}
	}
}

// recentAudit returns up to limit of the newest audit entries, newest
// first: from the shared stream when there is one, else from memory.
func (c *control) recentAudit(ctx context.Context, limit int) ([]auditEntry, error) {
	if c.js == nil {
		c.auditMu.Lock()
		defer c.auditMu.Unlock()
		var out []auditEntry
		for i := len(c.auditRing) - 1; i >= 0 && len(out) < limit; i-- {
			out = append(out, c.auditRing[i])
		}
		return out, nil
	}
	st, err := c.js.Stream(ctx, auditStream)
	if err != nil {
		return nil, err
	}
	info, err := st.Info(ctx)
	if err != nil {
		return nil, err
	}
	var out []auditEntry
	for seq := info.State.LastSeq; seq >= info.State.FirstSeq && seq > 0 && len(out) < limit; seq-- {
		m, err := st.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		var e auditEntry
		if json.Unmarshal(m.Data, &e) == nil {
			out = append(out, e)
		}
	}
	return out, nil
}
