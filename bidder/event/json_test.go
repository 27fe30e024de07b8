package event

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/bidpulse/bidpulse/windows"
)

func TestAppendJSON(t *testing.T) {
	f := func(ev *Event, want string) {
		t.Helper()
		got := AppendJSON([]byte("prefix"), ev)
		if string(got) != "prefix"+want {
			t.Fatalf("unexpected JSON;\ngot  %s\nwant prefix%s", got, want)
		}
		if !json.Valid(got[len("prefix"):]) {
			t.Fatalf("unexpected invalid JSON %s", got)
		}
	}
	f(&Event{}, `{}`)
	full := &Event{ID: []byte("8c1f"), Type: Conversion, TS: 1764345600123, HasTS: true,
		CostMicros: 2100, ValueMicros: 42500000, ClickTS: 1764345500000, HasClickTS: true}
	full.Dims = windows.Values{[]byte("c42"), []byte("cr7"), []byte("news.example/top"), []byte("mobile"), []byte("FR"), []byte("news.example")}
	f(full, `{"id":"8c1f","type":"conversion","ts":1764345600123,"campaign":"c42","creative":"cr7",`+
		`"placement":"news.example/top","device":"mobile","country":"FR","site":"news.example","cost":0.0021,"value":42.5,"click_ts":1764345500000}`)

	// Absent fields are omitted.
	ev := &Event{Type: Click, ID: []byte("x")}
	ev.Dims[windows.DimPlacement] = []byte("p")
	f(ev, `{"id":"x","type":"click","placement":"p"}`)
	ev.Dims[windows.DimSite] = []byte("com.Example.App")
	f(ev, `{"id":"x","type":"click","placement":"p","site":"com.Example.App"}`)
	f(&Event{Type: NumTypes, TS: 5, ClickTS: 7}, `{}`)
	f(&Event{HasTS: true, HasClickTS: true}, `{"ts":0,"click_ts":0}`)

	// Money in currency units, exact.
	money := func(m uint64, want string) {
		t.Helper()
		f(&Event{CostMicros: m}, `{"cost":`+want+`}`)
	}
	money(1, "0.000001")
	money(10, "0.00001")
	money(2100, "0.0021")
	money(999999, "0.999999")
	money(1000000, "1")
	money(1500000, "1.5")
	money(1234567890, "1234.56789")
	money(maxMoneyMicros, "9000000000000")
	money(1<<64-1, "18446744073709.551615")

	// Strings are escaped into valid JSON.
	str := func(in, want string) {
		t.Helper()
		f(&Event{ID: []byte(in)}, `{"id":`+want+`}`)
	}
	str("plain/ascii", `"plain/ascii"`)
	str(`q"b\`, `"q\"b\\"`)
	str("\n\r\t\x00\x01\x1f\x7f", `"\n\r\t\u0000\u0001\u001f`+"\x7f"+`"`)
	str("é日本😀", `"é日本😀"`)
	str("a\u2028b\u2029", `"a\u2028b\u2029"`)
	str("a\xffb\xc3", `"a\ufffdb\ufffd"`)
	str("<script>&", `"<script>&"`)
}

func TestAppendJSONRoundTrip(t *testing.T) {
	var p Parser
	// f parses payload, encodes the event, parses that again and compares.
	f := func(payload string) {
		t.Helper()
		rs, _ := parseAll(t, &p, payload)
		if len(rs) != 1 || rs[0].ev == nil {
			t.Fatalf("unexpected result for %s; got %v; want one valid event", payload, rs)
		}
		out := AppendJSON(nil, rs[0].ev)
		rs2, _ := parseAll(t, &p, string(out))
		if len(rs2) != 1 || rs2[0].ev == nil {
			t.Fatalf("unexpected result for re-encoded %s; got %v; want one valid event", out, rs2)
		}
		if !reflect.DeepEqual(rs[0].ev, rs2[0].ev) {
			t.Fatalf("unexpected round trip of %s;\ngot  %s\nwant %s", payload, AppendJSON(nil, rs2[0].ev), out)
		}
	}
	f(`{"id":"a","type":"impression","campaign":"c"}`)
	f(`{"id":"a","type":"impression","campaign":"c","site":"com.Example.App"}`)             // fast path
	f(`{"id":"a","type":"impression","campaign":"c","site":"ex\u00e9mple.fr\"\\","x":"é"}`) // general path
	f(`{"id":"8c1f","type":"click","ts":1764345600123,"campaign":"c42","creative":"cr7","placement":"news.example/top","device":"Mobile","country":"fr","cost":0.0021,"value":0}`)
	f(`{"id":"a","type":"conversion","campaign":"c","value":80.123456,"cost":9e12,"click_ts":1000000000000,"ts":9999999999999}`)
	f(`{"id":"\u0000\"\\\/\b\f\n\r\t\u2028\u2029\ud83d\ude00","type":"click","campaign":"\u00e9","device":"\u00c9A","country":"\u00e9a"}`)
	f(`{"id":"\ud800","type":"click","campaign":"\\u0041"}`)
}
