package bench

import (
	"bytes"
	"encoding/json"
	"math"
	"strings"
	"testing"
	"time"
)

func TestKeyDims(t *testing.T) {
	f := func(keys, campaigns, creatives, placements int) {
		t.Helper()
		c, r, p := keyDims(keys)
		if c != campaigns || r != creatives || p != placements {
			t.Fatalf("unexpected key space for %d keys; got %d x %d x %d; want %d x %d x %d", keys, c, r, p, campaigns, creatives, placements)
		}
		if n := keysOf(c, r, p); n > max(keys, 4) {
			t.Fatalf("unexpected key count %d over %d", n, keys)
		}
	}
	f(1_000_000, 100, 39, 249)
	f(5000, 17, 6, 41)
	f(1, 1, 1, 1) // the smallest space: 4 keys
	for _, keys := range []int{1000, 3000, 12_345, 100_000, 777_777, 1_000_000, 5_000_000} {
		c, r, p := keyDims(keys)
		if n := keysOf(c, r, p); n > keys || float64(n) < 0.9*float64(keys) || r < 1 || p < 1 {
			t.Fatalf("unexpected key space for %d keys: %d x %d x %d = %d keys", keys, c, r, p, n)
		}
	}
}

// TestSweepMakesEveryKey: the sweep's impressions name every cell once, so every key of the
// space is live after it whatever its traffic share.
func TestSweepMakesEveryKey(t *testing.T) {
	syn := NewSynthetic(SyntheticConfig{Campaigns: 3, Creatives: 2, Placements: 5, Skew: 1, RunID: "sw"})
	g := newEventGen(syn, 0, 0, 1)
	cells := map[[3]string]bool{}
	var total Tally
	for first := 0; first < syn.NumCells(); first += 7 {
		data, tally := g.sweep(first, min(7, syn.NumCells()-first), 1_700_000_000_000)
		var evs []map[string]any
		if err := json.Unmarshal(data, &evs); err != nil {
			t.Fatalf("invalid sweep batch %s: %v", data, err)
		}
		if uint64(len(evs)) != tally.Events || tally.Impressions != tally.Events {
			t.Fatalf("unexpected tally %+v of %d events", tally, len(evs))
		}
		for _, e := range evs {
			if e["type"] != "impression" {
				t.Fatalf("unexpected sweep event %v", e)
			}
			cells[[3]string{e["campaign"].(string), e["creative"].(string), e["placement"].(string)}] = true
		}
		total.Add(&tally)
	}
	if len(cells) != 30 || total.Events != 30 || syn.Events() != 30 {
		t.Fatalf("unexpected sweep: %d cells, %d events (synthetic %d); want 30", len(cells), total.Events, syn.Events())
	}
	// The traffic after it continues the id sequence.
	data, _ := g.next(1, 1_700_000_000_000)
	if !bytes.Contains(data, []byte(`"id":"sw-v"`)) { // 31 in base 36
		t.Fatalf("unexpected id after the sweep: %s", data)
	}
}

func TestSummarise(t *testing.T) {
	// A sample at t stands for the second before it: thirds (0, 2], (2, 4], (4, 6].
	s := summarise([]float64{1, 2, 3, 4, 5, 6}, []float64{10, 20, 40, 20, 30, 30}, 6)
	if s.Samples != 6 || s.Min != 10 || s.Max != 40 || s.Mean != 25 || s.First != 10 || s.Last != 30 {
		t.Fatalf("unexpected summary %+v", s)
	}
	want := [3]ThirdSummary{{2, 10, 20, 15}, {2, 20, 40, 30}, {2, 30, 30, 30}}
	if s.Thirds != want {
		t.Fatalf("unexpected thirds; got %+v; want %+v", s.Thirds, want)
	}
	if math.Abs(s.GrowthPct+25) > 1e-9 { // last third's max 30 over the middle's 40
		t.Fatalf("unexpected growth; got %v; want -25", s.GrowthPct)
	}
	if e := summarise(nil, nil, 5); e.Samples != 0 || e.GrowthPct != 0 {
		t.Fatalf("unexpected empty summary %+v", e)
	}
}

