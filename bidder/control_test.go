package bidder

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/bidpulse/bidpulse/bidder/control"
)

func TestOverridesSharedAndPersistent(t *testing.T) {
	dir := t.TempDir()
	const tokens = "alice:a-secret,bob:b-secret"
	// Instances that share a bucket share the control key.
	const key = "0123456789abcdef-shared"
	first := startTestService(t, func(o *Options) { o.AdminTokens = tokens; o.DataDir = dir; o.ControlKey = key })
	second := startTestService(t, func(o *Options) {
		o.AdminTokens = tokens
		o.ControlKey = key
		o.NATSURL = first.svc.NATSURL()
		o.Instance = "second"
		o.DataDir = t.TempDir()
	})
	code, b := first.do(t, "PUT", "/v1/overrides", "a-secret", `{"campaign":"c1","placement":"p1","multiplier":1.5}`)
	if code != 200 {
		t.Fatalf("unexpected status %d: %s", code, b)
	}
	var stored map[string]any
	json.Unmarshal(b, &stored)
	if stored["set_by"] != "alice" {
		t.Fatalf("unexpected set_by: %s", b)
	}
	// The other instance sees it through the KV bucket.
	checkFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		m := second.getJSON(t, "/v1/multiplier?campaign=c1&placement=p1", 200)
		if m["multiplier"] != 1.5 {
			return fmt.Errorf("second instance answers %v", m["multiplier"])
		}
		return nil
	})
	// The audit log names who did what.
	code, b = second.do(t, "GET", "/v1/audit", "b-secret", "")
	var audit struct{ Entries []control.AuditEntry }
	if err := json.Unmarshal(b, &audit); code != 200 || err != nil || len(audit.Entries) != 1 ||
		audit.Entries[0].Who != "alice" || audit.Entries[0].Action != "override.set" || string(audit.Entries[0].Old) != "null" {
		t.Fatalf("unexpected audit (%d): %s", code, b)
	}
	second.nc.Close()
	second.svc.Stop(t.Context())

	// A restart of the first keeps the override (the embedded server's
	// store is under the data dir).
	first.nc.Close()
	first.svc.Stop(t.Context())
	again := startTestService(t, func(o *Options) { o.AdminTokens = tokens; o.DataDir = dir; o.ControlKey = key })
	if m := again.getJSON(t, "/v1/multiplier?campaign=c1&placement=p1", 200); m["multiplier"] != 1.5 {
		t.Fatalf("override lost on restart: %v", m)
	}
	if code, _ := again.do(t, "DELETE", "/v1/overrides?campaign=c1&placement=p1", "b-secret", ""); code != 200 {
		t.Fatalf("unexpected delete status %d", code)
	}
	if m := again.getJSON(t, "/v1/multiplier?campaign=c1&placement=p1", 200); m["multiplier"] != 1.0 {
		t.Fatalf("override still applied after delete: %v", m)
	}
}

