package event

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"strings"
	"testing"

	"github.com/bidpulse/bidpulse/windows"
)

// result is one callback of Parse, with every byte slice copied.
type result struct {
	ev     *Event
	reason Reason
	raw    string
}

func (r result) String() string {
	if r.ev != nil {
		return fmt.Sprintf("OK %s", AppendJSON(nil, r.ev))
	}
	return fmt.Sprintf("%s %s", r.reason, r.raw)
}

func cloneEvent(ev *Event) *Event {
	c := *ev
	c.ID = bytes.Clone(ev.ID)
	for d := range c.Dims {
		c.Dims[d] = bytes.Clone(ev.Dims[d])
	}
	return &c
}

func parseAll(t *testing.T, p *Parser, payload string) ([]result, int) {
	t.Helper()
	var rs []result
	n := p.Parse([]byte(payload), func(ev *Event, reason Reason, raw []byte) {
		if (ev != nil) != (reason == OK) {
			t.Fatalf("unexpected callback for %q; got ev=%v with reason %q", payload, ev != nil, reason)
		}
		if ev != nil {
			if raw != nil {
				t.Fatalf("unexpected raw for a valid event of %q; got %q; want nil", payload, raw)
			}
			rs = append(rs, result{ev: cloneEvent(ev)})
			return
		}
		rs = append(rs, result{reason: reason, raw: string(raw)})
	})
	return rs, n
}

// parseOne parses a payload holding exactly one event.
func parseOne(t *testing.T, payload string) result {
	t.Helper()
	var p Parser
	rs, n := parseAll(t, &p, payload)
	if n != 1 || len(rs) != 1 {
		t.Fatalf("unexpected number of events in %q; got n=%d, %d callbacks; want 1", payload, n, len(rs))
	}
	return rs[0]
}

// base is a minimal valid event; tests extend it with more fields.
const base = `"id":"e1","type":"impression","campaign":"c1"`

func TestParseValid(t *testing.T) {
	r := parseOne(t, `{"id":"8c1f","type":"click","ts":1764345600123,"campaign":"c42","creative":"cr7",
		"placement":"news.example/top","device":"Mobile","country":"fr","site":"News.Example.com","cost":0.0021,"value":0,"extra":{"a":[1,2]}}`)
	if r.reason != OK {
		t.Fatalf("unexpected reason; got %q; want OK", r.reason)
	}
	want := &Event{
		ID:         []byte("8c1f"),
		Type:       Click,
		TS:         1764345600123,
		HasTS:      true,
		CostMicros: 2100,
	}
	want.Dims[windows.DimCampaign] = []byte("c42")
	want.Dims[windows.DimCreative] = []byte("cr7")
	want.Dims[windows.DimPlacement] = []byte("news.example/top")
	want.Dims[windows.DimDevice] = []byte("mobile")
	want.Dims[windows.DimCountry] = []byte("FR")
	want.Dims[windows.DimSite] = []byte("News.Example.com")
	if !reflect.DeepEqual(r.ev, want) {
		t.Fatalf("unexpected event;\ngot  %s\nwant %s", AppendJSON(nil, r.ev), AppendJSON(nil, want))
	}
}

