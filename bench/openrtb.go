package bench

import (
	"bytes"
	"fmt"
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

var (
	openRTBAnswerStart = []byte(`{"id":`)
	// Every candidate of an answer (format=bidpulse, without explain) has a multiplier; one
	// that the service did not decide (past the request's tmax) is marked neutral.
	candidateMultiplier = []byte(`"multiplier":`)
	candidateNeutral    = []byte(`"neutral":`)
)

// doOpenRTB sends one POST /v1/openrtb/multipliers and counts its answered candidates.
func (h *httpBids) doOpenRTB(w *httpWorker) Outcome {
	w.body = appendBidRequest(w.body[:0], h.keys, w.n, h.shape.imps, h.shape.candidates, w.rng)
	// OpenRTBRaw, not OpenRTB: the bench needs only the count of answered candidates, which
	// the answer's bytes give; OpenRTB's encoding/json decoding (79 allocations and about
	// 37 µs of the generator's CPU per 5 x 3 request, BenchmarkHTTPBidsSameWork) made the load
	// generator, not the service, the limit of the capacity's comparison.
	var r client.FailReason
	w.ans, r, w.err = h.c.OpenRTBRaw(&w.ctx, w.body, w.ans[:0])
	if r != client.Answered {
		return outcomeOf(r, w.err)
	}
	if !bytes.HasPrefix(w.ans, openRTBAnswerStart) {
		w.err = fmt.Errorf("POST /v1/openrtb/multipliers: an answer that is not one: %.200s", w.ans)
		return BadBody
	}
	if h.countItems {
		w.items += uint64(bytes.Count(w.ans, candidateMultiplier) - bytes.Count(w.ans, candidateNeutral))
	}
	return OK
}
