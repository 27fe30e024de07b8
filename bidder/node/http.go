package node

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	"github.com/valyala/fasthttp"

	"github.com/bidpulse/bidpulse/bidder"
	"github.com/bidpulse/bidpulse/bidder/partition"
)

// serveHTTP routes a request: the bid routes to the owner of the campaign's
// partition (here, in process, or forwarded over NATS), the member's own
// routes, and every other route that names a campaign to the unit that
// holds it.
func (n *Node) serveHTTP(ctx *fasthttp.RequestCtx) {
	switch string(ctx.Path()) {
	case "/v1/multiplier":
		n.serveMultiplier(ctx)
	case "/v1/multipliers":
		n.serveBatch(ctx)
	case "/v1/openrtb/multipliers":
		n.serveOpenRTB(ctx)
	case "/", "/index.html":
		// The member's page: its partitions, the members, its bids (from
		// /v1/cluster and /v1/stats, which ask for the read token).
		ctx.Response.Header.Set("Cache-Control", "no-cache")
		ctx.Response.Header.Set("Content-Security-Policy", "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'")
		ctx.SetContentType("text/html; charset=utf-8")
		ctx.SetBody(memberPage)
	case "/v1/cluster":
		if n.auth.CheckRead(ctx) {
			n.serveCluster(ctx)
		}
	case "/healthz":
		writeJSON(ctx, fasthttp.StatusOK, []byte(`{"status":"ok"}`))
	case "/readyz":
		if ok, why := n.isReady(); !ok {
			writeJSON(ctx, fasthttp.StatusServiceUnavailable, append(append([]byte(`{"status":"not ready","reason":`), jsonString(why)...), '}'))
			return
		}
		writeJSON(ctx, fasthttp.StatusOK, []byte(`{"status":"ready"}`))
	case "/metrics":
		if n.auth.CheckRead(ctx) {
			n.serveMetrics(ctx)
		}
	case "/v1/stats":
		if n.auth.CheckRead(ctx) {
			n.serveStats(ctx)
		}
	case "/v1/snapshot":
		if c := ctx.QueryArgs().Peek("campaign"); c != nil {
			n.serveOwned(ctx, c)
			return
		}
		n.serveSnapshot(ctx)
	case "/v1/overrides", "/v1/policies", "/v1/killswitch", "/v1/audit":
		// The control plane is shared through KV: any unit writes it, and
		// every unit of every member sees it.
		if c := ctx.QueryArgs().Peek("campaign"); c != nil {
			n.serveOwned(ctx, c)
			return
		}
		svc := n.anyServing()
		if svc == nil {
			writeError(ctx, fasthttp.StatusServiceUnavailable, "this member serves no partition yet; ask another member")
			return
		}
		svc.ServeHTTP(ctx)
	default:
		if c := ctx.QueryArgs().Peek("campaign"); c != nil {
			n.serveOwned(ctx, c)
			return
		}
		writeError(ctx, fasthttp.StatusNotFound, "not found on a cluster member: the bid routes, /v1/cluster, /v1/stats, /v1/snapshot (the top keys of its partitions), /metrics, /healthz, /readyz, the control routes, and the read routes with a campaign (answered by its partition's owner)")
	}
}

//go:embed web/member.html
var memberPage []byte

// serveOwned answers a route of one campaign from the unit that holds it,
// or says which member does.
func (n *Node) serveOwned(ctx *fasthttp.RequestCtx, campaign []byte) {
	p := partition.Of(n.parts, campaign)
	if svc := n.servingUnit(p); svc != nil {
		svc.ServeHTTP(ctx)
		return
	}
	owner, addr := n.ownerOf(p)
	ctx.Response.Header.Set("Bidpulse-Owner", owner)
	ctx.Response.Header.Set("Bidpulse-Owner-Addr", addr)
	writeError(ctx, fasthttp.StatusMisdirectedRequest, "campaign "+string(campaign)+" is in partition "+strconv.FormatUint(uint64(p), 10)+
		", which member "+owner+" ("+addr+") holds: ask it")
}

// ownerOf returns the primary owner of partition p and its HTTP address, as
// of the last assignment.
func (n *Node) ownerOf(p uint32) (string, string) {
	v := n.view.Load()
	if v == nil || len(v.owners[p]) == 0 {
		return "", ""
	}
	owner := v.owners[p][0]
	for _, m := range v.members {
		if m.Instance == owner {
			return owner, m.Addr
		}
	}
	return owner, ""
}