func TestParseFields(t *testing.T) {
	// f parses {base, extra} and checks one property of the event.
	f := func(extra string, check func(ev *Event) (got, want any)) {
		t.Helper()
		payload := `{` + base + extra + `}`
		r := parseOne(t, payload)
		if r.reason != OK {
			t.Fatalf("unexpected reason for %s; got %q; want OK", payload, r.reason)
		}
		if got, want := check(r.ev); !reflect.DeepEqual(got, want) {
			t.Fatalf("unexpected value for %s; got %#v; want %#v", payload, got, want)
		}
	}
	dim := func(d windows.Dim) func(ev *Event) any {
		return func(ev *Event) any { return string(ev.Dims[d]) }
	}
	str := func(d windows.Dim, want string) func(ev *Event) (any, any) {
		return func(ev *Event) (any, any) { return dim(d)(ev), want }
	}

	// Normalisation: country upper-cased, device lower-cased, ASCII letters only.
	f(`,"country":"fr"`, str(windows.DimCountry, "FR"))
	f(`,"country":"Fr"`, str(windows.DimCountry, "FR"))
	f(`,"country":"FR"`, str(windows.DimCountry, "FR"))
	f(`,"country":"gb-sct"`, str(windows.DimCountry, "GB-SCT"))
	f(`,"country":"çé"`, str(windows.DimCountry, "çé"))
	f(`,"device":"Mobile"`, str(windows.DimDevice, "mobile"))
	f(`,"device":"CTV"`, str(windows.DimDevice, "ctv"))
	f(`,"device":"desktop"`, str(windows.DimDevice, "desktop"))
	f(`,"device":"TÉLÉ"`, str(windows.DimDevice, "tÉlÉ"))
	// Other values keep their case and any UTF-8.
	f(`,"creative":"Cr7"`, str(windows.DimCreative, "Cr7"))
	f(`,"placement":"News.Example/Top"`, str(windows.DimPlacement, "News.Example/Top"))
	f(`,"placement":"日本/トップ"`, str(windows.DimPlacement, "日本/トップ"))
	f(`,"site":"News.Example.COM"`, str(windows.DimSite, "News.Example.COM"))
	f(`,"site":"com.Example.App"`, str(windows.DimSite, "com.Example.App"))
	f(`,"site":"ex\u00e9mple.fr"`, str(windows.DimSite, "exémple.fr"))
	f(`,"site":"`+strings.Repeat("s", MaxFieldLen)+`"`, str(windows.DimSite, strings.Repeat("s", MaxFieldLen)))
	f(`,"site":"s.example","site":"t.example"`, str(windows.DimSite, "s.example")) // the first occurrence counts
	f(`,"site":"s.example"`, func(ev *Event) (any, any) { return ev.Dims.Mask(), uint8(1<<windows.DimCampaign | 1<<windows.DimSite) })
	f(`,"creative":"a\/b\"c\\d\n\u00e9\ud83d\ude00"`, str(windows.DimCreative, "a/b\"c\\d\né😀"))
	f(``, func(ev *Event) (any, any) { return string(ev.Dims[windows.DimCampaign]), "c1" })
	f(``, func(ev *Event) (any, any) { return ev.Dims.Mask(), uint8(1) })
	f(`,"creative":null,"placement":null,"device":null,"country":null,"site":null`, func(ev *Event) (any, any) { return ev.Dims.Mask(), uint8(1) })
	// A lone surrogate escape is kept as its text, which is valid UTF-8.
	f(`,"creative":"\ud800"`, str(windows.DimCreative, `\ud800`))

	// Types.
	typ := func(want Type) func(ev *Event) (any, any) {
		return func(ev *Event) (any, any) { return ev.Type, want }
	}
	f(``, typ(Impression))
	f(`,"type":"click"`, typ(Impression)) // the first occurrence counts
	parseTypeOf := func(s string, want Type) {
		t.Helper()
		r := parseOne(t, `{"id":"e","type":"`+s+`","campaign":"c"}`)
		if r.reason != OK || r.ev.Type != want {
			t.Fatalf("unexpected type for %q; got %v %v; want %v", s, r.reason, r.ev, want)
		}
	}
	parseTypeOf("impression", Impression)
	parseTypeOf("click", Click)
	parseTypeOf("conversion", Conversion)

	// Timestamps.
	ts := func(want int64, has bool) func(ev *Event) (any, any) {
		return func(ev *Event) (any, any) { return [2]any{ev.TS, ev.HasTS}, [2]any{want, has} }
	}
	f(``, ts(0, false))
	f(`,"ts":null`, ts(0, false))
	f(`,"ts":1000000000000`, ts(MinTS, true))
	f(`,"ts":1764345600123`, ts(1764345600123, true))
	f(`,"ts":9999999999999`, ts(MaxTS, true)) // no clock: the 13-digit bound

	// Money, in micros, rounded half away from zero.
	cost := func(want uint64) func(ev *Event) (any, any) {
		return func(ev *Event) (any, any) { return ev.CostMicros, want }
	}
	value := func(want uint64) func(ev *Event) (any, any) {
		return func(ev *Event) (any, any) { return ev.ValueMicros, want }
	}
	f(``, cost(0))
	f(`,"cost":null`, cost(0))
	f(`,"cost":0`, cost(0))
	f(`,"cost":-0`, cost(0))
	f(`,"cost":-0.0e7`, cost(0))
	f(`,"cost":0.0021`, cost(2100))
	f(`,"cost":2`, cost(2000000))
	f(`,"cost":1.0000005`, cost(1000001))
	f(`,"cost":1.00000049999`, cost(1000000))
	f(`,"cost":0.0000005`, cost(1))
	f(`,"cost":0.00000049`, cost(0))
	f(`,"cost":1e-400`, cost(0))
	f(`,"cost":12.5e1`, cost(125000000))
	f(`,"cost":1E2`, cost(100000000))
	f(`,"cost":25e-7`, cost(3))
	f(`,"cost":9e12`, cost(9000000000000000000))
	f(`,"cost":9000000000000.0000000`, cost(9000000000000000000))
	f(`,"cost":8999999999999.9999995`, cost(9000000000000000000))
	f(`,"value":42.5`, value(42500000))
	f(`,"value":0.1`, value(100000))

	// click_ts: kept on conversions only.
	click := func(want int64, has bool) func(ev *Event) (any, any) {
		return func(ev *Event) (any, any) { return [2]any{ev.ClickTS, ev.HasClickTS}, [2]any{want, has} }
	}
	f(`,"click_ts":1764345600000`, click(0, false)) // an impression
	conv := func(extra string, want int64, has bool) {
		t.Helper()
		r := parseOne(t, `{"id":"e","type":"conversion","campaign":"c"`+extra+`}`)
		if r.reason != OK || r.ev.ClickTS != want || r.ev.HasClickTS != has {
			t.Fatalf("unexpected click_ts for %q; got %v; want %d %v", extra, r, want, has)
		}
	}
	conv(``, 0, false)
	conv(`,"click_ts":null`, 0, false)
	conv(`,"click_ts":1000000000000`, MinTS, true)
	conv(`,"click_ts":1764345600000`, 1764345600000, true)

	// Length limits count bytes after unescaping.
	f(`,"creative":"`+strings.Repeat("a", MaxFieldLen)+`"`, func(ev *Event) (any, any) { return len(ev.Dims[windows.DimCreative]), MaxFieldLen })
	f(`,"creative":"`+strings.Repeat(`\u00e9`, MaxFieldLen/2)+`"`, func(ev *Event) (any, any) { return len(ev.Dims[windows.DimCreative]), MaxFieldLen })

	// Unknown fields are ignored, whatever they hold; escaped keys are recognised.
	f(`,"user_id":"u1","ip":null,"nested":{"id":1,"type":"x","a":[{"b":null}]}`, func(ev *Event) (any, any) { return string(ev.ID), "e1" })
	f(`,"x":[1,{"y":null}],"z":-1.5e3`, func(ev *Event) (any, any) { return string(ev.ID), "e1" })
	parseKey := func(payload, wantID string) {
		t.Helper()
		r := parseOne(t, payload)
		if r.reason != OK || string(r.ev.ID) != wantID {
			t.Fatalf("unexpected result for %s; got %v; want id %q", payload, r, wantID)
		}
	}
	parseKey(`{"\u0069d":"k","type":"click","campaign":"c"}`, "k")
	parseKey(`{"id":"first","id":"second","type":"click","campaign":"c"}`, "first")
	parseKey(` {"id":"ws","type":"click","campaign":"c"} `, "ws")
}

