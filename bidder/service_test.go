package bidder

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/bidpulse/bidpulse/bidder/ingest"
	"github.com/nats-io/nats.go"

	"github.com/rs/zerolog"
)

// publishTraffic publishes, for campaign c1, impressions and clicks on
// several placements in batches of 500, and returns the number of events.
func publishTraffic(t *testing.T, e *testEnv, ts int64) int {
	t.Helper()
	cells := []struct {
		placement     string
		impr, clicks  int
		conversions   int
		creative      string
		costPerImprMu int
	}{
		{"news.example/top", 5000, 200, 0, "cr1", 0},
		{"blog.example/footer", 5000, 25, 0, "cr1", 0},
		{"sparse.example/side", 10, 0, 0, "cr2", 0},
	}
	var batch []string
	n := 0
	flush := func() {
		if len(batch) > 0 {
			e.publish(t, "["+strings.Join(batch, ",")+"]")
			batch = batch[:0]
		}
	}
	add := func(s string) {
		batch = append(batch, s)
		n++
		if len(batch) == 500 {
			flush()
		}
	}
	for _, c := range cells {
		for i := 0; i < c.impr; i++ {
			id := fmt.Sprintf("%s-%d", c.placement, i)
			add(ev(id, "impression", ts, "c1", c.creative, c.placement))
			if i < c.clicks {
				add(ev(id, "click", ts, "c1", c.creative, c.placement))
			}
		}
	}
	flush()
	return n
}

