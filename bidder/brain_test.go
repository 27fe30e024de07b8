package bidder

import (
	"context"
	"fmt"
	"strings"
	"testing"
)

// costEvents returns n impressions of campaign c at testNow, each costing
// cost, with device d.
func costEvents(prefix, c, d string, n int, cost float64) string {
	parts := make([]string, n)
	for i := range parts {
		parts[i] = fmt.Sprintf(`{"id":"%s%d","type":"impression","ts":%d,"campaign":%q,"placement":"p1","device":%q,"cost":%v}`, prefix, i, testNow, c, d, cost)
	}
	return "[" + strings.Join(parts, ",") + "]"
}

func factorNames(t *testing.T, m map[string]any) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	for _, f := range m["explain"].(map[string]any)["factors"].([]any) {
		fm := f.(map[string]any)
		out[fm["name"].(string)] = fm["value"].(float64)
	}
	return out
}

func TestPoliciesThroughTheAPI(t *testing.T) {
	e := startTestService(t, func(o *Options) { o.AdminToken = "tok" })
	e.publish(t, costEvents("a", "c1", "mobile", 20, 0.5))
	e.waitReceived(t, 20)

	// Modifiers and a daily budget, set through the API (stored in KV).
	code, b := e.do(t, "PUT", "/v1/policies", "tok", `{"campaign":"c1","policy":{"modifiers":{"device":{"mobile":1.5}},"pacing":{"daily_budget":100}}}`)
	if code != 200 {
		t.Fatalf("unexpected status %d: %s", code, b)
	}
	m := e.getJSON(t, "/v1/multiplier?campaign=c1&device=mobile&explain=1", 200)
	if m["multiplier"] != 1.5 || factorNames(t, m)["device"] != 1.5 {
		t.Fatalf("device modifier not applied: %v", m)
	}
	if m := e.getJSON(t, "/v1/multiplier?campaign=c1&device=desktop", 200); m["multiplier"] != 1.0 {
		t.Fatalf("modifier applied to another device: %v", m)
	}
	pol := e.getJSON(t, "/v1/policies?campaign=c1", 200)
	if pol["source"] != "admin" {
		t.Fatalf("unexpected policy source: %v", pol)
	}

	// A budget smaller than the day's spend (20 x 0.5 = 10): after the
	// control tick, pacing answers 0 (do not bid), skipping the clamp.
	if code, b := e.do(t, "PUT", "/v1/policies", "tok", `{"campaign":"c1","policy":{"pacing":{"daily_budget":5}}}`); code != 200 {
		t.Fatalf("unexpected status %d: %s", code, b)
	}
	e.svc.brain.Tick(testNow)
	m = e.getJSON(t, "/v1/multiplier?campaign=c1&placement=p1&explain=1", 200)
	if m["multiplier"] != 0.0 || factorNames(t, m)["pacing"] != 0 {
		t.Fatalf("spent budget must answer 0: %v", m)
	}
	// Another campaign keeps the default policy.
	e.publish(t, costEvents("b", "c2", "mobile", 5, 0.5))
	e.waitReceived(t, 25)
	if m := e.getJSON(t, "/v1/multiplier?campaign=c2&device=mobile", 200); m["multiplier"] != 1.0 {
		t.Fatalf("policy of c1 leaked to c2: %v", m)
	}
	// Invalid policies are refused with the field named.
	for _, body := range []string{
		`{"campaign":"c1","policy":{"policy":"magic"}}`,
		`{"campaign":"c1","policy":{"pacing":{"daily_budget":-1}}}`,
		`{"campaign":"c1","policy":{"colour":"red"}}`,
		`{"campaign":"","policy":{}}`,
		`{"campaign":"c1"}`,
	} {
		if code, b := e.do(t, "PUT", "/v1/policies", "tok", body); code != 400 {
			t.Fatalf("unexpected status for %s: %d %s", body, code, b)
		}
	}
	if code, _ := e.do(t, "PUT", "/v1/policies", "", `{"campaign":"c1","policy":{}}`); code != 401 {
		t.Fatalf("policy change without a token must be refused; got %d", code)
	}
	if code, _ := e.do(t, "DELETE", "/v1/policies?campaign=c1", "tok", ""); code != 200 {
		t.Fatalf("cannot delete the policy")
	}
	if m := e.getJSON(t, "/v1/multiplier?campaign=c1&device=mobile", 200); m["multiplier"] != 1.0 {
		t.Fatalf("deleted policy still applied: %v", m)
	}
	code, b = e.do(t, "GET", "/v1/audit", "tok", "")
	if code != 200 || strings.Count(string(b), `"policy.set"`) != 2 || !strings.Contains(string(b), `"policy.delete"`) {
		t.Fatalf("policy changes not audited: %s", b)
	}
}

