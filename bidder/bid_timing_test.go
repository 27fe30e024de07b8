package bidder

import (
	"fmt"
	"testing"

	"github.com/valyala/fasthttp"
)

// BenchmarkMultiplier measures GET /v1/multiplier through the handler (no
// network): query parsing, level choice, the policy and the JSON answer.
func BenchmarkMultiplier(b *testing.B) {
	svc, _ := newTestService(b)
	for i := 0; i < 20; i++ {
		svc.ingest.Apply(batchPayload(fmt.Sprintf("w%d", i), 1000, 100), testNow)
	}
	for _, explain := range []string{"", "&explain=1"} {
		uris := make([]string, 100)
		for i := range uris {
			uris[i] = fmt.Sprintf("/v1/multiplier?campaign=c1&creative=cr1&placement=p%d%s", i, explain)
		}
		// One pass over the keys, then publish them as the running service
		// does every second: otherwise every request measures the try-lock
		// that adds an untracked key.
		for _, uri := range uris {
			svc.serveHTTP(requestCtx(uri))
		}
		svc.brain.Publish(testNow)
		b.Run("explain="+fmt.Sprint(explain != ""), func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				var ctx fasthttp.RequestCtx
				ctx.Request.Header.SetMethod("GET")
				i := 0
				for pb.Next() {
					ctx.Request.SetRequestURI(uris[i%len(uris)])
					ctx.Response.Reset()
					svc.serveHTTP(&ctx)
					i++
				}
			})
		})
	}
}

// BenchmarkIngest measures parse + validate + dedup + apply of batches of
// 100 events on existing keys, in events per second.
func BenchmarkIngest(b *testing.B) {
	svc, _ := newTestService(b)
	svc.ingest.Apply(batchPayload("warm", 1000, 100), testNow)
	payloads := make([][]byte, 256)
	for i := range payloads {
		payloads[i] = batchPayload(fmt.Sprintf("b%d", i), 91, 100) // 91 impressions + 10 clicks
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		// Ids repeat after 256 batches: those events count as duplicates,
		// which cost the same checks short of the window writes.
		svc.ingest.Apply(payloads[i%len(payloads)], testNow)
	}
	b.ReportMetric(float64(b.N)*101/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkMultipliersBatch measures POST /v1/multipliers with 100 items
// per request through the handler (no network), reporting multipliers/s.
func BenchmarkMultipliersBatch(b *testing.B) {
	svc, _ := newTestService(b)
	for i := 0; i < 20; i++ {
		svc.ingest.Apply(batchPayload(fmt.Sprintf("w%d", i), 1000, 100), testNow)
	}
	var body []byte
	body = append(body, '[')
	for i := range 100 {
		if i > 0 {
			body = append(body, ',')
		}
		body = fmt.Appendf(body, `{"campaign":"c1","creative":"cr1","placement":"p%d"}`, i)
	}
	body = append(body, ']')
	// One pass over the keys, then publish them as the running service
	// does every second: otherwise every request measures the try-lock
	// that adds an untracked key.
	var warm fasthttp.RequestCtx
	warm.Request.Header.SetMethod("POST")
	warm.Request.SetRequestURI("/v1/multipliers")
	warm.Request.SetBody(body)
	svc.serveHTTP(&warm)
	if warm.Response.StatusCode() != fasthttp.StatusOK {
		b.Fatalf("unexpected status %d: %s", warm.Response.StatusCode(), warm.Response.Body())
	}
	svc.brain.Publish(testNow)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		var ctx fasthttp.RequestCtx
		ctx.Request.Header.SetMethod("POST")
		ctx.Request.SetRequestURI("/v1/multipliers")
		ctx.Request.SetBody(body)
		for pb.Next() {
			ctx.Response.Reset()
			svc.serveHTTP(&ctx)
		}
	})
	b.ReportMetric(float64(b.N)*100/b.Elapsed().Seconds(), "multipliers/s")
}
