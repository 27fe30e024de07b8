package bidder

import (
	"fmt"
	"strings"
	"testing"

	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"
)

// newBatchService returns a service with data on the default rollups and on campaign/device
// and campaign/country (so that an answer shows whether device and country were normalised),
// its keys published as the running service does every second. Answers are deterministic:
// the default policy does not explore.
func newBatchService(t testing.TB) *Service {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Rollups = append(cfg.Rollups, "campaign/device", "campaign/country")
	svc, err := New(Options{Clock: NewManualClock(testNow), Logger: zerolog.Nop(), DedupSize: 32 << 20, Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []string{"c1", "c2"} {
		if svc.control.Policies().For([]byte(c)).Explore.Enabled {
			t.Fatalf("unexpected exploration in the default policy of %s: answers would not be comparable", c)
		}
	}
	for i := range 5 {
		svc.ingest.Apply(batchPayload(fmt.Sprintf("w%d", i), 1000, 20), testNow)
	}
	b := []byte{'['}
	for i := range 200 {
		if i > 0 {
			b = append(b, ',')
		}
		device, country := "mobile", "FR"
		if i%2 == 1 {
			device, country = "desktop", "DE"
		}
		for _, typ := range []string{"impression", "click"} {
			if typ == "click" && i%4 > 1 {
				continue
			}
			if typ == "click" {
				b = append(b, ',')
			}
			b = fmt.Appendf(b, `{"id":"dc-%d","type":%q,"ts":%d,"campaign":"c1","device":%q,"country":%q}`, i, typ, testNow, device, country)
		}
	}
	b = append(b, ']')
	svc.ingest.Apply(b, testNow)
	code, body := postBatch(svc, []byte(`[{"campaign":"c1","creative":"cr1","placement":"p3"},{"campaign":"c1","device":"mobile"},{"campaign":"c1","country":"DE"},{"campaign":"c2"}]`), true)
	if code != fasthttp.StatusOK {
		t.Fatalf("unexpected status %d: %s", code, body)
	}
	svc.brain.Publish(testNow)
	return svc
}

// postBatch answers POST /v1/multipliers with body, on the fast path when it takes the body
// and fast is set, else on the general path.
func postBatch(svc *Service, body []byte, fast bool) (int, string) {
	batchFastOff.Store(!fast)
	defer batchFastOff.Store(false)
	var ctx fasthttp.RequestCtx
	ctx.Request.Header.SetMethod("POST")
	ctx.Request.SetRequestURI("/v1/multipliers")
	ctx.Request.SetBody(body)
	svc.serveHTTP(&ctx)
	return ctx.Response.StatusCode(), string(ctx.Response.Body())
}

// batchOf returns an array of n valid items.
func batchOf(n int) string {
	var sb strings.Builder
	sb.WriteByte('[')
	for i := range n {
		if i > 0 {
			sb.WriteByte(',')
		}
		fmt.Fprintf(&sb, `{"campaign":"c1","creative":"cr1","placement":"p%d","explain":%t}`, i%25, i%7 == 0)
	}
	sb.WriteByte(']')
	return sb.String()
}

// batchCases are bodies of POST /v1/multipliers, and whether the fast path takes each.
var batchCases = []struct {
	name, body string
	fast       bool
}{
	{"plain", `[{"campaign":"c1","creative":"cr1","placement":"p3"}]`, true},
	{"all dimensions", `[{"campaign":"c1","creative":"cr1","placement":"p3","device":"Mobile","country":"fr","site":"News.Example"}]`, true},
	{"site", `[{"campaign":"c1","site":"news.example"},{"site":"com.Example.App","campaign":"c1","placement":"p3"},{"campaign":"c1","site":null}]`, true},
	{"normalised", `[{"campaign":"c1","device":"MOBILE"},{"country":"de","campaign":"c1"},{"campaign":"c1","device":"Desktop","country":"Fr"}]`, true},
	{"whitespace", " \t\r\n[ \n{ \"campaign\" : \"c1\" ,\t\"placement\"\r:\n\"p3\" , \"explain\" :true} ,\n{\"campaign\":\"c2\"\n}\n]\n\t ", true},
	{"compact", `[{"campaign":"c1"},{"campaign":"c2"},{"campaign":"c3"}]`, true},
	{"empty array", `[]`, true},
	{"empty array spaced", " [ \n ] ", true},
	{"explain", `[{"campaign":"c1","explain":true},{"campaign":"c1","explain":false},{"explain":null,"campaign":"c1"}]`, true},
	{"explain numbers", `[{"campaign":"c1","explain":1},{"campaign":"c1","explain":0},{"campaign":"c1","explain":-0},{"campaign":"c1","explain":-12},{"campaign":"c1","explain":123456789012345678},{"campaign":"c1","explain":-12345678901234567}]`, true},
	{"explain repeated", `[{"campaign":"c1","explain":true,"explain":false},{"campaign":"c1","explain":true,"explain":0},{"campaign":"c1","explain":0,"explain":true},{"campaign":"c1","explain":true,"explain":null}]`, true},
	{"null dimensions", `[{"campaign":"c1","creative":null,"placement":null,"device":null,"country":null}]`, true},
	{"null then value", `[{"campaign":null,"campaign":"c1"},{"campaign":"c1","campaign":null},{"campaign":"c1","placement":null,"placement":"p4"}]`, true},
	{"printable ASCII", `[{"campaign":"c1","placement":" !#$%&'()*+,-./:;<=>?@[]^_{|}~` + "\x7f" + `"}]`, true},
	{"128 bytes", `[{"campaign":"` + strings.Repeat("c", 128) + `"}]`, true},
	{"1000 items", batchOf(1000), true},

	{"1001 items", batchOf(1001), false},
	{"129 bytes", `[{"campaign":"` + strings.Repeat("c", 129) + `"}]`, false},
	{"explain 19 bytes", `[{"campaign":"c1","explain":1234567890123456789}]`, false},
	{"explain leading zeros", `[{"campaign":"c1","explain":-000000000000000000}]`, false},
	{"explain huge", `[{"campaign":"c1","explain":99999999999999999999999}]`, false},
	{"explain fraction", `[{"campaign":"c1","explain":1.5}]`, false},
	{"explain exponent", `[{"campaign":"c1","explain":1e3}]`, false},
	{"explain leading zero", `[{"campaign":"c1","explain":01}]`, false},
	{"explain plus", `[{"campaign":"c1","explain":+1}]`, false},
	{"explain minus alone", `[{"campaign":"c1","explain":-}]`, false},
	{"explain NaN", `[{"campaign":"c1","explain":NaN}]`, false},
	{"explain string", `[{"campaign":"c1","explain":"1"}]`, false},
	{"explain object", `[{"campaign":"c1","explain":{}}]`, false},
	{"explain garbage", `[{"campaign":"c1","explain":truex}]`, false},
	{"explain truncated", `[{"campaign":"c1","explain":tru}]`, false},
	{"repeated dimension", `[{"campaign":"c1","campaign":"c2"}]`, false},
	{"repeated dimension later", `[{"campaign":"c1"},{"campaign":"c1","placement":"p1","placement":"p1"}]`, false},
	{"null campaign", `[{"campaign":null}]`, false},
	{"missing campaign", `[{"campaign":"c1"},{"placement":"p1"}]`, false},
	{"empty object", `[{}]`, false},
	{"empty campaign", `[{"campaign":""}]`, false},
	{"empty device", `[{"campaign":"c1","device":""}]`, false},
	{"empty site", `[{"campaign":"c1","site":""}]`, false},
	{"repeated site", `[{"campaign":"c1","site":"a.example","site":"b.example"}]`, false},
	{"site 129 bytes", `[{"campaign":"c1","site":"` + strings.Repeat("s", 129) + `"}]`, false},
	{"unknown field", `[{"campaign":"c1","bid":1}]`, false},
	{"unknown null field", `[{"campaign":"c1","bid":null}]`, false},
	{"number dimension", `[{"campaign":1}]`, false},
	{"bool dimension", `[{"campaign":"c1","device":true}]`, false},
	{"escape in value", `[{"campaign":"c\u0031"}]`, false},
	{"escape in key", `[{"campa\u0069gn":"c1"}]`, false},
	{"escaped quote", `[{"campaign":"c\"1"}]`, false},
	{"escaped slash", `[{"campaign":"c1","placement":"a\/b"}]`, false},
	{"unicode", `[{"campaign":"c1","placement":"café"}]`, false},
	{"invalid UTF-8", "[{\"campaign\":\"c1\",\"placement\":\"\xff\"}]", false},
	{"control character", "[{\"campaign\":\"c\x011\"}]", false},
	{"nested object", `[{"campaign":"c1","placement":{"id":"p1"}}]`, false},
	{"nested array", `[{"campaign":["c1"]}]`, false},
	{"nested item", `[[{"campaign":"c1"}]]`, false},
	{"item not an object", `[{"campaign":"c1"},7]`, false},
	{"trailing garbage", `[{"campaign":"c1"}]x`, false},
	{"trailing comma", `[{"campaign":"c1"},]`, false},
	{"trailing comma in item", `[{"campaign":"c1",}]`, false},
	{"missing comma", `[{"campaign":"c1"} {"campaign":"c2"}]`, false},
	{"missing colon", `[{"campaign" "c1"}]`, false},
	{"two arrays", `[][]`, false},
	{"not an array", `{"campaign":"c1"}`, false},
	{"string body", `"c1"`, false},
	{"empty body", ``, false},
	{"truncated", `[{"campaign":"c1"`, false},
	{"unclosed string", `[{"campaign":"c1`, false},
	{"form feed", "[\f{\"campaign\":\"c1\"}]", false},
	{"NUL after", "[{\"campaign\":\"c1\"}]\x00", false},
}

// TestBatchFastPath checks, for each case, that the fast path takes the body or leaves it as
// expected, and that the answer is the general path's.
func TestBatchFastPath(t *testing.T) {
	svc := newBatchService(t)
	for _, c := range batchCases {
		before := batchFastAnswered.Load()
		code, got := postBatch(svc, []byte(c.body), true)
		if taken := batchFastAnswered.Load() != before; taken != c.fast {
			t.Errorf("%s: unexpected fast path taken %v; want %v", c.name, taken, c.fast)
		}
		wantCode, want := postBatch(svc, []byte(c.body), false)
		if code != wantCode || got != want {
			t.Errorf("%s: unexpected answer; got %d %.300s; want %d %.300s", c.name, code, got, wantCode, want)
		}
		if c.fast && code != fasthttp.StatusOK {
			t.Errorf("%s: unexpected status %d on the fast path: %.300s", c.name, code, got)
		}
	}
}

// TestBatchFastAnswers checks what the fast path answers, beyond its agreeing with the general
// path: the levels that show the dimensions read and normalised, and the explained items.
func TestBatchFastAnswers(t *testing.T) {
	svc := newBatchService(t)
	f := func(body string, want ...string) {
		t.Helper()
		before := batchFastAnswered.Load()
		code, got := postBatch(svc, []byte(body), true)
		if code != fasthttp.StatusOK || batchFastAnswered.Load() == before {
			t.Fatalf("unexpected answer off the fast path to %s; got %d %s", body, code, got)
		}
		items := strings.Split(strings.TrimSuffix(strings.TrimPrefix(got, "[{"), "}]"), `},{"multiplier"`)
		if len(items) != len(want) {
			t.Fatalf("unexpected items answering %s; got %d in %s; want %d", body, len(items), got, len(want))
		}
		for i, w := range want {
			level, explain, _ := strings.Cut(w, "+")
			if !strings.Contains(items[i], `"level":"`+level+`"`) || strings.Contains(items[i], `"explain":{`) != (explain == "explain") {
				t.Fatalf("unexpected item %d answering %s; got %s; want level %s %s", i, body, items[i], level, explain)
			}
		}
	}
	f(`[{"campaign":"c1","creative":"cr1","placement":"p3"},{"campaign":"c1","placement":"p3","explain":true},{"campaign":"c2"}]`,
		"campaign/creative/placement", "campaign/placement+explain", "none")
	f(`[{"campaign":"c1","device":"MOBILE"},{"campaign":"c1","country":"de"},{"campaign":"c1","device":"tablet"}]`,
		"campaign/device", "campaign/country", "campaign")
	f(`[{"campaign":"c1","explain":1},{"campaign":"c1","explain":-0},{"campaign":"c1","explain":true,"explain":false},{"campaign":"c1","explain":true,"explain":0}]`,
		"campaign+explain", "campaign", "campaign+explain", "campaign")
	f(`[{"campaign":null,"campaign":"c1","placement":"p4"}]`, "campaign/placement")
}

func TestBatchFastPathAllocatesNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under -race (sync.Pool drops items on purpose); `make test` runs this test without -race too")
	}
	svc := newBatchService(t)
	var ctx fasthttp.RequestCtx
	ctx.Request.Header.SetMethod("POST")
	ctx.Request.SetRequestURI("/v1/multipliers")
	ctx.Request.SetBody([]byte(batchOf(100)))
	svc.serveHTTP(&ctx) // warm the pools, track the keys
	if ctx.Response.StatusCode() != fasthttp.StatusOK {
		t.Fatalf("unexpected status %d: %s", ctx.Response.StatusCode(), ctx.Response.Body())
	}
	svc.brain.Publish(testNow)
	before := batchFastAnswered.Load()
	allocs := testing.AllocsPerRun(100, func() {
		ctx.Response.Reset()
		svc.serveHTTP(&ctx)
	})
	if allocs != 0 {
		t.Fatalf("unexpected allocations per batch request; got %v; want 0", allocs)
	}
	if got := batchFastAnswered.Load() - before; got != 101 {
		t.Fatalf("unexpected batches on the fast path; got %d; want 101", got)
	}
}