func TestKillSwitchAndFreeze(t *testing.T) {
	e := startTestService(t, func(o *Options) { o.AdminToken = "tok" })
	e.publish(t, `[`+ev("i1", "impression", testNow, "c1", "", "good")+`,`+ev("i1", "click", testNow, "c1", "", "good")+`,`+
		ev("i2", "impression", testNow, "c1", "", "bad")+`,`+ev("i3", "impression", testNow, "c1", "", "bad")+`]`)
	e.waitReceived(t, 4)
	before := e.getJSON(t, "/v1/multiplier?campaign=c1&placement=good", 200)["multiplier"].(float64)
	if before == 1 {
		t.Fatalf("BUG: test needs a non-neutral multiplier")
	}
	// Freeze holds the value served now, even when the data moves.
	code, b := e.do(t, "PUT", "/v1/overrides", "tok", `{"campaign":"c1","placement":"good","freeze":true}`)
	if code != 200 {
		t.Fatalf("unexpected status %d: %s", code, b)
	}
	e.publish(t, `[`+ev("i4", "impression", testNow, "c1", "", "good")+`,`+ev("i5", "impression", testNow, "c1", "", "good")+`]`)
	e.waitReceived(t, 6)
	m := e.getJSON(t, "/v1/multiplier?campaign=c1&placement=good&explain=1", 200)
	if m["multiplier"] != before || m["explain"].(map[string]any)["policy"] != "override" {
		t.Fatalf("frozen value not held; got %v; want %v", m, before)
	}
	if code, _ := e.do(t, "PUT", "/v1/overrides", "tok", `{"campaign":"c1","freeze":true,"multiplier":1}`); code != 400 {
		t.Fatalf("freeze with a multiplier must be refused; got %d", code)
	}

	// The kill switch answers 1 everywhere, overrides included.
	if code, b := e.do(t, "PUT", "/v1/killswitch", "tok", `{"enabled":true,"reason":"incident"}`); code != 200 {
		t.Fatalf("unexpected status %d: %s", code, b)
	}
	for _, q := range []string{"campaign=c1&placement=good", "campaign=c1&placement=bad"} {
		m := e.getJSON(t, "/v1/multiplier?explain=1&"+q, 200)
		if m["multiplier"] != 1.0 || m["explain"].(map[string]any)["policy"] != "kill_switch" {
			t.Fatalf("kill switch not applied to %s: %v", q, m)
		}
	}
	if m := e.getJSON(t, "/v1/multiplier?campaign=c1&placement=good", 200); m["multiplier"] != 1.0 {
		t.Fatalf("unexpected answer: %v", m)
	}
	if code, _ := e.do(t, "PUT", "/v1/killswitch", "", `{"enabled":false}`); code != 401 {
		t.Fatalf("kill switch without a token must be refused; got %d", code)
	}
	if code, _ := e.do(t, "PUT", "/v1/killswitch", "tok", `{"enable":false}`); code != 400 {
		t.Fatalf("unknown field must be refused; got %d", code)
	}
	if code, _ := e.do(t, "PUT", "/v1/killswitch", "tok", `{"enabled":false}`); code != 200 {
		t.Fatalf("cannot clear the kill switch; got %d", code)
	}
	code, b = e.do(t, "GET", "/v1/audit?limit=1", "tok", "")
	var audit struct{ Entries []control.AuditEntry }
	if err := json.Unmarshal(b, &audit); code != 200 || err != nil || len(audit.Entries) != 1 ||
		!strings.Contains(string(audit.Entries[0].Old), `"enabled":true`) || !strings.Contains(string(audit.Entries[0].New), `"enabled":false`) {
		t.Fatalf("unexpected audit of the kill switch: %s", b)
	}
	if m := e.getJSON(t, "/v1/multiplier?campaign=c1&placement=good", 200); m["multiplier"] != before {
		t.Fatalf("frozen override not back after the kill switch: %v", m)
	}
}

func TestParseAdminTokens(t *testing.T) {
	f := func(single, pairs string, names []string, ok bool) {
		t.Helper()
		got, err := parseAdminTokens(single, pairs)
		if (err == nil) != ok || len(got) != len(names) {
			t.Fatalf("unexpected parseAdminTokens(%q, %q): %v, %v", single, pairs, got, err)
		}
		for i := range got {
			if got[i].name != names[i] {
				t.Fatalf("unexpected name %q; want %q", got[i].name, names[i])
			}
		}
	}
	f("", "", nil, true)
	f("secret", "", []string{"admin"}, true)
	// A single secret is never read as pairs, whatever it holds.
	f("s3cr:et,x:y", "", []string{"admin"}, true)
	f("", "a:1,b:2", []string{"a", "b"}, true)
	f("secret", "a:1", []string{"admin", "a"}, true)
	f("secret", "admin:1", nil, false)
	f("", "a:1,a:2", nil, false)
	f("", "a:", nil, false)
	f("", ":x", nil, false)
	f("", "secret", nil, false)
	f("a\nb", "", nil, false)
}
