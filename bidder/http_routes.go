package bidder

import (
	"github.com/valyala/fasthttp"

	"github.com/bidpulse/bidpulse/windows"
)

// The router's table: for every route, the methods it answers and, per
// method, the query parameters it takes, the body it accepts and who may
// call it. serveHTTP checks a request against it before any handler runs,
// so a mistyped parameter is a 400 on every route, whatever its handler
// reads, and a body is refused before it is read (headerReceived).

// authClass says who may call a route's method.
type authClass uint8

const (
	// authOpen: anyone who reaches the port (bids, health, the dashboard's
	// static files).
	authOpen authClass = iota
	// authRead: the read token, or an admin token, when Options.ReadToken
	// is set (http_auth.go); anyone otherwise.
	authRead
	// authAdmin: an admin token, checked by the handler itself
	// (checkAdmin), so the router leaves it alone.
	authAdmin
)

// methodRule is what one method of a route accepts.
type methodRule struct {
	method string   // GET (which also admits HEAD), POST, PUT or DELETE
	params []string // the query parameters it takes, each at most once
	body   int      // the largest body, in bytes; 0: none
	auth   authClass
}

// routeRule is one route of the table.
type routeRule struct {
	methods []methodRule
	// allow is the Allow header of a 405: the methods, comma-separated.
	allow string
	// maxHeaderBytes bounds the request's header block (the request line
	// excluded, so long query strings are not concerned); 0: only the read
	// buffer (Options.HTTPMaxHeaderBytes) bounds it.
	maxHeaderBytes int
}

const (
	// maxBodySize bounds the body of POST /v1/multipliers (1000 items of
	// the documented shape fit in well under it).
	maxBodySize = 1 << 20
	// maxAdminBodySize bounds the body of the admin PUTs: an override, a
	// kill switch, a campaign policy.
	maxAdminBodySize = 64 << 10
	// maxBidHeaderBytes bounds the header block of the bid routes: an ad
	// server sends a handful of short headers.
	maxBidHeaderBytes = 4 << 10
)

var (
	dimParams      = windows.DimNames[:]
	bidParams      = append(windows.DimNames[:len(windows.DimNames):len(windows.DimNames)], "explain")
	snapshotParams = []string{"level", "window", "sort", "limit", "campaign", "min_impressions"}
	campaignParam  = []string{"campaign"}
	limitParam     = []string{"limit"}
	openRTBParams  = []string{"explain", "format"}
)

// routeRules is the table, indexed by route.
var routeRules = [numRoutes]routeRule{
	routeMultiplier: {
		methods:        []methodRule{{method: "GET", params: bidParams, auth: authOpen}},
		maxHeaderBytes: maxBidHeaderBytes,
	},
	routeMultipliers: {
		methods:        []methodRule{{method: "POST", body: maxBodySize, auth: authOpen}},
		maxHeaderBytes: maxBidHeaderBytes,
	},
	routeOpenRTB: {
		methods:        []methodRule{{method: "POST", params: openRTBParams, body: maxOpenRTBBodySize}},
		maxHeaderBytes: maxBidHeaderBytes,
	},
	routeRates:          {methods: []methodRule{{method: "GET", params: dimParams, auth: authRead}}},
	routeSnapshot:       {methods: []methodRule{{method: "GET", params: snapshotParams, auth: authRead}}},
	routeSnapshotStream: {methods: []methodRule{{method: "GET", params: snapshotParams, auth: authRead}}},
	routeStats:          {methods: []methodRule{{method: "GET", auth: authRead}}},
	routeOverrides: {methods: []methodRule{
		{method: "GET", auth: authAdmin},
		{method: "PUT", body: maxAdminBodySize, auth: authAdmin},
		{method: "DELETE", params: dimParams, auth: authAdmin},
	}},
	routePolicies: {methods: []methodRule{
		{method: "GET", params: campaignParam, auth: authRead},
		{method: "PUT", body: maxAdminBodySize, auth: authAdmin},
		{method: "DELETE", params: campaignParam, auth: authAdmin},
	}},
	routeKillSwitch: {methods: []methodRule{
		{method: "GET", auth: authAdmin},
		{method: "PUT", body: maxAdminBodySize, auth: authAdmin},
	}},
	routeAudit:        {methods: []methodRule{{method: "GET", params: limitParam, auth: authAdmin}}},
	routeMetrics:      {methods: []methodRule{{method: "GET", auth: authRead}}},
	routeDebugRuntime: {methods: []methodRule{{method: "GET", auth: authRead}}},
	routeHealthz:      {methods: []methodRule{{method: "GET"}}},
	routeReadyz:       {methods: []methodRule{{method: "GET"}}},
	// The page keeps its query in its URL (the snapshot's parameters), so
	// a link reopens the same view; its files and dashboard/meta take none
	// (dashboardPageRule). Every one is open: the data the page shows comes
	// from the read endpoints, with the token typed into the page.
	routeDashboard: {methods: []methodRule{{method: "GET"}}},
	routeOther:     {},
}

