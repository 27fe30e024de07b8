package event

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

// Personal data a tracker might add to an event: fields outside the schema.
const (
	canaryUser = "canary-user-7f3a"
	canaryIP   = "203.0.113.77"
	canary     = `"user_id":"` + canaryUser + `","ip":"` + canaryIP + `","geo":{"ip":"` + canaryIP + `"},"ids":["` + canaryUser + `"]`
)

// hasCanary reports whether b holds either canary value.
func hasCanary(b []byte) bool {
	return bytes.Contains(b, []byte(canaryUser)) || bytes.Contains(b, []byte(canaryIP))
}

func TestAppendKnown(t *testing.T) {
	// A rejected event's known fields, as a dead letter keeps them: unknown fields never.
	f := func(payload, want string) {
		t.Helper()
		p := Parser{NowMs: 1767323045000}
		calls := 0
		p.Parse([]byte(payload), func(ev *Event, reason Reason, raw []byte) {
			calls++
			if reason == OK {
				t.Fatalf("unexpected valid event in %s", payload)
			}
			got := p.AppendKnown([]byte("prefix"))
			if !bytes.HasPrefix(got, []byte("prefix")) || string(got[6:]) != want {
				t.Fatalf("unexpected known fields of %s (%s); got %s; want %s", payload, reason, got, want)
			}
			if !json.Valid(got[6:]) {
				t.Fatalf("known fields are not valid JSON: %s", got[6:])
			}
		})
		if calls != 1 {
			t.Fatalf("unexpected callbacks for %s; got %d; want 1", payload, calls)
		}
	}
	// A ts in seconds: everything readable is kept, the failing ts included.
	f(`{`+canary+`,"id":"e1","type":"click","ts":1767323045,"campaign":"c1","device":"TV","country":"fr","cost":0.5}`,
		`{"id":"e1","type":"click","campaign":"c1","device":"TV","country":"fr","ts":1767323045,"cost":0.5}`)
	// Schema order, the first of a repeated field, escapes re-made.
	f(`{"click_ts":1,"value":2,"cost":-3,"ts":1767323045000,"site":"com.Ex\u00e9.App","country":"US","device":"d","placement":"p\u00e9","creative":"c\"r","campaign":"c","type":"nope","id":"a","id":"b",`+canary+`}`,
		`{"id":"a","type":"nope","campaign":"c","creative":"c\"r","placement":"pé","device":"d","country":"US","site":"com.Exé.App","ts":1767323045000,"cost":-3,"value":2,"click_ts":1}`)
	// Values of the wrong type, empty, too long or not UTF-8 are left out; so are nulls.
	long := strings.Repeat("x", MaxFieldLen+1)
	f(`{"id":5,"type":"click","campaign":"`+long+`","creative":"","placement":"p`+"\xff"+`","device":null,"country":{"ip":"`+canaryIP+`"},"site":"","ts":"1","cost":[1],"value":true,"click_ts":1`+strings.Repeat("0", 40)+`}`,
		`{"type":"click"}`)
	f(`{"id":"a","type":"click","campaign":"c","creative":"k`+"\xff"+`",`+canary+`}`, `{"id":"a","type":"click","campaign":"c"}`)
	// A site too long is left out, the other fields kept; a valid one is kept as sent.
	f(`{"id":"a","type":"click","campaign":"c","site":"`+long+`","placement":"p"}`, `{"id":"a","type":"click","campaign":"c","placement":"p"}`)
	f(`{"id":"a","type":"click","campaign":"c","site":"s.example","ts":1}`, `{"id":"a","type":"click","campaign":"c","site":"s.example","ts":1}`)
	// Not an object: nothing is known.
	f(`{"user_id":"`+canaryUser+`"`, `{}`)
	f(`"`+canaryIP+`"`, `{}`)
	// Elements of a batch: each its own.
	p := Parser{}
	var got []string
	p.Parse([]byte(`[["`+canaryUser+`"],{"id":"x","type":"view","campaign":"c",`+canary+`},{"id":"y","type":"click","campaign":"c"},{"id":"z","campaign":"c2"}]`),
		func(ev *Event, reason Reason, raw []byte) {
			if reason != OK {
				got = append(got, reason.String()+" "+string(p.AppendKnown(nil)))
			}
		})
	want := []string{`not_object {}`, `bad_type {"id":"x","type":"view","campaign":"c"}`, `bad_type {"id":"z","campaign":"c2"}`}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("unexpected known fields of a batch;\ngot  %q\nwant %q", got, want)
	}
}

func TestEventHoldsNoUnknownField(t *testing.T) {
	// A valid event with fields outside the schema: nothing of them is reachable from the Event,
	// not even past the length of its byte slices, on either path.
	fast := `{"id":"e1","type":"click","ts":1767323045000,` + canary + `,"campaign":"c1","creative":"cr1","placement":"p1","device":"tv","country":"FR","site":"s1.example"}`
	general := `{"id":"e\u0031","type":"conversion",` + canary + `,"campaign":"c1","creative":"cr1","placement":"p1","device":"TV","country":"fr","site":"s\u0031.example","click_ts":1767323044000}`
	for _, payload := range []string{fast, general, "[" + fast + "," + general + "]"} {
		var p Parser
		n := 0
		p.Parse([]byte(payload), func(ev *Event, reason Reason, raw []byte) {
			n++
			if reason != OK || raw != nil {
				t.Fatalf("unexpected rejection of %s: %s %s", payload, reason, raw)
			}
			for _, s := range append([][]byte{ev.ID}, ev.Dims[:]...) {
				if hasCanary(s[:cap(s)]) {
					t.Fatalf("unexpected unknown field reachable from the event of %s: %q", payload, s[:cap(s)])
				}
			}
			if out := AppendJSON(nil, ev); hasCanary(out) {
				t.Fatalf("unexpected unknown field in the encoded event: %s", out)
			}
		})
		if n == 0 {
			t.Fatalf("no event in %s", payload)
		}
	}
}