func TestParseReasons(t *testing.T) {
	// f checks that payload (one event) is rejected with reason; raw must be the whole payload.
	f := func(payload string, reason Reason) {
		t.Helper()
		r := parseOne(t, payload)
		if r.reason != reason {
			t.Fatalf("unexpected reason for %q; got %q (%v); want %q", payload, r.reason, r, reason)
		}
		if r.raw != payload {
			t.Fatalf("unexpected raw for %q; got %q; want the payload", payload, r.raw)
		}
	}
	obj := func(fields string) string { return "{" + fields + "}" }
	long := strings.Repeat("x", MaxFieldLen+1)

	// bad_json: anything that is not strict JSON.
	for _, s := range []string{
		"", " ", "\n\t", "{", `{"id":"a"`, "[", "[1,]", `{"id":}`, "nul", "tru", "{'id':'a'}",
		`{"id":"a"}{"id":"b"}`, `{"id":"a"} x`, "NaN", "Inf", "-Inf", "+1", "01", "1.", ".5", "1e",
		`{` + base + `,"cost":NaN}`, `{` + base + `,"cost":Inf}`, `{` + base + `,"cost":-inf}`,
		`{` + base + `,"ts":+1}`, `{` + base + `,"ts":01}`, `{` + base + `,"ts":1-2}`,
		`{"id":"a\x","type":"click","campaign":"c"}`, `{"id":"a\u12","type":"click","campaign":"c"}`,
		"{\"id\":\"a\x01\",\"type\":\"click\",\"campaign\":\"c\"}", "{\"i\td\":1}",
		"{\"id\":\"\x10\\b\"}", "{\"\x1f\\n\":1}", "[\"\t\\\"\"]",
		strings.Repeat("[", 1000) + strings.Repeat("]", 1000), strings.Repeat("[", 1_000_000),
	} {
		f(s, BadJSON)
	}

	// not_object: top-level scalars.
	for _, s := range []string{"1", "-2.5", `"id"`, "true", "false", "null", ` 7 `} {
		f(s, NotObject)
	}

	// bad_id.
	f(obj(`"type":"click","campaign":"c"`), BadID)
	for _, id := range []string{`null`, `""`, `1`, `true`, `["a"]`, `{}`, "\"\xff\"", "\"a\xc3\"", "\"\xed\xa0\x80\""} {
		f(obj(`"id":`+id+`,"type":"click","campaign":"c"`), BadID)
	}
	f(obj(`"id":null,"id":"second","type":"click","campaign":"c"`), BadID) // the first occurrence counts

	// bad_type.
	f(obj(`"id":"a","campaign":"c"`), BadType)
	for _, typ := range []string{`null`, `""`, `1`, `"Click"`, `"CLICK"`, `"imp"`, `"click "`, `["click"]`, `"` + long + `"`} {
		f(obj(`"id":"a","type":`+typ+`,"campaign":"c"`), BadType)
	}

	// bad_campaign.
	f(obj(`"id":"a","type":"click"`), BadCampaign)
	for _, c := range []string{`null`, `""`, `42`, `{}`, "\"c\xff\""} {
		f(obj(`"id":"a","type":"click","campaign":`+c), BadCampaign)
	}

	// bad_dimension: every optional dimension, present but empty, not a string or not UTF-8.
	for _, dim := range []string{"creative", "placement", "device", "country", "site"} {
		for _, v := range []string{`""`, `1`, `true`, `[]`, `{"a":1}`, "\"\xff\"", "\"\xc0\xaf\""} {
			f(obj(base+`,"`+dim+`":`+v), BadDimension)
		}
	}

	// field_too_long: every string field, over MaxFieldLen bytes after unescaping.
	f(obj(`"id":"`+long+`","type":"click","campaign":"c"`), FieldTooLong)
	f(obj(`"id":"a","type":"click","campaign":"`+long+`"`), FieldTooLong)
	for _, dim := range []string{"creative", "placement", "device", "country", "site"} {
		f(obj(base+`,"`+dim+`":"`+long+`"`), FieldTooLong)
	}
	f(obj(base+`,"creative":"a`+strings.Repeat(`\u00e9`, MaxFieldLen/2)+`"`), FieldTooLong)

	// bad_ts: not a plain non-negative integer, or not Unix ms of this era (see TestParseTSRange).
	for _, ts := range []string{`1.5`, `1.0`, `1e3`, `-1`, `-0`, `"123"`, `true`, `[]`, `{}`,
		`9223372036854775808`, `99999999999999999999`, `1e400`, `0`, `1764345600`,
		`1764345600123000`, `1764345600123000000`, `9223372036854775807`} {
		f(obj(base+`,"ts":`+ts), BadTS)
	}

	// bad_money: cost and value.
	for _, field := range []string{"cost", "value"} {
		for _, m := range []string{`-1`, `-0.0000001`, `-5e-7`, `9000000000000.000001`,
			`9000000000000.0000001`, `9.0000000000001e12`, `1e13`, `1e400`, `"1"`, `true`, `[]`, `{}`} {
			f(obj(base+`,"`+field+`":`+m), BadMoney)
		}
	}

	// bad_click_ts, on any type.
	for _, typ := range []string{"impression", "click", "conversion"} {
		for _, ts := range []string{`1.5`, `-1`, `"1"`, `1e3`, `9223372036854775808`, `0`, `1764345600`, `1764345600123000`} {
			f(obj(`"id":"a","type":"`+typ+`","campaign":"c","click_ts":`+ts), BadClickTS)
		}
	}
}

