package bidder

import (
	"math"
	"sync"
	"sync/atomic"

	"github.com/valyala/fasthttp"

	"github.com/bidpulse/bidpulse/bidder/event"
	"github.com/bidpulse/bidpulse/internal/jsonscan"
	"github.com/bidpulse/bidpulse/windows"
)

// The batch fast path: POST /v1/multipliers read in a single pass for the shape bidders send, an
// array of flat request objects whose keys and dimensions are plain strings (ASCII, no escapes),
// a dimension possibly null, and whose explain is true, false, null or a short integer, with
// JSON whitespace anywhere. The items are kept as offsets into the body, not copied.
// It checks the whole body before it answers anything, and answers only when the whole body is
// of that shape, holds at most maxBatchItems items and every item is a valid request; anything
// else (an escape, a non-ASCII byte, a nested value, an unknown field, an item the general path
// would answer with an error, more than maxBatchItems items) goes to the general path in
// handleMultipliers, which decides. So the fast path never answers an error, and for a body it
// accepts it answers exactly what the general path would, which FuzzBatchParse checks.

// batchItem is a request of a batch the fast path accepted: each dimension given as a string,
// as offsets into the request body, and the explain flag.
type batchItem struct {
	vals    [windows.NumDims]struct{ start, end uint32 }
	given   uint8 // bit d: dimension d given as a string
	explain bool
}

// batchScratch holds the items of one batch, as offsets into its body: pooled, so that the
// fast path allocates nothing in steady state.
type batchScratch struct {
	items []batchItem
}

var batchScratchPool = sync.Pool{New: func() any { return &batchScratch{} }}

var (
	// batchFastOff turns the fast path off, so that tests can compare it with the general path.
	batchFastOff atomic.Bool
	// batchFastAnswered counts the batches the fast path answered, so that tests can see it
	// taken.
	batchFastAnswered atomic.Uint64
)

// answerBatchFast answers POST /v1/multipliers on the fast path; false, with nothing written,
// when the general path must answer. With denyExplain, an item asking for explain gets
// errExplainToken, as on the general path.
func (s *Service) answerBatchFast(ctx *fasthttp.RequestCtx, denyExplain bool) bool {
	if batchFastOff.Load() {
		return false
	}
	body := ctx.PostBody()
	bs := batchScratchPool.Get().(*batchScratch)
	defer batchScratchPool.Put(bs)
	if !bs.scan(body) {
		return false
	}
	sc := getScratch()
	defer putScratch(sc)
	now := s.clock.NowMs()
	out := append(sc.out[:0], '[')
	for i := range bs.items {
		it := &bs.items[i]
		if i > 0 {
			out = append(out, ',')
		}
		if it.explain && denyExplain {
			out = appendItemError(out, errExplainToken)
			continue
		}
		if err := sc.setItem(body, it); err != nil {
			// Not reached while scanItem refuses every value setDim refuses;
			// should the two part, the item gets setDim's error as on the
			// general path.
			out = appendItemError(out, err)
			continue
		}
		s.decide(sc, now)
		out = s.appendAnswer(out, &sc.a, it.explain)
	}
	out = append(out, ']')
	sc.out = out
	writeJSON(ctx, fasthttp.StatusOK, out)
	batchFastAnswered.Add(1)
	return true
}

// setItem reads the dimensions of it, offsets into body, into sc.Vals through setDim, which
// normalises them as for any request.
func (sc *bidScratch) setItem(body []byte, it *batchItem) error {
	sc.Vals.Reset()
	for d := range windows.NumDims {
		if it.given&(1<<d) == 0 {
			continue
		}
		v := it.vals[d]
		if err := sc.setDim(d, body[v.start:v.end]); err != nil {
			return err
		}
	}
	return nil
}

// appendItemError appends the answer of a batch item that is not a valid request.
func appendItemError(dst []byte, err error) []byte {
	dst = append(dst, `{"error":`...)
	dst = appendStr(dst, err.Error())
	return append(dst, '}')
}

// scan records the items of body into bs.items; false when body is not of the fast path's
// shape, or holds more than maxBatchItems items, or an item that is not a valid request.
func (bs *batchScratch) scan(b []byte) bool {
	bs.items = bs.items[:0]
	if len(b) > math.MaxUint32 {
		return false // beyond the offsets' range
	}
	i := jsonscan.SkipSpace(b, 0)
	if i >= len(b) || b[i] != '[' {
		return false
	}
	i = jsonscan.SkipSpace(b, i+1)
	if i < len(b) && b[i] == ']' {
		return jsonscan.SkipSpace(b, i+1) == len(b)
	}
	for {
		if i >= len(b) || b[i] != '{' || len(bs.items) == maxBatchItems {
			return false
		}
		bs.items = append(bs.items, batchItem{})
		j, ok := scanItem(b, i, &bs.items[len(bs.items)-1])
		if !ok {
			return false
		}
		i = jsonscan.SkipSpace(b, j)
		if i >= len(b) {
			return false
		}
		if b[i] == ']' {
			break
		}
		if b[i] != ',' {
			return false
		}
		i = jsonscan.SkipSpace(b, i+1)
	}
	return jsonscan.SkipSpace(b, i+1) == len(b)
}

