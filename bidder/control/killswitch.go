package control

import (
	"fmt"
	"unicode/utf8"
)

// MaxReasonLen bounds the kill switch's reason.
const MaxReasonLen = 1024

// KillRecord is the kill switch, in memory and as stored in the KV bucket.
// While enabled, every bid answer is the neutral 1, overrides included.
type KillRecord struct {
	Enabled bool   `json:"enabled"`
	Reason  string `json:"reason,omitempty"`
	SetBy   string `json:"set_by"`
	SetAtMs int64  `json:"set_at_ms"`
	Sig     string `json:"sig,omitempty"`
}

func (r *KillRecord) setSig(s string) { r.Sig = s }

// check applies the admin API's rules to a kill switch record.
func (r *KillRecord) check() error {
	switch {
	case len(r.Reason) > MaxReasonLen || !utf8.ValidString(r.Reason):
		return fmt.Errorf("reason must be a string of at most %d bytes of UTF-8", MaxReasonLen)
	case len(r.SetBy) > maxSetByLen || !utf8.ValidString(r.SetBy):
		return fmt.Errorf("set_by must be at most %d bytes of UTF-8", maxSetByLen)
	case r.SetAtMs < 0:
		return fmt.Errorf("negative set_at_ms")
	}
	return nil
}

// Killed reports whether the kill switch is on. It takes no lock.
func (c *Control) Killed() bool { return c.kill.Load() }

// KillSwitch returns the kill switch's record (zero: never set).
func (c *Control) KillSwitch() KillRecord {
	if k := c.killInfo.Load(); k != nil {
		return *k
	}
	return KillRecord{}
}

// SetKillSwitch checks and stores the kill switch and audits the change.
// k.SetBy must be the authenticated identity of the caller.
func (c *Control) SetKillSwitch(k KillRecord) error {
	if k.SetBy == "" {
		panic("BUG: the kill switch set without the caller's identity")
	}
	k.Sig = ""
	if err := k.check(); err != nil {
		return err
	}
	// Read before the put: the KV watcher may apply the new value first.
	old := c.killInfo.Load()
	done := k
	auditSet := func(late bool) func(rev uint64) {
		return func(rev uint64) { c.audit.addLate(done.SetBy, "killswitch.set", "global", rev, late, old, &done) }
	}
	rev, err := c.put(KillKey, &k, auditSet(true))
	if err != nil {
		return err
	}
	k.Sig = ""
	c.setKill(&k)
	auditSet(false)(rev)
	return nil
}

func (c *Control) setKill(k *KillRecord) {
	c.killInfo.Store(k)
	if c.kill.Swap(k.Enabled) != k.Enabled {
		c.log.Warn().Bool("enabled", k.Enabled).Str("by", k.SetBy).Str("reason", k.Reason).Msg("kill switch changed")
	}
}

// applyKill applies the kill switch read from the bucket.
func (c *Control) applyKill(k *KillRecord, live bool, rev uint64, signed bool) {
	claimed := k.SetBy
	k.SetBy = c.author(k.SetBy, signed)
	old := c.killInfo.Load()
	if old != nil && old.Enabled == k.Enabled && old.Reason == k.Reason && old.SetAtMs == k.SetAtMs && old.SetBy == k.SetBy {
		return // this instance's own change, seen again
	}
	c.setKill(k)
	if claimed == NATSIdentity {
		claimed = ""
	}
	c.auditRead(signed, live, rev, "killswitch.set", "global", claimed, old, k)
}