func TestParseCheckOrder(t *testing.T) {
	// The fields are checked in the order id, type, campaign, creative, placement, device,
	// country, site, ts, cost, value, click_ts; within a string field: type, emptiness, length, UTF-8.
	f := func(payload string, reason Reason) {
		t.Helper()
		if r := parseOne(t, payload); r.reason != reason {
			t.Fatalf("unexpected reason for %s; got %q; want %q", payload, r.reason, reason)
		}
	}
	long := strings.Repeat("x", MaxFieldLen+1)
	f(`{"type":"bad","ts":-1,"cost":-1,"click_ts":-1}`, BadID)
	f(`{"id":"`+long+`","type":"bad"}`, FieldTooLong)
	f(`{"id":"a","type":"bad","campaign":""}`, BadType)
	f(`{"id":"a","type":"click","creative":"","ts":-1}`, BadCampaign)
	f(`{"id":"a","type":"click","campaign":"`+long+`","creative":""}`, FieldTooLong)
	f(`{"id":"a","type":"click","campaign":"c","creative":"","placement":"`+long+`"}`, BadDimension)
	f(`{"id":"a","type":"click","campaign":"c","creative":"`+long+`","placement":""}`, FieldTooLong)
	f(`{"id":"a","type":"click","campaign":"c","placement":1,"device":"`+long+`"}`, BadDimension)
	f(`{"id":"a","type":"click","campaign":"c","device":"`+long+`","country":""}`, FieldTooLong)
	f(`{"id":"a","type":"click","campaign":"c","country":"","ts":-1}`, BadDimension)
	f(`{"id":"a","type":"click","campaign":"c","country":"`+long+`","site":""}`, FieldTooLong)
	f(`{"site":"`+long+`","id":"a","type":"click","campaign":"c","country":""}`, BadDimension)
	f(`{"id":"a","type":"click","campaign":"c","site":"","ts":-1}`, BadDimension)
	f(`{"id":"a","type":"click","campaign":"c","site":"`+long+`","ts":-1}`, FieldTooLong)
	f(`{"id":"a","type":"click","campaign":"c","ts":-1,"cost":-1}`, BadTS)
	f(`{"click_ts":-1,"value":-1,"cost":1,"ts":1764345600123,"campaign":"c","type":"click","id":"a"}`, BadMoney)
	f(`{"id":"a","type":"click","campaign":"c","ts":1764345600,"cost":-1}`, BadTS)
	f(`{"id":"a","type":"click","campaign":"c","cost":-1,"value":-1,"click_ts":-1}`, BadMoney)
	f(`{"id":"a","type":"click","campaign":"c","value":-1,"click_ts":-1}`, BadMoney)
	f(`{"id":"a","type":"click","campaign":"c","click_ts":-1}`, BadClickTS)
	// Invalid UTF-8 in a long string: the length is checked first.
	f(`{"id":"`+long+"\xff"+`","type":"click","campaign":"c"}`, FieldTooLong)
	// Empty before type: "" is bad_id even when type is missing.
	f(`{"id":""}`, BadID)
}

