package control

import (
	"testing"
	"time"

	"github.com/bidpulse/bidpulse/windows"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// entry is one KV entry as the watch delivers it.
type entry struct {
	key   string
	value []byte
	op    jetstream.KeyValueOp
	rev   uint64
}

func (e entry) Bucket() string                  { return Bucket }
func (e entry) Key() string                     { return e.key }
func (e entry) Value() []byte                   { return e.value }
func (e entry) Revision() uint64                { return e.rev }
func (e entry) Created() time.Time              { return time.UnixMilli(testNow) }
func (e entry) Delta() uint64                   { return 0 }
func (e entry) Operation() jetstream.KeyValueOp { return e.op }

// FuzzKVRecord feeds arbitrary keys and records to the KV watch's decoder: it
// never panics, and whatever it accepts obeys the admin API's rules.
func FuzzKVRecord(f *testing.F) {
	signedBy := New(Options{Rollups: testRollups(f), Policies: testPolicies(f, 4), Key: []byte("fuzz-key-0123456789"), Now: func() int64 { return testNow }, Log: zerolog.Nop()})
	k := overrideKey(f, signedBy, "campaign/placement", map[string]string{"campaign": "c1", "placement": "p1"})
	ov := &Override{Level: 1, Key: k, Multiplier: 2, SetBy: "alice", SetAtMs: testNow}
	ov.Vals[windows.DimCampaign], ov.Vals[windows.DimPlacement] = "c1", "p1"
	f.Add(overrideKVKey(k), sign(signedBy.key, overrideKVKey(k), signedBy.recordOf(ov)), false)
	f.Add(overrideKVKey(k), []byte(`{"level":"campaign/placement","dims":{"campaign":"c1","placement":"p1"},"multiplier":1e6,"set_by":"m","set_at_ms":1}`), false)
	f.Add(overrideKVKey(k), []byte(`{"level":"campaign/placement","dims":{"campaign":"c1","placement":"p1"},"deleted":true,"multiplier":1,"set_by":"m","set_at_ms":1}`), false)
	f.Add(overrideKVKey(k), []byte(nil), true)
	f.Add(KillKey, []byte(`{"enabled":true,"reason":"r","set_by":"x","set_at_ms":1}`), false)
	f.Add(KillKey, []byte(nil), true)
	f.Add(policyKVKey("c1"), []byte(`{"campaign":"c1","policy":{"max":3},"set_by":"x","set_at_ms":1}`), false)
	f.Add(policyKVKey("c1"), []byte(`{"campaign":"c1","deleted":true,"set_by":"x","set_at_ms":1}`), false)
	f.Add("override.a", []byte(`{}`), false)
	f.Fuzz(func(t *testing.T, key string, value []byte, deleted bool) {
		c := New(Options{Rollups: testRollups(t), Policies: testPolicies(t, 4), Key: []byte("fuzz-key-0123456789"), Now: func() int64 { return testNow }, Log: zerolog.Nop()})
		op := jetstream.KeyValuePut
		if deleted {
			op = jetstream.KeyValueDelete
		}
		c.apply(entry{key: key, value: value, op: op, rev: 1}, true)
		c.overrides.m.Range(func(_ string, ov *Override) bool {
			if err := c.CheckOverride(ov); err != nil {
				t.Fatalf("accepted an override that breaks the rules: %+v: %v", ov, err)
			}
			if ov.Multiplier > 4 {
				t.Fatalf("accepted a multiplier above hard_max: %v", ov.Multiplier)
			}
			return true
		}, nil)
		if k := c.KillSwitch(); k.Enabled != c.Killed() || len(k.Reason) > MaxReasonLen {
			t.Fatalf("unexpected kill switch: %+v (killed %v)", k, c.Killed())
		}
		for name, p := range c.Policies().Campaigns {
			if p == nil || p.Max > 0 && p.Min > p.Max {
				t.Fatalf("accepted a bad policy for %q: %+v", name, p)
			}
		}
	})
}
