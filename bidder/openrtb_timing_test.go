package bidder

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// BenchmarkOpenRTB measures POST /v1/openrtb/multipliers with 5 impressions of 3 candidates
// each through the router (no network), against its baseline: POST /v1/multipliers with the
// same 15 multipliers (the same campaign, creative, placement, device and country per item),
// both in multipliers/s, in the same run. The difference is the price of reading a
// BidRequest (its site, device and impression objects, the key mapping) instead of flat items.
func BenchmarkOpenRTB(b *testing.B) {
	svc := newORTBService(b)
	const imps, cands = 5, 3
	ortb := []byte(ortbRequestOf(imps, cands))
	var batch []byte
	batch = append(batch, '[')
	for i := range imps {
		for c := range cands {
			if len(batch) > 1 {
				batch = append(batch, ',')
			}
			// ortbRequestOf's impression i: gpid (which wins over tagid) ortbPlacements[(i+1)%4],
			// devicetype 2 (desktop), FRA; candidate c: campaign and creative c%2+1.
			batch = fmt.Appendf(batch, `{"campaign":"c%d","creative":"cr%d","placement":%q,"device":"desktop","country":"FR"}`,
				c%2+1, c%2+1, ortbPlacements[(i+1)%4])
		}
	}
	batch = append(batch, ']')
	run := func(b *testing.B, uri string, body []byte) {
		var warm fasthttp.RequestCtx
		warm.Request.Header.SetMethod("POST")
		warm.Request.SetRequestURI(uri)
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
			ctx.Request.SetRequestURI(uri)
			ctx.Request.SetBody(body)
			for pb.Next() {
				ctx.Response.Reset()
				svc.serveHTTP(&ctx)
			}
		})
		b.ReportMetric(float64(b.N)*imps*cands/b.Elapsed().Seconds(), "multipliers/s")
	}
	b.Run("batch", func(b *testing.B) { run(b, "/v1/multipliers", batch) })
	b.Run("openrtb", func(b *testing.B) { run(b, "/v1/openrtb/multipliers", ortb) })
	// The two alternated, one request each per op on one goroutine, each timed: on a shared
	// machine their ratio holds better than that of two runs apart.
	b.Run("interleaved", func(b *testing.B) {
		var bctx, octx fasthttp.RequestCtx
		for _, r := range []struct {
			ctx  *fasthttp.RequestCtx
			uri  string
			body []byte
		}{{&bctx, "/v1/multipliers", batch}, {&octx, "/v1/openrtb/multipliers", ortb}} {
			r.ctx.Request.Header.SetMethod("POST")
			r.ctx.Request.SetRequestURI(r.uri)
			r.ctx.Request.SetBody(r.body)
		}
		var inBatch, inORTB time.Duration
		b.ReportAllocs()
		b.ResetTimer()
		for range b.N {
			t0 := time.Now()
			bctx.Response.Reset()
			svc.serveHTTP(&bctx)
			t1 := time.Now()
			octx.Response.Reset()
			svc.serveHTTP(&octx)
			t2 := time.Now()
			inBatch += t1.Sub(t0)
			inORTB += t2.Sub(t1)
		}
		n := float64(b.N) * imps * cands
		b.ReportMetric(n/inBatch.Seconds(), "batch-multipliers/s")
		b.ReportMetric(n/inORTB.Seconds(), "openrtb-multipliers/s")
		b.ReportMetric(inBatch.Seconds()/inORTB.Seconds(), "openrtb/batch")
	})
}

// TestOpenRTBBenchmarkWork checks that BenchmarkOpenRTB's two requests ask for the same
// multipliers: the batch's answers, in order, are the OpenRTB candidates'.
func TestOpenRTBBenchmarkWork(t *testing.T) {
	svc := newORTBService(t)
	code, got := postORTB(svc, "", []byte(ortbRequestOf(5, 3)))
	if code != 200 {
		t.Fatalf("unexpected status %d: %s", code, got)
	}
	var a ortbAnswer
	if err := json.Unmarshal(got, &a); err != nil {
		t.Fatal(err)
	}
	for i, im := range a.Imp {
		for c, cd := range im.Candidates {
			g, _ := getMultiplier(t, svc, cd.Campaign, cd.Creative, map[string]string{"placement": ortbPlacements[(i+1)%4], "device": "desktop", "country": "FR"}, false)
			if g.Multiplier != cd.Multiplier || g.Level != cd.Level || cd.Campaign != fmt.Sprintf("c%d", c%2+1) {
				t.Fatalf("unexpected candidate %d of imp %d: %+v; want GET's %+v", c, i, cd, g)
			}
		}
	}
}