func TestEndToEndCountsAndMultipliers(t *testing.T) {
	e := startTestService(t, nil)
	n := publishTraffic(t, e, testNow-1000)
	// Single events (not in an array) count too.
	e.publish(t, ev("single-1", "impression", testNow-500, "c2", "", "p9"))
	e.publish(t, ev("single-1", "click", testNow-400, "c2", "", "p9"))
	n += 2
	e.waitReceived(t, uint64(n))

	stats := e.getJSON(t, "/v1/stats", 200)
	if got := num(t, stats, "counted"); got != float64(n) {
		t.Fatalf("unexpected counted; got %v; want %d", got, n)
	}
	// Keys: c1 (1) + c1/cr1, c1/cr2 (2) + 3 placements + 3 creative/placement, c2 + c2/p9.
	if got := num(t, stats, "keys"); got != 11 {
		t.Fatalf("unexpected keys; got %v; want 11", got)
	}

	rates := func(q string, span string, impr, clicks float64) {
		t.Helper()
		m := e.getJSON(t, "/v1/rates?"+q, 200)
		if got := num(t, m, "windows."+span+".impressions"); got != impr {
			t.Fatalf("unexpected impressions of %s in %s; got %v; want %v", q, span, got, impr)
		}
		if got := num(t, m, "windows."+span+".clicks"); got != clicks {
			t.Fatalf("unexpected clicks of %s in %s; got %v; want %v", q, span, got, clicks)
		}
	}
	for _, span := range []string{"1m", "5m", "15m", "1h", "24h"} {
		rates("campaign=c1", span, 10010, 225)
		rates("campaign=c1&placement=news.example/top", span, 5000, 200)
		rates("campaign=c1&creative=cr1&placement=blog.example/footer", span, 5000, 25)
		rates("campaign=c1&creative=cr2", span, 10, 0)
		rates("campaign=c2&placement=p9", span, 1, 1)
	}
	m := e.getJSON(t, "/v1/rates?campaign=c1&placement=news.example/top", 200)
	if got := m["level"]; got != "campaign/placement" {
		t.Fatalf("unexpected level; got %v", got)
	}
	if got := num(t, m, "windows.1h.ctr"); math.Abs(got-0.04) > 1e-12 {
		t.Fatalf("unexpected ctr; got %v; want 0.04", got)
	}
	// Unknown key: zeros, not an error.
	rates("campaign=nope", "1h", 0, 0)

	mult := func(q string) (float64, string) {
		t.Helper()
		m := e.getJSON(t, "/v1/multiplier?"+q, 200)
		return num(t, m, "multiplier"), m["level"].(string)
	}
	// Campaign CTR = 225/10010; prior strength 1000 impressions.
	campaignCTR := 225.0 / 10010
	good, lvl := mult("campaign=c1&placement=news.example/top")
	wantGood := (200 + 1000*campaignCTR) / (5000 + 1000) / campaignCTR
	if lvl != "campaign/placement" || math.Abs(good-wantGood) > 1e-5 {
		t.Fatalf("unexpected good placement answer; got %v at %s; want %v at campaign/placement", good, lvl, wantGood)
	}
	bad, _ := mult("campaign=c1&placement=blog.example/footer")
	if bad != 0.5 {
		t.Fatalf("unexpected bad placement multiplier; got %v; want the clamp 0.5", bad)
	}
	sparse, _ := mult("campaign=c1&placement=sparse.example/side")
	if math.Abs(sparse-1) > 0.02 {
		t.Fatalf("unexpected sparse placement multiplier; got %v; want near 1", sparse)
	}
	if m, lvl := mult("campaign=c1"); m != 1 || lvl != "campaign" {
		t.Fatalf("unexpected campaign answer; got %v at %s; want 1 at campaign", m, lvl)
	}
	if m, lvl := mult("campaign=unknown&placement=x"); m != 1 || lvl != "none" {
		t.Fatalf("unexpected unknown answer; got %v at %s; want 1 at none", m, lvl)
	}
	// An unknown placement of a known campaign falls back to the campaign.
	if m, lvl := mult("campaign=c1&placement=elsewhere"); m != 1 || lvl != "campaign" {
		t.Fatalf("unexpected fallback answer; got %v at %s; want 1 at campaign", m, lvl)
	}
	// The most specific level with data answers.
	if _, lvl := mult("campaign=c1&creative=cr1&placement=news.example/top&device=mobile"); lvl != "campaign/creative/placement" {
		t.Fatalf("unexpected level; got %s; want campaign/creative/placement", lvl)
	}

	// Explain carries the factors and the clamp.
	m = e.getJSON(t, "/v1/multiplier?campaign=c1&placement=blog.example/footer&explain=1", 200)
	ex := m["explain"].(map[string]any)
	if ex["policy"] != "performance" || ex["window"] != "1h" || ex["override"] != nil {
		t.Fatalf("unexpected explain: %v", ex)
	}
	// The performance clamp [0.5, 2] raised the live value to 0.5.
	var pc map[string]any
	for _, f := range ex["factors"].([]any) {
		if f.(map[string]any)["name"] == "performance_clamp" {
			pc = f.(map[string]any)
		}
	}
	if pc == nil || num(t, pc, "inputs.before") >= 0.5 || num(t, pc, "inputs.min") != 0.5 {
		t.Fatalf("explain lacks the performance clamp: %v", ex)
	}

	// The batch endpoint answers in order, with errors in their slots.
	code, b := e.do(t, "POST", "/v1/multipliers", "", `[{"campaign":"c1","placement":"news.example/top"},{"placement":"x"},{"campaign":"c1","placement":"blog.example/footer"},7,{"campaign":"unknown"}]`)
	if code != 200 {
		t.Fatalf("unexpected status; got %d; body %s", code, b)
	}
	var answers []map[string]any
	if err := json.Unmarshal(b, &answers); err != nil || len(answers) != 5 {
		t.Fatalf("unexpected batch answer %s: %v", b, err)
	}
	if answers[0]["multiplier"].(float64) != good || answers[2]["multiplier"].(float64) != bad ||
		answers[4]["level"] != "none" || answers[1]["error"] == nil || answers[3]["error"] == nil {
		t.Fatalf("unexpected batch answers: %s", b)
	}

	// The snapshot sorts and limits.
	snap := e.getJSON(t, "/v1/snapshot?level=campaign/placement&window=1h&sort=multiplier&limit=2&campaign=c1", 200)
	keys := snap["keys"].([]any)
	if len(keys) != 2 {
		t.Fatalf("unexpected snapshot length; got %d; want 2: %v", len(keys), snap)
	}
	first := keys[0].(map[string]any)
	if first["key"].(map[string]any)["placement"] != "news.example/top" || num(t, first, "multiplier") != good {
		t.Fatalf("unexpected first snapshot key: %v", first)
	}
	snap = e.getJSON(t, "/v1/snapshot?level=campaign/placement&sort=ctr", 200)
	if keys := snap["keys"].([]any); len(keys) != 2 {
		t.Fatalf("ctr sort must skip keys under min_impressions: %v", snap)
	}
}