// TestRetentionTracker: the checkpoint and trim counters are per service process; the tracker
// adds each process's increments, marks each checkpoint's seconds, and keeps the longest pause
// of any process.
func TestRetentionTracker(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	tr := &retentionTracker{start: t0}
	sample := func(pid int, at time.Duration, written, kept, trims, trimmed uint64, maxPause float64) {
		tr.observe(&ServiceStats{pid: pid, readAt: t0.Add(at), Keys: 10,
			Checkpoint: &CheckpointStats{Written: written, KeptInNATS: kept, MaxPauseMs: maxPause, AgeS: 0.5, DurationMs: 300, PauseMs: 0.1},
			Stream:     &StreamStats{Trims: trims, TrimmedMessages: trimmed}})
	}
	sample(7, 1*time.Second, 5, 2, 2, 100, 0.2) // the first process's baseline
	sample(7, 2*time.Second, 6, 3, 3, 150, 0.2)
	sample(7, 2*time.Second, 9, 9, 9, 999, 9) // the same sample again: ignored
	sample(0, 3*time.Second, 0, 0, 0, 0, 0.4) // unknown process: only the pause counts
	sample(8, 4*time.Second, 0, 0, 0, 0, 0.3) // the restarted process's baseline
	sample(8, 5*time.Second, 2, 1, 1, 40, 0.3)
	if tr.written != 3 || tr.keptInNATS != 2 || tr.trims != 2 || tr.trimmed != 90 || tr.maxPauseMs != 0.4 || tr.processes != 2 {
		t.Fatalf("unexpected tracker %+v", tr)
	}
	if len(tr.marks) != 2 || tr.marks[0].EndS != 1.5 || math.Abs(tr.marks[0].StartS-1.2) > 1e-9 {
		t.Fatalf("unexpected checkpoint marks %+v", tr.marks)
	}
	series := []Second{{T: 1}, {T: 2}, {T: 3}, {T: 4}, {T: 5}}
	tr.markSeconds(series)
	var marked []float64
	for _, s := range series {
		if s.Checkpoint {
			marked = append(marked, s.T)
		}
	}
	if len(marked) != 2 || marked[0] != 2 || marked[1] != 5 {
		t.Fatalf("unexpected seconds marked %v; want [2 5]", marked)
	}
}

func TestProductionText(t *testing.T) {
	p := &ProductionResult{Campaigns: 2, Creatives: 1, Placements: 1, Cells: 2, ExpectedKeys: 8, KeysSeen: 8, MaxKeys: 100,
		BatchMix: []BatchMixFigure{{Events: 10, Weight: 1, Messages: 3, EventsSent: 30, EventShare: 1}},
		StreamMB: summarise([]float64{1, 2, 3}, []float64{5, 6, 5}, 3),
		RSSMB:    summarise([]float64{1, 2, 3}, []float64{100, 110, 120}, 3),
		Trims:    2, Checkpoints: 3, KeptInNATS: 2, Processes: 2, MaxIngestPauseMs: 0.25,
		AroundCheckpoints: []CheckpointBids{{Phase: "before", Seconds: 3, CheckpointSeconds: 1, CheckpointP99Max: 4, OtherP99Median: 1}},
	}
	var b strings.Builder
	p.WriteText(&b)
	for _, want := range []string{"2 campaigns x 1 creatives x 1 placements", "stream bytes (buffer.bytes): 3 samples, min 5, max 6",
		"service RSS (VmRSS): 3 samples", "max of the last third vs the middle +9.1%", "stream trimmed 2 times", "longest ingest pause 0.250 ms",
		"bids, phase before: 1 of 3 seconds during a checkpoint: per-second p99 up to 4.000 ms"} {
		if !strings.Contains(b.String(), want) {
			t.Fatalf("unexpected text, without %q:\n%s", want, b.String())
		}
	}
	if n := p.notes(); len(n) != 0 {
		t.Fatalf("unexpected notes %q", n)
	}
	p.Trims, p.KeysSeen = 0, 7
	if n := p.notes(); len(n) != 2 {
		t.Fatalf("unexpected notes %q; want the missing keys and the untrimmed stream", n)
	}
}
