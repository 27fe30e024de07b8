package bidder

import (
	"errors"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/valyala/fasthttp"
)

const (
	// maxBodySize bounds every request body (POST /v1/multipliers, PUT
	// /v1/overrides); larger bodies get a JSON 413.
	maxBodySize = 1 << 20
	// readBufferSize bounds request headers, long query strings included.
	readBufferSize = 64 << 10
)

func (s *Service) newHTTPServer() *fasthttp.Server {
	return &fasthttp.Server{
		Handler:               s.serveHTTP,
		ErrorHandler:          s.serveHTTPError,
		Name:                  "bidpulse",
		ReadBufferSize:        readBufferSize,
		MaxRequestBodySize:    maxBodySize,
		ReadTimeout:           10 * time.Second,
		WriteTimeout:          10 * time.Second,
		IdleTimeout:           2 * time.Minute,
		NoDefaultServerHeader: false,
		NoDefaultContentType:  true,
		CloseOnShutdown:       true,
		Logger:                fasthttpLogger{s},
	}
}

type fasthttpLogger struct{ s *Service }

func (l fasthttpLogger) Printf(format string, args ...any) {
	l.s.log.Debug().Msgf(format, args...)
}

// serveHTTPError answers requests fasthttp could not parse, as JSON.
func (s *Service) serveHTTPError(ctx *fasthttp.RequestCtx, err error) {
	var small *fasthttp.ErrSmallBuffer
	switch {
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		writeError(ctx, fasthttp.StatusRequestEntityTooLarge, "request body too large: the limit is 1 MiB")
	case errors.As(err, &small):
		writeError(ctx, fasthttp.StatusRequestHeaderFieldsTooLarge, "request headers or query string too large: the limit is 64 KiB")
	default:
		var te interface{ Timeout() bool }
		if errors.As(err, &te) && te.Timeout() {
			writeError(ctx, fasthttp.StatusRequestTimeout, "request timeout")
			return
		}
		writeError(ctx, fasthttp.StatusBadRequest, "cannot parse request: "+err.Error())
	}
	s.http.count(routeOther, ctx.Response.StatusCode())
}

func (s *Service) serveHTTP(ctx *fasthttp.RequestCtx) {
	path := ctx.Path()
	route := routeOther
	switch string(path) {
	case "/v1/multiplier":
		route = routeMultiplier
		if s.allow(ctx, "GET") {
			s.handleMultiplier(ctx)
			s.observeBid(ctx.Time())
		}
	case "/v1/multipliers":
		route = routeMultipliers
		if s.allow(ctx, "POST") {
			s.handleMultipliers(ctx)
			s.observeBatch(ctx.Time())
		}
	case "/v1/rates":
		route = routeRates
		if s.allow(ctx, "GET") {
			s.handleRates(ctx)
		}
	case "/v1/snapshot":
		route = routeSnapshot
		if s.allow(ctx, "GET") {
			s.handleSnapshot(ctx)
		}
	case "/v1/snapshot/stream":
		route = routeSnapshotStream
		if s.allow(ctx, "GET") {
			s.handleSnapshotStream(ctx)
		}
	case "/v1/stats":
		route = routeStats
		if s.allow(ctx, "GET") {
			s.handleStats(ctx)
		}
	case "/v1/overrides":
		route = routeOverrides
		if s.allow(ctx, "GET", "PUT", "DELETE") {
			s.handleOverrides(ctx)
		}
	case "/v1/policies":
		route = routePolicies
		if s.allow(ctx, "GET", "PUT", "DELETE") {
			s.handlePolicies(ctx)
		}
	case "/v1/killswitch":
		route = routeKillSwitch
		if s.allow(ctx, "GET", "PUT") {
			s.handleKillSwitch(ctx)
		}
	case "/v1/audit":
		route = routeAudit
		if s.allow(ctx, "GET") {
			s.handleAudit(ctx)
		}
	case "/metrics":
		route = routeMetrics
		if s.allow(ctx, "GET") {
			ctx.SetContentType("text/plain; version=0.0.4; charset=utf-8")
			sc := getMetricsScrape()
			s.metrics.WritePrometheus(sc)
			// The process's and the Go runtime's series (memory, GC,
			// goroutines, CPU): process-wide, the same for every
			// service of a process.
			metrics.WriteProcessMetrics(sc)
			// Every family's HELP line gets its text (metrics_help.go).
			ctx.Write(sc.described())
			putMetricsScrape(sc)
		}
	case runtimeStatsPath:
		s.serveRuntimeStats(ctx)
	case "/healthz":
		route = routeHealthz
		if s.allow(ctx, "GET") {
			writeJSON(ctx, fasthttp.StatusOK, append(make([]byte, 0, 512), `{"status":"ok"}`...))
		}
	case "/readyz":
		route = routeReadyz
		if s.allow(ctx, "GET") {
			s.handleReadyz(ctx)
		}
	default:
		if isDashboardPath(path) {
			route = routeDashboard
			if s.allow(ctx, "GET") {
				s.handleDashboard(ctx, path)
			}
			break
		}
		writeError(ctx, fasthttp.StatusNotFound, "not found: "+string(path))
	}
	s.http.count(route, ctx.Response.StatusCode())
}

