package node

import (
	"sync"

	"github.com/nats-io/nats.go"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fastjson"

	"github.com/bidpulse/bidpulse/bidder"
	"github.com/bidpulse/bidpulse/bidder/partition"
)

// maxBatchItems bounds a batch, as the service does.
const maxBatchItems = 1000

var batchParsers fastjson.ParserPool

// batchPart is the items of one partition in a batch.
type batchPart struct {
	p     uint32
	slots []int // the items' places in the batch
	body  []byte
	// answer holds the part's answers, one per slot, once asked.
	answer [][]byte
	// neutral is the reason its items are answered neutrally (-1: none).
	neutral int
}

// serveBatch answers POST /v1/multipliers: the items are split by their
// campaign's partition, each part answered by its owner (here, in process,
// or forwarded, the parts in parallel), and the answers put back in the
// request's order. A part whose owner does not answer in time gets the
// neutral answer in each of its slots. An item that is not an object with
// a string campaign goes with the part of campaign "": its owner answers
// it the error a single instance would.
func (n *Node) serveBatch(ctx *fasthttp.RequestCtx) {
	if !ctx.IsPost() {
		ctx.Response.Header.Set("Allow", "POST")
		writeError(ctx, fasthttp.StatusMethodNotAllowed, "method "+string(ctx.Method())+" not allowed; use POST")
		return
	}
	pp := batchParsers.Get()
	defer batchParsers.Put(pp)
	v, err := pp.ParseBytes(ctx.PostBody())
	if err != nil {
		writeError(ctx, fasthttp.StatusBadRequest, "body is not a JSON array of request objects: "+err.Error())
		return
	}
	items, err := v.Array()
	if err != nil {
		writeError(ctx, fasthttp.StatusBadRequest, "body is not a JSON array of request objects")
		return
	}
	if len(items) > maxBatchItems {
		writeError(ctx, fasthttp.StatusRequestEntityTooLarge, "too many items: the limit is 1000")
		return
	}
	if len(items) == 0 {
		writeJSON(ctx, fasthttp.StatusOK, []byte("[]"))
		return
	}
	var parts []*batchPart
	byP := map[uint32]*batchPart{}
	for i, it := range items {
		var campaign []byte
		if c := it.Get("campaign"); c != nil && c.Type() == fastjson.TypeString {
			campaign, _ = c.StringBytes()
		}
		p := partition.Of(n.parts, campaign)
		bp := byP[p]
		if bp == nil {
			bp = &batchPart{p: p, body: []byte{'['}, neutral: -1}
			byP[p] = bp
			parts = append(parts, bp)
		}
		if len(bp.slots) > 0 {
			bp.body = append(bp.body, ',')
		}
		bp.body = it.MarshalTo(bp.body)
		bp.slots = append(bp.slots, i)
	}
	query := ctx.QueryArgs().QueryString()
	auth := ctx.Request.Header.Peek("Authorization")
	var wg sync.WaitGroup
	forwarded := false
	for _, bp := range parts {
		bp.body = append(bp.body, ']')
		if svc := n.servingUnit(bp.p); svc != nil {
			n.stats.local.Inc()
			n.askLocal(svc, bp, query, auth)
			continue
		}
		forwarded = true
		wg.Add(1)
		go func() {
			defer wg.Done()
			n.askRemote(bp, query, auth)
		}()
	}
	wg.Wait()
	out := make([]byte, 0, 128*len(items))
	out = append(out, '[')
	answers := make([][]byte, len(items))
	neutral := -1
	for _, bp := range parts {
		for k, slot := range bp.slots {
			if bp.neutral >= 0 {
				answers[slot] = neutralAnswer(nil, bp.neutral)
				neutral = bp.neutral
				continue
			}
			answers[slot] = bp.answer[k]
		}
	}
	for i, a := range answers {
		if i > 0 {
			out = append(out, ',')
		}
		out = append(out, a...)
	}
	out = append(out, ']')
	if neutral >= 0 {
		ctx.Response.Header.Set("Bidpulse-Neutral", neutralNames[neutral])
	}
	if forwarded {
		ctx.Response.Header.Set("Bidpulse-Forwarded", "1")
	}
	writeJSON(ctx, fasthttp.StatusOK, out)
}

// askLocal answers bp with svc, in process.
func (n *Node) askLocal(svc *bidder.Service, bp *batchPart, query, auth []byte) {
	code, body := askLocalRaw(svc, "/v1/multipliers", bp.body, query, auth)
	n.readPart(bp, code, body)
}

// askRemote forwards bp to its partition's owners.
func (n *Node) askRemote(bp *batchPart, query, auth []byte) {
	m := nats.NewMsg(bidder.UnitBidSubject(bp.p, "multipliers"))
	m.Data = bp.body
	setBidHeaders(m, query, auth)
	n.stats.forwarded[epMultipliers].Inc()
	resp, err := n.nc.RequestMsg(m, n.opts.ForwardTimeout)
	if err != nil {
		bp.neutral = neutralReason(err)
		n.stats.neutral[bp.neutral].Inc()
		return
	}
	code := fasthttp.StatusOK
	if resp.Header.Get("Nats-Service-Error-Code") != "" {
		code = fasthttp.StatusBadRequest
	}
	n.readPart(bp, code, resp.Data)
}

// readPart splits the answer of bp's part into its items' answers. An
// answer that is not an array of as many items (a refusal of the whole
// part: a bad token, a bad query) is given to every item of the part.
func (n *Node) readPart(bp *batchPart, code int, body []byte) {
	bp.answer = make([][]byte, len(bp.slots))
	if code == fasthttp.StatusOK {
		var p fastjson.Parser
		if v, err := p.ParseBytes(body); err == nil {
			if arr, err := v.Array(); err == nil && len(arr) == len(bp.slots) {
				for i, a := range arr {
					bp.answer[i] = a.MarshalTo(nil)
				}
				return
			}
		}
		bp.neutral = neutralError
		n.stats.neutral[neutralError].Inc()
		return
	}
	b := append([]byte(nil), body...)
	for i := range bp.answer {
		bp.answer[i] = b
	}
}
