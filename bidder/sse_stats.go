package bidder

import (
	"strconv"
	"time"
)

// The counters of /v1/stats whose per-second rates a frame carries, by
// their JSON path in /v1/stats and their name in "rates".
var sseRateFields = [...]struct {
	path []string
	name string
}{
	{[]string{"received"}, "received"},
	{[]string{"counted"}, "counted"},
	{[]string{"duplicates"}, "duplicate"},
	{[]string{"rejected_total"}, "rejected"},
	{[]string{"late"}, "late"},
	{[]string{"future"}, "future"},
	{[]string{"overflow"}, "overflow"},
	{[]string{"dropped_messages"}, "dropped"},
	{[]string{"counted_by_type", "impression"}, "impression"},
	{[]string{"counted_by_type", "click"}, "click"},
	{[]string{"counted_by_type", "conversion"}, "conversion"},
}

// sseSample is what the rates of one interval are the differences of.
type sseSample struct {
	at       time.Time
	counters [len(sseRateFields)]uint64
	bid      [latencyBuckets]uint64
	batch    [latencyBuckets]uint64
}

// computeCommon returns the query-independent part of a frame: readiness,
// the /v1/stats body as is (so the stream never disagrees with it, whatever
// fields it gains: the buffer fill and the ingest lag are there), the open
// streams, and the rates of the last interval: events/s by outcome and type, bid requests/s and latency
// percentiles. With advance (a tick), the interval ends at now, the ticker's
// time, and the next one starts there; without (the first frame of a new
// query), the readiness and stats are fresh and the rates are those of the
// last tick, so a new stream does not shorten every stream's interval.
// Called with tickMu held.
func (h *sseHub) computeCommon(now time.Time, advance bool) []byte {
	s := h.s
	ctx := &h.reqCtx

	ctx.Response.Reset()
	s.handleReadyz(ctx)
	readyStatus := ctx.Response.StatusCode()
	b := make([]byte, 0, 4096)
	b = append(b, `"interval_ms":`...)
	b = strconv.AppendInt(b, h.interval.Milliseconds(), 10)
	b = append(b, `,"ready":`...)
	b = strconv.AppendBool(b, readyStatus == 200)
	b = append(b, `,"readyz":`...)
	b = append(b, ctx.Response.Body()...)

	ctx.Response.Reset()
	s.handleStats(ctx)
	stats := ctx.Response.Body()
	b = append(b, `,"stats":`...)
	b = append(b, stats...)

	var cur sseSample
	cur.at = now
	if v, err := h.parser.ParseBytes(stats); err == nil {
		for i, f := range sseRateFields {
			cur.counters[i] = v.GetUint64(f.path...)
		}
	}
	b = append(b, `,"streams":`...)
	b = strconv.AppendInt(b, int64(h.openStreams()), 10)

	if !advance && h.rates != nil {
		return append(b, h.rates...)
	}
	h.bidLatency.read(&cur.bid)
	h.batchLatency.read(&cur.batch)
	rates := h.appendRates(nil, &cur, &h.prev)
	if advance {
		h.ticks.Inc()
		h.prev = cur
		h.rates = rates
	}
	return append(b, rates...)
}

// appendRates appends the ,"rates":{..},"bid":{..} of the interval from
// prev to cur (zeros and null percentiles without a previous sample).
func (h *sseHub) appendRates(b []byte, cur, prev *sseSample) []byte {
	dt := 0.0
	if !prev.at.IsZero() {
		dt = cur.at.Sub(prev.at).Seconds()
	}
	perSec := func(c, p uint64) float64 {
		if dt <= 0 || c < p {
			return 0
		}
		return float64(c-p) / dt
	}
	b = append(b, `,"rates":{`...)
	for i, f := range sseRateFields {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendKeyField(b, f.name)
		b = appendRate(b, perSec(cur.counters[i], prev.counters[i]))
	}
	b = append(b, '}')

	var lat latencyInterval
	lat.diff(&cur.bid, &prev.bid)
	if dt <= 0 {
		lat = latencyInterval{}
	}
	b = append(b, `,"bid":{"requests":`...)
	b = strconv.AppendUint(b, lat.total, 10)
	b = append(b, `,"rps":`...)
	b = appendRate(b, perSec(lat.total, 0))
	for _, p := range [...]struct {
		name string
		q    float64
	}{{"p50_ms", 0.5}, {"p90_ms", 0.9}, {"p99_ms", 0.99}, {"p999_ms", 0.999}} {
		b = append(b, ',')
		b = appendKeyField(b, p.name)
		b = appendLatencyMs(b, &lat, p.q)
	}
	lat.diff(&cur.batch, &prev.batch)
	if dt <= 0 {
		lat = latencyInterval{}
	}
	b = append(b, `,"batch_rps":`...)
	b = appendRate(b, perSec(lat.total, 0))
	b = append(b, `,"batch_p99_ms":`...)
	b = appendLatencyMs(b, &lat, 0.99)
	return append(b, '}')
}

// appendRate appends a per-second rate with at most 2 decimals.
func appendRate(b []byte, r float64) []byte {
	return appendFloat(b, float64(int64(r*100+0.5))/100)
}

// appendLatencyMs appends the q-quantile of li in milliseconds, or null when
// the interval had no request.
func appendLatencyMs(b []byte, li *latencyInterval, q float64) []byte {
	if li.total == 0 {
		return append(b, "null"...)
	}
	return appendRounded(b, float64(li.quantile(q))/1e6)
}
