package control

import (
	"encoding/base64"
	"errors"
	"fmt"
	"math"
	"sort"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/bidpulse/bidpulse/bidder/internal/cowmap"
	"github.com/bidpulse/bidpulse/windows"
)

const (
	// MaxOverrides bounds the override table.
	MaxOverrides = 100_000
	// MaxOverrideMultiplier is the largest multiplier an operator may set
	// (lower when the policies' hard_max is lower).
	MaxOverrideMultiplier = 10
	// MaxOverrideTTL bounds an override's time to live.
	MaxOverrideTTL = 366 * 24 * time.Hour
	// maxDimLen bounds a dimension value, as events bound theirs.
	maxDimLen = 128
)

// ErrTooManyOverrides is returned when the override table is full.
var ErrTooManyOverrides = fmt.Errorf("too many overrides: the limit is %d", MaxOverrides)

// Override is an operator's fixed multiplier for exactly one key.
type Override struct {
	// Level is the rollup level, Key the encoded key (windows.AppendKey)
	// and Vals its dimension values (those of the level; others empty).
	Level int
	Key   string
	Vals  [windows.NumDims]string
	// Multiplier is the answer while the override lives.
	Multiplier float64
	// ExpiresMs is when it ends, in Unix ms (0: never).
	ExpiresMs int64
	// Freeze: set with "freeze", the value served when it was set.
	Freeze bool
	// SetBy is who set it: an admin token's name, or NATSIdentity.
	SetBy   string
	SetAtMs int64
}

// OverrideRecord is an override as stored in the KV bucket. Deleted marks
// the tombstone the admin API writes before it deletes the key.
type OverrideRecord struct {
	Level      string            `json:"level"`
	Dims       map[string]string `json:"dims"`
	Multiplier float64           `json:"multiplier"`
	Freeze     bool              `json:"freeze,omitempty"`
	ExpiresMs  int64             `json:"expires_at_ms,omitempty"`
	Deleted    bool              `json:"deleted,omitempty"`
	SetBy      string            `json:"set_by"`
	SetAtMs    int64             `json:"set_at_ms"`
	Sig        string            `json:"sig,omitempty"`
}

func (r *OverrideRecord) setSig(s string) { r.Sig = s }

// overrides is the table of operator overrides, keyed by encoded key. The bid
// path takes no lock (a copy-on-write table); writers (the admin API, the KV
// watch, expiry) are serialised by mu, so the limit holds.
type overrides struct {
	mu sync.Mutex
	m  *cowmap.Map[Override]
}

// MaxMultiplier is the largest override multiplier allowed now:
// MaxOverrideMultiplier, or the policies' hard_max when lower.
func (c *Control) MaxMultiplier() float64 {
	m := float64(MaxOverrideMultiplier)
	if hm := c.filePolicies.Load().HardMax; hm > 0 && hm < m {
		m = hm
	}
	return m
}

// CheckMultiplier checks an override's multiplier: a number in
// [0, MaxMultiplier()] (0 = do not bid).
func (c *Control) CheckMultiplier(f float64) error {
	if max := c.MaxMultiplier(); !(f >= 0 && f <= max) || math.IsNaN(f) {
		return fmt.Errorf("multiplier must be a number in [0, %g] (0 = do not bid; the upper bound is min(10, hard_max))", max)
	}
	return nil
}

// CheckDim checks a dimension value as the admin API takes it, normalised:
// 1..128 bytes of UTF-8, device lower-case and country upper-case.
func CheckDim(d windows.Dim, v string) error {
	name := windows.DimNames[d]
	switch {
	case v == "":
		return fmt.Errorf("empty %s", name)
	case len(v) > maxDimLen:
		return fmt.Errorf("%s longer than %d bytes", name, maxDimLen)
	case !utf8.ValidString(v):
		return fmt.Errorf("%s is not valid UTF-8", name)
	case d == windows.DimDevice && hasASCIIUpper(v):
		return fmt.Errorf("device %q is not lower-case", v)
	case d == windows.DimCountry && hasASCIILower(v):
		return fmt.Errorf("country %q is not upper-case", v)
	}
	return nil
}

func hasASCIIUpper(s string) bool {
	for i := 0; i < len(s); i++ {
		if 'A' <= s[i] && s[i] <= 'Z' {
			return true
		}
	}
	return false
}

func hasASCIILower(s string) bool {
	for i := 0; i < len(s); i++ {
		if 'a' <= s[i] && s[i] <= 'z' {
			return true
		}
	}
	return false
}

