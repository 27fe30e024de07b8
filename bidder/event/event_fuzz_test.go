package event

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/valyala/fastjson"
)

// FuzzParse checks that Parse never panics, calls back once per counted event, reports rejected
// JSON that is valid, and that every valid event survives AppendJSON -> Parse unchanged.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		``, `{}`, `[]`, `null`, `[1,"a",null]`,
		`{"id":"8c1f","type":"click","ts":1764345600123,"campaign":"c42","creative":"cr7","placement":"news.example/top","device":"Mobile","country":"fr","cost":0.0021,"value":0}`,
		`[{"id":"a","type":"impression","campaign":"c","cost":0.002},{"id":"a","type":"conversion","campaign":"c","value":42.5,"click_ts":1764345600005}]`,
		`{"id":"\u0000\ud83d\ude00\"","type":"conversion","campaign":"\u00e9","device":"TV","country":"us","x":[{"y":1e-3}]}`,
		`[{"id":"a","type":"bad","campaign":"\u0007"},{"id":"a\\","type":"click","campaign":"c","ts":1.5}]`,
		`{"id":"a","type":"click","campaign":"c","cost":NaN}`,
		`{"id":"a","type":"click","campaign":"c","cost":9000000000000.0000001,"ts":-0}`,
		"[{\"id\":\"\xff\",\"type\":\"click\",\"campaign\":\"c\"}]",
		` [ {"id":"a","type":"conversion","campaign":"c","device":null,"x":true,"y":false,"z":-1.5E+3,"click_ts":1764345600009,"value":0.5} ] `,
		`{"id":"a","type":"click","campaign":"c","country":"fr","device":"TV","ts":01}`,
		`{"id":"f","type":"conversion","campaign":"c","ts":1764432000001,"click_ts":1764432000000}`,
		`{"id":"s","type":"impression","campaign":"c","site":"News.Example","placement":"p"}`,
		`[{"id":"s","type":"click","campaign":"c","site":"com.Example.App"},{"id":"t","type":"click","campaign":"c","site":""}]`,
		`[{"id":"s","type":"click","campaign":"c","ts":1764345600},{"id":"u","type":"click","campaign":"c","ts":1764345600123000}]`,
	} {
		f.Add([]byte(s))
	}
	// With a clock, so the upper bound of ts is the relative one (the seeds hold times past it).
	p, p2 := Parser{NowMs: fuzzNowMs}, Parser{NowMs: fuzzNowMs}
	f.Fuzz(func(t *testing.T, payload []byte) {
		calls := 0
		firstReason := OK
		var evs []*Event
		n := p.Parse(payload, func(ev *Event, reason Reason, raw []byte) {
			if calls == 0 {
				firstReason = reason
			}
			calls++
			if (ev != nil) != (reason == OK) || reason >= NumReasons {
				t.Fatalf("unexpected callback; got ev=%v, reason %d", ev != nil, reason)
			}
			if ev != nil {
				evs = append(evs, cloneEvent(ev))
				return
			}
			if reason != BadJSON && !json.Valid(raw) {
				t.Fatalf("unexpected raw for reason %s; got %q; want valid JSON", reason, raw)
			}
			// What a dead letter keeps: a JSON object of known fields only.
			var known map[string]json.RawMessage
			if k := p.AppendKnown(nil); json.Unmarshal(k, &known) != nil {
				t.Fatalf("unexpected known fields of %q; got %q; want a JSON object", payload, k)
			}
			for name := range known {
				if fieldIndex([]byte(name)) < 0 {
					t.Fatalf("unexpected field %q among the known fields of %q", name, payload)
				}
			}
		})
		// Strictness agrees with encoding/json (within fastjson.MaxDepth).
		rejected := calls == 1 && firstReason == BadJSON
		strict := json.Valid(payload)
		shallow := strings.Count(string(payload), "[")+strings.Count(string(payload), "{") < fastjson.MaxDepth
		if !strict && !rejected {
			t.Fatalf("unexpected acceptance of %q; encoding/json finds it invalid", payload)
		}
		if strict && rejected && shallow {
			t.Fatalf("unexpected bad_json for %q; encoding/json finds it valid", payload)
		}
		if n != calls {
			t.Fatalf("unexpected count; got %d; want %d callbacks", n, calls)
		}
		checkFastPath(t, payload, fuzzNowMs)
		for _, ev := range evs {
			checkEvent(t, ev)
			out := AppendJSON(nil, ev)
			var got *Event
			n := p2.Parse(out, func(ev2 *Event, reason Reason, raw []byte) {
				if reason != OK {
					t.Fatalf("unexpected rejection of %s; got %s", out, reason)
				}
				got = cloneEvent(ev2)
			})
			if n != 1 || !reflect.DeepEqual(got, ev) {
				t.Fatalf("unexpected round trip of %s; got %d events, %+v; want %+v", out, n, got, ev)
			}
		}
	})
}

