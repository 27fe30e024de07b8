package bidder

import (
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/valyala/fasthttp"
)

// Defaults of the HTTP options (the serve flags show them too).
const (
	DefaultHTTPMaxConns       = 8192
	DefaultHTTPMaxConnsPerIP  = 1024
	DefaultHTTPReadTimeout    = 10 * time.Second
	DefaultHTTPIdleTimeout    = time.Minute
	DefaultHTTPMaxHeaderBytes = 16 << 10
	DefaultSnapshotScanRate   = 1_000_000

	minHTTPMaxHeaderBytes = 4 << 10
)

// httpDefaults sets the HTTP fields of o left zero to their defaults, or
// returns an error naming the first invalid one.
func (o *Options) httpDefaults() error {
	if o.HTTPMaxConns == 0 {
		o.HTTPMaxConns = DefaultHTTPMaxConns
	}
	if o.HTTPMaxConnsPerIP == 0 {
		o.HTTPMaxConnsPerIP = DefaultHTTPMaxConnsPerIP
	}
	if o.HTTPReadTimeout == 0 {
		o.HTTPReadTimeout = DefaultHTTPReadTimeout
	}
	if o.HTTPReadTimeout < 0 {
		return fmt.Errorf("invalid http-read-timeout %s: must be positive", o.HTTPReadTimeout)
	}
	if o.HTTPIdleTimeout == 0 {
		o.HTTPIdleTimeout = DefaultHTTPIdleTimeout
	}
	if o.HTTPIdleTimeout < 0 {
		return fmt.Errorf("invalid http-idle-timeout %s: must be positive", o.HTTPIdleTimeout)
	}
	if o.HTTPMaxHeaderBytes == 0 {
		o.HTTPMaxHeaderBytes = DefaultHTTPMaxHeaderBytes
	}
	if o.HTTPMaxHeaderBytes < minHTTPMaxHeaderBytes {
		return fmt.Errorf("invalid http-max-header-bytes %d: must be at least %d (4 KiB)", o.HTTPMaxHeaderBytes, minHTTPMaxHeaderBytes)
	}
	if o.SnapshotScanRate == 0 {
		o.SnapshotScanRate = DefaultSnapshotScanRate
	}
	return nil
}

func (s *Service) newHTTPServer() *fasthttp.Server {
	o := &s.opts
	concurrency := 0 // fasthttp's default, 256 Ki connections
	if o.HTTPMaxConns > 0 {
		// The listener refuses past HTTPMaxConns with a JSON answer; a
		// margin keeps fasthttp's own plain-text refusal out of reach while
		// closed connections are still being counted down.
		concurrency = o.HTTPMaxConns + o.HTTPMaxConns/8 + 16
	}
	return &fasthttp.Server{
		Handler:               s.serveHTTP,
		ErrorHandler:          s.serveHTTPError,
		HeaderReceived:        s.headerReceived,
		ExpectHandler:         s.expectContinue,
		Name:                  "bidpulse",
		Concurrency:           concurrency,
		ReadBufferSize:        o.HTTPMaxHeaderBytes,
		MaxRequestBodySize:    maxBodySize,
		ReadTimeout:           o.HTTPReadTimeout,
		WriteTimeout:          10 * time.Second,
		IdleTimeout:           o.HTTPIdleTimeout,
		NoDefaultServerHeader: false,
		NoDefaultContentType:  true,
		CloseOnShutdown:       true,
		// Multipart bodies are not part of the API: never parse one.
		DisablePreParseMultipartForm: true,
		SecureErrorLogMessage:        true,
		Logger:                       fasthttpLogger{s},
	}
}

type fasthttpLogger struct{ s *Service }

func (l fasthttpLogger) Printf(format string, args ...any) {
	l.s.log.Debug().Msgf(format, args...)
}

