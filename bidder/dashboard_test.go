package bidder

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/bidpulse/bidpulse/bidder/web"
	"github.com/bidpulse/bidpulse/windows"
)

// TestDashboardDims checks that the page knows every dimension: its list
// (DIMS in app.js), the key inspector's and the override form's inputs,
// and /dashboard/meta's dims, all in windows.DimNames' order.
func TestDashboardDims(t *testing.T) {
	js, _ := web.Lookup("app.js")
	html, _ := web.Lookup("index.html")
	want := "const DIMS = ['" + strings.Join(windows.DimNames[:], "', '") + "'];"
	if !strings.Contains(string(js.Body), want) {
		t.Fatalf("app.js does not list the dimensions as %s", want)
	}
	for _, d := range windows.DimNames {
		for _, form := range []string{"s-", "ov-"} {
			if !strings.Contains(string(html.Body), `id="`+form+d+`"`) {
				t.Fatalf("index.html has no input %s%s", form, d)
			}
		}
	}
	svc, _ := newTestService(t)
	ctx := requestCtx("/dashboard/meta")
	svc.serveHTTP(ctx)
	var m struct{ Dims []string }
	if err := json.Unmarshal(ctx.Response.Body(), &m); err != nil || strings.Join(m.Dims, ",") != strings.Join(windows.DimNames[:], ",") {
		t.Fatalf("unexpected dims of /dashboard/meta; got %s (%v); want %v", ctx.Response.Body(), err, windows.DimNames)
	}
}

func TestDashboardFiles(t *testing.T) {
	e := startTestService(t, func(o *Options) { o.AdminToken = "secret" })
	get := func(path, etag string) (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequest("GET", e.base+path, nil)
		if etag != "" {
			req.Header.Set("If-None-Match", etag)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("cannot GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	f := func(path, wantType, wantText string) {
		t.Helper()
		resp, body := get(path, "")
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != wantType || !strings.Contains(body, wantText) {
			t.Fatalf("unexpected answer to %s; got %d %q; want 200 %q containing %q", path, resp.StatusCode, resp.Header.Get("Content-Type"), wantType, wantText)
		}
		etag := resp.Header.Get("ETag")
		if resp, _ := get(path, etag); etag == "" || resp.StatusCode != 304 {
			t.Fatalf("unexpected answer to %s with If-None-Match %q; got %d; want 304", path, etag, resp.StatusCode)
		}
	}
	f("/", "text/html; charset=utf-8", `<script src="/dashboard/app.js" defer></script>`)
	f("/index.html", "text/html; charset=utf-8", `id="keys-table"`)
	f("/dashboard/app.js", "text/javascript; charset=utf-8", "/v1/snapshot/stream")
	f("/dashboard/style.css", "text/css; charset=utf-8", ".banner")

	resp, _ := get("/", "")
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") || !strings.Contains(csp, "connect-src 'self'") {
		t.Fatalf("unexpected Content-Security-Policy %q", csp)
	}

	m := e.getJSON(t, "/dashboard/meta", 200)
	if got, _ := json.Marshal(m["levels"]); string(got) != `["campaign","campaign/creative","campaign/placement","campaign/creative/placement"]` {
		t.Fatalf("unexpected levels %s", got)
	}
	if m["admin"] != true || m["sse_interval_ms"] != 1000.0 || m["max_limit"] != 1000.0 {
		t.Fatalf("unexpected meta %v", m)
	}

	code, body := e.do(t, "GET", "/dashboard/nope.js", "", "")
	if code != 404 || !strings.Contains(string(body), `"error":"not found: /dashboard/nope.js"`) {
		t.Fatalf("unexpected answer to a missing file; got %d %s", code, body)
	}
	if code, _ := e.do(t, "POST", "/", "", "x"); code != 405 {
		t.Fatalf("unexpected status of POST /; got %d; want 405", code)
	}
	// The dashboard's routes are counted under their own names.
	_, metrics := get("/metrics", "")
	for _, want := range []string{`bidpulse_http_requests_total{route="dashboard",code="200"}`, `bidpulse_sse_streams 0`} {
		if !strings.Contains(metrics, want) {
			t.Fatalf("no %s in /metrics", want)
		}
	}
}
