package node

import (
	"strconv"
	"sync"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fastjson"

	"github.com/bidpulse/bidpulse/bidder"
	"github.com/bidpulse/bidpulse/bidder/partition"
)

// openRTBPart is the answer of one partition's owner to the whole request.
type openRTBPart struct {
	p       uint32
	code    int
	body    []byte
	neutral int // -1: answered
}

// serveOpenRTB answers POST /v1/openrtb/multipliers. The candidates' campaigns name the
// partitions involved. One partition (the usual case: a bidder's candidates of one
// advertiser, or a single candidate): the request goes to its owner, here or forwarded, and
// its answer is the answer. Several: the whole request goes to each owner (in parallel), each
// answers every candidate, and each candidate's answer is taken from the owner of its
// campaign's partition, found from the campaign in the answer itself. A partition whose owner
// does not answer in time has its candidates answered neutrally (`"neutral"` with the reason,
// as tmax's). format=prebid answers by bidder and deal, not by candidate: with several
// partitions it is refused (501).
func (n *Node) serveOpenRTB(ctx *fasthttp.RequestCtx) {
	parts := n.openRTBPartitions(ctx.PostBody())
	if len(parts) <= 1 {
		p := partition.Of(n.parts, nil)
		if len(parts) == 1 {
			p = parts[0]
		}
		if svc := n.servingUnit(p); svc != nil {
			n.stats.local.Inc()
			svc.ServeHTTP(ctx)
			return
		}
		m := nats.NewMsg(bidder.UnitBidSubject(p, "openrtb"))
		m.Data = ctx.PostBody()
		if q := ctx.QueryArgs().QueryString(); len(q) > 0 {
			m.Header = nats.Header{bidder.NATSBidQueryHeader: []string{string(q)}}
		}
		n.forwardOpenRTB(ctx, m)
		return
	}
	if string(ctx.QueryArgs().Peek("format")) == "prebid" {
		writeError(ctx, fasthttp.StatusNotImplemented, "format=prebid with candidates of campaigns in several partitions is not merged by a cluster member: send each partition's candidates apart, or format=bidpulse")
		return
	}
	answers := make([]openRTBPart, len(parts))
	var wg sync.WaitGroup
	query, auth := ctx.QueryArgs().QueryString(), ctx.Request.Header.Peek("Authorization")
	for i, p := range parts {
		answers[i] = openRTBPart{p: p, neutral: -1}
		a := &answers[i]
		if svc := n.servingUnit(p); svc != nil {
			n.stats.local.Inc()
			a.code, a.body = askLocalRaw(svc, "/v1/openrtb/multipliers", ctx.PostBody(), query, auth)
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			m := nats.NewMsg(bidder.UnitBidSubject(p, "openrtb"))
			m.Data = ctx.PostBody()
			setBidHeaders(m, query, auth)
			n.stats.forwarded[epOpenRTB].Inc()
			resp, err := n.nc.RequestMsg(m, n.opts.ForwardTimeout)
			if err != nil {
				a.neutral = neutralReason(err)
				n.stats.neutral[a.neutral].Inc()
				return
			}
			a.code, a.body = fasthttp.StatusOK, resp.Data
			if resp.Header.Get(micro.ErrorCodeHeader) != "" {
				a.code = fasthttp.StatusBadRequest
			}
		}()
	}
	wg.Wait()
	n.mergeOpenRTB(ctx, answers)
}

// openRTBPartitions returns the partitions of the campaigns of the request's candidates, in
// order of first appearance (none when the body cannot be read: its owner says why).
func (n *Node) openRTBPartitions(body []byte) []uint32 {
	var p fastjson.Parser
	v, err := p.ParseBytes(body)
	if err != nil {
		return nil
	}
	var out []uint32
	add := func(list *fastjson.Value) {
		arr, _ := list.Array()
		for _, c := range arr {
			cv := c.Get("campaign")
			if cv == nil || cv.Type() != fastjson.TypeString {
				continue
			}
			b, _ := cv.StringBytes()
			q := partition.Of(n.parts, b)
			found := false
			for _, x := range out {
				if x == q {
					found = true
					break
				}
			}
			if !found {
				out = append(out, q)
			}
		}
	}
	if l := v.Get("ext", "bidpulse", "candidates"); l != nil {
		add(l)
	}
	imps, _ := v.Get("imp").Array()
	for _, imp := range imps {
		if l := imp.Get("ext", "bidpulse", "candidates"); l != nil {
			add(l)
		}
	}
	return out
}

