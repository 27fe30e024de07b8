package bidder

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/bidpulse/bidpulse/windows"
)

// TestUnknownParameters sends a mistyped parameter to every route and
// method: each answers 400 naming it and listing what the route takes,
// before its handler and its token check, and a parameter given twice is a
// 400 too.
func TestUnknownParameters(t *testing.T) {
	const token = "adm1n"
	var handled int
	e := startTestService(t, func(o *Options) {
		o.AdminToken = token
		o.routeHook = func(int) { handled++ }
	})
	f := func(method, path, wantErr string) {
		t.Helper()
		code, b := e.do(t, method, path, "", "")
		if method == "HEAD" {
			if code != 400 {
				t.Fatalf("unexpected status of HEAD %s; got %d; want 400", path, code)
			}
			return
		}
		var m map[string]string
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatalf("%s %s: the answer is not JSON: %s", method, path, b)
		}
		if code != 400 || m["error"] != wantErr {
			t.Fatalf("unexpected answer of %s %s; got %d %q; want 400 %q", method, path, code, m["error"], wantErr)
		}
	}
	dims := "allowed: campaign, creative, placement, device, country, site"
	snap := "allowed: level, window, sort, limit, campaign, min_impressions"
	f("GET", "/v1/multiplier?campaign=c&placment=x", "unknown parameter placment; "+dims+", explain")
	f("GET", "/v1/rates?campaign=c&windw=1h", "unknown parameter windw; "+dims)
	f("GET", "/v1/snapshot?levle=campaign", "unknown parameter levle; "+snap)
	f("GET", "/v1/snapshot/stream?min_impression=5", "unknown parameter min_impression; "+snap)
	f("GET", "/v1/stats?verbose=1", "unknown parameter verbose; GET /v1/stats takes no query parameters")
	f("GET", "/v1/policies?campagin=c1", "unknown parameter campagin; allowed: campaign")
	f("DELETE", "/v1/policies?campagin=c1", "unknown parameter campagin; allowed: campaign")
	f("PUT", "/v1/policies?campaign=c1", "unknown parameter campaign; PUT /v1/policies takes no query parameters")
	f("GET", "/v1/audit?limt=5", "unknown parameter limt; allowed: limit")
	f("GET", "/v1/overrides?campaign=c1", "unknown parameter campaign; GET /v1/overrides takes no query parameters")
	f("DELETE", "/v1/overrides?campaign=c&placment=p", "unknown parameter placment; "+dims)
	f("PUT", "/v1/overrides?ttl=2h", "unknown parameter ttl; PUT /v1/overrides takes no query parameters")
	f("GET", "/v1/killswitch?enabled=1", "unknown parameter enabled; GET /v1/killswitch takes no query parameters")
	f("PUT", "/v1/killswitch?enabled=1", "unknown parameter enabled; PUT /v1/killswitch takes no query parameters")
	f("POST", "/v1/multipliers?explain=1", "unknown parameter explain; POST /v1/multipliers takes no query parameters")
	f("GET", "/healthz?x=1", "unknown parameter x; GET /healthz takes no query parameters")
	f("GET", "/readyz?x=1", "unknown parameter x; GET /readyz takes no query parameters")
	f("GET", "/debug/runtime?x=1", "unknown parameter x; GET /debug/runtime takes no query parameters")
	f("GET", "/dashboard/app.js?v=2", "unknown parameter v; GET /dashboard/app.js takes no query parameters")
	f("GET", "/?levl=campaign", "unknown parameter levl; "+snap)
	f("HEAD", "/v1/stats?x=1", "")
	f("GET", "/v1/policies?campaign=a&campaign=b", "duplicate parameter campaign")
	f("GET", "/v1/audit?limit=1&limit=2", "duplicate parameter limit")
	f("GET", "/v1/snapshot?sort=ctr&sort=cvr", "duplicate parameter sort")
	if code, b := e.do(t, "GET", "/metrics?x=1", "", ""); code != 400 || !strings.Contains(string(b), "unknown parameter x") {
		t.Fatalf("unexpected answer of GET /metrics?x=1; got %d %s", code, b)
	}
	if handled != 0 {
		t.Fatalf("a handler ran %d times for a request with an unknown parameter", handled)
	}
	// What the routes take still works: the dashboard page keeps its query.
	for _, p := range []string{"/?level=campaign&window=1h&sort=ctr&limit=5&campaign=c&min_impressions=3", "/v1/policies?campaign=c1", "/v1/stats"} {
		resp, err := http.Get(e.base + p)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("unexpected status of GET %s; got %d; want 200", p, resp.StatusCode)
		}
	}
}

