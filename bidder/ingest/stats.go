package ingest

import (
	"fmt"

	"github.com/VictoriaMetrics/metrics"

	"github.com/bidpulse/bidpulse/bidder/event"
)

// Stats are the ingest counters behind /v1/stats and /metrics. Each is a
// metrics.Counter (an atomic), so the applier pays one atomic add per outcome
// and readers never lock. Received = Counted + Duplicates + Late + Future +
// Overflow + every Rejected, whenever they are read (see outcomes.publish).
type Stats struct {
	Messages   *metrics.Counter
	Received   *metrics.Counter
	Counted    *metrics.Counter
	Duplicates *metrics.Counter
	Late       *metrics.Counter
	Future     *metrics.Counter
	Overflow   *metrics.Counter
	Rejected   [event.NumReasons]*metrics.Counter // index 0 (OK) unused
	ByType     [event.NumTypes]*metrics.Counter   // counted events by type; index 0 unused
	// Dead letters: publish attempts that failed (each retried), and
	// letters stored.
	DLQErrors *metrics.Counter
	DLQStored *metrics.Counter
	// JetStream mode.
	Redelivered *metrics.Counter // redeliveries of messages already applied, skipped
	StreamGap   *metrics.Counter // stream messages lost before they were applied
	// DeliveryGaps counts gaps of messages the stream still held (dropped
	// on the way), each answered by re-creating the consumer.
	DeliveryGaps      *metrics.Counter
	ConsumerRecreated *metrics.Counter
	Stalls            *metrics.Counter
}

func newStats(set *metrics.Set) *Stats {
	s := &Stats{
		Messages:   set.NewCounter(`bidpulse_ingest_messages_total`),
		Received:   set.NewCounter(`bidpulse_ingest_events_received_total`),
		Counted:    set.NewCounter(`bidpulse_ingest_events_total{outcome="counted"}`),
		Duplicates: set.NewCounter(`bidpulse_ingest_events_total{outcome="duplicate"}`),
		Late:       set.NewCounter(`bidpulse_ingest_events_total{outcome="late"}`),
		Future:     set.NewCounter(`bidpulse_ingest_events_total{outcome="future"}`),
		Overflow:   set.NewCounter(`bidpulse_ingest_events_total{outcome="overflow"}`),
		DLQErrors:  set.NewCounter(`bidpulse_dlq_publish_errors_total`),
		DLQStored:  set.NewCounter(`bidpulse_dlq_stored_total`),

		Redelivered:       set.NewCounter(`bidpulse_jetstream_redelivered_skipped_total`),
		StreamGap:         set.NewCounter(`bidpulse_jetstream_lost_messages_total`),
		DeliveryGaps:      set.NewCounter(`bidpulse_jetstream_delivery_gaps_total`),
		ConsumerRecreated: set.NewCounter(`bidpulse_jetstream_consumer_recreated_total`),
		Stalls:            set.NewCounter(`bidpulse_ingest_stalls_total`),
	}
	for r := event.Reason(1); r < event.NumReasons; r++ {
		s.Rejected[r] = set.NewCounter(fmt.Sprintf(`bidpulse_ingest_events_total{outcome="rejected",reason=%q}`, event.ReasonNames[r]))
	}
	for t := event.Type(1); t < event.NumTypes; t++ {
		s.ByType[t] = set.NewCounter(fmt.Sprintf(`bidpulse_ingest_events_counted_total{type=%q}`, t.String()))
	}
	return s
}

// RejectedTotal is the sum of the rejected events over all reasons.
func (s *Stats) RejectedTotal() uint64 {
	var n uint64
	for r := event.Reason(1); r < event.NumReasons; r++ {
		n += s.Rejected[r].Get()
	}
	return n
}

// Counters names the counters that describe the state a checkpoint holds,
// so a restart from it goes on from the same figures.
func (s *Stats) Counters() map[string]*metrics.Counter {
	m := map[string]*metrics.Counter{
		"messages": s.Messages, "received": s.Received, "counted": s.Counted,
		"duplicates": s.Duplicates, "late": s.Late, "future": s.Future, "overflow": s.Overflow,
	}
	for r := event.Reason(1); r < event.NumReasons; r++ {
		m["rejected."+event.ReasonNames[r]] = s.Rejected[r]
	}
	for t := event.Type(1); t < event.NumTypes; t++ {
		m["counted."+t.String()] = s.ByType[t]
	}
	return m
}