// allow answers 405 unless the request's method is one of methods (HEAD is
// allowed where GET is).
func (s *Service) allow(ctx *fasthttp.RequestCtx, methods ...string) bool {
	m := ctx.Method()
	for _, want := range methods {
		if string(m) == want || (want == "GET" && string(m) == "HEAD") {
			return true
		}
	}
	allowed := ""
	for i, want := range methods {
		if i > 0 {
			allowed += ", "
		}
		allowed += want
	}
	ctx.Response.Header.Set("Allow", allowed)
	writeError(ctx, fasthttp.StatusMethodNotAllowed, "method "+string(m)+" not allowed; use "+allowed)
	return false
}

// writeJSON sends body as the JSON answer with the given status.
func writeJSON(ctx *fasthttp.RequestCtx, status int, body []byte) {
	ctx.SetStatusCode(status)
	ctx.SetContentType("application/json")
	ctx.SetBody(body)
}

// writeError sends {"error":msg} with the given status.
func writeError(ctx *fasthttp.RequestCtx, status int, msg string) {
	b := append(make([]byte, 0, 512), `{"error":`...)
	b = appendStr(b, msg)
	b = append(b, '}')
	writeJSON(ctx, status, b)
}

func (s *Service) handleReadyz(ctx *fasthttp.RequestCtx) {
	b := []byte(`{"ready":`)
	status := fasthttp.StatusOK
	if s.isReady() {
		b = append(b, "true"...)
	} else {
		status = fasthttp.StatusServiceUnavailable
		b = append(b, `false,"reason":`...)
		switch {
		case s.stopping.Load():
			b = appendStr(b, "shutting down")
		case s.leaseLost.Load():
			why, _ := s.leaseLostWhy.Load().(string)
			b = appendStr(b, "not consuming: "+why)
		case s.ingest.StalledSince() != 0:
			b = appendStr(b, "ingest stalled: the stream holds messages past the last applied one and none was applied since "+
				time.UnixMilli(s.ingest.StalledSince()).UTC().Format(time.RFC3339))
		case s.ingest.JetStream() != nil && s.ready.Load():
			b = appendStr(b, "catching up with the stream")
		default:
			b = appendStr(b, "starting")
		}
	}
	if st, ok := s.ingest.Stream(); ok {
		b = append(b, `,"replay":`...)
		b = appendReplay(b, st)
	}
	b = s.appendDLQ(append(b, `,"dlq":`...))
	b = append(b, `,"nats":{"connected":`...)
	connected := s.nc != nil && s.nc.IsConnected()
	if connected {
		b = append(b, "true"...)
	} else {
		b = append(b, "false"...)
	}
	b = append(b, `,"mode":`...)
	b = appendStr(b, s.Mode())
	b = append(b, "}}"...)
	writeJSON(ctx, status, b)
}
