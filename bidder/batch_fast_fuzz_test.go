package bidder

import (
	"strings"
	"testing"
)

// FuzzBatchParse checks that the fast path answers any body as the general path does: the
// same status and the same bytes.
//
// pad puts up to maxBatchItems short valid items ahead of the first item of a body that is an
// array: the item limit is reached without a large input, which the fuzzer would mutate into
// large interesting inputs and spend a minute minimising each, at a millisecond a run.
func FuzzBatchParse(f *testing.F) {
	for _, c := range batchCases {
		if len(c.body) <= 4096 {
			f.Add([]byte(c.body), uint16(0))
		}
	}
	f.Add([]byte(`[{"campaign":"c1"}]`), uint16(maxBatchItems-1))
	f.Add([]byte(`[{"campaign":"c1"}]`), uint16(maxBatchItems))
	f.Add([]byte(`[{"campaign":"c1","placement":"p3","explain":true} ]`), uint16(maxBatchItems-1))
	f.Add([]byte(`[{"campaign":"c1"},{"campaign":"c1","creative":"cr1"}]`), uint16(maxBatchItems-1))
	f.Add([]byte(`[ ]`), uint16(maxBatchItems))
	svc := newBatchService(f)
	f.Fuzz(func(t *testing.T, body []byte, pad uint16) {
		if n := min(int(pad), maxBatchItems); n > 0 && len(body) > 0 && body[0] == '[' {
			body = append([]byte("["+strings.Repeat(`{"campaign":"c"},`, n)), body[1:]...)
		}
		code, got := postBatch(svc, body, true)
		wantCode, want := postBatch(svc, body, false)
		if code != wantCode || got != want {
			t.Fatalf("unexpected answer to %q; got %d %s; want %d %s", body, code, got, wantCode, want)
		}
	})
}