func TestEndToEndOutcomes(t *testing.T) {
	e := startTestService(t, func(o *Options) { o.MaxKeys = 6 })
	dlq, err := e.nc.SubscribeSync(DLQSubject)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("x", 129)
	bad := []struct{ payload, reason string }{
		{`{"id":`, "bad_json"},
		{`42`, "not_object"},
		{`{"type":"click","campaign":"c"}`, "bad_id"},
		{`{"id":"x","type":"view","campaign":"c"}`, "bad_type"},
		{`{"id":"x","type":"click","campaign":""}`, "bad_campaign"},
		{`{"id":"x","type":"click","campaign":"c","placement":5}`, "bad_dimension"},
		{`{"id":"x","type":"click","campaign":"` + long + `"}`, "field_too_long"},
		{`{"id":"x","type":"click","campaign":"c","ts":1.5}`, "bad_ts"},
		{`{"id":"x","type":"click","campaign":"c","cost":-1}`, "bad_money"},
		{`{"id":"x","type":"conversion","campaign":"c","click_ts":"x"}`, "bad_click_ts"},
	}
	for _, b := range bad {
		e.publish(t, b.payload)
	}
	// A batch mixing good and bad elements: the good ones count.
	e.publish(t, `[`+ev("m1", "impression", testNow, "c1", "cr1", "p1")+`,[1],`+ev("m2", "impression", testNow, "c1", "cr1", "p1")+`]`)
	// Duplicates: the same (type, id) again; a click on the impression's id is not one.
	e.publish(t, ev("m1", "impression", testNow, "c1", "cr1", "p1"))
	e.publish(t, ev("m1", "click", testNow, "c1", "cr1", "p1"))
	// Late, future, and just-ahead (counted in the current bucket).
	e.publish(t, ev("old", "impression", testNow-25*3600*1000, "c1", "", ""))
	e.publish(t, ev("ahead", "impression", testNow+10_000, "c1", "", ""))
	e.publish(t, ev("soon", "impression", testNow+3_000, "c1", "", ""))
	// Overflow: c1/cr1/p1 uses 4 keys and c9 one more, 5 of 6: a new
	// placement needs 2 more keys, so the event is refused whole.
	e.publish(t, ev("c9", "impression", testNow, "c9", "", ""))
	e.publish(t, ev("of", "impression", testNow, "c1", "cr1", "p2"))
	// Once the cap is reached, events on existing keys still count.
	e.publish(t, ev("m3", "impression", testNow, "c1", "cr1", "p1"))
	total := uint64(len(bad) + 3 + 2 + 3 + 2 + 1)
	e.waitReceived(t, total)

	st := e.getJSON(t, "/v1/stats", 200)
	want := map[string]float64{
		"counted": 6, "duplicates": 1, "late": 1, "future": 1, "overflow": 1,
		"rejected_total": float64(len(bad) + 1), "rejected.not_object": 2, "keys": 5,
		"received": float64(total),
	}
	for k, v := range want {
		if got := num(t, st, k); got != v {
			t.Fatalf("unexpected stats %s; got %v; want %v: %v", k, got, v, st)
		}
	}
	for _, b := range bad {
		if b.reason == "not_object" {
			continue
		}
		if got := num(t, st, "rejected."+b.reason); got != 1 {
			t.Fatalf("unexpected rejected.%s; got %v; want 1", b.reason, got)
		}
	}
	sum := num(t, st, "counted") + num(t, st, "duplicates") + num(t, st, "rejected_total") +
		num(t, st, "late") + num(t, st, "future") + num(t, st, "overflow")
	if sum != num(t, st, "received") {
		t.Fatalf("stats do not balance: %v", st)
	}
	m := e.getJSON(t, "/v1/rates?campaign=c1&creative=cr1&placement=p1", 200)
	if got := num(t, m, "windows.1m.impressions"); got != 3 {
		t.Fatalf("unexpected impressions; got %v; want 3", got)
	}
	if got := num(t, m, "windows.1m.clicks"); got != 1 {
		t.Fatalf("unexpected clicks; got %v; want 1", got)
	}

	// Every rejected payload or element is on the DLQ with its reason.
	reasons := map[string]int{}
	for i := 0; i < len(bad)+1; i++ {
		msg, err := dlq.NextMsg(5 * time.Second)
		if err != nil {
			t.Fatalf("dead letter %d missing: %v", i, err)
		}
		reasons[msg.Header.Get(ingest.RejectHeader)]++
		// Not the payload: its known fields (none for a scalar), its size.
		if msg.Header.Get(ingest.RejectHeader) == "not_object" && (string(msg.Data) != "{}" ||
			msg.Header.Get(ingest.BodyHeader) != ingest.BodyFields || msg.Header.Get(ingest.PayloadBytesHeader) != "2" && msg.Header.Get(ingest.PayloadBytesHeader) != "3") {
			t.Fatalf("unexpected not_object dead letter %q %v", msg.Data, msg.Header)
		}
		if msg.Header.Get(ingest.RejectHeader) == "bad_type" && string(msg.Data) != `{"id":"x","type":"view","campaign":"c"}` {
			t.Fatalf("unexpected bad_type dead letter %q", msg.Data)
		}
	}
	for _, b := range bad {
		want := 1
		if b.reason == "not_object" {
			want = 2
		}
		if reasons[b.reason] != want {
			t.Fatalf("unexpected dead letters for %s; got %d; want %d (all: %v)", b.reason, reasons[b.reason], want, reasons)
		}
	}
}

