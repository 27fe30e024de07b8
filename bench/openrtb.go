package bench

import (
	"math/rand/v2"
	"strconv"

	"github.com/bidpulse/bidpulse/bidder/client"
	"github.com/bidpulse/bidpulse/bidder/event"
)

// The service's limits on an OpenRTB request (docs/OPENRTB.md).
const (
	maxOpenRTBImps       = 64
	maxOpenRTBCandidates = 32
)

// appendBidRequest appends an OpenRTB 2.6 BidRequest of imps impressions with candidates
// candidates each, drawn from the key space with rng:
//
//	{"id":"7","imp":[{"id":"1","tagid":"news.example/top","ext":{"bidpulse":{"candidates":
//	  [{"campaign":"c1","creative":"cr1"},{"campaign":"c3","creative":"cr2"},...]}}},...]}
//
// Each impression is a picked cell's placement (its tagid), and its candidates are that cell's
// campaign and creative, then those of further picked cells. With no device or geo, each
// candidate's key is campaign/creative/placement, as a batch item's is: a request asks what a
// batch of imps x candidates keys asks, and the two endpoints can be compared for the same
// work. The body is a bare request: an ad server's carries more (site, device, banner, user
// extensions), which the service's reader skips at a cost this does not measure.
func appendBidRequest(dst []byte, keys *keySpace, id uint64, imps, candidates int, rng *rand.Rand) []byte {
	dst = append(dst, `{"id":"`...)
	dst = strconv.AppendUint(dst, id, 10)
	dst = append(dst, `","imp":[`...)
	for i := range imps {
		if i > 0 {
			dst = append(dst, ',')
		}
		cell := &keys.keys[keys.pick(rng.Float64())]
		dst = append(dst, `{"id":"`...)
		dst = strconv.AppendInt(dst, int64(i+1), 10)
		dst = append(dst, `","tagid":`...)
		dst = event.AppendJSONString(dst, cell.Placement)
		dst = append(dst, `,"ext":{"bidpulse":{"candidates":[`...)
		for j := range candidates {
			c := cell
			if j > 0 {
				dst = append(dst, ',')
				c = &keys.keys[keys.pick(rng.Float64())]
			}
			dst = append(dst, `{"campaign":`...)
			dst = event.AppendJSONString(dst, c.Campaign)
			dst = append(dst, `,"creative":`...)
			dst = event.AppendJSONString(dst, c.Creative)
			dst = append(dst, '}')
		}
		dst = append(dst, "]}}}"...)
	}
	return append(dst, "]}"...)
}

// doOpenRTB sends one POST /v1/openrtb/multipliers and counts its answered candidates.
func (h *httpBids) doOpenRTB(w *httpWorker) Outcome {
	w.body = appendBidRequest(w.body[:0], h.keys, w.n, h.shape.imps, h.shape.candidates, w.rng)
	a, err := h.c.OpenRTB(&w.ctx, w.body)
	w.err = err
	o := outcomeOf(a.FailOpen, err)
	if o == OK && h.countItems {
		w.items += answeredCandidates(a)
	}
	return o
}

// answeredCandidates counts the candidates of an OpenRTB answer that the service decided (a
// candidate past the request's tmax is neutral, not decided; the bench sends no tmax).
func answeredCandidates(a *client.OpenRTBAnswer) uint64 {
	n := uint64(0)
	for i := range a.Imp {
		for j := range a.Imp[i].Candidates {
			if a.Imp[i].Candidates[j].Neutral == "" {
				n++
			}
		}
	}
	return n
}
