package main

import (
	"bytes"
	"strings"
	"testing"
)

// stream is a govulncheck -format json output: a called stdlib vulnerability, a called module
// one, and one of a package imported but not called.
const stream = `{"config":{"db":"file:///db","go_version":"go1.26.8"}}
{"osv":{"id":"GO-1","summary":"stdlib bug"}}
{"osv":{"id":"GO-2","summary":"module bug"}}
{"finding":{"osv":"GO-1","fixed_version":"v1.26.9","trace":[{"module":"stdlib","version":"v1.26.8","package":"net/http"}]}}
{"finding":{"osv":"GO-1","fixed_version":"v1.26.9","trace":[{"module":"stdlib","version":"v1.26.8","package":"net/http","function":"Get"},{"module":"m","function":"main"}]}}
{"finding":{"osv":"GO-2","fixed_version":"v1.2.0","trace":[{"module":"example.com/m","version":"v1.1.0","package":"example.com/m/p","function":"F"}]}}
{"finding":{"osv":"GO-3","trace":[{"module":"example.com/n","version":"v0.1.0","package":"example.com/n"}]}}
`

func TestGate(t *testing.T) {
	f := func(acc map[string]string, wantFail bool, wantOut ...string) {
		t.Helper()
		var out bytes.Buffer
		failed, err := gate(strings.NewReader(stream), &out, acc)
		if err != nil {
			t.Fatal(err)
		}
		if failed != wantFail {
			t.Fatalf("unexpected verdict with %v; got failed %v; want %v: %s", acc, failed, wantFail, out.String())
		}
		for _, w := range wantOut {
			if !strings.Contains(out.String(), w) {
				t.Fatalf("unexpected report with %v; want %q in it: %s", acc, w, out.String())
			}
		}
	}
	f(nil, true, "GO-1 called", "GO-2 called", "GO-3 package imported, not called", "NOT ACCEPTED")
	f(map[string]string{"GO-1": "toolchain"}, true, "accepted: toolchain", "upgrade example.com/m")
	f(map[string]string{"GO-1": "toolchain", "GO-2": "reason", "GO-9": "old"}, false, "GO-9 is accepted but no longer found")
	if _, err := gate(strings.NewReader(""), &bytes.Buffer{}, nil); err == nil {
		t.Fatal("unexpected pass of an empty output")
	}
}
