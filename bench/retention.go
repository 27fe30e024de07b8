package bench

import (
	"time"
)

// statsFresh is how old a /v1/stats sample may be and still stand for the current second (the
// poller reads once a second; while the service is down the last sample goes stale).
const statsFresh = 1500 * time.Millisecond

// CheckpointMark is one checkpoint the service wrote during the run, in seconds from the
// run's start (from /v1/stats: its end is the read time minus age_s, its start the end minus
// duration_ms).
type CheckpointMark struct {
	StartS     float64 `json:"start_s"`
	EndS       float64 `json:"end_s"`
	DurationMs int64   `json:"duration_ms"`
	PauseMs    float64 `json:"pause_ms"`
	SizeBytes  int64   `json:"size_bytes"`
}

// retentionTracker follows the service's checkpoints and stream trims over a run from the
// /v1/stats samples. Those counters, and the longest pause, belong to a service process and
// start again after a restart, so the tracker adds up each process's increments (a sample
// counts only when its process is known). Only the runner's live loop uses it.
type retentionTracker struct {
	start  time.Time
	pid    int
	read   time.Time // the last sample observed
	last   ServiceStats
	marks  []CheckpointMark
	maxKey uint64

	// written, keptInNATS, trims and trimmed are the increments over the run; maxPauseMs the
	// longest checkpoint pause any process reported.
	written, keptInNATS, trims, trimmed uint64
	maxPauseMs                          float64
	processes                           int
}

// observe takes one /v1/stats sample (once; an older or repeated one is ignored).
func (t *retentionTracker) observe(st *ServiceStats) {
	if !st.readAt.After(t.read) {
		return
	}
	t.read = st.readAt
	t.maxKey = max(t.maxKey, st.Keys)
	c := st.Checkpoint
	if c == nil {
		return
	}
	t.maxPauseMs = max(t.maxPauseMs, c.MaxPauseMs)
	if st.pid == 0 {
		return
	}
	if st.pid != t.pid || t.last.Checkpoint == nil {
		t.pid, t.last = st.pid, *st
		t.processes++
		return
	}
	p := t.last.Checkpoint
	if c.Written > p.Written {
		t.written += c.Written - p.Written
		end := st.readAt.Add(-time.Duration(c.AgeS * float64(time.Second)))
		begin := end.Add(-time.Duration(c.DurationMs) * time.Millisecond)
		t.marks = append(t.marks, CheckpointMark{StartS: begin.Sub(t.start).Seconds(), EndS: end.Sub(t.start).Seconds(),
			DurationMs: c.DurationMs, PauseMs: c.PauseMs, SizeBytes: c.SizeBytes})
	}
	if c.KeptInNATS > p.KeptInNATS {
		t.keptInNATS += c.KeptInNATS - p.KeptInNATS
	}
	if s, ps := st.Stream, t.last.Stream; s != nil && ps != nil {
		if s.Trims > ps.Trims {
			t.trims += s.Trims - ps.Trims
		}
		if s.TrimmedMessages > ps.TrimmedMessages {
			t.trimmed += s.TrimmedMessages - ps.TrimmedMessages
		}
	}
	t.last = *st
}

// markSeconds flags the seconds of series that overlap a checkpoint. Second i covers
// (series[i-1].T, series[i].T].
func (t *retentionTracker) markSeconds(series []Second) {
	prev := 0.0
	for i := range series {
		s := &series[i]
		for _, m := range t.marks {
			if m.StartS <= s.T && m.EndS > prev {
				s.Checkpoint = true
				break
			}
		}
		prev = s.T
	}
}

// during returns the number of checkpoints that overlap the span [from, to] of the run (in
// seconds from its start). Only the checkpoints seen by the once-a-second /v1/stats reads
// count: of two within a second, the last; one in the run's last second may be missed.
func (t *retentionTracker) during(from, to float64) int {
	n := 0
	for _, m := range t.marks {
		if m.StartS < to && m.EndS >= from {
			n++
		}
	}
	return n
}
