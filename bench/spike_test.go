package bench

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestSpikeResult(t *testing.T) {
	one, zero := 1, 0
	phases := []PhaseReport{
		{Name: "warmup", Latency: Latency{P99: 9}},
		{Name: "base 1", Latency: Latency{P99: 1}, Checkpoints: &zero},
		{Name: "spike 1", Latency: Latency{P99: 3}, Spike: true, Checkpoints: &one},
		{Name: "base 2", Latency: Latency{P99: 2}, Checkpoints: &zero},
		{Name: "spike 2", Latency: Latency{P99: 2}, Spike: true, Checkpoints: &zero},
		{Name: "base 3", Latency: Latency{P99: 0}},
		{Name: "spike 3", Latency: Latency{P99: 4}, Spike: true},
		{Name: "after", Latency: Latency{P99: 1}},
	}
	s := spikeResult(phases, 3, "timed")
	if len(s.Pairs) != 3 || s.Pairs[0].Base != "base 1" || s.Pairs[0].Spike != "spike 1" || s.Pairs[0].Ratio != 3 ||
		s.Pairs[1].Ratio != 1 || s.Pairs[2].Ratio != 0 || *s.Pairs[0].SpikeCheckpoints != 1 || s.Pairs[2].SpikeCheckpoints != nil {
		t.Fatalf("unexpected pairs %+v", s.Pairs)
	}
	// The pair without a base p99 has no ratio: the median is of 3 and 1.
	if s.MedianRatio != 2 {
		t.Fatalf("unexpected median ratio; got %v; want 2", s.MedianRatio)
	}
	var b bytes.Buffer
	s.WriteText(&b)
	for _, want := range []string{"spike 1/base 1 3.00 (3.000 / 1.000 ms, checkpoint)", "spike 2/base 2 1.00 (2.000 / 2.000 ms, no checkpoint)", "median 2.00", "checkpoints: timed"} {
		if !strings.Contains(b.String(), want) {
			t.Fatalf("unexpected text without %q: %s", want, b.String())
		}
	}
	if m := median([]float64{5, 1, 3, 2}); m != 2.5 {
		t.Fatalf("unexpected median of an even count; got %v; want 2.5", m)
	}
}

func TestCheckpointTimerAlign(t *testing.T) {
	sched, err := NewSchedule([]Phase{
		{Name: "warmup", Duration: time.Second, BidRate: 1},
		{Name: "base 1", Duration: 3 * time.Second, BidRate: 1},
		{Name: "spike 1", Duration: 2 * time.Second, BidRate: 1, Spike: true},
		{Name: "base 2", Duration: 3 * time.Second, BidRate: 1},
		{Name: "spike 2", Duration: 2 * time.Second, BidRate: 1, Spike: true},
	})
	if err != nil {
		t.Fatalf("unexpected error: %v", err)
	}
	t0 := time.Unix(1000, 0)
	ct := &checkpointTimer{tick: t0, interval: 5 * time.Second}
	for _, earliest := range []time.Time{t0, t0.Add(-time.Minute), t0.Add(1234 * time.Millisecond), t0.Add(time.Hour)} {
		start := ct.alignStart(earliest, sched)
		if start.Before(earliest) || start.Sub(earliest) >= ct.interval {
			t.Fatalf("unexpected start %v for the earliest %v: want the first aligned one at or after it", start, earliest)
		}
		// Every spike phase holds a tick half a second (a quarter of it) in; no base phase holds one.
		for i, p := range sched.Phases() {
			from, to := start.Add(sched.PhaseStart(i)), start.Add(sched.PhaseStart(i)+p.Duration)
			ticks := 0
			for k := -100; k <= 1000; k++ {
				tick := t0.Add(time.Duration(k) * ct.interval)
				if !tick.Before(from) && tick.Before(to) {
					ticks++
					if p.Spike && tick.Sub(from) != 500*time.Millisecond {
						t.Fatalf("unexpected tick %v into %s; want 500ms", tick.Sub(from), p.Name)
					}
				}
			}
			if want := map[bool]int{true: 1, false: 0}[p.Spike]; p.Name != "warmup" && ticks != want {
				t.Fatalf("unexpected ticks in %s; got %d; want %d", p.Name, ticks, want)
			}
		}
	}
	if ct.into != 500*time.Millisecond {
		t.Fatalf("unexpected offset into the spikes %v", ct.into)
	}
	plain, _ := NewSchedule([]Phase{{Name: "steady", Duration: time.Second, BidRate: 1}})
	if got := ct.alignStart(t0.Add(7*time.Millisecond), plain); !got.Equal(t0.Add(7 * time.Millisecond)) {
		t.Fatalf("unexpected start of a run without a spike: %v", got)
	}
}

func TestRetentionDuring(t *testing.T) {
	tr := &retentionTracker{marks: []CheckpointMark{{StartS: 2.5, EndS: 2.6}, {StartS: 4.9, EndS: 5.2}, {StartS: 7, EndS: 7}}}
	f := func(from, to float64, want int) {
		t.Helper()
		if got := tr.during(from, to); got != want {
			t.Fatalf("unexpected checkpoints during [%v, %v]; got %d; want %d", from, to, got, want)
		}
	}
	f(0, 2, 0)
	f(2, 3, 1)
	f(3, 5, 1)  // the one that starts in it
	f(5, 6, 1)  // the one still being written in it
	f(6, 7, 0)  // one starting at the end belongs to the next span
	f(7, 8, 1)  // a checkpoint that took no time
	f(0, 10, 3) // all
}
