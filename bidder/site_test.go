package bidder

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/bidpulse/bidpulse/windows"
)

// siteTestSites are the sites of siteEvents: a domain, an app bundle id (its case kept), another
// domain, and none.
var siteTestSites = []string{"news.example", "com.Example.App", "sports.example", ""}

// siteCounts are the impressions siteEvents gives each key, by "placement|site" ("" for any).
type siteCounts map[string]uint64

// siteEvents returns 600 impressions of c1 (creative cr1) over placements p0..p2 and the
// sites of siteTestSites, with click rates that differ by site, the sites left out when
// withSite is false, and the impressions per placement and site.
func siteEvents(withSite bool) ([]byte, siteCounts) {
	counts := siteCounts{}
	b := []byte{'['}
	for i := range 600 {
		p, st := fmt.Sprintf("p%d", i%3), siteTestSites[i%4]
		e := fmt.Sprintf(`"campaign":"c1","creative":"cr1","placement":%q`, p)
		if withSite && st != "" {
			e += fmt.Sprintf(`,"site":%q`, st)
		}
		e += fmt.Sprintf(`,"ts":%d}`, testNow-60_000)
		if i > 0 {
			b = append(b, ',')
		}
		b = fmt.Appendf(b, `{"id":"s%d","type":"impression",%s`, i, e)
		if i%(2+3*(i%4)) == 0 {
			b = fmt.Appendf(b, `,{"id":"s%d","type":"click",%s`, i, e)
		}
		counts[p+"|"+st]++
		counts["|"+st]++
	}
	return append(b, ']'), counts
}

