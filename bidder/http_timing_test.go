package bidder

import (
	"bufio"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

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

// BenchmarkSnapshotScan measures a snapshot's scan of a level of 100,000
// keys, and its sort, per key: what --snapshot-scan-rate budgets. It
// reports the process's CPU time per key too (wall time includes the
// scan's steps aside, and other processes on a shared machine).
func BenchmarkSnapshotScan(b *testing.B) {
	svc, _ := newTestService(b)
	svc.ingest.Apply(batchPayload("w", 100_000, 100_000), testNow)
	lvl, _ := svc.rollups.ByName("campaign/creative/placement")
	shape := scanShape{level: lvl, span: svc.control.Policies().Default.Performance.Window}
	run := func(name string, fn func()) {
		b.Run(name, func(b *testing.B) {
			keys := svc.scanLevel(shape, testNow).visited
			cpu0 := processCPU()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				fn()
			}
			b.StopTimer()
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*keys), "ns/key")
			b.ReportMetric(float64((processCPU()-cpu0).Nanoseconds())/float64(b.N*keys), "cpu-ns/key")
		})
	}
	run("scan", func() { svc.scanLevel(shape, testNow) })
	run("scan+sort", func() { svc.scanLevel(shape, testNow).order(svc, sortCTR) })
}

// processCPU returns the user and system CPU time of the process so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