// mergeOpenRTB writes the answer of several partitions' owners: each candidate from the owner
// of its campaign's partition. A refusal (not 200) by an owner is the answer: the request is
// refused for what it is, not for a partition.
func (n *Node) mergeOpenRTB(ctx *fasthttp.RequestCtx, answers []openRTBPart) {
	parsed := make(map[uint32]*fastjson.Value, len(answers))
	var base *fastjson.Value
	parsers := make([]fastjson.Parser, len(answers))
	neutral := map[uint32]int{}
	for i := range answers {
		a := &answers[i]
		if a.neutral >= 0 {
			neutral[a.p] = a.neutral
			continue
		}
		if a.code != fasthttp.StatusOK {
			ctx.Response.Header.Set("Bidpulse-Forwarded", "1")
			writeJSON(ctx, a.code, a.body)
			return
		}
		v, err := parsers[i].ParseBytes(a.body)
		if err != nil {
			neutral[a.p] = neutralError
			n.stats.neutral[neutralError].Inc()
			continue
		}
		parsed[a.p] = v
		if base == nil {
			base = v
		}
	}
	if base == nil {
		// No owner answered: every candidate is neutral, which the
		// request's shape is needed for; say it plainly instead.
		reason := neutralNoOwner
		for _, r := range neutral {
			reason = r
		}
		ctx.Response.Header.Set("Bidpulse-Neutral", neutralNames[reason])
		writeError(ctx, fasthttp.StatusServiceUnavailable, "no owner of the candidates' partitions answered within the forward timeout: bid neutrally")
		return
	}
	var arena fastjson.Arena
	imps, _ := base.Get("imp").Array()
	for i, imp := range imps {
		cands, _ := imp.Get("candidates").Array()
		for k, c := range cands {
			campaign, _ := c.Get("campaign").StringBytes()
			p := partition.Of(n.parts, campaign)
			if v, ok := parsed[p]; ok {
				if other := v.Get("imp", strconv.Itoa(i), "candidates", strconv.Itoa(k)); other != nil {
					imp.Get("candidates").SetArrayItem(k, other)
				}
				continue
			}
			reason := neutral[p]
			c.Set("multiplier", arena.NewNumberInt(1))
			c.Set("level", arena.NewString("none"))
			c.Set("key", arena.NewNull())
			c.Del("explain")
			c.Set("neutral", arena.NewString(neutralNames[reason]))
			ctx.Response.Header.Set("Bidpulse-Neutral", neutralNames[reason])
		}
	}
	for _, v := range parsed {
		if v != base && v.GetBool("tmax_expired") {
			base.Set("tmax_expired", arena.NewTrue())
		}
	}
	ctx.Response.Header.Set("Bidpulse-Forwarded", "1")
	writeJSON(ctx, fasthttp.StatusOK, base.MarshalTo(nil))
}

// forwardOpenRTB forwards a request of one partition and writes its owner's answer; on no
// answer, a 503 saying to bid neutrally (an OpenRTB answer has the request's shape).
func (n *Node) forwardOpenRTB(ctx *fasthttp.RequestCtx, m *nats.Msg) {
	if auth := ctx.Request.Header.Peek("Authorization"); len(auth) > 0 {
		if m.Header == nil {
			m.Header = nats.Header{}
		}
		m.Header.Set(bidder.NATSBidAuthHeader, string(auth))
	}
	n.stats.forwarded[epOpenRTB].Inc()
	resp, err := n.nc.RequestMsg(m, n.opts.ForwardTimeout)
	if err != nil {
		reason := neutralReason(err)
		n.stats.neutral[reason].Inc()
		ctx.Response.Header.Set("Bidpulse-Neutral", neutralNames[reason])
		writeError(ctx, fasthttp.StatusServiceUnavailable, "the owner of the candidates' partition did not answer within the forward timeout: bid neutrally")
		return
	}
	code := fasthttp.StatusOK
	if resp.Header.Get(micro.ErrorCodeHeader) != "" {
		code = fasthttp.StatusBadRequest
	}
	ctx.Response.Header.Set("Bidpulse-Forwarded", "1")
	writeJSON(ctx, code, resp.Data)
}

// setBidHeaders sets a forwarded request's query and authorization headers.
func setBidHeaders(m *nats.Msg, query, auth []byte) {
	if len(query) == 0 && len(auth) == 0 {
		return
	}
	m.Header = nats.Header{}
	if len(query) > 0 {
		m.Header.Set(bidder.NATSBidQueryHeader, string(query))
	}
	if len(auth) > 0 {
		m.Header.Set(bidder.NATSBidAuthHeader, string(auth))
	}
}

// askLocalRaw answers a POST to path with svc, in process.
func askLocalRaw(svc *bidder.Service, path string, body, query, auth []byte) (int, []byte) {
	var ctx fasthttp.RequestCtx
	var req fasthttp.Request
	req.Header.SetMethod(fasthttp.MethodPost)
	uri := path
	if len(query) > 0 {
		uri += "?" + string(query)
	}
	req.SetRequestURI(uri)
	if len(auth) > 0 {
		req.Header.SetBytesV("Authorization", auth)
	}
	req.Header.SetContentType("application/json")
	req.SetBodyRaw(body)
	ctx.Init(&req, nil, nil)
	svc.ServeHTTP(&ctx)
	return ctx.Response.StatusCode(), append([]byte(nil), ctx.Response.Body()...)
}