func TestParseBatch(t *testing.T) {
	var p Parser
	// f parses payload and checks the sequence of results against want ("OK <id>" or the reason)
	// and the returned count; every raw of a rejected element must be valid JSON that means the
	// same as the element.
	f := func(payload string, want ...string) {
		t.Helper()
		rs, n := parseAll(t, &p, payload)
		if n != len(want) {
			t.Fatalf("unexpected count for %s; got %d; want %d", payload, n, len(want))
		}
		var got []string
		for _, r := range rs {
			if r.ev != nil {
				got = append(got, "OK "+string(r.ev.ID))
			} else {
				got = append(got, r.reason.String())
			}
		}
		if !reflect.DeepEqual(got, want) && len(got)+len(want) > 0 {
			t.Fatalf("unexpected results for %s;\ngot  %q\nwant %q", payload, got, want)
		}
		var elems []json.RawMessage
		if err := json.Unmarshal([]byte(payload), &elems); err != nil {
			t.Fatalf("cannot decode test payload %s: %s", payload, err)
		}
		for i, r := range rs {
			if r.ev != nil {
				continue
			}
			if !json.Valid([]byte(r.raw)) {
				t.Fatalf("unexpected raw of element %d of %s; got %q; want valid JSON", i, payload, r.raw)
			}
			var got, want any
			_ = json.Unmarshal([]byte(r.raw), &got)
			_ = json.Unmarshal(elems[i], &want)
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("unexpected raw of element %d of %s; got %s; want the same as %s", i, payload, r.raw, elems[i])
			}
		}
	}
	ev := func(id string) string { return `{"id":"` + id + `","type":"click","campaign":"c"}` }

	f(`[]`)
	f(" [ \n ] ")
	f(`[`+ev("a")+`]`, "OK a")
	f(`[`+ev("a")+`,`+ev("b")+`,`+ev("c")+`]`, "OK a", "OK b", "OK c")
	f(`[`+ev("a")+`,1,{"type":"click"},`+ev("b")+`,"s",null,[],[`+ev("x")+`],{},`+ev("c")+`]`,
		"OK a", "not_object", "bad_id", "OK b", "not_object", "not_object", "not_object", "not_object", "bad_id", "OK c")
	// Raws of rejected elements stay valid JSON even when their strings needed escapes.
	f(`[{"id":"\u0007\"\\\/\b\f\n\r\t","type":"nope","campaign":"c"},`+ev("a")+`]`, "bad_type", "OK a")
	f(`["\u0000\u001f\u2028", {"\u0001k":"\u00e9","id":"x","type":"click","campaign":""}, {"id":"y","type":"click","campaign":"c","cost":-1.5e0,"z":[true,false,null,{"w":1e-3}]}]`,
		"not_object", "bad_campaign", "bad_money")
	f("[{\"id\":\"a\xff\",\"type\":\"click\",\"campaign\":\"c\"},"+ev("b")+"]", "bad_id", "OK b")
	f(`[{"id":"a","id":"b","type":"click"}]`, "bad_campaign")
	f(`[`+ev("d")+`,`+ev("d")+`]`, "OK d", "OK d") // duplicates are the consumer's business

	// The Parser is reusable after a rejection, and state does not leak between events.
	f(`[{"id":"a","type":"conversion","campaign":"c","creative":"k","ts":1764345600005,"cost":1,"click_ts":1764345600003},{"id":"b","type":"click","campaign":"c"}]`, "OK a", "OK b")
	rs, _ := parseAll(t, &p, `[{"id":"a","type":"conversion","campaign":"c","creative":"k","device":"TV","country":"fr","ts":1764345600005,"cost":1,"value":2,"click_ts":1764345600003},{"id":"b","type":"click","campaign":"c"}]`)
	want := &Event{ID: []byte("b"), Type: Click}
	want.Dims[windows.DimCampaign] = []byte("c")
	if !reflect.DeepEqual(rs[1].ev, want) {
		t.Fatalf("unexpected second event; got %s; want %s", AppendJSON(nil, rs[1].ev), AppendJSON(nil, want))
	}
	if got := string(rs[0].ev.Dims[windows.DimCountry]) + string(rs[0].ev.Dims[windows.DimDevice]); got != "FRtv" {
		t.Fatalf("unexpected normalised dims; got %q; want %q", got, "FRtv")
	}

	// A rejected single object reports the whole payload, unchanged.
	payload := " {\"id\":\"\\u0007\",\"type\":\"x\"} "
	r := parseOne(t, payload)
	if r.reason != BadType || r.raw != payload {
		t.Fatalf("unexpected result; got %v %q; want bad_type with the payload", r.reason, r.raw)
	}
}

