package bench

import (
	"context"
	"fmt"
	"io"
	"math"
	"time"
)

// primeAllowance is the time the aligned spike run leaves for opening its connections before
// its start.
const primeAllowance = time.Second

// SpikeResult compares each spike phase of the spike scenario with the base phase before it.
type SpikeResult struct {
	Rounds int         `json:"rounds"`
	Pairs  []SpikePair `json:"pairs"`
	// MedianRatio is the median of the pairs' ratios (0 when no pair has one).
	MedianRatio float64 `json:"median_ratio"`
	// Checkpoints says how the service's checkpoints were placed: timed into the spike
	// phases, or left where its own interval put them (and why).
	Checkpoints string `json:"checkpoints"`
}

// SpikePair is one base phase and the spike phase after it.
type SpikePair struct {
	Base       string  `json:"base"`
	Spike      string  `json:"spike"`
	BaseP99Ms  float64 `json:"base_p99_ms"`
	SpikeP99Ms float64 `json:"spike_p99_ms"`
	// Ratio is SpikeP99Ms / BaseP99Ms (0 when the base phase has no p99).
	Ratio float64 `json:"ratio"`
	// SpikeCheckpoints and BaseCheckpoints are the checkpoints written during each phase
	// (absent when the service reports none).
	SpikeCheckpoints *int `json:"spike_checkpoints,omitempty"`
	BaseCheckpoints  *int `json:"base_checkpoints,omitempty"`
}

// spikeResult pairs the report's spike phases with the phases before them.
func spikeResult(phases []PhaseReport, rounds int, checkpoints string) *SpikeResult {
	res := &SpikeResult{Rounds: rounds, Checkpoints: checkpoints, Pairs: []SpikePair{}}
	var ratios []float64
	for i := 1; i < len(phases); i++ {
		b, s := &phases[i-1], &phases[i]
		if !s.Spike || b.Spike {
			continue
		}
		p := SpikePair{Base: b.Name, Spike: s.Name, BaseP99Ms: b.Latency.P99, SpikeP99Ms: s.Latency.P99,
			SpikeCheckpoints: s.Checkpoints, BaseCheckpoints: b.Checkpoints}
		if b.Latency.P99 > 0 {
			p.Ratio = s.Latency.P99 / b.Latency.P99
			ratios = append(ratios, p.Ratio)
		}
		res.Pairs = append(res.Pairs, p)
	}
	res.MedianRatio = median(ratios)
	return res
}

// WriteText writes the pairs' ratios and the checkpoints' timing.
func (s *SpikeResult) WriteText(w io.Writer) {
	fmt.Fprintf(w, "spike: p99 of each spike phase over the base phase before it (%d pairs):", len(s.Pairs))
	for _, p := range s.Pairs {
		ck := ""
		switch {
		case p.SpikeCheckpoints == nil:
		case *p.SpikeCheckpoints > 0:
			ck = ", checkpoint"
		default:
			ck = ", no checkpoint"
		}
		fmt.Fprintf(w, " %s/%s %.2f (%s / %s ms%s);", p.Spike, p.Base, p.Ratio, ms(p.SpikeP99Ms), ms(p.BaseP99Ms), ck)
	}
	fmt.Fprintf(w, " median %.2f\n", s.MedianRatio)
	if s.Checkpoints != "" {
		fmt.Fprintf(w, "checkpoints: %s\n", s.Checkpoints)
	}
}

// checkpointTimer is the spawned service's checkpoint ticker as the bench learned it: a
// checkpoint is due at tick plus any multiple of interval. The service's ticker does not
// drift (time.Ticker keeps to its start), so one observed checkpoint places them all.
type checkpointTimer struct {
	tick     time.Time
	interval time.Duration
	// into is how far into each spike phase the run puts a checkpoint.
	into time.Duration
}

// spikeOffset returns the offset in sched where the first spike phase's checkpoint is due: a
// quarter into the phase, so that the checkpoint's write, not only its start, falls in the
// spike. ok is false without a spike phase.
func spikeOffset(sched *Schedule) (off, into time.Duration, ok bool) {
	for i, p := range sched.Phases() {
		if p.Spike {
			return sched.PhaseStart(i) + p.Duration/4, p.Duration / 4, true
		}
	}
	return 0, 0, false
}

// alignStart returns the earliest start at or after earliest that puts a checkpoint tick
// spikeOffset into the run; earliest itself without a spike phase.
func (t *checkpointTimer) alignStart(earliest time.Time, sched *Schedule) time.Time {
	off, into, ok := spikeOffset(sched)
	if !ok || t.interval <= 0 {
		return earliest
	}
	t.into = into
	// start = tick + k*interval - off, for the least k with start >= earliest.
	k := math.Ceil(float64(earliest.Add(off).Sub(t.tick)) / float64(t.interval))
	return t.tick.Add(time.Duration(k)*t.interval - off)
}

// learnCheckpointTimer waits, at most the interval and 10 s more, until the service reports
// a checkpoint written, and returns its ticker; nil and the reason when it cannot.
func (r *runner) learnCheckpointTimer(ctx context.Context, interval time.Duration) (*checkpointTimer, string) {
	const step = 100 * time.Millisecond
	t0 := time.Now()
	deadline := t0.Add(interval + 10*time.Second)
	noticed := false
	for ctx.Err() == nil && time.Now().Before(deadline) {
		st, err := r.stats.get()
		readAt := time.Now()
		switch {
		case err != nil:
		case st.Checkpoint == nil:
			return nil, "the service reports no checkpoints (core ingest: checkpoints are of JetStream mode); none timed"
		case st.Checkpoint.Written > 0:
			// The last checkpoint ended age_s ago and took duration_ms from its tick.
			end := readAt.Add(-time.Duration(st.Checkpoint.AgeS * float64(time.Second)))
			return &checkpointTimer{tick: end.Add(-time.Duration(st.Checkpoint.DurationMs) * time.Millisecond), interval: interval}, ""
		case !noticed:
			r.notice("checkpoints: waiting for the service's first checkpoint (every %s) to time the spike phases", interval)
			noticed = true
		}
		sleepCtx(ctx, step)
	}
	return nil, fmt.Sprintf("the service wrote no checkpoint within %s, so none was timed", time.Since(t0).Round(time.Second))
}

// checkpointNote describes the checkpoints' placement for the report.
func (r *runner) checkpointNote(why string) string {
	o := &r.o
	switch {
	case r.ckptTimer != nil:
		return fmt.Sprintf("the service's checkpoint interval was set to %s (one base + spike pair) and the run started so that one is due %s into each spike phase "+
			"(the service cannot be asked for a checkpoint, so its timer was timed)", o.CheckpointInterval, r.ckptTimer.into)
	case why != "":
		return why
	case o.CheckpointInterval > 0:
		return fmt.Sprintf("every %s (--checkpoint-interval), not timed to the phases", o.CheckpointInterval)
	case o.Spawn == nil:
		return "the service's own interval, not timed to the phases (the service is not spawned by the bench)"
	}
	return "the service's own interval, not timed to the phases"
}

// sleepCtx sleeps for d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) {
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
