package control

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/bidpulse/bidpulse/models"
	"github.com/bidpulse/bidpulse/windows"
)

// testNow is the clock of the control plane in these tests.
var testNow = time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC).UnixMilli()

func testRollups(t testing.TB) *windows.Rollups {
	t.Helper()
	r, err := windows.ParseRollups([]string{"campaign", "campaign/placement", "campaign/device", "campaign/country"})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func testPolicies(t testing.TB, hardMax float64) *models.Policies {
	t.Helper()
	p := models.DefaultPolicies()
	p.HardMax = hardMax
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}
	return &p
}

// startNATS starts an embedded JetStream server on a random loopback port.
func startNATS(t testing.TB) string {
	t.Helper()
	srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoSigs: true, NoLog: true})
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("NATS server not ready")
	}
	t.Cleanup(srv.Shutdown)
	return srv.ClientURL()
}

type testControl struct {
	*Control
	nc   *nats.Conn
	kv   jetstream.KeyValue // an outside client's view of the bucket
	logs *bytes.Buffer
	ms   *metrics.Set
	dir  string
}

func startControl(t *testing.T, url string, key []byte, hardMax float64) *testControl {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	tc := &testControl{nc: nc, logs: &bytes.Buffer{}, ms: metrics.NewSet(), dir: t.TempDir()}
	tc.Control = New(Options{
		Rollups: testRollups(t), Policies: testPolicies(t, hardMax), DataDir: tc.dir, Key: key,
		Now: func() int64 { return testNow }, Log: zerolog.New(tc.logs), Metrics: tc.ms,
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := tc.Start(ctx, nc); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tc.Stop)
	js, _ := jetstream.New(nc)
	if tc.kv, err = js.KeyValue(ctx, Bucket); err != nil {
		t.Fatal(err)
	}
	return tc
}

func (tc *testControl) counter(name string) string {
	var b bytes.Buffer
	tc.ms.WritePrometheus(&b)
	for _, line := range strings.Split(b.String(), "\n") {
		if strings.HasPrefix(line, name+" ") {
			return strings.TrimPrefix(line, name+" ")
		}
	}
	return "absent"
}

func waitFor(t *testing.T, what string, fn func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !fn() {
		if time.Now().After(deadline) {
			t.Fatalf("timeout waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func overrideKey(t testing.TB, c *Control, lvl string, dims map[string]string) string {
	t.Helper()
	l, ok := c.rollups.ByName(lvl)
	if !ok {
		t.Fatalf("no level %s", lvl)
	}
	var vals windows.Values
	for k, v := range dims {
		d, _ := windows.ParseDim(k)
		vals[d] = []byte(v)
	}
	return string(windows.AppendKey(nil, l, c.rollups, &vals))
}

// TestForgedRecordsAreRejected writes, as an outside NATS client would with
// `nats kv put`, records that break the admin API's rules: each is ignored,
// counted under its kind, and never reaches a bid answer.
func TestForgedRecordsAreRejected(t *testing.T) {
	tc := startControl(t, startNATS(t), []byte("0123456789abcdef0123"), 5)
	k := overrideKey(t, tc.Control, "campaign/placement", map[string]string{"campaign": "c1", "placement": "p1"})
	kvKey := overrideKVKey(k)
	put := func(key, v string) {
		t.Helper()
		if _, err := tc.kv.Put(t.Context(), key, []byte(v)); err != nil {
			t.Fatal(err)
		}
	}
	valid := `{"level":"campaign/placement","dims":{"campaign":"c1","placement":"p1"},"multiplier":1.5,"set_by":"mallory","set_at_ms":1}`
	cases := []struct{ name, key, value, kind string }{
		{"huge multiplier", kvKey, strings.Replace(valid, "1.5", "1e6", 1), "override"},
		{"negative multiplier", kvKey, strings.Replace(valid, "1.5", "-2", 1), "override"},
		{"above hard_max", kvKey, strings.Replace(valid, "1.5", "5.5", 1), "override"},
		{"unknown field", kvKey, strings.Replace(valid, `"set_by"`, `"evil":1,"set_by"`, 1), "override"},
		{"not JSON", kvKey, `{"level":`, "override"},
		{"other key's dims", kvKey, strings.Replace(valid, `"p1"`, `"p2"`, 1), "override"},
		{"unknown level", kvKey, strings.Replace(valid, `"level":"campaign/placement"`, `"level":"campaign/moon"`, 1), "override"},
		{"country lower-case", overrideKVKey(overrideKey(t, tc.Control, "campaign/country", map[string]string{"campaign": "c1", "country": "us"})),
			`{"level":"campaign/country","dims":{"campaign":"c1","country":"us"},"multiplier":1,"set_by":"x","set_at_ms":1}`, "override"},
		{"expiry beyond a year", kvKey, strings.Replace(valid, `"set_at_ms":1`, `"set_at_ms":1,"expires_at_ms":99999999999999`, 1), "override"},
		{"long reason", KillKey, `{"enabled":true,"reason":"` + strings.Repeat("x", 2000) + `","set_by":"x","set_at_ms":1}`, "killswitch"},
		{"kill switch not a bool", KillKey, `{"enabled":"yes","set_by":"x","set_at_ms":1}`, "killswitch"},
		{"policy of another campaign", policyKVKey("c1"), `{"campaign":"c2","policy":{},"set_by":"x","set_at_ms":1}`, "policy"},
		{"policy min above max", policyKVKey("c1"), `{"campaign":"c1","policy":{"min":2,"max":1.5},"set_by":"x","set_at_ms":1}`, "policy"},
		{"policy not a policy", policyKVKey("c1"), `{"campaign":"c1","policy":{"maxx":2},"set_by":"x","set_at_ms":1}`, "policy"},
		{"unknown key", "whatever", `{}`, "key"},
		{"another encoding of the same key", aliasKey(t, kvKey), valid, "key"},
		{"bad key encoding", "override.a", `{}`, "key"},
	}
	want := map[string]int{}
	for _, c := range cases {
		put(c.key, c.value)
		want[c.kind]++
		name := `bidpulse_control_rejected_records_total{kind="` + c.kind + `"}`
		waitFor(t, c.name+" counted", func() bool { return tc.counter(name) == fmt.Sprint(want[c.kind]) })
		if m, ok := tc.Override([]byte(k), testNow); ok {
			t.Fatalf("%s: a rejected record set multiplier %v", c.name, m)
		}
		if tc.Killed() {
			t.Fatalf("%s: a rejected record set the kill switch", c.name)
		}
		if tc.PolicySource("c1") != "default" {
			t.Fatalf("%s: a rejected record set a policy", c.name)
		}
	}
	if !strings.Contains(tc.logs.String(), "ignored") {
		t.Fatalf("rejected records not logged: %s", tc.logs)
	}
	// A valid record from outside is applied, but its author is the NATS
	// identity, whatever set_by it claims, and it is audited.
	put(kvKey, valid)
	waitFor(t, "valid unsigned override", func() bool { _, ok := tc.Override([]byte(k), testNow); return ok })
	ov, _ := tc.LookupOverride([]byte(k))
	if ov.SetBy != NATSIdentity || ov.Multiplier != 1.5 {
		t.Fatalf("unexpected override from an unsigned record: %+v", ov)
	}
	var entries []AuditEntry
	waitFor(t, "the audit entry", func() bool { entries, _ = tc.RecentAudit(t.Context(), 10); return len(entries) > 0 })
	if len(entries) != 1 || entries[0].Who != NATSIdentity || entries[0].ClaimedBy != "mallory" || entries[0].Action != "override.set" {
		t.Fatalf("unexpected audit of an unsigned record: %+v", entries)
	}
}

// TestKillSwitchFromNATSIsAudited flips the kill switch with a bare KV put
// and delete, as `nats kv put` does: both changes reach the audit log (the
// stream, audit.log and the service log) under the NATS identity.
func TestKillSwitchFromNATSIsAudited(t *testing.T) {
	tc := startControl(t, startNATS(t), nil, 0)
	if _, err := tc.kv.Put(t.Context(), KillKey, []byte(`{"enabled":true,"reason":"from the CLI","set_by":"ceo","set_at_ms":5}`)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "kill switch on", tc.Killed)
	if k := tc.KillSwitch(); k.SetBy != NATSIdentity || k.Reason != "from the CLI" {
		t.Fatalf("unexpected kill switch: %+v", k)
	}
	if err := tc.kv.Delete(t.Context(), KillKey); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "kill switch off", func() bool { return !tc.Killed() })
	var entries []AuditEntry
	waitFor(t, "two audit entries", func() bool {
		entries, _ = tc.RecentAudit(t.Context(), 10)
		return len(entries) == 2
	})
	if entries[1].Who != NATSIdentity || entries[1].ClaimedBy != "ceo" || !strings.Contains(string(entries[1].New), `"enabled":true`) ||
		entries[0].Who != NATSIdentity || !strings.Contains(string(entries[0].New), `"enabled":false`) {
		t.Fatalf("unexpected audit: %+v", entries)
	}
	tc.Stop()
	b, err := os.ReadFile(filepath.Join(tc.dir, "audit.log"))
	if err != nil || strings.Count(string(b), `"who":"nats-kv"`) != 2 {
		t.Fatalf("unexpected audit.log: %s, %v", b, err)
	}
	if fi, err := os.Stat(filepath.Join(tc.dir, "audit.log")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("unexpected audit.log mode: %v, %v", fi.Mode(), err)
	}
	if fi, err := os.Stat(filepath.Join(tc.dir, keyFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("unexpected control key mode: %v, %v", fi, err)
	}
	if !strings.Contains(tc.logs.String(), `"audit"`) {
		t.Fatalf("change not in the service log: %s", tc.logs)
	}
}

// TestSignedChangesAreAuditedOnce: two instances sharing the control key see
// each other's changes with their author, and the shared audit stream holds
// each change once; an instance with another key sees them as unsigned.
func TestSignedChangesAreAuditedOnce(t *testing.T) {
	url := startNATS(t)
	key := []byte("shared-secret-0123456789")
	a := startControl(t, url, key, 0)
	b := startControl(t, url, key, 0)
	other := startControl(t, url, []byte("another-secret-0123456789"), 0)
	k := overrideKey(t, a.Control, "campaign/placement", map[string]string{"campaign": "c1", "placement": "p1"})
	ov := &Override{Level: 1, Key: k, Multiplier: 2, SetBy: "alice", SetAtMs: testNow}
	ov.Vals[windows.DimCampaign], ov.Vals[windows.DimPlacement] = "c1", "p1"
	if err := a.PutOverride(ov); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "b sees it", func() bool { _, ok := b.Override([]byte(k), testNow); return ok })
	waitFor(t, "other sees it", func() bool { _, ok := other.Override([]byte(k), testNow); return ok })
	if got, _ := b.LookupOverride([]byte(k)); got.SetBy != "alice" {
		t.Fatalf("unexpected author on the instance sharing the key: %q", got.SetBy)
	}
	if got, _ := other.LookupOverride([]byte(k)); got.SetBy != NATSIdentity {
		t.Fatalf("unexpected author on the instance with another key: %q", got.SetBy)
	}
	if found, err := a.DeleteOverride([]byte(k), "bob"); !found || err != nil {
		t.Fatalf("unexpected delete: %v, %v", found, err)
	}
	waitFor(t, "b sees the delete", func() bool { _, ok := b.Override([]byte(k), testNow); return !ok })
	waitFor(t, "other sees the delete", func() bool { _, ok := other.Override([]byte(k), testNow); return !ok })
	// The stream dedups per KV revision: the set (audited by a, and by other
	// as unsigned) and the delete are two entries.
	var entries []AuditEntry
	waitFor(t, "audit entries", func() bool {
		entries, _ = a.RecentAudit(t.Context(), 10)
		return len(entries) >= 2
	})
	// The instance with another key publishes its entries after
	// sharedAuditDelay: stop it, which publishes them now.
	other.Stop()
	entries, _ = a.RecentAudit(t.Context(), 10)
	if len(entries) != 2 || entries[0].Action != "override.delete" || entries[1].Action != "override.set" {
		t.Fatalf("unexpected audit entries: %+v", entries)
	}
	if entries[0].Who != "bob" {
		t.Fatalf("unexpected author of the delete: %+v", entries[0])
	}
	if _, err := json.Marshal(entries); err != nil {
		t.Fatal(err)
	}
}

// TestAdminRulesApplyToEveryPath: the checks the KV watch applies are the
// ones PutOverride applies.
func TestAdminRulesApplyToEveryPath(t *testing.T) {
	c := New(Options{Rollups: testRollups(t), Policies: testPolicies(t, 3), DataDir: t.TempDir(), Now: func() int64 { return testNow }, Log: zerolog.Nop()})
	k := overrideKey(t, c, "campaign", map[string]string{"campaign": "c1"})
	f := func(mult float64, expires int64, ok bool) {
		t.Helper()
		ov := &Override{Level: 0, Key: k, Multiplier: mult, ExpiresMs: expires, SetBy: "a", SetAtMs: testNow}
		ov.Vals[windows.DimCampaign] = "c1"
		if err := c.PutOverride(ov); (err == nil) != ok {
			t.Fatalf("unexpected PutOverride(%v, %v): %v", mult, expires, err)
		}
	}
	f(0, 0, true)
	f(3, 0, true)
	f(3.01, 0, false) // hard_max 3
	f(-1, 0, false)
	f(1, testNow-1, false)
	f(1, testNow+MaxOverrideTTL.Milliseconds()+1, false)
	f(1, testNow+1000, true)
}

// TestLateWriteIsAudited: a write answered as failed while NATS is away, that
// the NATS client delivers once the server is back, takes effect and is
// audited then, marked late.
func TestLateWriteIsAudited(t *testing.T) {
	store := t.TempDir()
	opts := &server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: store, NoSigs: true, NoLog: true}
	srv, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("NATS server not ready")
	}
	opts.Port = srv.Addr().(*net.TCPAddr).Port
	tc := startControl(t, srv.ClientURL(), nil, 0)
	tc.timeout = 200 * time.Millisecond
	srv.Shutdown()
	srv.WaitForShutdown()
	waitFor(t, "the disconnect", func() bool { return !tc.nc.IsConnected() })

	err = tc.SetKillSwitch(KillRecord{Enabled: true, Reason: "outage", SetBy: "alice", SetAtMs: testNow})
	if !IsStoreError(err) {
		t.Fatalf("unexpected error of a write while NATS is away: %v", err)
	}
	if tc.Killed() {
		t.Fatal("a failed write took effect at once")
	}
	if srv, err = server.NewServer(opts); err != nil {
		t.Fatal(err)
	}
	srv.Start()
	t.Cleanup(srv.Shutdown)
	deadline := time.Now().Add(20 * time.Second)
	for !tc.Killed() && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if !tc.Killed() {
		t.Skip("the NATS client did not deliver the buffered write after the reconnection: nothing landed late to audit")
	}
	var entries []AuditEntry
	waitFor(t, "the late audit entry", func() bool {
		entries, _ = tc.RecentAudit(t.Context(), 10)
		return len(entries) == 1
	})
	if e := entries[0]; !e.Late || e.Who != "alice" || e.Action != "killswitch.set" || e.Revision == 0 {
		t.Fatalf("unexpected audit of a late write: %+v", e)
	}
}

// aliasKey returns another base64 spelling of kvKey's override key (one that
// a loose decoder reads as the same bytes), or fails when the key has none.
func aliasKey(t *testing.T, kvKey string) string {
	t.Helper()
	enc := kvKey[len(overridePre):]
	want, _ := base64.RawURLEncoding.DecodeString(enc)
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	for _, ch := range alphabet {
		alias := enc[:len(enc)-1] + string(ch)
		if got, err := base64.RawURLEncoding.DecodeString(alias); alias != enc && err == nil && string(got) == string(want) {
			return overridePre + alias
		}
	}
	t.Fatalf("BUG: the key %q has no other spelling: pick one whose length is not a multiple of 3", want)
	return ""
}

// TestReplayedSignedRecordIsAudited puts back, as an outside client, an older
// record that an instance signed: it is applied (the bucket is the truth),
// but authored as nats-kv, since it is older than the record it replaces, and
// the change is audited.
func TestReplayedSignedRecordIsAudited(t *testing.T) {
	url := startNATS(t)
	key := []byte("shared-secret-0123456789")
	a := startControl(t, url, key, 0)
	b := startControl(t, url, key, 0)
	k := overrideKey(t, a.Control, "campaign/placement", map[string]string{"campaign": "c1", "placement": "p1"})
	put := func(mult float64, at int64) {
		t.Helper()
		ov := &Override{Level: 1, Key: k, Multiplier: mult, SetBy: "alice", SetAtMs: at}
		ov.Vals[windows.DimCampaign], ov.Vals[windows.DimPlacement] = "c1", "p1"
		if err := a.PutOverride(ov); err != nil {
			t.Fatal(err)
		}
	}
	put(2, testNow-60_000)
	first, err := a.kv.Get(t.Context(), overrideKVKey(k))
	if err != nil {
		t.Fatal(err)
	}
	put(3, testNow)
	waitFor(t, "b sees the second", func() bool { m, _ := b.Override([]byte(k), testNow); return m == 3 })
	if _, err := b.kv.Put(t.Context(), overrideKVKey(k), first.Value()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "b applies the replay", func() bool { m, _ := b.Override([]byte(k), testNow); return m == 2 })
	if ov, _ := b.LookupOverride([]byte(k)); ov.SetBy != NATSIdentity {
		t.Fatalf("a replayed record kept its author: %+v", ov)
	}
	var entries []AuditEntry
	waitFor(t, "the replay audited", func() bool {
		entries, _ = a.RecentAudit(t.Context(), 10)
		return len(entries) == 3
	})
	if e := entries[0]; e.Who != NATSIdentity || e.ClaimedBy != "alice" || e.Action != "override.set" {
		t.Fatalf("unexpected audit of the replay: %+v", e)
	}
	if entries[1].Who != "alice" || entries[2].Who != "alice" {
		t.Fatalf("unexpected audit of the admin calls: %+v", entries[1:])
	}
}