// dashboardPageRule is the rule of the dashboard page itself (GET / and
// /index.html), which takes the snapshot's parameters.
var dashboardPageRule = methodRule{method: "GET", params: snapshotParams}

func init() {
	for r := range routeRules {
		rr := &routeRules[r]
		for i, m := range rr.methods {
			if i > 0 {
				rr.allow += ", "
			}
			rr.allow += m.method
			if len(m.params) > 16 {
				panic("BUG: checkParams tracks at most 16 parameters per route")
			}
		}
	}
}

// routeOf returns the route of a request path (the path as fasthttp
// normalised it, or a raw one: anything unusual is routeOther).
func routeOf(path []byte) int {
	switch string(path) {
	case "/v1/multiplier":
		return routeMultiplier
	case "/v1/multipliers":
		return routeMultipliers
	case "/v1/openrtb/multipliers":
		return routeOpenRTB
	case "/v1/rates":
		return routeRates
	case "/v1/snapshot":
		return routeSnapshot
	case "/v1/snapshot/stream":
		return routeSnapshotStream
	case "/v1/stats":
		return routeStats
	case "/v1/overrides":
		return routeOverrides
	case "/v1/policies":
		return routePolicies
	case "/v1/killswitch":
		return routeKillSwitch
	case "/v1/audit":
		return routeAudit
	case "/metrics":
		return routeMetrics
	case runtimeStatsPath:
		return routeDebugRuntime
	case "/healthz":
		return routeHealthz
	case "/readyz":
		return routeReadyz
	}
	if isDashboardPath(path) {
		return routeDashboard
	}
	return routeOther
}

// methodRuleOf returns the rule of method on route (HEAD as GET), or nil
// when the route does not answer it.
func methodRuleOf(route int, path, method []byte) *methodRule {
	get := string(method) == "GET" || string(method) == "HEAD"
	if route == routeDashboard && get && (string(path) == "/" || string(path) == "/index.html") {
		return &dashboardPageRule
	}
	rr := &routeRules[route]
	for i := range rr.methods {
		if m := rr.methods[i].method; string(method) == m || (get && m == "GET") {
			return &rr.methods[i]
		}
	}
	return nil
}

// checkParams answers 400 and returns false when the query has a parameter
// that m does not take, or one twice. It allocates only on the error path,
// so the bid path stays allocation-free.
func checkParams(ctx *fasthttp.RequestCtx, m *methodRule) bool {
	var seen uint16
	for k := range ctx.QueryArgs().All() {
		i := 0
		for i < len(m.params) && string(k) != m.params[i] {
			i++
		}
		if i == len(m.params) {
			writeError(ctx, fasthttp.StatusBadRequest, unknownParamMsg(ctx, k, m))
			return false
		}
		if seen&(1<<i) != 0 {
			writeError(ctx, fasthttp.StatusBadRequest, "duplicate parameter "+string(k))
			return false
		}
		seen |= 1 << i
	}
	return true
}

func unknownParamMsg(ctx *fasthttp.RequestCtx, k []byte, m *methodRule) string {
	msg := "unknown parameter " + string(k)
	if len(m.params) == 0 {
		return msg + "; " + string(ctx.Method()) + " " + string(ctx.Path()) + " takes no query parameters"
	}
	return msg + "; allowed: " + joinNames(m.params)
}
