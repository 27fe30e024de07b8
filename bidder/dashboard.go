package bidder

import (
	"bytes"
	"strconv"

	"github.com/valyala/fasthttp"

	"github.com/bidpulse/bidpulse/bidder/web"
	"github.com/bidpulse/bidpulse/windows"
)

// The operator dashboard: GET / serves the page, /dashboard/* its script,
// style sheet and the service facts it needs (dashboard/meta). The page
// reads everything else from the public API: /v1/snapshot/stream,
// /readyz, /v1/multiplier, /v1/rates and, with the admin token an operator
// types in, /v1/overrides. With a read token configured, the page and
// these files stay open (they hold no data) and the operator types the
// read or admin token in to see the data.

const dashboardPrefix = "/dashboard/"

// dashboardCSP keeps the page to its own origin: no inline script or
// style, no third-party fetch, no framing.
const dashboardCSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// isDashboardPath reports whether path belongs to the dashboard.
func isDashboardPath(path []byte) bool {
	return string(path) == "/" || string(path) == "/index.html" || bytes.HasPrefix(path, []byte(dashboardPrefix))
}

// handleDashboard serves the page, its files and dashboard/meta.
func (s *Service) handleDashboard(ctx *fasthttp.RequestCtx, path []byte) {
	name := ""
	switch p := string(path); p {
	case "/", "/index.html":
		name = "index.html"
	case dashboardPrefix + "meta":
		s.handleDashboardMeta(ctx)
		return
	default:
		name = p[len(dashboardPrefix):]
		if name == "index.html" {
			name = ""
		}
	}
	f, ok := web.Lookup(name)
	if !ok {
		writeError(ctx, fasthttp.StatusNotFound, "not found: "+string(path))
		return
	}
	h := &ctx.Response.Header
	h.Set("Cache-Control", "no-cache")
	h.Set("ETag", f.ETag)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	if name == "index.html" {
		h.Set("Content-Security-Policy", dashboardCSP)
		h.Set("X-Frame-Options", "DENY")
	}
	ctx.SetContentType(f.ContentType)
	if string(ctx.Request.Header.Peek("If-None-Match")) == f.ETag {
		ctx.SetStatusCode(fasthttp.StatusNotModified)
		return
	}
	ctx.SetStatusCode(fasthttp.StatusOK)
	ctx.Response.SetBodyRaw(f.Body)
}

// GET /dashboard/meta: what the page's selectors offer and how the
// service is set up.
func (s *Service) handleDashboardMeta(ctx *fasthttp.RequestCtx) {
	b := append(make([]byte, 0, 512), `{"instance":`...)
	b = appendStr(b, s.opts.Instance)
	b = append(b, `,"levels":[`...)
	for i, n := range s.rollups.Names() {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendStr(b, n)
	}
	b = append(b, `],"dims":[`...)
	for i, n := range windows.DimNames {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendStr(b, n)
	}
	b = append(b, `],"windows":[`...)
	for i, n := range windows.SpanNames {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendStr(b, n)
	}
	b = append(b, `],"sorts":[`...)
	for i, n := range sortNames {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendStr(b, n)
	}
	b = append(b, `],"policy":{"name":"performance","window":`...)
	b = appendStr(b, s.control.Policies().Default.Performance.Window.String())
	b = append(b, `,"min":`...)
	b = appendFloat(b, s.control.Policies().Default.Min)
	b = append(b, `,"max":`...)
	b = appendFloat(b, s.control.Policies().Default.Max)
	b = append(b, `},"admin":`...)
	b = strconv.AppendBool(b, len(s.adminTokens) > 0)
	b = append(b, `,"read_token":`...)
	b = strconv.AppendBool(b, len(s.readTokens) > 0)
	b = append(b, `,"sse_interval_ms":`...)
	b = strconv.AppendInt(b, s.sse.interval.Milliseconds(), 10)
	b = append(b, `,"max_streams":`...)
	b = strconv.AppendInt(b, int64(s.sse.maxStreams), 10)
	b = append(b, `,"max_limit":`...)
	b = strconv.AppendInt(b, maxSnapshotLimit, 10)
	b = append(b, `,"default_min_impressions":`...)
	b = strconv.AppendInt(b, defaultMinImpr, 10)
	b = append(b, '}')
	writeJSON(ctx, fasthttp.StatusOK, b)
}