func TestHTTPErrors(t *testing.T) {
	e := startTestService(t, nil)
	f := func(method, path, body string, wantCode int, wantErr string) {
		t.Helper()
		code, b := e.do(t, method, path, "", body)
		if code != wantCode {
			t.Fatalf("unexpected status of %s %s; got %d; want %d; body %s", method, path, code, wantCode, b)
		}
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatalf("%s %s: error body is not JSON: %s", method, path, b)
		}
		if msg, _ := m["error"].(string); !strings.Contains(msg, wantErr) {
			t.Fatalf("unexpected error of %s %s; got %q; want it to contain %q", method, path, msg, wantErr)
		}
	}
	f("GET", "/nope", "", 404, "not found")
	f("POST", "/v1/multiplier?campaign=c", "", 405, "not allowed")
	f("GET", "/v1/multiplier", "", 400, "missing campaign")
	f("GET", "/v1/multiplier?campaign=", "", 400, "empty campaign")
	f("GET", "/v1/multiplier?campaign=c&placment=x", "", 400, "unknown parameter placment")
	f("GET", "/v1/multiplier?campaign=c&campaign=d", "", 400, "duplicate")
	f("GET", "/v1/multiplier?campaign="+strings.Repeat("a", 129), "", 400, "longer than 128")
	f("GET", "/v1/multiplier?campaign=c&explain=maybe", "", 400, "explain")
	f("GET", "/v1/rates?campaign=c&device=mobile", "", 400, "configured rollups: campaign, campaign/creative")
	f("GET", "/v1/snapshot?limit=1001", "", 400, "limit")
	f("GET", "/v1/snapshot?level=campaign/device", "", 400, "unknown level")
	f("GET", "/v1/snapshot?sort=price", "", 400, "unknown sort")
	f("GET", "/v1/snapshot?window=2h", "", 400, "unknown window")
	f("POST", "/v1/multipliers", `{"campaign":"c"}`, 400, "JSON array")
	f("POST", "/v1/multipliers", `[{`, 400, "not valid JSON")
	items := strings.TrimSuffix(strings.Repeat(`{"campaign":"c"},`, 1001), ",")
	f("POST", "/v1/multipliers", "["+items+"]", 413, "1000")
	// An oversized body is refused from its Content-Length, before it is
	// read, with a JSON 413 (a client still sending may see a reset, so
	// this one sends only the headers).
	conn, err := net.Dial("tcp", e.svc.HTTPAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST /v1/multipliers HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n[", 2<<20)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("cannot read the answer to an oversized body: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 413 || !strings.Contains(string(body), `"error":"request body too large`) {
		t.Fatalf("unexpected answer to an oversized body; got %d %s", resp.StatusCode, body)
	}
	f("GET", "/v1/overrides", "", 403, "admin API disabled")
	// A long query string fits.
	code, _ := e.do(t, "GET", "/v1/multiplier?campaign=c&placement="+strings.Repeat("p", 128)+"&creative="+strings.Repeat("c", 128), "", "")
	if code != 200 {
		t.Fatalf("unexpected status for a long query; got %d", code)
	}
	// Health, readiness and metrics.
	if m := e.getJSON(t, "/healthz", 200); m["status"] != "ok" {
		t.Fatalf("unexpected healthz: %v", m)
	}
	if m := e.getJSON(t, "/readyz", 200); m["ready"] != true {
		t.Fatalf("unexpected readyz: %v", m)
	}
	code, b := e.do(t, "GET", "/metrics", "", "")
	for _, want := range []string{
		`bidpulse_ingest_events_total{outcome="counted"}`,
		`bidpulse_ingest_events_total{outcome="rejected",reason="bad_json"}`,
		`bidpulse_http_requests_total{route="multiplier",code="400"}`,
		`bidpulse_bid_duration_seconds_bucket{route="multiplier",le=`,
		`bidpulse_keys `,
		`bidpulse_nats_pending_messages `,
	} {
		if code != 200 || !strings.Contains(string(b), want) {
			t.Fatalf("metrics lack %s (status %d):\n%s", want, code, b)
		}
	}
}

func TestOverrides(t *testing.T) {
	const token = "s3cret-token"
	e := startTestService(t, func(o *Options) { o.AdminToken = token })
	e.publish(t, `[`+ev("i1", "impression", testNow, "c1", "cr1", "p1")+`,`+ev("i1", "click", testNow, "c1", "cr1", "p1")+`]`)
	e.waitReceived(t, 2)

	f := func(method, path, tok, body string, wantCode int) []byte {
		t.Helper()
		code, b := e.do(t, method, path, tok, body)
		if code != wantCode {
			t.Fatalf("unexpected status of %s %s; got %d; want %d; body %s", method, path, code, wantCode, b)
		}
		return b
	}
	f("GET", "/v1/overrides", "", "", 401)
	f("GET", "/v1/overrides", "wrong", "", 401)
	f("PUT", "/v1/overrides", "wrong", `{"campaign":"c1","multiplier":1.7}`, 401)
	f("PUT", "/v1/overrides", token, `{"campaign":"c1","device":"mobile","multiplier":1.7}`, 400)
	f("PUT", "/v1/overrides", token, `{"campaign":"c1","multiplier":11}`, 400)
	f("PUT", "/v1/overrides", token, `{"campaign":"c1","multiplier":-1}`, 400)
	f("PUT", "/v1/overrides", token, `{"campaign":"c1"}`, 400)
	f("PUT", "/v1/overrides", token, `{"campaign":"c1","multiplier":1,"ttl":"soon"}`, 400)
	f("PUT", "/v1/overrides", token, `{"campaign":"c1","multiplier":1,"color":"red"}`, 400)

	b := f("PUT", "/v1/overrides", token, `{"campaign":"c1","placement":"p1","multiplier":1.7,"ttl":"2h"}`, 200)
	var stored map[string]any
	if err := json.Unmarshal(b, &stored); err != nil || stored["multiplier"] != 1.7 || stored["placement"] != "p1" ||
		stored["expires_at"] != time.UnixMilli(testNow+2*3600*1000).UTC().Format(time.RFC3339) {
		t.Fatalf("unexpected stored override %s: %v", b, err)
	}
	m := e.getJSON(t, "/v1/multiplier?campaign=c1&creative=cr1&placement=p1&explain=1", 200)
	if m["multiplier"] != 1.7 || m["level"] != "campaign/placement" || m["explain"].(map[string]any)["override"] != 1.7 {
		t.Fatalf("override not applied: %v", m)
	}
	// Overrides bypass the clamp, and 0 means do not bid.
	f("PUT", "/v1/overrides", token, `{"campaign":"c1","creative":"cr1","placement":"p1","multiplier":0}`, 200)
	if m := e.getJSON(t, "/v1/multiplier?campaign=c1&creative=cr1&placement=p1", 200); m["multiplier"] != 0.0 {
		t.Fatalf("zero override not applied: %v", m)
	}
	b = f("GET", "/v1/overrides", token, "", 200)
	var list struct{ Overrides []map[string]any }
	if err := json.Unmarshal(b, &list); err != nil || len(list.Overrides) != 2 {
		t.Fatalf("unexpected override list %s: %v", b, err)
	}
	f("DELETE", "/v1/overrides?campaign=c1&creative=cr1&placement=p1", token, "", 200)
	f("DELETE", "/v1/overrides?campaign=c1&creative=cr1&placement=p1", token, "", 404)
	// Expiry: two hours later the placement override is gone.
	e.clock.Advance(2*time.Hour + time.Second)
	if m := e.getJSON(t, "/v1/multiplier?campaign=c1&placement=p1", 200); m["multiplier"] == 1.7 {
		t.Fatalf("expired override still applied: %v", m)
	}
}

func TestGracefulStopDrains(t *testing.T) {
	e := startTestService(t, nil)
	const n = 20000
	for i := 0; i < n/100; i++ {
		var sb strings.Builder
		sb.WriteByte('[')
		for j := 0; j < 100; j++ {
			if j > 0 {
				sb.WriteByte(',')
			}
			sb.WriteString(ev(fmt.Sprintf("g%d-%d", i, j), "impression", testNow, "c1", "", "p1"))
		}
		sb.WriteByte(']')
		if err := e.nc.Publish("bidpulse.events.x", []byte(sb.String())); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	// Everything the server delivered before Stop is applied by the drain.
	checkFor(t, 10*time.Second, 5*time.Millisecond, func() error {
		if got := e.svc.ingest.Stats().Messages.Get() + uint64(mustPending(e.svc)); got < n/100 {
			return fmt.Errorf("%d messages delivered; want %d", got, n/100)
		}
		return nil
	})
	if err := e.svc.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := e.svc.ingest.Stats().Counted.Get(); got != n {
		t.Fatalf("unexpected counted after drain; got %d; want %d", got, n)
	}
	if e.svc.ready.Load() {
		t.Fatalf("ready after stop")
	}
}

func mustPending(s *Service) int {
	n, _ := s.ingest.Pending()
	return n
}

func TestReadyzDuringShutdown(t *testing.T) {
	e := startTestService(t, nil)
	e.svc.ready.Store(false)
	e.svc.stopping.Store(true)
	m := e.getJSON(t, "/readyz", 503)
	if m["ready"] != false || m["reason"] != "shutting down" {
		t.Fatalf("unexpected readyz: %v", m)
	}
	e.svc.stopping.Store(false)
	e.svc.ready.Store(true)
}

func TestExternalNATS(t *testing.T) {
	// A second service using the first one's NATS server as an external one.
	first := startTestService(t, nil)
	second := startTestService(t, func(o *Options) {
		o.NATSURL = first.svc.NATSURL()
		o.Instance = "second" // each replica has its own consumer
	})
	if second.svc.natsSrv != nil {
		t.Fatalf("external mode started an embedded server")
	}
	first.publish(t, ev("x1", "impression", testNow, "c1", "", ""))
	second.waitReceived(t, 1)
	first.waitReceived(t, 1)
}

var _ = nats.Connect

// TestKeyCapWithQueuedNewKeys: a batch whose first event queues writes that
// create keys (there was room) and whose next event needs new keys near the
// cap. The second is refused whole, nothing panics, and the key count stays
// within the cap.
func TestKeyCapWithQueuedNewKeys(t *testing.T) {
	clock := NewManualClock(testNow)
	svc, err := New(Options{Clock: clock, Logger: zerolog.Nop(), DedupSize: 32 << 20, MaxKeys: 10})
	if err != nil {
		t.Fatal(err)
	}
	svc.ingest.Apply([]byte(ev("f", "impression", testNow, "c0", "cr", "p")), testNow) // 4 keys
	// a: 4 new keys, queued (4 + 0 + 4 <= 10); b: 4 more would make 12.
	svc.ingest.Apply([]byte(`[`+ev("a", "impression", testNow, "c1", "cr", "p")+`,`+
		ev("b", "impression", testNow, "c2", "cr", "p")+`,`+ev("c", "click", testNow, "c1", "cr", "p")+`]`), testNow)
	s := svc.ingest.Stats()
	if s.Counted.Get() != 3 || s.Overflow.Get() != 1 || svc.store.Len() != 8 {
		t.Fatalf("unexpected outcome; got counted %d, overflow %d, keys %d; want 3, 1, 8",
			s.Counted.Get(), s.Overflow.Get(), svc.store.Len())
	}
}
