package bidder

import (
	"strconv"

	"github.com/valyala/fasthttp"

	"github.com/bidpulse/bidpulse/windows"
)

// snapshotQuery is a parsed /v1/snapshot query: what one SSE group computes
// every tick.
type snapshotQuery struct {
	level    int
	span     windows.Span
	sortBy   int
	limit    int
	minImpr  uint64
	campaign []byte // nil: every campaign
}

// key returns the canonical form of q: streams whose queries have the same
// key share one computation per tick, whatever the parameter order.
func (q *snapshotQuery) key() string {
	b := strconv.AppendInt(nil, int64(q.level), 10)
	b = append(b, '|')
	b = strconv.AppendInt(b, int64(q.span), 10)
	b = append(b, '|')
	b = strconv.AppendInt(b, int64(q.sortBy), 10)
	b = append(b, '|')
	b = strconv.AppendInt(b, int64(q.limit), 10)
	b = append(b, '|')
	b = strconv.AppendUint(b, q.minImpr, 10)
	if q.campaign != nil {
		b = append(b, '|')
		b = append(b, q.campaign...)
	}
	return string(b)
}

// parseSnapshotQuery reads the parameters of GET /v1/snapshot and of its
// stream (level, window, sort, limit, campaign, min_impressions) with their
// defaults and error messages.
func (s *Service) parseSnapshotQuery(args *fasthttp.Args) (snapshotQuery, error) {
	q := snapshotQuery{
		level:   s.rollups.Campaign,
		span:    s.control.Policies().Default.Performance.Window,
		sortBy:  sortImpressions,
		limit:   defaultSnapshotLimit,
		minImpr: defaultMinImpr,
	}
	for k, v := range args.All() {
		switch string(k) {
		case "level":
			l, ok := s.rollups.ByName(string(v))
			if !ok {
				return q, queryError("unknown level " + strconv.Quote(string(v)) + "; configured rollups: " + joinNames(s.rollups.Names()))
			}
			q.level = l
		case "window":
			sp, ok := windows.ParseSpan(string(v))
			if !ok {
				return q, queryError("unknown window " + strconv.Quote(string(v)) + "; known: 1m, 5m, 15m, 1h, 24h")
			}
			q.span = sp
		case "sort":
			i := indexOf(sortNames[:], string(v))
			if i < 0 {
				return q, queryError("unknown sort " + strconv.Quote(string(v)) + "; known: impressions, clicks, conversions, ctr, cvr, multiplier")
			}
			q.sortBy = i
		case "limit":
			n, err := strconv.Atoi(string(v))
			if err != nil || n < 1 || n > maxSnapshotLimit {
				return q, queryError("limit must be an integer in 1..1000")
			}
			q.limit = n
		case "min_impressions":
			n, err := strconv.ParseUint(string(v), 10, 64)
			if err != nil {
				return q, queryError("min_impressions must be a non-negative integer")
			}
			q.minImpr = n
		case "campaign":
			if len(v) == 0 || len(v) > 128 {
				return q, queryError("campaign must be 1..128 bytes")
			}
			q.campaign = append([]byte(nil), v...)
		default:
			return q, queryError("unknown parameter " + string(k) + "; known: level, window, sort, limit, campaign, min_impressions")
		}
	}
	return q, nil
}