func TestParseCallbackScope(t *testing.T) {
	// Events of a batch share the Parser's Event: the callback sees each one in turn.
	var p Parser
	var ids []string
	n := p.Parse([]byte(`[{"id":"a","type":"click","campaign":"c","country":"us"},{"id":"b","type":"click","campaign":"c","country":"de"}]`),
		func(ev *Event, reason Reason, raw []byte) {
			ids = append(ids, string(ev.ID)+"/"+string(ev.Dims[windows.DimCountry]))
		})
	if n != 2 || !reflect.DeepEqual(ids, []string{"a/US", "b/DE"}) {
		t.Fatalf("unexpected events; got %d %q; want 2 [a/US b/DE]", n, ids)
	}
	// The payload is never modified.
	payload := []byte(`{"id":"a\n","type":"click","campaign":"c","device":"TV","country":"fr"}`)
	orig := bytes.Clone(payload)
	p.Parse(payload, func(*Event, Reason, []byte) {})
	if !bytes.Equal(payload, orig) {
		t.Fatalf("unexpected payload change; got %q; want %q", payload, orig)
	}
}

func TestTypeAndReasonNames(t *testing.T) {
	for typ := Impression; typ < NumTypes; typ++ {
		if got := ParseType([]byte(typ.String())); got != typ {
			t.Fatalf("unexpected ParseType(%q); got %v; want %v", typ.String(), got, typ)
		}
	}
	for _, s := range []string{"", "none", "Impression", "clicks", "click\x00"} {
		if got := ParseType([]byte(s)); got != TypeNone {
			t.Fatalf("unexpected ParseType(%q); got %v; want TypeNone", s, got)
		}
	}
	if got := TypeNone.String() + NumTypes.String() + Type(200).String(); got != "" {
		t.Fatalf("unexpected names of invalid types; got %q; want empty", got)
	}
	for r := BadJSON; r < NumReasons; r++ {
		if r.String() == "" || r.String() != ReasonNames[r] {
			t.Fatalf("unexpected name of reason %d; got %q", r, r.String())
		}
	}
	if OK.String() != "" || NumReasons.String() != "" {
		t.Fatalf("unexpected names of OK and NumReasons; got %q and %q; want empty", OK.String(), NumReasons.String())
	}
}

