package bench

import (
	"sync"
	"time"

	hdr "github.com/HdrHistogram/hdrhistogram-go"
)

// Outcome is what became of one bid request.
type Outcome uint8

// Outcomes of a bid request. Every outcome but the connection errors has a latency.
const (
	// OK: a 2xx answer with the expected body.
	OK Outcome = iota
	// HTTP4xx and HTTP5xx: an answer with that status class.
	HTTP4xx
	HTTP5xx
	// BadBody: a 2xx answer that is not the expected JSON.
	BadBody
	// Late: an answer, but after the intended send time plus the timeout: an ad server had
	// given up. Its real latency is recorded.
	Late
	// Timeout: no answer at all before the hard deadline (see generator.hardDeadline); the
	// connection is closed.
	Timeout
	// Expired: never sent, because every connection of the in-flight cap stayed busy until
	// less than a quarter of the request's time budget was left (recorded at the timeout):
	// the requests ahead of it were slow, or the load generator was behind.
	Expired
	// ConnRefused: nothing listened (the service is down, e.g. during a restart).
	ConnRefused
	// ConnClosed: the connection was closed or reset under the request.
	ConnClosed
	// OtherError: any other client error.
	OtherError
	numOutcomes
)

var outcomeNames = [numOutcomes]string{"ok", "http_4xx", "http_5xx", "bad_body", "late", "timeout", "expired", "conn_refused", "conn_closed", "error"}

// String returns the outcome's name as used in the reports.
func (o Outcome) String() string {
	if o < numOutcomes {
		return outcomeNames[o]
	}
	return "unknown"
}

// hasLatency reports whether the outcome is recorded in the latency histogram: answers of any
// status, timeouts and expired requests (at their time since the intended send, so a stalled
// service shows in the percentiles instead of hiding in an error count). Connection errors
// have no meaningful latency.
func (o Outcome) hasLatency() bool { return o <= Expired }

// Histogram range: 1 µs to 10 minutes at 3 significant digits.
const (
	histMinUs = 1
	histMaxUs = 600_000_000
	histDigit = 3
)

func newHist() *hdr.Histogram { return hdr.New(histMinUs, histMaxUs, histDigit) }

// phaseRecord is what the Recorder holds for one phase.
type phaseRecord struct {
	latency  *hdr.Histogram // µs from intended send to answer
	sendLag  *hdr.Histogram // µs from intended send to actual send (the generator's own delay)
	counts   [numOutcomes]uint64
	capWaits uint64 // requests that found every connection busy when due
	first    time.Time
	last     time.Time
}

// Recorder collects the outcome and latency of every bid request, per phase and per second.
// Latency is measured from the request's intended send time (from the Schedule), not from
// when it was actually sent: when the service stalls, the requests that should have gone out
// meanwhile carry the stall in their latency, which is what an ad server waiting on them sees
// (coordinated omission corrected, as in wrk2).
//
// A Recorder is safe for concurrent use: one mutex, held for a histogram update.
type Recorder struct {
	mu     sync.Mutex
	phases []*phaseRecord
	sec    *hdr.Histogram
	secN   [numOutcomes]uint64
	secCap uint64
}

// NewRecorder returns a Recorder for phases phases.
func NewRecorder(phases int) *Recorder {
	r := &Recorder{sec: newHist()}
	for range phases {
		r.phases = append(r.phases, &phaseRecord{latency: newHist(), sendLag: newHist()})
	}
	return r
}

func toUs(d time.Duration) int64 {
	us := d.Microseconds()
	return min(max(us, histMinUs), histMaxUs)
}

// Record records one request of phase, due at intended, sent at sent (the zero time if never
// sent) and finished at done with outcome o.
func (r *Recorder) Record(phase int, intended, sent, done time.Time, o Outcome) {
	lat := toUs(done.Sub(intended))
	r.mu.Lock()
	p := r.phases[phase]
	p.counts[o]++
	r.secN[o]++
	if o.hasLatency() {
		p.latency.RecordValue(lat)
		r.sec.RecordValue(lat)
	}
	if !sent.IsZero() {
		p.sendLag.RecordValue(toUs(sent.Sub(intended)))
	}
	if p.first.IsZero() || done.Before(p.first) {
		p.first = done
	}
	if done.After(p.last) {
		p.last = done
	}
	r.mu.Unlock()
}

// CapWait counts a request of phase that was due while every connection was busy.
func (r *Recorder) CapWait(phase int) {
	r.mu.Lock()
	r.phases[phase].capWaits++
	r.secCap++
	r.mu.Unlock()
}

// SecondStats is what one second of the run showed (the live line and the time series).
type SecondStats struct {
	Counts   [numOutcomes]uint64
	CapWaits uint64
	// P50, P99 and Max are latencies in µs (0 when nothing was recorded).
	P50, P99, Max int64
}

// Requests returns the requests finished in the second, whatever their outcome.
func (s *SecondStats) Requests() uint64 {
	var n uint64
	for _, c := range s.Counts {
		n += c
	}
	return n
}

// TimedOut returns the requests an ad server gave up on: late, timed out or expired.
func (s *SecondStats) TimedOut() uint64 {
	return s.Counts[Late] + s.Counts[Timeout] + s.Counts[Expired]
}

// Errors returns the requests that failed other than by a timeout.
func (s *SecondStats) Errors() uint64 {
	return s.Requests() - s.Counts[OK] - s.TimedOut()
}

// TakeSecond returns what was recorded since the previous call and starts a new interval.
func (r *Recorder) TakeSecond() SecondStats {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := SecondStats{Counts: r.secN, CapWaits: r.secCap}
	if r.sec.TotalCount() > 0 {
		s.P50 = r.sec.ValueAtQuantile(50)
		s.P99 = r.sec.ValueAtQuantile(99)
		s.Max = r.sec.Max()
	}
	r.sec.Reset()
	r.secN = [numOutcomes]uint64{}
	r.secCap = 0
	return s
}

// PhaseResult is the final record of one phase's bid requests.
type PhaseResult struct {
	Counts   [numOutcomes]uint64
	CapWaits uint64
	// Latency and SendLag are copies of the phase's histograms (µs).
	Latency *hdr.Histogram
	SendLag *hdr.Histogram
	// First and Last are the first and last completion times.
	First, Last time.Time
}

// Requests returns the requests of the phase, whatever their outcome.
func (p *PhaseResult) Requests() uint64 {
	var n uint64
	for _, c := range p.Counts {
		n += c
	}
	return n
}

// Phase returns a copy of what was recorded for phase i.
func (r *Recorder) Phase(i int) PhaseResult {
	r.mu.Lock()
	defer r.mu.Unlock()
	p := r.phases[i]
	return PhaseResult{
		Counts: p.counts, CapWaits: p.capWaits,
		Latency: hdr.Import(p.latency.Export()), SendLag: hdr.Import(p.sendLag.Export()),
		First: p.first, Last: p.last,
	}
}