// serveHTTPError answers requests fasthttp could not read or parse, as
// JSON, and closes their connection (fasthttp does).
func (s *Service) serveHTTPError(ctx *fasthttp.RequestCtx, err error) {
	var small *fasthttp.ErrSmallBuffer
	g := s.guard
	switch {
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		h := &ctx.Request.Header
		if h.ContentLength() <= 0 {
			// A body without a Content-Length: a chunked one, past the 1
			// byte headerReceived gives it (fasthttp has reset the header
			// by now, so its route is not known).
			g.refuse(ctx, refusedTransferEncoding, fasthttp.StatusLengthRequired, msgTransferEncoding)
			break
		}
		path := uriPath(h.RequestURI())
		limit := bodyLimitOf(h)
		if route := routeOf(path); limit == 0 && route != routeOther && methodRuleOf(route, path, h.Method()) == nil {
			// A method the route does not answer: say that, not the size.
			rr := &routeRules[route]
			ctx.Response.Header.Set("Allow", rr.allow)
			g.refuse(ctx, refusedBody, fasthttp.StatusMethodNotAllowed, "method "+string(h.Method())+" not allowed; use "+rr.allow)
			break
		}
		if limit == 0 {
			g.refuse(ctx, refusedBody, fasthttp.StatusRequestEntityTooLarge, "request body too large: "+string(h.Method())+" "+string(path)+" takes no body")
			break
		}
		g.refuse(ctx, refusedBodyTooLarge, fasthttp.StatusRequestEntityTooLarge,
			"request body too large: the limit of "+string(h.Method())+" "+string(path)+" is "+sizeName(limit))
	case errors.As(err, &small):
		g.refuse(ctx, refusedHeadersTooLarge, fasthttp.StatusRequestHeaderFieldsTooLarge,
			"request headers or query string too large: the limit is "+sizeName(g.maxHeaderBytes))
	default:
		var te interface{ Timeout() bool }
		if errors.As(err, &te) && te.Timeout() {
			g.refuse(ctx, refusedTimeout, fasthttp.StatusRequestTimeout, "request timeout: the request was not received within "+s.opts.HTTPReadTimeout.String())
			break
		}
		g.refuse(ctx, refusedUnparsable, fasthttp.StatusBadRequest, "cannot parse request: "+err.Error())
	}
	s.http.count(routeOther, ctx.Response.StatusCode())
}

// sizeName writes a byte size as the docs do: 1 MiB, 64 KiB, 100 bytes.
func sizeName(n int) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return strconv.Itoa(n>>20) + " MiB"
	case n >= 1<<10 && n%(1<<10) == 0:
		return strconv.Itoa(n>>10) + " KiB"
	}
	return strconv.Itoa(n) + " bytes"
}

// serveHTTP is the router: it finds the request's route in routeRules,
// checks the request against it (checkRequest: framing and sizes; the
// method; checkParams: the query parameters; the read token), and only then
// calls the route's handler.
func (s *Service) serveHTTP(ctx *fasthttp.RequestCtx) {
	path := ctx.Path()
	route := routeOf(path)
	m := methodRuleOf(route, path, ctx.Method())
	if s.checkRequest(ctx, route, m) && s.routeAllowed(ctx, route, m) {
		if s.opts.routeHook != nil {
			s.opts.routeHook(route)
		}
		s.dispatch(ctx, route, path)
	}
	s.http.count(route, ctx.Response.StatusCode())
}

// routeAllowed answers 404, 405, 400 (a query parameter the route does not
// take) or 401 (the read token) and returns false, or returns true.
func (s *Service) routeAllowed(ctx *fasthttp.RequestCtx, route int, m *methodRule) bool {
	if route == routeOther {
		writeError(ctx, fasthttp.StatusNotFound, "not found: "+string(ctx.Path()))
		return false
	}
	if m == nil {
		rr := &routeRules[route]
		ctx.Response.Header.Set("Allow", rr.allow)
		writeError(ctx, fasthttp.StatusMethodNotAllowed, "method "+string(ctx.Method())+" not allowed; use "+rr.allow)
		return false
	}
	if !checkParams(ctx, m) {
		return false
	}
	if m.auth == authRead {
		return s.checkRead(ctx)
	}
	if (route == routeMultiplier || route == routeOpenRTB) && len(s.readTokens) > 0 {
		// explain carries the policy's inputs (targets, budgets): it needs
		// the read token. An invalid value is the handler's 400.
		if v := ctx.QueryArgs().Peek("explain"); v != nil {
			if on, ok := parseBool(v); ok && on {
				return s.checkRead(ctx)
			}
		}
	}
	return true
}

// dispatch calls the handler of route.
func (s *Service) dispatch(ctx *fasthttp.RequestCtx, route int, path []byte) {
	switch route {
	case routeMultiplier:
		s.handleMultiplier(ctx)
		s.observeBid(ctx.Time())
	case routeMultipliers:
		s.handleMultipliers(ctx)
		s.observeBatch(ctx.Time())
	case routeOpenRTB:
		s.handleOpenRTB(ctx)
		s.ortb.duration.Update(time.Since(ctx.Time()).Seconds())
	case routeRates:
		s.handleRates(ctx)
	case routeSnapshot:
		s.handleSnapshot(ctx)
	case routeSnapshotStream:
		s.handleSnapshotStream(ctx)
	case routeStats:
		s.handleStats(ctx)
	case routeOverrides:
		s.handleOverrides(ctx)
	case routePolicies:
		s.handlePolicies(ctx)
	case routeKillSwitch:
		s.handleKillSwitch(ctx)
	case routeAudit:
		s.handleAudit(ctx)
	case routeMetrics:
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
	case routeDebugRuntime:
		s.serveRuntimeStats(ctx)
	case routeHealthz:
		writeJSON(ctx, fasthttp.StatusOK, append(make([]byte, 0, 512), `{"status":"ok"}`...))
	case routeReadyz:
		s.handleReadyz(ctx)
	case routeDashboard:
		s.handleDashboard(ctx, path)
	default:
		panic("BUG: no handler for route " + routeNames[route])
	}
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