// fuzzNowMs is the consumer's clock of FuzzParse: 2025-11-28T16:00:00Z.
const fuzzNowMs = 1764345600000

// checkFastPath checks that when the fast path accepts payload, the general path accepts every
// event of it too and yields the same events; both parsers have the clock nowMs.
func checkFastPath(t *testing.T, payload []byte, nowMs int64) {
	t.Helper()
	p := Parser{NowMs: nowMs}
	n, ok := p.fastParse(payload)
	if !ok {
		return
	}
	var fast, general []*Event
	p.emitFast(n, func(ev *Event, reason Reason, raw []byte) { fast = append(fast, cloneEvent(ev)) })
	g := Parser{NowMs: nowMs}
	gn := g.parseGeneral(payload, func(ev *Event, reason Reason, raw []byte) {
		if reason != OK {
			t.Fatalf("unexpected fast-path acceptance of %q; the general path rejects an event: %s", payload, reason)
		}
		general = append(general, cloneEvent(ev))
	})
	if gn != n || !reflect.DeepEqual(fast, general) {
		t.Fatalf("unexpected fast-path events for %q; got %d: %+v; the general path gives %d: %+v", payload, n, fast, gn, general)
	}
}

// checkEvent checks the invariants of a valid event.
func checkEvent(t *testing.T, ev *Event) {
	t.Helper()
	if len(ev.ID) == 0 || len(ev.ID) > MaxFieldLen || ev.Type == TypeNone || ev.Type >= NumTypes {
		t.Fatalf("unexpected id or type in a valid event; got %q, %d", ev.ID, ev.Type)
	}
	if len(ev.Dims[0]) == 0 {
		t.Fatalf("unexpected valid event without campaign")
	}
	for _, d := range ev.Dims {
		if len(d) > MaxFieldLen {
			t.Fatalf("unexpected long dimension %q", d)
		}
	}
	if ev.HasTS && (ev.TS < MinTS || ev.TS > MaxTS) || ev.HasClickTS && (ev.ClickTS < MinTS || ev.ClickTS > MaxTS) ||
		ev.CostMicros > maxMoneyMicros || ev.ValueMicros > maxMoneyMicros {
		t.Fatalf("unexpected out-of-range number in %+v", ev)
	}
	if ev.HasClickTS && ev.Type != Conversion {
		t.Fatalf("unexpected click_ts on a %s", ev.Type)
	}
}

// FuzzParseMicros checks parseMicros against exact rational arithmetic on valid JSON numbers.
func FuzzParseMicros(f *testing.F) {
	for _, s := range []string{"0", "-0", "0.0021", "1.0000005", "9e12", "8999999999999.9999995", "1e-7", "5e-7", "-1", "12.5e1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, tok string) {
		if len(tok) == 0 || tok[0] == '"' || tok[0] == '[' || tok[0] == '{' || fastjson.Validate(tok) != nil {
			return
		}
		if tok = strings.TrimSpace(tok); tok == "true" || tok == "false" || tok == "null" {
			return
		}
		got, ok := parseMicros([]byte(tok))
		ref, refOK, judged := refMicros(tok)
		if judged && (got != ref || ok != refOK) {
			t.Fatalf("unexpected parseMicros(%q); got %d, %v; want %d, %v", tok, got, ok, ref, refOK)
		}
	})
}