func TestParseAllocs(t *testing.T) {
	single := []byte(`{"id":"8c1f2a","type":"click","ts":1764345600123,"campaign":"c42","creative":"cr7",` +
		`"placement":"news.example/top","device":"Mobile","country":"fr","cost":0.0021,"value":0,"ua":"x"}`)
	var batch []byte
	batch = append(batch, '[')
	for i := range 100 {
		if i > 0 {
			batch = append(batch, ',')
		}
		batch = fmt.Appendf(batch, `{"id":"e%d","type":"%s","ts":%d,"campaign":"c%d","creative":"cr%d","placement":"p%d.example/x",`+
			`"device":"mobile","country":"us","cost":0.002%d,"value":%d.5,"click_ts":%d}`,
			i, Type(1+i%3), 1764345600000+int64(i), i%3, i%5, i%4, i%10, i%50, 1764345500000+int64(i))
	}
	batch = append(batch, ']')

	f := func(name string, payload []byte, want int) {
		t.Helper()
		var p Parser
		seen := 0
		fn := func(ev *Event, reason Reason, raw []byte) {
			if reason == OK {
				seen++
			}
		}
		p.Parse(payload, fn) // warm-up: buffers grow here
		if seen != want {
			t.Fatalf("unexpected valid events in %s; got %d; want %d", name, seen, want)
		}
		allocs := testing.AllocsPerRun(100, func() { p.Parse(payload, fn) })
		if allocs != 0 {
			t.Fatalf("unexpected allocations per Parse of %s; got %v; want 0", name, allocs)
		}
	}
	f("single event", single, 1)
	f("batch of 100", batch, 100)

	ev := parseOne(t, string(single)).ev
	buf := make([]byte, 0, 1024)
	if allocs := testing.AllocsPerRun(100, func() { buf = AppendJSON(buf[:0], ev) }); allocs != 0 {
		t.Fatalf("unexpected allocations per AppendJSON; got %v; want 0", allocs)
	}
}

