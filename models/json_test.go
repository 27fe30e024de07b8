package models

import (
	"encoding/json"
	"math"
	"testing"
)

func TestAppendJSONFloat(t *testing.T) {
	f := func(v float64) {
		t.Helper()
		got := string(appendJSONFloat(nil, v))
		want, err := json.Marshal(v)
		if err != nil {
			t.Fatalf("BUG: cannot marshal %v: %s", v, err)
		}
		if got != string(want) {
			t.Fatalf("unexpected encoding of %v; got %s; want %s", v, got, want)
		}
	}
	for _, v := range []float64{0, 1, -1, 0.5, 2, 85.0 / 39, 1.0 / 3, 1e-6, 9.99e-7, 1e-9, 1.5e-300,
		1e20, 1e21, 1.234e25, 2000, 10000, 18446744073709551615, math.MaxFloat64, math.SmallestNonzeroFloat64, -1e-7} {
		f(v)
	}
	g := func(v float64, want string) {
		t.Helper()
		if got := string(appendJSONFloat(nil, v)); got != want {
			t.Fatalf("unexpected encoding of %v; got %s; want %s", v, got, want)
		}
	}
	g(math.NaN(), "0")
	g(math.Inf(1), "1.7976931348623157e+308")
	g(math.Inf(-1), "-1.7976931348623157e+308")
}

func TestAppendJSONString(t *testing.T) {
	f := func(s string) {
		t.Helper()
		b := appendJSONString(nil, s)
		var got string
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatalf("cannot parse %q encoded as %s: %s", s, b, err)
		}
		if got != s {
			t.Fatalf("unexpected round trip; got %q; want %q", got, s)
		}
	}
	for _, s := range []string{"", "ctr", `a"b`, `a\b`, "a\nb\r\tc", "\x00\x01\x1f", "é/€"} {
		f(s)
	}
}

func TestResultAppendJSON(t *testing.T) {
	var r Result
	r.Reset()
	r.Min, r.Max = 0.5, 2
	a := r.AddFactor("ctr", 1.5)
	a.AddInput("impressions", 2000)
	a.AddInput("raw_ctr", 0.04)
	r.AddFactor("cvr", 1.5)
	r.Finish()
	got := string(r.AppendJSON([]byte("prefix:")))
	want := `prefix:{"multiplier":2,"before_clamp":2.25,"clamp":[0.5,2],"clamped":true,"factors":[` +
		`{"name":"ctr","value":1.5,"inputs":{"impressions":2000,"raw_ctr":0.04}},` +
		`{"name":"cvr","value":1.5,"inputs":{}}]}`
	if got != want {
		t.Fatalf("unexpected JSON;\ngot  %s\nwant %s", got, want)
	}
	if !json.Valid([]byte(got[len("prefix:"):])) {
		t.Fatalf("invalid JSON: %s", got)
	}

	r.Reset()
	if got, want := string(r.AppendFactorsJSON(nil)), "[]"; got != want {
		t.Fatalf("unexpected JSON of no factors; got %s; want %s", got, want)
	}
}