// CheckOverride checks ov against the admin API's rules, whatever path it
// came by: a configured level whose dimensions it names exactly, valid
// dimension values, a multiplier in [0, MaxMultiplier()], an expiry within
// MaxOverrideTTL of when it was set, and a set_by of at most 128 bytes.
// PutOverride applies it to the admin API's overrides too: one rule, both
// paths.
func (c *Control) CheckOverride(ov *Override) error {
	if ov.Level < 0 || ov.Level >= len(c.rollups.Levels) {
		return fmt.Errorf("level %d is not configured", ov.Level)
	}
	var vals windows.Values
	for d := range ov.Vals {
		if ov.Vals[d] == "" {
			continue
		}
		if err := CheckDim(windows.Dim(d), ov.Vals[d]); err != nil {
			return err
		}
		vals[d] = []byte(ov.Vals[d])
	}
	if vals.Mask() != c.rollups.Levels[ov.Level].Mask {
		return fmt.Errorf("dimensions do not form level %s", c.rollups.Levels[ov.Level].Name)
	}
	if string(windows.AppendKey(nil, ov.Level, c.rollups, &vals)) != ov.Key {
		return errors.New("BUG: override key does not match its dimensions")
	}
	if err := c.CheckMultiplier(ov.Multiplier); err != nil {
		return err
	}
	if ov.SetAtMs < 0 || ov.ExpiresMs < 0 {
		return errors.New("negative set_at_ms or expires_at_ms")
	}
	if ov.ExpiresMs != 0 && (ov.ExpiresMs <= ov.SetAtMs || ov.ExpiresMs-ov.SetAtMs > MaxOverrideTTL.Milliseconds()) {
		return fmt.Errorf("expires_at_ms must be after set_at_ms and at most %s after it", MaxOverrideTTL)
	}
	if len(ov.SetBy) > maxSetByLen || !utf8.ValidString(ov.SetBy) {
		return fmt.Errorf("set_by must be at most %d bytes of UTF-8", maxSetByLen)
	}
	return nil
}

// overrideFromRecord builds and checks the override of a KV record.
func (c *Control) overrideFromRecord(r *OverrideRecord) (*Override, error) {
	lvl, ok := c.rollups.ByName(r.Level)
	if !ok {
		return nil, fmt.Errorf("level %q is not configured", r.Level)
	}
	ov := &Override{Level: lvl, Multiplier: r.Multiplier, ExpiresMs: r.ExpiresMs, Freeze: r.Freeze, SetBy: r.SetBy, SetAtMs: r.SetAtMs}
	var vals windows.Values
	for name, v := range r.Dims {
		d, ok := windows.ParseDim(name)
		if !ok {
			return nil, fmt.Errorf("unknown dimension %q", name)
		}
		ov.Vals[d] = v
		vals[d] = []byte(v)
	}
	if vals.Mask() != c.rollups.Levels[lvl].Mask {
		return nil, fmt.Errorf("dimensions do not form level %s", r.Level)
	}
	ov.Key = string(windows.AppendKey(nil, lvl, c.rollups, &vals))
	if err := c.CheckOverride(ov); err != nil {
		return nil, err
	}
	return ov, nil
}

func (c *Control) recordOf(ov *Override) *OverrideRecord {
	r := &OverrideRecord{
		Level: c.rollups.Levels[ov.Level].Name, Dims: map[string]string{}, Multiplier: ov.Multiplier,
		Freeze: ov.Freeze, ExpiresMs: ov.ExpiresMs, SetBy: ov.SetBy, SetAtMs: ov.SetAtMs,
	}
	for _, d := range c.rollups.Levels[ov.Level].Dims {
		r.Dims[windows.DimNames[d]] = ov.Vals[d]
	}
	return r
}

func overrideKVKey(key string) string {
	return overridePre + base64.RawURLEncoding.EncodeToString([]byte(key))
}

// OverrideTarget names an override's key in the audit log
// ("campaign_placement campaign=c1 placement=p9").
func (c *Control) OverrideTarget(ov *Override) string {
	var b strings.Builder
	b.WriteString(c.rollups.Levels[ov.Level].Name)
	for _, d := range c.rollups.Levels[ov.Level].Dims {
		b.WriteString(" ")
		b.WriteString(windows.DimNames[d])
		b.WriteString("=")
		b.WriteString(ov.Vals[d])
	}
	return b.String()
}

// NumOverrides returns the number of overrides held, expired ones included.
func (c *Control) NumOverrides() int { return c.overrides.m.Len() }

// Override returns the multiplier overriding key at nowMs. It takes no lock
// and does not allocate.
func (c *Control) Override(key []byte, nowMs int64) (float64, bool) {
	ov := c.overrides.m.Get(key)
	if ov == nil || (ov.ExpiresMs != 0 && nowMs >= ov.ExpiresMs) {
		return 0, false
	}
	return ov.Multiplier, true
}

// LookupOverride returns a copy of the override of key (expired ones
// included).
func (c *Control) LookupOverride(key []byte) (*Override, bool) {
	ov := c.overrides.m.Get(key)
	if ov == nil {
		return nil, false
	}
	cp := *ov
	return &cp, true
}