// newSiteService returns a service that is not started, with the rollups given and events
// applied. The tests answer each key once and publish (as the running service does every
// second) before they compare answers.
func newSiteService(t *testing.T, rollups []string, events []byte) *Service {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Rollups = rollups
	svc, err := New(Options{Clock: NewManualClock(testNow), Logger: zerolog.Nop(), DedupSize: 32 << 20, Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	svc.ingest.Apply(events, testNow)
	return svc
}

// serveGET answers GET uri through the router.
func serveGET(svc *Service, uri string) (int, []byte) {
	ctx := requestCtx(uri)
	svc.serveHTTP(ctx)
	return ctx.Response.StatusCode(), bytes.Clone(ctx.Response.Body())
}

// bidAnswer is what the site tests read of a GET /v1/multiplier answer.
type bidAnswer struct {
	Multiplier  float64 `json:"multiplier"`
	Level       string  `json:"level"`
	Impressions uint64  `json:"impressions"`
	Clicks      uint64  `json:"clicks"`
}

// TestQuerySiteRollup checks the site as a query dimension with campaign/site and
// campaign/placement/site configured: GET /v1/multiplier answers at the most specific level the
// request names (the site kept as sent, case included), GET /v1/rates and the snapshot show
// the site keys with the counts of the events, every batch item (fast and general path) is
// the GET answer for its dimensions, and a bad site value is a 400 naming it.
func TestQuerySiteRollup(t *testing.T) {
	events, counts := siteEvents(true)
	svc := newSiteService(t, append(windows.DefaultRollupNames(), "campaign/site", "campaign/placement/site"), events)
	get := func(query string) (bidAnswer, []byte) {
		t.Helper()
		code, body := serveGET(svc, "/v1/multiplier?"+query)
		var a bidAnswer
		if err := json.Unmarshal(body, &a); code != 200 || err != nil {
			t.Fatalf("unexpected answer to %s; got %d %s (%v)", query, code, body, err)
		}
		return a, body
	}
	queries := []string{
		"campaign=c1&site=news.example", "campaign=c1&site=com.Example.App", "campaign=c1&placement=p1&site=sports.example",
		"campaign=c1&creative=cr1&placement=p2&site=news.example", "campaign=c1&site=com.example.app",
		"campaign=c1&site=unknown.example", "campaign=c1&placement=p1", "campaign=c1&device=tv&site=news.example",
	}
	for _, q := range queries {
		get(q) // track the keys
	}
	svc.brain.Publish(testNow)

	f := func(query, wantLevel string, wantImpressions uint64) {
		t.Helper()
		a, body := get(query)
		if a.Level != wantLevel || a.Impressions != wantImpressions {
			t.Fatalf("unexpected answer to %s; got %s; want level %s with %d impressions", query, body, wantLevel, wantImpressions)
		}
	}
	f("campaign=c1&site=news.example", "campaign/site", counts["|news.example"])
	f("campaign=c1&site=com.Example.App", "campaign/site", counts["|com.Example.App"])
	f("campaign=c1&placement=p1&site=sports.example", "campaign/placement/site", counts["p1|sports.example"])
	// Equally specific levels: the first configured answers.
	f("campaign=c1&creative=cr1&placement=p2&site=news.example", "campaign/creative/placement", counts["p2|news.example"]+counts["p2|com.Example.App"]+counts["p2|sports.example"]+counts["p2|"])
	f("campaign=c1&device=tv&site=news.example", "campaign/site", counts["|news.example"])
	// Kept as sent: another case is another site, with no data.
	f("campaign=c1&site=com.example.app", "campaign", 600)
	f("campaign=c1&site=unknown.example", "campaign", 600)
	f("campaign=c1&placement=p1", "campaign/placement", 200)
	if a, _ := get("campaign=c1&site=news.example"); a.Multiplier <= 1 {
		t.Fatalf("unexpected multiplier of news.example, the site with the most clicks; got %v; want above 1", a.Multiplier)
	}
	if a, _ := get("campaign=c1&site=sports.example"); a.Multiplier >= 1 {
		t.Fatalf("unexpected multiplier of sports.example, the site with the fewest clicks; got %v; want below 1", a.Multiplier)
	}

	// Batch items, on both paths, answer what GET answers for the same dimensions.
	var items []string
	var want []string
	for _, q := range queries {
		args := map[string]string{}
		for _, kv := range strings.Split(q, "&") {
			k, v, _ := strings.Cut(kv, "=")
			args[k] = v
		}
		item, _ := json.Marshal(args)
		items = append(items, string(item))
		_, body := get(q)
		want = append(want, string(body))
	}
	for _, fast := range []bool{true, false} {
		before := batchFastAnswered.Load()
		code, got := postBatch(svc, []byte("["+strings.Join(items, ",")+"]"), fast)
		if taken := batchFastAnswered.Load() != before; code != 200 || taken != fast {
			t.Fatalf("unexpected batch answer (fast path %v, taken %v): %d %s", fast, taken, code, got)
		}
		if w := "[" + strings.Join(want, ",") + "]"; got != w {
			t.Fatalf("unexpected batch answer (fast path %v);\ngot  %s\nwant %s", fast, got, w)
		}
	}

	// Rates: the exact level formed by the dimensions given.
	code, body := serveGET(svc, "/v1/rates?campaign=c1&site=com.Example.App")
	var rates struct {
		Level   string            `json:"level"`
		Key     map[string]string `json:"key"`
		Windows map[string]struct {
			Impressions uint64 `json:"impressions"`
		} `json:"windows"`
	}
	if err := json.Unmarshal(body, &rates); code != 200 || err != nil || rates.Level != "campaign/site" ||
		rates.Key["site"] != "com.Example.App" || rates.Key["campaign"] != "c1" || len(rates.Key) != 2 ||
		rates.Windows["1h"].Impressions != counts["|com.Example.App"] {
		t.Fatalf("unexpected rates of campaign/site; got %d %s (%v)", code, body, err)
	}
	if code, body := serveGET(svc, "/v1/rates?campaign=c1&creative=cr1&site=news.example"); code != 400 ||
		!strings.Contains(string(body), "no configured rollup for campaign/creative/site") {
		t.Fatalf("unexpected rates of an unconfigured level; got %d %s", code, body)
	}

	// Snapshot of the site level: one key per site, with its impressions.
	code, body = serveGET(svc, "/v1/snapshot?level=campaign/site&window=1h&sort=impressions")
	var snap struct {
		Keys []struct {
			Key         map[string]string `json:"key"`
			Impressions uint64            `json:"impressions"`
		} `json:"keys"`
	}
	if err := json.Unmarshal(body, &snap); code != 200 || err != nil || len(snap.Keys) != 3 {
		t.Fatalf("unexpected snapshot of campaign/site; got %d %s (%v); want 3 keys", code, body, err)
	}
	for _, k := range snap.Keys {
		if k.Key["campaign"] != "c1" || k.Impressions != counts["|"+k.Key["site"]] || k.Key["site"] == "" {
			t.Fatalf("unexpected snapshot key %+v; want c1 and a site with %v", k, counts)
		}
	}

	// Bad values.
	bad := func(query, wantErr string) {
		t.Helper()
		code, body := serveGET(svc, query)
		if code != 400 || !strings.Contains(string(body), wantErr) {
			t.Fatalf("unexpected answer to %s; got %d %s; want 400 with %q", query, code, body, wantErr)
		}
	}
	bad("/v1/multiplier?campaign=c1&site=", "empty site")
	bad("/v1/multiplier?campaign=c1&site=a&site=b", "duplicate parameter site")
	bad("/v1/multiplier?campaign=c1&site="+strings.Repeat("s", 129), "site longer than 128 bytes")
	bad("/v1/multiplier?campaign=c1&site=%ff", "site is not valid UTF-8")
	bad("/v1/rates?campaign=c1&site=", "empty site")
	if code, got := postBatch(svc, []byte(`[{"campaign":"c1","site":7},{"campaign":"c1","site":""}]`), true); code != 200 ||
		got != `[{"error":"site must be a string"},{"error":"empty site"}]` {
		t.Fatalf("unexpected batch answer to bad sites; got %d %s", code, got)
	}
}

// TestRollupsWithoutSiteUnchanged checks that without a rollup naming the site nothing changes:
// a service whose events carry sites answers every query, with or without a site, byte for
// byte what a service fed the same events without sites answers, holds the same keys, and
// refuses the rates of campaign/site naming the configured rollups.
func TestRollupsWithoutSiteUnchanged(t *testing.T) {
	withSites, _ := siteEvents(true)
	without, _ := siteEvents(false)
	a := newSiteService(t, windows.DefaultRollupNames(), withSites)
	b := newSiteService(t, windows.DefaultRollupNames(), without)
	if a.store.Len() != b.store.Len() {
		t.Fatalf("unexpected keys; got %d with sites; want %d, as without", a.store.Len(), b.store.Len())
	}
	queries := []string{"campaign=c1", "campaign=c1&placement=p1", "campaign=c1&creative=cr1", "campaign=c1&creative=cr1&placement=p2&explain=1", "campaign=c2"}
	for _, svc := range []*Service{a, b} {
		for _, q := range queries {
			serveGET(svc, "/v1/multiplier?"+q)
			serveGET(svc, "/v1/multiplier?"+q+"&site=news.example")
		}
		svc.brain.Publish(testNow)
	}
	for _, q := range queries {
		_, want := serveGET(b, "/v1/multiplier?"+q)
		for _, uri := range []string{"/v1/multiplier?" + q, "/v1/multiplier?" + q + "&site=news.example", "/v1/multiplier?" + q + "&site=com.Example.App"} {
			if code, got := serveGET(a, uri); code != 200 || string(got) != string(want) {
				t.Fatalf("unexpected answer to %s; got %d %s; want %s, as without sites", uri, code, got, want)
			}
		}
		if !strings.Contains(string(want), `"level":"campaign`) && q != "campaign=c2" {
			t.Fatalf("BUG: %s has no data: %s", q, want)
		}
	}
	code, body := serveGET(a, "/v1/rates?campaign=c1&site=news.example")
	if code != 400 || !strings.Contains(string(body), "no configured rollup for campaign/site; configured rollups: campaign, campaign/creative, campaign/placement, campaign/creative/placement") {
		t.Fatalf("unexpected rates of campaign/site without the level; got %d %s", code, body)
	}
}