// TestRequestSizeLimits checks the limits per route: a bid's header block
// (4 KiB), every request's line and headers (Options.HTTPMaxHeaderBytes),
// the batch body (1 MiB) and an admin body (64 KiB), each refused from its
// announced size before the body is read, with a JSON error; and that the
// longest bid query the API allows fits.
func TestRequestSizeLimits(t *testing.T) {
	const token = "adm1n"
	e := startTestService(t, func(o *Options) { o.AdminToken = token })
	addr := e.svc.HTTPAddr()
	f := func(name, raw string, wantCode int, wantErr string) {
		t.Helper()
		statuses, bodies, closed := rawAnswers(t, addr, raw)
		if len(statuses) != 1 || statuses[0] != wantCode || !strings.Contains(bodies[0], wantErr) {
			t.Fatalf("%s: unexpected answers %v %q; want one %d with %q", name, statuses, bodies, wantCode, wantErr)
		}
		if wantCode >= 400 && !closed {
			t.Fatalf("%s: the connection stayed open after a refusal", name)
		}
	}
	// The longest bid query: every dimension at 128 bytes, each byte
	// escaped (3 bytes on the wire), and explain.
	long := url.Values{}
	for _, d := range windows.DimNames {
		long.Set(d, strings.Repeat("é", 64)) // 128 bytes of UTF-8
	}
	long.Set("explain", "1")
	q := strings.ReplaceAll(long.Encode(), "%C3%A9", "%c3%a9")
	if len(q) < int(windows.NumDims)*128*3 {
		t.Fatalf("BUG: the query is not the longest: %d bytes", len(q))
	}
	f("the longest bid query", "GET /v1/multiplier?"+q+" HTTP/1.1\r\nHost: x\r\nUser-Agent: adserver/1.0\r\nConnection: close\r\n\r\n", 200, `"level":"none"`)

	bidHeaders := "X-Filler: " + strings.Repeat("a", 5<<10) + "\r\n"
	f("a bid with 5 KiB of headers", "GET /v1/multiplier?campaign=c HTTP/1.1\r\nHost: x\r\n"+bidHeaders+"\r\n", 431, "the limit of /v1/multiplier is 4 KiB")
	f("a stats request with 5 KiB of headers", "GET /v1/stats HTTP/1.1\r\nHost: x\r\n"+bidHeaders+"Connection: close\r\n\r\n", 200, `"received"`)
	f("17 KiB of headers", "GET /v1/stats HTTP/1.1\r\nHost: x\r\nX-Filler: "+strings.Repeat("a", 17<<10)+"\r\n\r\n", 431, "the limit is 16 KiB")
	f("a batch over 1 MiB", fmt.Sprintf("POST /v1/multipliers HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n[", 1<<20+1), 413, "the limit of POST /v1/multipliers is 1 MiB")
	f("an override over 64 KiB", fmt.Sprintf("PUT /v1/overrides HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "+token+"\r\nContent-Length: %d\r\n\r\n{", 64<<10+1), 413, "the limit of PUT /v1/overrides is 64 KiB")
	f("a policy over 64 KiB", fmt.Sprintf("PUT /v1/policies HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n{", 64<<10+1), 413, "the limit of PUT /v1/policies is 64 KiB")
	f("a GET with a body", "GET /v1/stats HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n", 413, "GET /v1/stats takes no body")
	f("a kill switch within 64 KiB", "PUT /v1/killswitch HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "+token+"\r\nContent-Length: 17\r\nConnection: close\r\n\r\n{\"enabled\":false}", 200, `"enabled":false`)
	f("a body to an unknown path", "POST /nope HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n0123456789", 413, "POST /nope takes no body")

	// Expect: 100-continue within the limit gets its 100, then the answer.
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	body := `[{"campaign":"c"}]`
	fmt.Fprintf(c, "POST /v1/multipliers HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: %d\r\n\r\n", len(body))
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 100 {
		t.Fatalf("unexpected answer to Expect: 100-continue; got %v %v; want 100", resp, err)
	}
	io.WriteString(c, body)
	resp, err = http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("unexpected answer after 100 Continue; got %v %v; want 200", resp, err)
	}
}

// TestRouterChecksAllocateNothing runs the router's checks (framing, route,
// parameters, the read token for explain) on a bid request parsed from the
// wire, with its headers, and the body limit hook: neither allocates.
func TestRouterChecksAllocateNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under -race (sync.Pool drops items on purpose); `make test` runs this test without -race too")
	}
	clock := NewManualClock(testNow)
	svc, err := New(Options{Clock: clock, DedupSize: 32 << 20, ReadToken: "r3ad", AdminToken: "adm1n"})
	if err != nil {
		t.Fatal(err)
	}
	svc.ingest.Apply(batchPayload("a", 100, 10), testNow)
	var ctx fasthttp.RequestCtx
	raw := "GET /v1/multiplier?campaign=c1&placement=p3&explain=1 HTTP/1.1\r\nHost: bidpulse.internal:8080\r\n" +
		"User-Agent: adserver/4.2\r\nAccept: application/json\r\nAuthorization: Bearer r3ad\r\ntraceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n\r\n"
	if err := ctx.Request.Read(bufio.NewReader(strings.NewReader(raw))); err != nil {
		t.Fatal(err)
	}
	if len(ctx.Request.Header.RawHeaders()) == 0 {
		t.Fatal("BUG: the parsed request has no raw headers to check")
	}
	svc.serveHTTP(&ctx)
	if ctx.Response.StatusCode() != 200 || !strings.Contains(string(ctx.Response.Body()), `"explain"`) {
		t.Fatalf("unexpected answer %d: %s", ctx.Response.StatusCode(), ctx.Response.Body())
	}
	allocs := testing.AllocsPerRun(1000, func() {
		ctx.Response.Reset()
		svc.serveHTTP(&ctx)
	})
	if allocs != 0 {
		t.Fatalf("unexpected allocations per routed bid request; got %v; want 0", allocs)
	}
	allocs = testing.AllocsPerRun(1000, func() { svc.headerReceived(&ctx.Request.Header) })
	if allocs != 0 {
		t.Fatalf("unexpected allocations of the body limit hook; got %v; want 0", allocs)
	}
}
