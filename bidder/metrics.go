package bidder

import (
	"fmt"
	"time"

	"github.com/VictoriaMetrics/metrics"
)

// stats are the service's own counters (the ingest ones are
// ingest.Stats): eviction, checkpoints, and the stream's trimming. Each is a
// metrics.Counter (an atomic).
type stats struct {
	since            time.Time
	evicted          *metrics.Counter
	purges           *metrics.Counter
	purgedMsgs       *metrics.Counter
	remoteCkpt       *metrics.Counter
	remoteCkptErrors *metrics.Counter
	ckptWritten      *metrics.Counter
	ckptErrors       *metrics.Counter
	ckptLoadErr      *metrics.Counter
	// ckptCtlErrors counts the controller states left out of checkpoints
	// because JSON cannot carry them (NaN, infinities).
	ckptCtlErrors *metrics.Counter
}

func newStats(set *metrics.Set, since time.Time) *stats {
	return &stats{
		since:            since,
		evicted:          set.NewCounter(`bidpulse_keys_evicted_total`),
		purges:           set.NewCounter(`bidpulse_jetstream_stream_trims_total`),
		purgedMsgs:       set.NewCounter(`bidpulse_jetstream_stream_trimmed_messages_total`),
		remoteCkpt:       set.NewCounter(`bidpulse_checkpoints_uploaded_total`),
		remoteCkptErrors: set.NewCounter(`bidpulse_checkpoint_upload_errors_total`),
		ckptWritten:      set.NewCounter(`bidpulse_checkpoints_written_total`),
		ckptErrors:       set.NewCounter(`bidpulse_checkpoint_write_errors_total`),
		ckptLoadErr:      set.NewCounter(`bidpulse_checkpoint_load_errors_total`),
		ckptCtlErrors:    set.NewCounter(`bidpulse_checkpoint_controller_errors_total`),
	}
}

// HTTP routes, for per-route metrics.
const (
	routeMultiplier = iota
	routeMultipliers
	routeRates
	routeSnapshot
	routeStats
	routeOverrides
	routeKillSwitch
	routePolicies
	routeAudit
	routeMetrics
	routeHealthz
	routeReadyz
	routeSnapshotStream
	routeDashboard
	routeDebugRuntime
	routeOpenRTB
	routeOther
	numRoutes
)

var routeNames = [numRoutes]string{"multiplier", "multipliers", "rates", "snapshot", "stats", "overrides", "killswitch", "policies", "audit", "metrics", "healthz", "readyz", "snapshot_stream", "dashboard", "debug_runtime", "openrtb", "other"}

// commonCodes get their counters made up front, so counting a request
// allocates nothing; rarer codes are created on first use.
var commonCodes = []int{200, 400, 401, 403, 404, 405, 413, 500, 503}

type httpMetrics struct {
	set      *metrics.Set
	requests [numRoutes][600]*metrics.Counter
	bid      *metrics.PrometheusHistogram
	batch    *metrics.PrometheusHistogram
}

// bidBuckets are tuned for answers well under a millisecond.
var bidBuckets = []float64{
	5e-6, 10e-6, 25e-6, 50e-6, 100e-6, 250e-6, 500e-6,
	1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 100e-3,
}

func newHTTPMetrics(set *metrics.Set) *httpMetrics {
	m := &httpMetrics{
		set:   set,
		bid:   set.NewPrometheusHistogramExt(`bidpulse_bid_duration_seconds{route="multiplier"}`, bidBuckets),
		batch: set.NewPrometheusHistogramExt(`bidpulse_bid_duration_seconds{route="multipliers"}`, bidBuckets),
	}
	for r := 0; r < numRoutes; r++ {
		for _, c := range commonCodes {
			m.requests[r][c] = set.NewCounter(requestMetricName(r, c))
		}
	}
	return m
}

func requestMetricName(route, code int) string {
	return fmt.Sprintf(`bidpulse_http_requests_total{route=%q,code="%d"}`, routeNames[route], code)
}

func (m *httpMetrics) count(route, code int) {
	if code < 100 || code >= 600 {
		code = 500
	}
	c := m.requests[route][code]
	if c == nil {
		c = m.set.GetOrCreateCounter(requestMetricName(route, code))
	}
	c.Inc()
}