// scanItem reads the object at b[i] == '{' into it and returns the index after it; false when
// the object is not of the fast path's shape or parseItem would refuse it.
//
// It follows parseItem field by field, in order: a null dimension is skipped, explain true
// sets the flag, false and null leave it, a number sets it to number != 0. Where parseItem
// answers an error (an unknown field, a dimension that is not a string, an explain of another
// type, a dimension setDim refuses, no campaign) it gives up.
func scanItem(b []byte, i int, it *batchItem) (int, bool) {
	i = jsonscan.SkipSpace(b, i+1)
	for {
		if i >= len(b) || b[i] != '"' {
			return 0, false // an empty object, a trailing comma, or not a key
		}
		f, end := matchField(b, i+1)
		if f < 0 {
			return 0, false
		}
		var ok bool
		if i, ok = jsonscan.Colon(b, end+1); !ok {
			return 0, false
		}
		if f < fieldExplain {
			d := windows.Dim(f)
			switch {
			case b[i] == '"':
				end, ok := jsonscan.PlainString(b, i+1)
				if !ok {
					return 0, false
				}
				// What setDim refuses: a repeated dimension, an empty or
				// too long value (ASCII is valid UTF-8).
				if n := end - i - 1; n == 0 || n > event.MaxFieldLen || it.given&(1<<d) != 0 {
					return 0, false
				}
				it.given |= 1 << d
				it.vals[d].start, it.vals[d].end = uint32(i+1), uint32(end)
				i = end + 1
			case jsonscan.HasWord(b, i, "null"):
				i += len("null")
			default:
				return 0, false
			}
		} else {
			switch c := b[i]; {
			case jsonscan.HasWord(b, i, "true"):
				it.explain = true
				i += len("true")
			case jsonscan.HasWord(b, i, "false"):
				i += len("false")
			case jsonscan.HasWord(b, i, "null"):
				i += len("null")
			case c == '-' || c >= '0' && c <= '9':
				end, on, ok := scanSmallInt(b, i)
				if !ok {
					return 0, false
				}
				it.explain = on
				i = end
			default:
				return 0, false
			}
		}
		next, closed, ok := jsonscan.AfterMember(b, i)
		if !ok {
			return 0, false
		}
		i = next
		if closed {
			break
		}
	}
	if it.given&(1<<windows.DimCampaign) == 0 {
		return 0, false
	}
	return i + 1, true
}

// fieldExplain is matchField's index of explain, after the dimensions'.
const fieldExplain = int(windows.NumDims)

// matchField returns the field of the key whose contents start at b[i] (a dimension, or
// fieldExplain) and the index of the quote that closes it; -1 for any other key, which
// parseItem refuses, or a key with escapes, which the general path reads.
func matchField(b []byte, i int) (int, int) {
	if i >= len(b) {
		return -1, 0
	}
	for f := range fieldExplain + 1 {
		name := "explain"
		if f < fieldExplain {
			name = windows.DimNames[f]
		}
		if end := i + len(name); end < len(b) && b[i] == name[0] && b[end] == '"' && string(b[i:end]) == name {
			return f, end
		}
	}
	return -1, 0
}

// maxSmallInt is the longest number, in bytes with its sign, that scanSmallInt reads: fastjson
// reads up to 18 bytes as an int64 exactly, and a longer number may not fit in one.
const maxSmallInt = 18

// scanSmallInt reads the strict JSON integer (-?(0|[1-9][0-9]*)) of at most maxSmallInt bytes
// that starts at b[i], and returns the index after it and whether it is not zero; false when
// there is none. A fraction or an exponent is not read: the caller then finds no ',' or '}'
// after the number and gives up.
func scanSmallInt(b []byte, i int) (end int, nonZero, ok bool) {
	j := i
	if b[j] == '-' {
		j++
	}
	switch {
	case j >= len(b):
		return 0, false, false
	case b[j] == '0':
		j++
	case b[j] >= '1' && b[j] <= '9':
		nonZero = true
		j++
		for j < len(b) && b[j] >= '0' && b[j] <= '9' {
			j++
		}
	default:
		return 0, false, false
	}
	if j-i > maxSmallInt {
		return 0, false, false
	}
	return j, nonZero, true
}
