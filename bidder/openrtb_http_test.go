package bidder

import (
	"fmt"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
)

// ortbRequestOf returns a BidRequest of imps impressions with cands candidates each.
func ortbRequestOf(imps, cands int) string {
	var sb strings.Builder
	sb.WriteString(`{"id":"bench","tmax":200,"site":{"domain":"news.example"},"device":{"devicetype":2,"ua":"Mozilla/5.0","geo":{"country":"FRA"}},"imp":[`)
	for i := range imps {
		if i > 0 {
			sb.WriteByte(',')
		}
		fmt.Fprintf(&sb, `{"id":"%d","tagid":%q,"banner":{"w":300,"h":250},"ext":{"gpid":%q,"bidpulse":{"candidates":[`, i+1, ortbPlacements[i%4], ortbPlacements[(i+1)%4])
		for c := range cands {
			if c > 0 {
				sb.WriteByte(',')
			}
			fmt.Fprintf(&sb, `{"campaign":"c%d","creative":"cr%d"}`, c%2+1, c%2+1)
		}
		sb.WriteString(`]}}}`)
	}
	sb.WriteString(`]}`)
	return sb.String()
}

// TestOpenRTBLimits checks each limit's answer, over the real HTTP server: the body size (413
// before the body is read), the impressions and the candidates per impression (413 each),
// and that a request at every limit is answered.
func TestOpenRTBLimits(t *testing.T) {
	e := startTestService(t, nil)
	f := func(body string, wantCode int, wantErr string) {
		t.Helper()
		code, got := e.do(t, "POST", "/v1/openrtb/multipliers", "", body)
		if code != wantCode || !strings.Contains(string(got), wantErr) {
			t.Fatalf("unexpected answer; got %d %.300s; want %d with %q", code, got, wantCode, wantErr)
		}
	}
	f(ortbRequestOf(maxOpenRTBImps, maxOpenRTBCandidates), 200, `"id":"bench"`)
	f(ortbRequestOf(maxOpenRTBImps+1, 1), 413, "too many impressions: the limit is 64 per request")
	f(ortbRequestOf(1, maxOpenRTBCandidates+1), 413, "too many candidates in ext.bidpulse.candidates: the limit is 32")
	// A body over the limit is refused from its Content-Length, unread.
	statuses, bodies, closed := rawAnswers(t, e.svc.HTTPAddr(), fmt.Sprintf("POST /v1/openrtb/multipliers HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n{", maxOpenRTBBodySize+1))
	if len(statuses) != 1 || statuses[0] != 413 || !strings.Contains(bodies[0], "the limit of POST /v1/openrtb/multipliers is 512 KiB") || !closed {
		t.Fatalf("unexpected answers to a body over the limit: %v %q, closed %v", statuses, bodies, closed)
	}
	padded := ortbRequestOf(1, 1)
	padded = padded[:len(padded)-1] + `,"pad":"` + strings.Repeat("x", maxOpenRTBBodySize-len(padded)-10) + `"}`
	f(padded, 200, `"id":"bench"`)
	f(`{"id":`, 400, "body is not valid JSON")
	code, got := e.do(t, "POST", "/v1/openrtb/multipliers?campaign=c1", "", ortbRequestOf(1, 1))
	if code != 400 || !strings.Contains(string(got), "allowed: explain, format") {
		t.Fatalf("unexpected answer to an unknown parameter; got %d %s", code, got)
	}
	code, got = e.do(t, "POST", "/v1/openrtb/multipliers?format=openrtb", "", ortbRequestOf(1, 1))
	if code != 400 || !strings.Contains(string(got), "format must be bidpulse or prebid") {
		t.Fatalf("unexpected answer to an unknown format; got %d %s", code, got)
	}
	code, got = e.do(t, "GET", "/v1/openrtb/multipliers", "", "")
	if code != 405 {
		t.Fatalf("unexpected answer to a GET; got %d %s", code, got)
	}
}

// TestOpenRTBExplainNeedsReadToken checks that explain=1 takes the read token, as on GET
// /v1/multiplier, and that the answers without it stay open.
func TestOpenRTBExplainNeedsReadToken(t *testing.T) {
	e := startTestService(t, func(o *Options) { o.ReadToken = "rtok" })
	body := ortbRequestOf(1, 1)
	f := func(path, token string, want int) {
		t.Helper()
		if code, got := e.do(t, "POST", path, token, body); code != want {
			t.Fatalf("unexpected status of %s with token %q; got %d %s; want %d", path, token, code, got, want)
		}
	}
	f("/v1/openrtb/multipliers", "", 200)
	f("/v1/openrtb/multipliers?explain=0", "", 200)
	f("/v1/openrtb/multipliers?explain=1", "", 401)
	f("/v1/openrtb/multipliers?explain=1", "wrong", 401)
	f("/v1/openrtb/multipliers?explain=1", "rtok", 200)
}

