package bidder

import (
	"fmt"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/bidpulse/bidpulse/bidder/event"
)

// metricsCounter is the counter type of the stats.
type metricsCounter = metrics.Counter

// stats are the ingest counters behind /v1/stats and /metrics. Each is a
// metrics.Counter (an atomic), so the applier pays one atomic add per
// outcome and readers never lock.
type stats struct {
	since      time.Time
	messages   *metrics.Counter
	received   *metrics.Counter
	counted    *metrics.Counter
	duplicates *metrics.Counter
	late       *metrics.Counter
	future     *metrics.Counter
	overflow   *metrics.Counter
	rejected   [event.NumReasons]*metrics.Counter
	byType     [event.NumTypes]*metrics.Counter
	dlqErrors  *metrics.Counter
	evicted    *metrics.Counter
	// JetStream mode.
	redelivered *metrics.Counter // redeliveries of messages already applied, skipped
	streamGap   *metrics.Counter // stream messages lost before they were applied
	// deliveryGaps counts messages the stream held but did not deliver
	// (dropped on the way), each answered by re-creating the consumer.
	deliveryGaps      *metrics.Counter
	consumerRecreated *metrics.Counter
	stalls            *metrics.Counter
	purges            *metrics.Counter
	purgedMsgs        *metrics.Counter
	remoteCkpt        *metrics.Counter
	remoteCkptErrors  *metrics.Counter
	dlqStored         *metrics.Counter
	ckptWritten       *metrics.Counter
	ckptErrors        *metrics.Counter
	ckptLoadErr       *metrics.Counter
	// ckptCtlErrors counts the controller states left out of checkpoints
	// because JSON cannot carry them (NaN, infinities).
	ckptCtlErrors *metrics.Counter
}

func newStats(set *metrics.Set, since time.Time) *stats {
	s := &stats{
		since:      since,
		messages:   set.NewCounter(`bidpulse_ingest_messages_total`),
		received:   set.NewCounter(`bidpulse_ingest_events_received_total`),
		counted:    set.NewCounter(`bidpulse_ingest_events_total{outcome="counted"}`),
		duplicates: set.NewCounter(`bidpulse_ingest_events_total{outcome="duplicate"}`),
		late:       set.NewCounter(`bidpulse_ingest_events_total{outcome="late"}`),
		future:     set.NewCounter(`bidpulse_ingest_events_total{outcome="future"}`),
		overflow:   set.NewCounter(`bidpulse_ingest_events_total{outcome="overflow"}`),
		dlqErrors:  set.NewCounter(`bidpulse_dlq_publish_errors_total`),
		evicted:    set.NewCounter(`bidpulse_keys_evicted_total`),

		redelivered: set.NewCounter(`bidpulse_jetstream_redelivered_skipped_total`),
		streamGap:   set.NewCounter(`bidpulse_jetstream_lost_messages_total`),

		deliveryGaps:      set.NewCounter(`bidpulse_jetstream_delivery_gaps_total`),
		consumerRecreated: set.NewCounter(`bidpulse_jetstream_consumer_recreated_total`),
		stalls:            set.NewCounter(`bidpulse_ingest_stalls_total`),
		purges:            set.NewCounter(`bidpulse_jetstream_stream_trims_total`),
		purgedMsgs:        set.NewCounter(`bidpulse_jetstream_stream_trimmed_messages_total`),
		remoteCkpt:        set.NewCounter(`bidpulse_checkpoints_uploaded_total`),
		remoteCkptErrors:  set.NewCounter(`bidpulse_checkpoint_upload_errors_total`),
		dlqStored:         set.NewCounter(`bidpulse_dlq_stored_total`),
		ckptWritten:       set.NewCounter(`bidpulse_checkpoints_written_total`),
		ckptErrors:        set.NewCounter(`bidpulse_checkpoint_write_errors_total`),
		ckptLoadErr:       set.NewCounter(`bidpulse_checkpoint_load_errors_total`),

		ckptCtlErrors: set.NewCounter(`bidpulse_checkpoint_controller_errors_total`),
	}
	for r := event.Reason(1); r < event.NumReasons; r++ {
		s.rejected[r] = set.NewCounter(fmt.Sprintf(`bidpulse_ingest_events_total{outcome="rejected",reason=%q}`, event.ReasonNames[r]))
	}
	for t := event.Type(1); t < event.NumTypes; t++ {
		s.byType[t] = set.NewCounter(fmt.Sprintf(`bidpulse_ingest_events_counted_total{type=%q}`, t.String()))
	}
	return s
}

func (s *stats) rejectedTotal() uint64 {
	var n uint64
	for r := event.Reason(1); r < event.NumReasons; r++ {
		n += s.rejected[r].Get()
	}
	return n
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
	routeOther
	numRoutes
)

var routeNames = [numRoutes]string{"multiplier", "multipliers", "rates", "snapshot", "stats", "overrides", "killswitch", "policies", "audit", "metrics", "healthz", "readyz", "snapshot_stream", "dashboard", "other"}

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