func TestParseTSRange(t *testing.T) {
	// ts and click_ts must be Unix milliseconds of this era: from MinTS (2001-09-09) to
	// MaxTSAhead past the consumer's clock. A time in another unit is bad_ts, on the fast path's
	// payloads too (it leaves them to the general path, which rejects).
	const now = 1767323045000 // 2026-01-02T03:04:05Z
	f := func(nowMs int64, ts int64, want Reason) {
		t.Helper()
		for _, tc := range []struct {
			payload string
			bad     Reason
		}{
			{fmt.Sprintf(`{"id":"a","type":"click","campaign":"c","ts":%d}`, ts), BadTS},
			{fmt.Sprintf(`[{"id":"a","type":"conversion","campaign":"c","click_ts":%d}]`, ts), BadClickTS},
		} {
			if want != OK {
				want = tc.bad
			}
			p := Parser{NowMs: nowMs}
			rs, n := parseAll(t, &p, tc.payload)
			if n != 1 || rs[0].reason != want {
				t.Fatalf("unexpected outcome of %s with the clock at %d; got %v; want %s", tc.payload, nowMs, rs, want)
			}
			if _, fast := p.fastParse([]byte(tc.payload)); fast != (want == OK) {
				t.Fatalf("unexpected fast path for %s; got %v; want %v", tc.payload, fast, want == OK)
			}
		}
	}
	for _, nowMs := range []int64{now, 0} {
		f(nowMs, now, OK)
		f(nowMs, now/1000, BadTS)           // seconds
		f(nowMs, now*1000, BadTS)           // microseconds
		f(nowMs, now*1000_000, BadTS)       // nanoseconds
		f(nowMs, 0, BadTS)                  // zero
		f(nowMs, MinTS-1, BadTS)            // 2001-09-09, 1 ms early
		f(nowMs, MinTS, OK)                 // 2001-09-09T01:46:40Z
		f(nowMs, now-25*3600*1000, OK)      // late is the ingest's business
		f(nowMs, now+MaxTSAhead, OK)        // future is the ingest's business
		f(nowMs, math.MaxInt64/1000, BadTS) // 2.9e5 years ahead
	}
	// With a clock, the bound is relative to it; without one, it is MaxTS.
	f(now, now+MaxTSAhead+1, BadTS)
	f(0, now+MaxTSAhead+1, OK)
	f(0, MaxTS, OK)
	f(0, MaxTS+1, BadTS)
	f(MaxTS-MaxTSAhead/2, MaxTS+1, BadTS) // the relative bound stops at MaxTS
	// Negative times are not plain digits.
	if r := parseOne(t, `{"id":"a","type":"click","campaign":"c","ts":-1767323045000}`); r.reason != BadTS {
		t.Fatalf("unexpected outcome of a negative ts; got %v; want bad_ts", r)
	}
	if r := parseOne(t, `{"id":"a","type":"conversion","campaign":"c","click_ts":-1767323045000}`); r.reason != BadClickTS {
		t.Fatalf("unexpected outcome of a negative click_ts; got %v; want bad_click_ts", r)
	}
}