// TestOpenRTBMetrics checks the counters of what the OpenRTB path leaves out or answers
// late.
func TestOpenRTBMetrics(t *testing.T) {
	svc := newORTBService(t)
	long := strings.Repeat("p", 129)
	body := `{"id":"m","tmax":10,"ext":{"bidpulse":{"auction_start":1,"candidates":[{"campaign":"c1"}]}},"site":{"domain":"` + long + `"},` +
		`"device":{"devicetype":11,"geo":{"country":"ZZZ"}},"imp":[{"id":"1","tagid":"` + long + `"}]}`
	if code, got := postORTB(svc, "", []byte(body)); code != 200 || !strings.Contains(string(got), `"key":{},"candidates":[{"campaign":"c1","multiplier":1,"level":"none","key":null,"neutral":"tmax"}]}],"tmax_expired":true}`) {
		t.Fatalf("unexpected answer %d %s", code, got)
	}
	for _, name := range []string{
		`bidpulse_openrtb_tmax_expired_total`,
		`bidpulse_openrtb_fields_dropped_total{field="placement",reason="too_long"}`,
		`bidpulse_openrtb_fields_dropped_total{field="site",reason="too_long"}`,
		`bidpulse_openrtb_fields_dropped_total{field="country",reason="unknown_code"}`,
		`bidpulse_openrtb_fields_dropped_total{field="device",reason="unknown_type"}`,
	} {
		if got := svc.metrics.GetOrCreateCounter(name).Get(); got != 1 {
			t.Errorf("unexpected %s; got %d; want 1", name, got)
		}
	}
}

// TestOpenRTBAllocatesNothing checks that answering an OpenRTB request allocates nothing in
// steady state, through the router as the server calls it, in both formats.
func TestOpenRTBAllocatesNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under -race (sync.Pool drops items on purpose); `make test` runs this test without -race too")
	}
	svc := newORTBService(t)
	for _, query := range []string{"", "explain=1", "format=prebid"} {
		body := ortbRequestOf(5, 3)
		if query == "format=prebid" {
			body = strings.ReplaceAll(body, `"creative":"cr1"}`, `"creative":"cr1","bidder":"b1"}`)
			body = strings.ReplaceAll(body, `"creative":"cr2"}`, `"creative":"cr2","bidder":"b2"}`)
			body = strings.Replace(body, `"bidder":"b1"}]`, `"bidder":"b3"}]`, -1)
		}
		var ctx fasthttp.RequestCtx
		ctx.Request.Header.SetMethod("POST")
		ctx.Request.SetRequestURI("/v1/openrtb/multipliers?" + query)
		ctx.Request.SetBody([]byte(body))
		svc.serveHTTP(&ctx) // warm the pools, track the keys
		if ctx.Response.StatusCode() != fasthttp.StatusOK {
			t.Fatalf("unexpected status %d: %s", ctx.Response.StatusCode(), ctx.Response.Body())
		}
		svc.brain.Publish(testNow)
		allocs := testing.AllocsPerRun(100, func() {
			ctx.Response.Reset()
			svc.serveHTTP(&ctx)
		})
		if allocs != 0 {
			t.Errorf("unexpected allocations per OpenRTB request (5 impressions, 3 candidates, %q); got %v; want 0", query, allocs)
		}
	}
}

// TestOpenRTBConcurrent answers requests of different shapes from several goroutines at once
// and checks each answer is the one a lone request gets: the pooled reader and scratch are
// never shared between requests in flight (run it with -race).
func TestOpenRTBConcurrent(t *testing.T) {
	svc := newORTBService(t)
	bodies := []string{ortbRequestOf(1, 1), ortbRequestOf(5, 3), ortbRequestOf(17, 7), ortbRequestOf(3, 32)}
	want := make([]string, len(bodies))
	for i, b := range bodies {
		postORTB(svc, "", []byte(b)) // track the keys
		svc.brain.Publish(testNow)
		code, got := postORTB(svc, "", []byte(b))
		if code != 200 {
			t.Fatalf("unexpected status %d: %s", code, got)
		}
		want[i] = string(got)
	}
	errs := make(chan string, 4)
	for g := range 4 {
		go func() {
			for n := range 50 {
				i := (g + n) % len(bodies)
				if code, got := postORTB(svc, "", []byte(bodies[i])); code != 200 || string(got) != want[i] {
					errs <- fmt.Sprintf("unexpected answer to body %d; got %d %.200s; want %.200s", i, code, got, want[i])
					return
				}
			}
			errs <- ""
		}()
	}
	for range 4 {
		if e := <-errs; e != "" {
			t.Error(e)
		}
	}
}
