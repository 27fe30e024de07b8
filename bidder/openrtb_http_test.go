package bidder

import (
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/bidpulse/bidpulse/windows"
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
// steady state, through the router as the server calls it, in both formats, with rollups
// that name the site and without.
func TestOpenRTBAllocatesNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under -race (sync.Pool drops items on purpose); `make test` runs this test without -race too")
	}
	for _, svc := range []*Service{newORTBService(t), newORTBServiceWith(t, ortbSiteRollups)} {
		checkORTBAllocs(t, svc)
	}
}

func checkORTBAllocs(t *testing.T, svc *Service) {
	t.Helper()
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

// TestOpenRTBSiteRollupOverHTTP runs a service with campaign/site added to the default rollups,
// fed over NATS with events that carry sites, and checks over HTTP that each OpenRTB candidate
// gets exactly what GET /v1/multiplier answers for its impression's dimensions: a site
// (site.domain) or an app (app.bundle) with data answers at campaign/site, a site without
// data at campaign, an impression with a placement at campaign/placement (configured before
// campaign/site, and as specific), and an override of a campaign/site key answers every
// candidate on that site, with a placement or not.
func TestOpenRTBSiteRollupOverHTTP(t *testing.T) {
	const token = "adm1n"
	e := startTestService(t, func(o *Options) {
		o.AdminToken = token
		o.Config = DefaultConfig()
		o.Config.Rollups = append(windows.DefaultRollupNames(), "campaign/site")
	})
	sites := []string{"news.example", "com.example.game", ""}
	impressions := map[string]uint64{}
	n := uint64(0)
	for i := range 300 {
		st := sites[i%3]
		e0 := fmt.Sprintf(`"campaign":"c1","ts":%d`, testNow-60_000)
		if st != "" {
			e0 += fmt.Sprintf(`,"site":%q`, st)
		}
		if i%2 == 0 {
			e0 += `,"placement":"home-top"`
		}
		payload := fmt.Sprintf(`[{"id":"h%d","type":"impression",%s}`, i, e0)
		n++
		if st == "news.example" && i%2 == 0 { // half of news.example's impressions clicked; no other
			payload += fmt.Sprintf(`,{"id":"h%d","type":"click",%s}`, i, e0)
			n++
		}
		e.publish(t, payload+"]")
		impressions[st]++
	}
	e.waitReceived(t, n)

	request := func(id, app, tagid string) string {
		where := `"site":{"domain":"` + app + `"}`
		if strings.HasPrefix(app, "com.") {
			where = `"app":{"bundle":"` + app + `"}`
		}
		imp := `{"id":"1","banner":{"w":300,"h":250}}`
		if tagid != "" {
			imp = `{"id":"1","tagid":"` + tagid + `","banner":{"w":300,"h":250}}`
		}
		return `{"id":"` + id + `",` + where + `,"device":{"devicetype":2},"imp":[` + imp + `],` +
			`"ext":{"bidpulse":{"candidates":[{"campaign":"c1"},{"campaign":"c2"}]}}}`
	}
	cases := []struct {
		body, wantSite string
		wantLevel      string // of c1; c2 has no data
	}{
		{request("a", "news.example", ""), "news.example", "campaign/site"},
		{request("b", "com.example.game", ""), "com.example.game", "campaign/site"},
		{request("c", "other.example", ""), "other.example", "campaign"},
		{request("d", "news.example", "home-top"), "news.example", "campaign/placement"},
	}
	answer := func(body string) ortbAnswer {
		t.Helper()
		code, got := e.do(t, "POST", "/v1/openrtb/multipliers", "", body)
		var a ortbAnswer
		if err := json.Unmarshal(got, &a); code != 200 || err != nil || len(a.Imp) != 1 || len(a.Imp[0].Candidates) != 2 {
			t.Fatalf("unexpected answer to %s; got %d %s (%v)", body, code, got, err)
		}
		return a
	}
	get := func(campaign string, key map[string]string) getAnswer {
		t.Helper()
		q := url.Values{"campaign": {campaign}}
		for d, v := range key {
			q.Set(d, v)
		}
		code, got := e.do(t, "GET", "/v1/multiplier?"+q.Encode(), "", "")
		var g getAnswer
		if err := json.Unmarshal(got, &g); code != 200 || err != nil {
			t.Fatalf("unexpected answer to GET %s; got %d %s (%v)", q.Encode(), code, got, err)
		}
		return g
	}
	// A first pass tracks the keys; once the service has published them, answers are stable.
	for _, c := range cases {
		answer(c.body)
	}
	checkFor(t, 10*time.Second, 5*time.Millisecond, func() error {
		if st := e.svc.brain.Stats(); st.KeysPending != 0 || st.CampaignsPending != 0 {
			return fmt.Errorf("%d keys and %d campaigns not yet published", st.KeysPending, st.CampaignsPending)
		}
		return nil
	})
	check := func(name string, override float64) map[string]float64 {
		t.Helper()
		mults := map[string]float64{}
		for _, c := range cases {
			a := answer(c.body)
			im := a.Imp[0]
			if im.Key["site"] != c.wantSite || im.Key["device"] != "desktop" {
				t.Fatalf("%s: unexpected key of %s; got %v; want site %s", name, a.ID, im.Key, c.wantSite)
			}
			for _, cd := range im.Candidates {
				g := get(cd.Campaign, im.Key)
				if cd.Multiplier != g.Multiplier || cd.Level != g.Level {
					t.Fatalf("%s: unexpected candidate %s of %s; got %v at %s; want GET's %v at %s", name, cd.Campaign, a.ID, cd.Multiplier, cd.Level, g.Multiplier, g.Level)
				}
				wantLevel, overridden := "none", false
				if cd.Campaign == "c1" {
					wantLevel = c.wantLevel
					// An override answers at the most specific level named
					// that has one, before any level with data.
					if overridden = override != 0 && c.wantSite == "news.example"; overridden {
						wantLevel = "campaign/site"
					}
				}
				if cd.Level != wantLevel {
					t.Fatalf("%s: unexpected level of %s on %s; got %s; want %s", name, cd.Campaign, a.ID, cd.Level, wantLevel)
				}
				if overridden && cd.Multiplier != override {
					t.Fatalf("%s: unexpected multiplier of %s on %s; got %v; want the override's %v", name, cd.Campaign, a.ID, cd.Multiplier, override)
				}
				if cd.Campaign == "c1" {
					mults[a.ID] = cd.Multiplier
				}
			}
		}
		return mults
	}
	mults := check("no override", 0)
	if !(mults["a"] > 1 && mults["b"] < 1) {
		t.Fatalf("unexpected multipliers %v; want news.example (most clicks) above 1 and the app (none) below", mults)
	}
	var rates struct {
		Level   string `json:"level"`
		Windows map[string]struct {
			Impressions uint64 `json:"impressions"`
		} `json:"windows"`
	}
	code, got := e.do(t, "GET", "/v1/rates?campaign=c1&site=com.example.game", "", "")
	if err := json.Unmarshal(got, &rates); code != 200 || err != nil || rates.Level != "campaign/site" || rates.Windows["1h"].Impressions != impressions["com.example.game"] {
		t.Fatalf("unexpected rates of the app; got %d %s (%v); want %d impressions", code, got, err, impressions["com.example.game"])
	}

	if code, got := e.do(t, "PUT", "/v1/overrides", token, `{"campaign":"c1","site":"news.example","multiplier":1.7}`); code != 200 || !strings.Contains(string(got), `"level":"campaign/site"`) {
		t.Fatalf("unexpected answer to an override of campaign/site; got %d %s", code, got)
	}
	check("override", 1.7)
	if code, got := e.do(t, "DELETE", "/v1/overrides?campaign=c1&site=news.example", token, ""); code != 200 {
		t.Fatalf("unexpected answer to the override's deletion; got %d %s", code, got)
	}
	if got := check("override deleted", 0); got["a"] != mults["a"] {
		t.Fatalf("unexpected multiplier after the override's deletion; got %v; want %v as before", got["a"], mults["a"])
	}
}