// serveMultiplier answers GET /v1/multiplier: here when this member serves
// the campaign's partition, else forwarded to its owners.
func (n *Node) serveMultiplier(ctx *fasthttp.RequestCtx) {
	p := partition.Of(n.parts, ctx.QueryArgs().Peek("campaign"))
	if svc := n.servingUnit(p); svc != nil {
		n.stats.local.Inc()
		svc.ServeHTTP(ctx)
		return
	}
	m := nats.NewMsg(bidder.UnitBidSubject(p, "multiplier"))
	m.Data = ctx.QueryArgs().QueryString()
	n.forward(ctx, m, epMultiplier)
}

// Forwarded endpoints, for the metrics.
const (
	epMultiplier = iota
	epMultipliers
	epOpenRTB
	numEndpoints
)

var epNames = [numEndpoints]string{"multiplier", "multipliers", "openrtb"}

// Neutral answers' reasons.
const (
	neutralNoOwner = iota // no responders: the partition has no serving owner
	neutralTimeout        // the owner did not answer within ForwardTimeout
	neutralError          // the request could not be sent, or the answer read
	numNeutral
)

var neutralNames = [numNeutral]string{"no_owner", "timeout", "error"}

// forward sends m to its partition's owners and writes their answer, or the
// neutral multiplier when none comes in time.
func (n *Node) forward(ctx *fasthttp.RequestCtx, m *nats.Msg, ep int) {
	if auth := ctx.Request.Header.Peek("Authorization"); len(auth) > 0 {
		m.Header = nats.Header{bidder.NATSBidAuthHeader: []string{string(auth)}}
	}
	t0 := time.Now()
	resp, err := n.nc.RequestMsg(m, n.opts.ForwardTimeout)
	n.stats.forwardLatency.UpdateDuration(t0)
	n.stats.forwarded[ep].Inc()
	if err != nil {
		reason := neutralReason(err)
		n.stats.neutral[reason].Inc()
		writeNeutral(ctx, reason, ep == epMultipliers, 0)
		return
	}
	code := fasthttp.StatusOK
	if c := resp.Header.Get(micro.ErrorCodeHeader); c != "" {
		if v, err := strconv.Atoi(c); err == nil && v >= 400 && v < 600 {
			code = v
		}
	}
	ctx.Response.Header.Set("Bidpulse-Forwarded", "1")
	writeJSON(ctx, code, resp.Data)
}

// neutralReason classifies a failed forward.
func neutralReason(err error) int {
	switch {
	case errors.Is(err, nats.ErrNoResponders):
		return neutralNoOwner
	case errors.Is(err, nats.ErrTimeout), errors.Is(err, context.DeadlineExceeded):
		return neutralTimeout
	default:
		return neutralError
	}
}

// neutralAnswer is the answer of a bid whose owner could not be asked in
// time: multiplier 1, as an unknown key's, marked neutral with the reason.
func neutralAnswer(dst []byte, reason int) []byte {
	dst = append(dst, `{"multiplier":1,"level":"none","window":"1h","ctr":0,"cvr":0,"impressions":0,"clicks":0,"conversions":0,"neutral":"`...)
	dst = append(dst, neutralNames[reason]...)
	return append(dst, `"}`...)
}

// writeNeutral writes the neutral answer: one, or items of them for a
// batch (a batch of unknown length: one item per request item is written
// by the batch's own path; here only the single answer).
func writeNeutral(ctx *fasthttp.RequestCtx, reason int, batch bool, items int) {
	ctx.Response.Header.Set("Bidpulse-Neutral", neutralNames[reason])
	if !batch {
		writeJSON(ctx, fasthttp.StatusOK, neutralAnswer(nil, reason))
		return
	}
	b := []byte{'['}
	for i := range items {
		if i > 0 {
			b = append(b, ',')
		}
		b = neutralAnswer(b, reason)
	}
	writeJSON(ctx, fasthttp.StatusOK, append(b, ']'))
}

func writeJSON(ctx *fasthttp.RequestCtx, code int, body []byte) {
	ctx.SetStatusCode(code)
	ctx.Response.Header.SetContentType("application/json")
	ctx.SetBody(body)
}

func writeError(ctx *fasthttp.RequestCtx, code int, msg string) {
	writeJSON(ctx, code, append(append([]byte(`{"error":`), jsonString(msg)...), '}'))
}

func jsonString(s string) []byte {
	b, _ := json.Marshal(s)
	return b
}
