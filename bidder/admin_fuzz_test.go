package bidder

import (
	"encoding/json"
	"testing"

	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"
)

// FuzzAdminBodies sends arbitrary bodies to the admin API's PUT routes
// (overrides, kill switch, policies) of a service without NATS (the control
// plane in memory): every answer is 200 or a 4xx/507 JSON error, never a
// panic, and what a 200 stored obeys the control plane's rules.
func FuzzAdminBodies(f *testing.F) {
	svc, err := New(Options{Clock: NewManualClock(testNow), Logger: zerolog.Nop(), DedupSize: 32 << 20, AdminToken: "tok"})
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []struct {
		route uint8
		body  string
	}{
		{0, `{"campaign":"c1","placement":"p1","multiplier":1.5}`},
		{0, `{"campaign":"c1","freeze":true,"ttl":"2h"}`},
		{0, `{"campaign":"c1","country":"us","multiplier":0}`},
		{0, `{"campaign":"c1","multiplier":1e6}`},
		{0, `{"campaign":"","multiplier":1}`},
		{1, `{"enabled":true,"reason":"incident 42"}`},
		{1, `{"enabled":"yes"}`},
		{2, `{"campaign":"c1","policy":{"max":3,"min":0.5}}`},
		{2, `{"campaign":"c1","policy":{"performance":{"window":"1h"}}}`},
		{2, `{"campaign":"c1","policy":"max: 3"}`},
	} {
		f.Add(s.route, []byte(s.body))
	}
	paths := []string{"/v1/overrides", "/v1/killswitch", "/v1/policies"}
	f.Fuzz(func(t *testing.T, route uint8, body []byte) {
		path := paths[int(route)%len(paths)]
		var ctx fasthttp.RequestCtx
		ctx.Request.Header.SetMethod("PUT")
		ctx.Request.SetRequestURI(path)
		ctx.Request.Header.Set("Authorization", "Bearer tok")
		ctx.Request.SetBody(body)
		svc.serveHTTP(&ctx)
		code := ctx.Response.StatusCode()
		if !json.Valid(ctx.Response.Body()) {
			t.Fatalf("%s answered %d with invalid JSON: %q", path, code, ctx.Response.Body())
		}
		switch {
		case code == 200:
		case code >= 400 && code < 500, code == fasthttp.StatusInsufficientStorage:
			return
		default:
			t.Fatalf("%s answered %d to %q: %s", path, code, body, ctx.Response.Body())
		}
		for _, ov := range svc.control.Overrides(testNow) {
			if err := svc.control.CheckOverride(&ov); err != nil {
				t.Fatalf("stored an override that breaks the rules: %+v: %v", ov, err)
			}
		}
		if k := svc.control.KillSwitch(); k.Enabled != svc.control.Killed() || (k.SetAtMs != 0 && k.SetBy != "admin") {
			t.Fatalf("unexpected kill switch: %+v", k)
		}
	})
}
