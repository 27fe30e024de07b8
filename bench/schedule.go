package bench

import (
	"fmt"
	"math"
	"time"
)

// Phase is one stretch of a run with its own target rates. Percentiles, throughput and event
// counts are reported per phase (before / during / after a spike, each step of a ramp).
type Phase struct {
	// Name labels the phase in every report.
	Name string
	// Duration is how long the phase lasts.
	Duration time.Duration
	// BidRate is the bid request rate (requests/s) at the start of the phase; 0 sends none.
	BidRate float64
	// BidRateEnd, when > 0, makes the rate ramp linearly from BidRate to BidRateEnd over the
	// phase; 0 keeps BidRate constant.
	BidRateEnd float64
	// EventRate is the event rate (events/s) published during the phase.
	EventRate float64
	// Restart kills the spawned service at the start of the phase and starts it again
	// (the restart scenario).
	Restart bool
	// Spike marks a spike phase of the spike scenario: its p99 is compared with the phase
	// before it, and the service's checkpoints may be timed to fall in it.
	Spike bool
}

// endRate returns the bid rate at the end of the phase.
func (p *Phase) endRate() float64 {
	if p.BidRateEnd > 0 {
		return p.BidRateEnd
	}
	return p.BidRate
}

// bids returns the number of requests intended in the first tau of the phase: the integral of
// the (linear) rate.
func (p *Phase) bids(tau time.Duration) float64 {
	t := tau.Seconds()
	d := p.Duration.Seconds()
	r0, r1 := p.BidRate, p.endRate()
	return r0*t + (r1-r0)*t*t/(2*d)
}

// bidTime returns the offset into the phase at which the m-th intended request (m counted from
// the phase start, fractional) falls: the inverse of bids.
func (p *Phase) bidTime(m float64) time.Duration {
	d := p.Duration.Seconds()
	r0, r1 := p.BidRate, p.endRate()
	a := (r1 - r0) / (2 * d)
	if m <= 0 {
		return 0
	}
	var t float64
	if a == 0 {
		t = m / r0
	} else {
		// a t^2 + r0 t - m = 0, in the form that stays exact when a is tiny or r0 is 0.
		t = 2 * m / (r0 + math.Sqrt(r0*r0+4*a*m))
	}
	return time.Duration(t * 1e9)
}

// Schedule is the timetable of a run: when each bid request is due and how many events are due
// by a given time. The n-th request (from 0) is due when the integral of the bid rate reaches
// n, so the first request of a constant-rate run is due at once and the next after 1/rate: an
// open-loop schedule that never waits for answers. A Schedule is immutable and safe for
// concurrent use.
type Schedule struct {
	phases []Phase
	starts []time.Duration // start offset of each phase, and the run's end last
	bidCum []float64       // requests intended before each phase, and the total last
	evCum  []float64       // events intended before each phase, and the total last
}

// NewSchedule checks phases and builds their timetable.
func NewSchedule(phases []Phase) (*Schedule, error) {
	if len(phases) == 0 {
		return nil, fmt.Errorf("a run needs at least one phase")
	}
	s := &Schedule{phases: append([]Phase(nil), phases...)}
	var at time.Duration
	var bids, events float64
	for i, p := range s.phases {
		if p.Name == "" {
			return nil, fmt.Errorf("phase %d has no name", i+1)
		}
		if p.Duration <= 0 {
			return nil, fmt.Errorf("invalid duration %s of phase %q: must be positive", p.Duration, p.Name)
		}
		for _, r := range []float64{p.BidRate, p.BidRateEnd, p.EventRate} {
			if r < 0 || math.IsNaN(r) || math.IsInf(r, 0) {
				return nil, fmt.Errorf("invalid rate %v in phase %q: must be a finite number >= 0", r, p.Name)
			}
		}
		s.starts = append(s.starts, at)
		s.bidCum = append(s.bidCum, bids)
		s.evCum = append(s.evCum, events)
		at += p.Duration
		bids += p.bids(p.Duration)
		events += p.EventRate * p.Duration.Seconds()
	}
	s.starts = append(s.starts, at)
	s.bidCum = append(s.bidCum, bids)
	s.evCum = append(s.evCum, events)
	return s, nil
}

// Phases returns the phases (a copy).
func (s *Schedule) Phases() []Phase { return append([]Phase(nil), s.phases...) }

// Duration returns the length of the whole run.
func (s *Schedule) Duration() time.Duration { return s.starts[len(s.phases)] }

// PhaseStart returns the start offset of phase i.
func (s *Schedule) PhaseStart(i int) time.Duration { return s.starts[i] }

// PhaseAt returns the index of the phase running at offset t (the last phase past the end).
func (s *Schedule) PhaseAt(t time.Duration) int {
	for i := range s.phases {
		if t < s.starts[i+1] {
			return i
		}
	}
	return len(s.phases) - 1
}

// Bids returns the number of bid requests of the whole run (the integral of the rate, rounded
// down).
func (s *Schedule) Bids() uint64 { return uint64(s.bidCum[len(s.phases)]) }

// BidsOf returns the requests intended in phase i (the integral of its rate; may be fractional).
func (s *Schedule) BidsOf(i int) float64 { return s.bidCum[i+1] - s.bidCum[i] }

// BidAt returns when the n-th bid request (from 0) is due, as an offset from the run's start,
// and its phase; ok is false past the last request. hint is a phase index to start the search
// from (the previous answer's phase), so walking n upwards costs O(1) per request.
func (s *Schedule) BidAt(n uint64, hint int) (at time.Duration, phase int, ok bool) {
	m := float64(n)
	if m >= s.bidCum[len(s.phases)] {
		return 0, 0, false
	}
	i := max(min(hint, len(s.phases)-1), 0)
	for i > 0 && m < s.bidCum[i] {
		i--
	}
	for m >= s.bidCum[i+1] {
		i++
	}
	p := &s.phases[i]
	return s.starts[i] + min(p.bidTime(m-s.bidCum[i]), p.Duration), i, true
}

// BidsDue returns the number of bid requests intended by offset t (the integral of the rate;
// may be fractional).
func (s *Schedule) BidsDue(t time.Duration) float64 {
	if t <= 0 {
		return 0
	}
	i := s.PhaseAt(t)
	p := &s.phases[i]
	return s.bidCum[i] + p.bids(min(t-s.starts[i], p.Duration))
}

// EventsDue returns the number of events due by offset t (rounded down), the rate being
// constant within each phase.
func (s *Schedule) EventsDue(t time.Duration) uint64 {
	if t <= 0 {
		return 0
	}
	i := s.PhaseAt(t)
	p := &s.phases[i]
	into := min(t-s.starts[i], p.Duration)
	return uint64(s.evCum[i] + p.EventRate*into.Seconds())
}

// Events returns the number of events of the whole run (rounded down).
func (s *Schedule) Events() uint64 { return uint64(s.evCum[len(s.phases)]) }
