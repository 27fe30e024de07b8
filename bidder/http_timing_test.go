package bidder

import (
	"bufio"
	"fmt"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
)

// BenchmarkBidRequestChecks measures what the router checks before a bid's
// handler (framing of the header block, route, method, parameters; and the
// read token when explain is asked), on a request parsed from the wire with
// the headers an ad server sends. Baseline: the same request through
// serveHTTP (BenchmarkMultiplier measures the handler).
func BenchmarkBidRequestChecks(b *testing.B) {
	svc, err := New(Options{Clock: NewManualClock(testNow), DedupSize: 32 << 20, ReadToken: "r3ad"})
	if err != nil {
		b.Fatal(err)
	}
	for _, q := range []string{"campaign=c1&creative=cr1&placement=p3", "campaign=c1&placement=p3&explain=1"} {
		raw := "GET /v1/multiplier?" + q + " HTTP/1.1\r\nHost: bidpulse.internal:8080\r\nUser-Agent: adserver/4.2\r\n" +
			"Accept: application/json\r\nAuthorization: Bearer r3ad\r\ntraceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n\r\n"
		var ctx fasthttp.RequestCtx
		if err := ctx.Request.Read(bufio.NewReader(strings.NewReader(raw))); err != nil {
			b.Fatal(err)
		}
		b.Run(fmt.Sprintf("explain=%v", strings.Contains(q, "explain")), func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				path := ctx.Path()
				route := routeOf(path)
				m := methodRuleOf(route, path, ctx.Method())
				if !svc.checkRequest(&ctx, route, m) || !svc.routeAllowed(&ctx, route, m) {
					b.Fatalf("refused: %s", ctx.Response.Body())
				}
			}
		})
	}
}