// Overrides returns the live overrides ordered by level, then dimension
// values.
func (c *Control) Overrides(nowMs int64) []Override {
	out := make([]Override, 0, c.overrides.m.Len())
	c.overrides.m.Range(func(_ string, ov *Override) bool {
		if ov.ExpiresMs == 0 || nowMs < ov.ExpiresMs {
			out = append(out, *ov)
		}
		return true
	}, nil)
	sort.Slice(out, func(i, j int) bool {
		if out[i].Level != out[j].Level {
			return out[i].Level < out[j].Level
		}
		return strings.Join(out[i].Vals[:], "\x00") < strings.Join(out[j].Vals[:], "\x00")
	})
	return out
}

// set stores ov in the table; it refuses a new key past MaxOverrides.
func (o *overrides) set(ov *Override) (old *Override, err error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	old = o.m.GetString(ov.Key)
	if old == nil && o.m.Len() >= MaxOverrides {
		return nil, ErrTooManyOverrides
	}
	o.m.Set(ov.Key, ov)
	return old, nil
}

func (o *overrides) delete(key []byte) *Override {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.m.Delete(key)
}

// PutOverride checks ov, stores it (in the KV bucket when there is one, then
// in memory) and audits the change. ov.SetBy must be the authenticated
// identity of the caller.
func (c *Control) PutOverride(ov *Override) error {
	if ov.SetBy == "" {
		panic("BUG: an override set without the caller's identity")
	}
	if err := c.CheckOverride(ov); err != nil {
		return err
	}
	// Read before the put: the KV watch may apply the new value first.
	old := c.overrides.m.GetString(ov.Key)
	if old == nil && c.overrides.m.Len() >= MaxOverrides {
		return ErrTooManyOverrides
	}
	auditSet := func(late bool) func(rev uint64) {
		return func(rev uint64) {
			c.audit.addLate(ov.SetBy, "override.set", c.OverrideTarget(ov), rev, late, c.recordOrNil(old), c.recordOf(ov))
		}
	}
	rev, err := c.put(overrideKVKey(ov.Key), c.recordOf(ov), auditSet(true))
	if err != nil {
		return err
	}
	if _, err := c.overrides.set(ov); err != nil {
		return err
	}
	auditSet(false)(rev)
	return nil
}

// DeleteOverride removes the override of key and audits it; it returns false
// when there is none.
func (c *Control) DeleteOverride(key []byte, who string) (bool, error) {
	old := c.overrides.m.Get(key)
	if old == nil {
		return false, nil
	}
	tomb := c.recordOf(old)
	tomb.Deleted, tomb.SetBy, tomb.SetAtMs = true, who, c.now()
	auditDelete := func(late bool) func(rev uint64) {
		return func(rev uint64) {
			c.audit.addLate(who, "override.delete", c.OverrideTarget(old), rev, late, c.recordOf(old), nil)
		}
	}
	rev, err := c.remove(overrideKVKey(old.Key), tomb, auditDelete(true))
	if err != nil {
		return false, err
	}
	// The KV watch may have applied the tombstone already: audit anyway.
	c.overrides.delete(key)
	auditDelete(false)(rev)
	return true, nil
}

func (c *Control) recordOrNil(ov *Override) any {
	if ov == nil {
		return nil
	}
	return c.recordOf(ov)
}

// ExpireOverrides removes the overrides whose time to live has passed.
func (c *Control) ExpireOverrides(nowMs int64) {
	o := c.overrides
	o.mu.Lock()
	defer o.mu.Unlock()
	expired := false
	o.m.Range(func(_ string, ov *Override) bool {
		expired = ov.ExpiresMs != 0 && nowMs >= ov.ExpiresMs
		return !expired
	}, nil)
	if expired {
		o.m.Flush(func(_ string, ov *Override) bool {
			return ov.ExpiresMs == 0 || nowMs < ov.ExpiresMs
		}, nil, nil)
	}
}

// applyOverride applies an override read from the bucket.
func (c *Control) applyOverride(ov *Override, live bool, rev uint64, signed bool) {
	claimed := ov.SetBy
	ov.SetBy = c.author(ov.SetBy, signed)
	old, err := c.overrides.set(ov)
	if err != nil {
		c.reject(kindOverride, overrideKVKey(ov.Key), err)
		return
	}
	if claimed == NATSIdentity {
		claimed = ""
	}
	c.auditRead(signed, live, rev, "override.set", c.OverrideTarget(ov), claimed, c.recordOrNil(old), c.recordOf(ov))
}

// applyOverrideDelete applies a delete (or a tombstone) read from the
// bucket. A key this instance does not hold is not audited: the change
// that removed it here was.
func (c *Control) applyOverrideDelete(key []byte, claimed string, live bool, rev uint64, signed bool) {
	old := c.overrides.delete(key)
	if old == nil {
		return
	}
	if claimed == NATSIdentity {
		claimed = ""
	}
	c.auditRead(signed, live, rev, "override.delete", c.OverrideTarget(old), claimed, c.recordOf(old), nil)
}
