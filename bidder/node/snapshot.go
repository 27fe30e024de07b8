package node

import (
	"cmp"
	"encoding/json"
	"slices"
	"strconv"

	"github.com/valyala/fasthttp"

	"github.com/bidpulse/bidpulse/bidder"
)

// snapEntry is one key of a unit's /v1/snapshot answer.
type snapEntry struct {
	Key         json.RawMessage `json:"key"`
	Impressions uint64          `json:"impressions"`
	Clicks      uint64          `json:"clicks"`
	Conversions uint64          `json:"conversions"`
	CTR         float64         `json:"ctr"`
	CVR         float64         `json:"cvr"`
	Multiplier  float64         `json:"multiplier"`
}

// snapAnswer is a unit's /v1/snapshot answer.
type snapAnswer struct {
	Level  string      `json:"level"`
	Window string      `json:"window"`
	Sort   string      `json:"sort"`
	Keys   []snapEntry `json:"keys"`
}

// serveSnapshot answers GET /v1/snapshot without a campaign: the top keys
// of the partitions this member serves, each unit asked the same query (its
// parameters, checks and scan budget are a single instance's) and their
// answers merged in the query's order and cut to its limit. A member's
// answer is its share of the cluster's: the cluster's top keys are the top
// of the members' answers merged. A unit's refusal (a bad query: 400; its
// scan budget spent: 503 with Retry-After) is the answer.
func (n *Node) serveSnapshot(ctx *fasthttp.RequestCtx) {
	if !n.auth.CheckRead(ctx) {
		return
	}
	limit := 100
	if vs := ctx.QueryArgs().PeekMulti("limit"); len(vs) > 0 {
		// The last, as the units read it.
		if k, err := strconv.Atoi(string(vs[len(vs)-1])); err == nil && k >= 1 && k <= 1000 {
			limit = k
		} // else the units refuse it
	}
	uri := "/v1/snapshot?" + string(ctx.QueryArgs().QueryString())
	auth := ctx.Request.Header.Peek("Authorization")
	out := snapAnswer{Keys: []snapEntry{}}
	partitions := []uint32{}
	for p, u := range *n.serving.Load() {
		var svc *bidder.Service
		if u != nil {
			svc = u.svc.Load()
		}
		if svc == nil {
			continue
		}
		var rc fasthttp.RequestCtx
		var req fasthttp.Request
		req.SetRequestURI(uri)
		if len(auth) > 0 {
			req.Header.SetBytesV("Authorization", auth)
		}
		rc.Init(&req, nil, nil)
		svc.ServeHTTP(&rc)
		if code := rc.Response.StatusCode(); code != fasthttp.StatusOK {
			if ra := rc.Response.Header.Peek("Retry-After"); len(ra) > 0 {
				ctx.Response.Header.SetBytesV("Retry-After", ra)
			}
			writeJSON(ctx, code, append([]byte(nil), rc.Response.Body()...))
			return
		}
		var a snapAnswer
		if err := json.Unmarshal(rc.Response.Body(), &a); err != nil {
			writeError(ctx, fasthttp.StatusInternalServerError, "partition "+strconv.Itoa(p)+": "+err.Error())
			return
		}
		out.Level, out.Window, out.Sort = a.Level, a.Window, a.Sort
		out.Keys = append(out.Keys, a.Keys...)
		partitions = append(partitions, uint32(p))
	}
	if len(partitions) == 0 {
		writeError(ctx, fasthttp.StatusServiceUnavailable, "this member serves no partition yet; ask another member")
		return
	}
	by := func(e *snapEntry) float64 {
		switch out.Sort {
		case "clicks":
			return float64(e.Clicks)
		case "conversions":
			return float64(e.Conversions)
		case "ctr":
			return e.CTR
		case "cvr":
			return e.CVR
		case "multiplier":
			return e.Multiplier
		}
		return float64(e.Impressions)
	}
	// By the metric only, and stable: keys that tie keep their unit's
	// order (its own tie-break), so the cut is the top of the units' tops.
	slices.SortStableFunc(out.Keys, func(a, b snapEntry) int { return cmp.Compare(by(&b), by(&a)) })
	out.Keys = out.Keys[:min(limit, len(out.Keys))]
	body, _ := json.Marshal(struct {
		snapAnswer
		Member     string   `json:"member"`
		Partitions []uint32 `json:"partitions"`
	}{out, n.opts.Member, partitions})
	writeJSON(ctx, fasthttp.StatusOK, body)
}
