package bench

import (
	"math"
	"testing"
	"time"
)

func TestScheduleConstantRate(t *testing.T) {
	s, err := NewSchedule([]Phase{{Name: "steady", Duration: 2 * time.Second, BidRate: 1000, EventRate: 250}})
	if err != nil {
		t.Fatalf("unexpected error: %v", err)
	}
	if got := s.Bids(); got != 2000 {
		t.Fatalf("unexpected number of bids; got %d; want 2000", got)
	}
	if got := s.Events(); got != 500 {
		t.Fatalf("unexpected number of events; got %d; want 500", got)
	}
	f := func(n uint64, want time.Duration) {
		t.Helper()
		at, phase, ok := s.BidAt(n, 0)
		if !ok || phase != 0 || at != want {
			t.Fatalf("unexpected BidAt(%d); got %v, %d, %v; want %v, 0, true", n, at, phase, ok, want)
		}
	}
	f(0, 0)
	f(1, time.Millisecond)
	f(999, 999*time.Millisecond)
	f(1999, 1999*time.Millisecond)
	if _, _, ok := s.BidAt(2000, 0); ok {
		t.Fatalf("unexpected request past the end")
	}
	for _, c := range []struct {
		at   time.Duration
		want uint64
	}{{-time.Second, 0}, {0, 0}, {3 * time.Millisecond, 0}, {4 * time.Millisecond, 1}, {time.Second, 250}, {5 * time.Second, 500}} {
		if got := s.EventsDue(c.at); got != c.want {
			t.Fatalf("unexpected EventsDue(%v); got %d; want %d", c.at, got, c.want)
		}
	}
}

func TestSchedulePhases(t *testing.T) {
	s, err := NewSchedule([]Phase{
		{Name: "before", Duration: time.Second, BidRate: 100, EventRate: 10},
		{Name: "during", Duration: 500 * time.Millisecond, BidRate: 100, EventRate: 100},
		{Name: "idle", Duration: time.Second},
		{Name: "after", Duration: time.Second, BidRate: 200, EventRate: 10},
	})
	if err != nil {
		t.Fatalf("unexpected error: %v", err)
	}
	if got, want := s.Duration(), 3500*time.Millisecond; got != want {
		t.Fatalf("unexpected duration; got %v; want %v", got, want)
	}
	if got := s.Bids(); got != 100+50+200 {
		t.Fatalf("unexpected bids; got %d; want 350", got)
	}
	if got := s.Events(); got != 10+50+10 {
		t.Fatalf("unexpected events; got %d; want 70", got)
	}
	// Walk every request: phases in order, times increasing, each inside its phase.
	hint, prev := 0, time.Duration(-1)
	perPhase := make([]int, 4)
	for n := uint64(0); ; n++ {
		at, phase, ok := s.BidAt(n, hint)
		if !ok {
			break
		}
		if at <= prev || phase < hint {
			t.Fatalf("unexpected request %d at %v in phase %d after %v in phase %d", n, at, phase, prev, hint)
		}
		if at < s.PhaseStart(phase) || at >= s.PhaseStart(phase+1) {
			t.Fatalf("unexpected request %d at %v outside its phase %d", n, at, phase)
		}
		if got := s.PhaseAt(at); got != phase {
			t.Fatalf("unexpected PhaseAt(%v); got %d; want %d", at, got, phase)
		}
		hint, prev = phase, at
		perPhase[phase]++
	}
	if perPhase[0] != 100 || perPhase[1] != 50 || perPhase[2] != 0 || perPhase[3] != 200 {
		t.Fatalf("unexpected requests per phase; got %v; want [100 50 0 200]", perPhase)
	}
	// The first request of "after" is due at its start; the hint may point anywhere.
	if at, phase, _ := s.BidAt(150, 3); at != 2500*time.Millisecond || phase != 3 {
		t.Fatalf("unexpected first request of after; got %v in %d", at, phase)
	}
	if at, phase, _ := s.BidAt(0, 3); at != 0 || phase != 0 {
		t.Fatalf("unexpected request 0 with a late hint; got %v in %d", at, phase)
	}
	if got := s.EventsDue(2 * time.Second); got != 60 {
		t.Fatalf("unexpected events due in the idle phase; got %d; want 60", got)
	}
	if got := s.BidsDue(1250 * time.Millisecond); got != 125 {
		t.Fatalf("unexpected BidsDue; got %v; want 125", got)
	}
}

func TestScheduleRamp(t *testing.T) {
	// 1000 -> 3000 req/s over 2 s: 4000 requests, the rate rising linearly.
	s, err := NewSchedule([]Phase{{Name: "ramp", Duration: 2 * time.Second, BidRate: 1000, BidRateEnd: 3000}})
	if err != nil {
		t.Fatalf("unexpected error: %v", err)
	}
	if got := s.Bids(); got != 4000 {
		t.Fatalf("unexpected bids; got %d; want 4000", got)
	}
	// BidAt inverts BidsDue.
	for _, n := range []uint64{1, 10, 999, 2000, 3999} {
		at, _, ok := s.BidAt(n, 0)
		if !ok {
			t.Fatalf("unexpected end at %d", n)
		}
		if got := s.BidsDue(at); math.Abs(got-float64(n)) > 1e-3 {
			t.Fatalf("unexpected BidsDue(BidAt(%d) = %v); got %v", n, at, got)
		}
	}
	// Requests per 100 ms rise from about 100 to about 300.
	count := func(from, to time.Duration) int {
		n := 0
		for i := uint64(0); ; i++ {
			at, _, ok := s.BidAt(i, 0)
			if !ok || at >= to {
				return n
			}
			if at >= from {
				n++
			}
		}
	}
	if first, last := count(0, 100*time.Millisecond), count(1900*time.Millisecond, 2*time.Second); first < 100 || first > 106 || last < 294 || last > 300 {
		t.Fatalf("unexpected ramp shape; got %d requests in the first 100 ms and %d in the last; want about 105 and 295", first, last)
	}
	// A ramp down, and one from zero.
	for _, p := range []Phase{{Name: "down", Duration: time.Second, BidRate: 2000, BidRateEnd: 1}, {Name: "up", Duration: time.Second, BidRate: 0, BidRateEnd: 2000}} {
		s, err := NewSchedule([]Phase{p})
		if err != nil {
			t.Fatalf("unexpected error: %v", err)
		}
		prev := time.Duration(-1)
		for n := uint64(0); n < s.Bids(); n++ {
			at, _, ok := s.BidAt(n, 0)
			if !ok || at < prev || at > time.Second {
				t.Fatalf("unexpected %s request %d at %v (ok %v) after %v", p.Name, n, at, ok, prev)
			}
			prev = at
		}
	}
}

func TestScheduleInvalid(t *testing.T) {
	f := func(phases []Phase) {
		t.Helper()
		if _, err := NewSchedule(phases); err == nil {
			t.Fatalf("unexpected success for %+v", phases)
		}
	}
	f(nil)
	f([]Phase{{Name: "", Duration: time.Second}})
	f([]Phase{{Name: "x", Duration: 0}})
	f([]Phase{{Name: "x", Duration: time.Second, BidRate: -1}})
	f([]Phase{{Name: "x", Duration: time.Second, EventRate: math.NaN()}})
	f([]Phase{{Name: "x", Duration: time.Second, BidRateEnd: math.Inf(1)}})
}
