package event

import (
	"reflect"
	"testing"
)

// TestFastPath checks which payloads take the fast path, and that those that do give the events
// of the general path.
func TestFastPath(t *testing.T) {
	for _, tc := range []struct {
		payload string
		fast    bool
	}{
		{string(benchSingle), true},
		{string(benchBatch), true},
		{" \n[ {\"id\" : \"a\" ,\"type\":\"conversion\",\"campaign\":\"c\",\"click_ts\":1764345600005, \"value\":1e2} ]\t", true},
		{`{"id":"a","type":"click","campaign":"c","device":null,"x":true,"y":false,"z":-1.5E+3,"w":null}`, true},
		{`{"id":"a","type":"click","campaign":"c","click_ts":1764345600007}`, true}, // click_ts dropped: not a conversion
		{`{"x":"","id":"a","type":"impression","campaign":"c","country":"fr","device":"TV"}`, true},
		{`{"id":"a","type":"impression","campaign":"c","site":"News.Example","placement":"p"}`, true},
		{`{"id":"a","type":"impression","campaign":"c","site":null}`, true},
		// Everything below takes the general path.
		{`[]`, false},
		{`{}`, false},
		{`{"id":"a","type":"click","campaign":"c",}`, false},
		{`{"id":"a","type":"click","campaign":"c"} x`, false},
		{`{"id":"a","type":"click","campaign":"c"`, false},
		{`{"id":"a","id":"b","type":"click","campaign":"c"}`, false},
		{`{"id":"a","type":"click","campaign":"c","cost":-1}`, false},
		{`{"id":"a","type":"click","campaign":"c","ts":01}`, false},
		{`{"id":"a","type":"click","campaign":"c","ts":1.5}`, false},
		{`{"id":"a","type":"click","campaign":"c","ts":"1"}`, false},
		{`{"id":"a","type":"click","campaign":"c","ts":1764345600}`, false},
		{`{"id":"a","type":"conversion","campaign":"c","click_ts":1764345600123000}`, false},
		{`{"id":"a","type":"click","campaign":"c","creative":""}`, false},
		{`{"id":"a","type":"click","campaign":"c","creative":1}`, false},
		{`{"id":"a","type":"click","campaign":"c","site":""}`, false},
		{`{"id":"a","type":"click","campaign":"c","site":1}`, false},
		{`{"id":"a","type":"click","campaign":"c","site":"a","site":"b"}`, false},
		{`{"id":"a\u0062","type":"click","campaign":"c"}`, false},
		{`{"id":"é","type":"click","campaign":"c"}`, false},
		{`{"id":"a","type":"click","campaign":"c","x":{"y":1}}`, false},
		{`{"id":"a","type":"click","campaign":"c","x":[1]}`, false},
		{`{"id":"a","type":"click","campaign":"c","x":tru}`, false},
		{`{"id":"a","type":"click","campaign":"c","device":true}`, false},
		{`{"id":"a","type":"Click","campaign":"c"}`, false},
		{`{"id":"a","type":"click"}`, false},
		{`[{"id":"a","type":"click","campaign":"c"},1]`, false},
		{`[{"id":"a","type":"click","campaign":"c"}`, false},
		{`{"id":"a","type":"click","campaign":"c","cost":1.}`, false},
		{`{"id":"a","type":"click","campaign":"c","cost":1e}`, false},
		{`{"id":"a","type":"click","campaign":"c","cost":-}`, false},
		{"{\"id\":\"a\tb\",\"type\":\"click\",\"campaign\":\"c\"}", false},
	} {
		var p Parser
		_, fast := p.fastParse([]byte(tc.payload))
		if fast != tc.fast {
			t.Errorf("unexpected path for %q; got fast %v; want %v", tc.payload, fast, tc.fast)
		}
		checkFastPath(t, []byte(tc.payload), 0)
	}
}

// TestFastPathLimit checks that an array of more than maxFastEvents events takes the general path
// and still yields every event, and that the Parser drops its references to the payload.
func TestFastPathLimit(t *testing.T) {
	b := []byte{'['}
	for i := range maxFastEvents + 1 {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"id":"a","type":"click","campaign":"c"}`...)
	}
	b = append(b, ']')
	var p Parser
	if _, fast := p.fastParse(b); fast {
		t.Fatalf("unexpected fast path for %d events", maxFastEvents+1)
	}
	n := p.Parse(b, func(ev *Event, reason Reason, raw []byte) {
		if reason != OK {
			t.Fatalf("unexpected rejection %s", reason)
		}
	})
	if n != maxFastEvents+1 {
		t.Fatalf("unexpected count; got %d; want %d", n, maxFastEvents+1)
	}
	p.Parse(benchBatch, func(*Event, Reason, []byte) {})
	for i := range p.evs {
		if !reflect.DeepEqual(p.evs[i], Event{}) {
			t.Fatalf("unexpected event %d kept after Parse: %+v", i, p.evs[i])
		}
	}
}