func TestReloadPolicies(t *testing.T) {
	e := startTestService(t, nil)
	e.publish(t, costEvents("a", "c1", "mobile", 3, 0))
	e.waitReceived(t, 3)
	cfg, err := parseConfig([]byte("policies:\n  default:\n    modifiers: {device: {mobile: 0.5}}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if err := e.svc.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	if m := e.getJSON(t, "/v1/multiplier?campaign=c1&device=mobile", 200); m["multiplier"] != 0.5 {
		t.Fatalf("reloaded policy not applied: %v", m)
	}
	bad, _ := parseConfig([]byte("rollups: [campaign]\n"))
	if err := e.svc.Reload(bad); err == nil || !strings.Contains(err.Error(), "restart") {
		t.Fatalf("a rollup change must be refused; got %v", err)
	}
	if m := e.getJSON(t, "/v1/multiplier?campaign=c1&device=mobile", 200); m["multiplier"] != 0.5 {
		t.Fatalf("a refused reload changed the policy: %v", m)
	}
}

func TestControllerStateCheckpointed(t *testing.T) {
	dir := t.TempDir()
	e := startTestService(t, func(o *Options) { o.DataDir = dir })
	// Conversions with click_ts teach the delay histogram.
	e.publish(t, fmt.Sprintf(`[{"id":"v1","type":"conversion","ts":%d,"click_ts":%d,"campaign":"c1"},{"id":"v2","type":"conversion","ts":%d,"click_ts":%d,"campaign":"c1"}]`,
		testNow, testNow-3_600_000, testNow, testNow-60_000))
	waitCounted(t, e, 2)
	st, h, ok := e.svc.brain.CampaignEntry("c1")
	if !ok || h.N != 2 || st != nil {
		t.Fatalf("delays not recorded, or state made before any answer: tracked %v, %d delays, state %+v", ok, h.N, st)
	}
	// The tick advances answered campaigns only.
	e.svc.brain.Tick(testNow)
	if st, _, _ := e.svc.brain.CampaignEntry("c1"); st != nil {
		t.Fatalf("a campaign never answered was ticked: %+v", st)
	}
	e.getJSON(t, "/v1/multiplier?campaign=c1", 200)
	e.svc.brain.Tick(testNow)
	if st, _, _ := e.svc.brain.CampaignEntry("c1"); st == nil || st.LastTickMs != testNow {
		t.Fatalf("answered campaign not ticked: %+v", st)
	}
	e.nc.Close()
	if err := e.svc.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	e2 := startTestService(t, func(o *Options) { o.DataDir = dir })
	st2, h2, _ := e2.svc.brain.CampaignEntry("c1")
	if st2 == nil || h2.N != 2 || st2.LastTickMs != testNow {
		t.Fatalf("controller state not restored from the checkpoint: %+v, %d delays", st2, h2.N)
	}
}

func TestSnapshotDoesNotTrackKeys(t *testing.T) {
	svc, _ := newTestService(t)
	svc.ingest.Apply(batchPayload("s", 100, 10), testNow)
	ctx := requestCtx("/v1/snapshot?level=campaign/placement&sort=multiplier")
	svc.serveHTTP(ctx)
	if ctx.Response.StatusCode() != 200 {
		t.Fatalf("unexpected status %d: %s", ctx.Response.StatusCode(), ctx.Response.Body())
	}
	if n := svc.brain.Stats().Keys; n != 0 {
		t.Fatalf("a snapshot created %d key states; want 0 (only bid requests do)", n)
	}
	ctx = requestCtx("/v1/multiplier?campaign=c1&placement=p1")
	svc.serveHTTP(ctx)
	if n := svc.brain.Stats().Keys; n != 1 {
		t.Fatalf("unexpected key states after one bid request; got %d; want 1", n)
	}
}

func TestControlTickFitsPriors(t *testing.T) {
	svc, _ := newTestService(t)
	// Ten placements under c1/cr1 with different CTRs: siblings to fit.
	var parts []string
	for p := 0; p < 10; p++ {
		for i := 0; i < 200; i++ {
			id := fmt.Sprintf("p%d-%d", p, i)
			parts = append(parts, ev(id, "impression", testNow, "c1", "cr1", fmt.Sprintf("p%d", p)))
			if i < 2+p*3 {
				parts = append(parts, ev(id, "click", testNow, "c1", "cr1", fmt.Sprintf("p%d", p)))
			}
		}
	}
	svc.ingest.Apply([]byte("["+strings.Join(parts, ",")+"]"), testNow)
	svc.brain.Tick(testNow)
	if n := svc.brain.Strengths(); n == 0 {
		t.Fatalf("the control tick fitted no prior strengths")
	}
	ctx := requestCtx("/v1/multiplier?campaign=c1&creative=cr1&placement=p9&explain=1")
	svc.serveHTTP(ctx)
	if !strings.Contains(string(ctx.Response.Body()), `"prior_strength"`) || strings.Contains(string(ctx.Response.Body()), `"prior_strength":1000,`) {
		t.Fatalf("explain lacks a fitted prior strength (the configured one is 1000): %s", ctx.Response.Body())
	}
}
