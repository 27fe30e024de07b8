package bench

import (
	"bytes"
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"
)

// testReport returns a report with every section filled, from a small recorded run.
func testReport() *Report {
	rec := NewRecorder(2)
	t0 := time.Unix(1764345600, 0)
	for i := range 1000 {
		lat := time.Duration(100+i%50) * time.Microsecond
		if i%100 == 0 {
			lat = 2 * time.Millisecond
		}
		rec.Record(i%2, t0, t0, t0.Add(lat), OK)
	}
	rec.Record(1, t0, t0, t0.Add(10*time.Millisecond), Timeout)
	r := &Report{
		Version: ReportVersion, RunID: "bench-test", Scenario: ScenarioSpike, Started: t0.UTC(),
		Target: "http://127.0.0.1:8080", Publish: PublishJetStream, Pinning: "service on CPU 1, load generator on CPU 0 (taskset)",
		Machine:  Machine{CPUs: 2, OS: "linux", Arch: "amd64", Go: "go1.26"},
		Settings: map[string]any{"timeout": "10ms", "timeout_ms": 10.0, "bid_rate": 5000.0},
		Capacity: &CapacityResult{Conns: 32, DurationS: 5, BodyBytes: 150,
			Service:  Throughput{Name: "service", Requests: 100, OK: 100, RPS: 20000},
			Baseline: &Throughput{Name: "baseline", Requests: 110, OK: 110, RPS: 22000}, Rounds: 1, Ratio: 0.909, Ratios: []float64{0.909},
			Batch: &BatchCapacity{Size: 100, Throughput: Throughput{Name: "batch", Requests: 30, OK: 30, RPS: 600, ServerCPU: 95, StealCPU: 4,
				Runtime: &RuntimeReport{GCCycles: 7, GCPauses: 14, GCPauseP99Ms: 0.08, GCPauseMaxMs: 0.1}},
				Multipliers: 3000, MultipliersPerS: 60000, MultipliersPerCPUS: 63158, SinglePerCPUS: 21000, PerCPUGain: 3.0075},
			OpenRTB: &OpenRTBCapacity{Imps: 5, Candidates: 3,
				OpenRTB: BatchCapacity{Size: 15, Throughput: Throughput{Name: "openrtb", Requests: 100, OK: 100, RPS: 2000, ServerCPU: 96,
					Latency: Latency{P99: 1.25}}, Multipliers: 1500, MultipliersPerS: 30000, MultipliersPerCPUS: 31250},
				Batch: BatchCapacity{Size: 15, Throughput: Throughput{Name: "batch-15", Requests: 110, OK: 110, RPS: 2200, ServerCPU: 97,
					Latency: Latency{P99: 1.5}}, Multipliers: 1650, MultipliersPerS: 33000, MultipliersPerCPUS: 34021},
				Ratio: 0.909, Ratios: []float64{0.85, 0.909, 0.95}, RatioPerCPU: 0.918}},
		Notes: []string{"a note"},
	}
	for i, name := range []string{"base 1", "spike 1"} {
		p := rec.Phase(i)
		r.Phases = append(r.Phases, PhaseReport{Name: name, StartS: float64(i), DurationS: 1, BidTarget: 500, BidRate: 500,
			Requests: p.Requests(), Latency: latencyOf(p.Latency), Outcomes: outcomesOf(p.Counts), SendLag: latencyOf(p.SendLag),
			Curve: curveOf(p.Latency), EventTarget: 100, Events: 100, EventRate: 100, OtherCPU: 3, StealCPU: 42, Spike: i == 1,
			Checkpoints: new(i),
			Runtime: &RuntimeReport{GCCycles: uint64(2 + i), GCPauses: uint64(4 + 2*i), GCPauseP99Ms: 0.065, GCPauseMaxMs: 0.082,
				SchedSamples: 1000, SchedLatencyP99Ms: 0.131, SchedLatencyMaxMs: 2.048, HeapLiveMB: 12}})
	}
	r.Spike = spikeResult(r.Phases, 1, "timed into the spikes")
	for i := range 2 {
		lag := 3.0
		r.Series = append(r.Series, Second{T: float64(i + 1), Phase: r.Phases[i].Name, BidTarget: 500, Bids: 500, OK: 500, P50: 0.12, P99: 2, Max: 10, Events: 100, Acked: 100, Received: 100, LagMs: &lag})
	}
	sent := testTally()
	rc := reconcile(PublishJetStream, sent, Tally{}, ServiceStats{}, statsAfter(ServiceStats{}, sent), true)
	r.Reconciliation = &rc
	r.Service = &ServiceReport{GC: GCReport{Cycles: 3, MaxPauseMs: 0.2}, RSSMB: 60, PeakRSSMB: 70, Keys: 1300}
	r.Restart = &RestartResult{Signal: "kill", DownS: 1.5}
	return r
}

func TestReportJSON(t *testing.T) {
	r := testReport()
	var b bytes.Buffer
	if err := r.WriteJSON(&b); err != nil {
		t.Fatalf("unexpected error: %v", err)
	}
	var m map[string]any
	if err := json.Unmarshal(b.Bytes(), &m); err != nil {
		t.Fatalf("unexpected invalid JSON: %v", err)
	}
	for _, k := range []string{"version", "run_id", "scenario", "machine", "pinning", "settings", "capacity", "phases", "series", "reconciliation", "service", "restart", "spike", "notes"} {
		if _, ok := m[k]; !ok {
			t.Fatalf("unexpected report without %q: %s", k, b.String())
		}
	}
	phases := m["phases"].([]any)
	p0 := phases[0].(map[string]any)
	lat := p0["latency"].(map[string]any)
	for _, k := range []string{"p50", "p90", "p99", "p99_9", "max", "mean", "count"} {
		if _, ok := lat[k].(float64); !ok {
			t.Fatalf("unexpected latency without %q: %v", k, lat)
		}
	}
	if got := lat["p99"].(float64); got < 1.9 || got > 2.1 {
		t.Fatalf("unexpected p99 of the first phase; got %v ms; want about 2", got)
	}
	if got := p0["curve"].([]any); len(got) != 22 {
		t.Fatalf("unexpected curve points; got %d; want 22", len(got))
	}
	if p0["steal_cpu"] != 42.0 || p0["other_cpu"] != 3.0 || p0["checkpoints"] != 0.0 {
		t.Fatalf("unexpected CPU or checkpoint figures of the first phase %v", p0)
	}
	rt := p0["runtime"].(map[string]any)
	for _, k := range []string{"gc_cycles", "gc_pauses", "gc_pause_p99_ms", "gc_pause_max_ms", "sched_samples", "sched_latency_p99_ms", "sched_latency_max_ms", "heap_live_mb"} {
		if _, ok := rt[k].(float64); !ok {
			t.Fatalf("unexpected runtime without %q: %v", k, rt)
		}
	}
	if p1 := phases[1].(map[string]any); p1["spike"] != true || p1["checkpoints"] != 1.0 {
		t.Fatalf("unexpected spike phase %v", p1)
	}
	sp := m["spike"].(map[string]any)
	if pairs := sp["pairs"].([]any); len(pairs) != 1 || sp["median_ratio"].(float64) <= 0 || sp["checkpoints"] != "timed into the spikes" {
		t.Fatalf("unexpected spike result %v", sp)
	}
	bc := m["capacity"].(map[string]any)["batch"].(map[string]any)
	if bc["size"] != 100.0 || bc["multipliers"] != 3000.0 || bc["multipliers_per_s"] != 60000.0 || bc["rps"] != 600.0 || bc["per_cpu_gain"] != 3.0075 {
		t.Fatalf("unexpected batch capacity %v", bc)
	}
	rec := m["reconciliation"].(map[string]any)
	if rec["ok"] != true || len(rec["checks"].([]any)) == 0 {
		t.Fatalf("unexpected reconciliation %v", rec)
	}
	if got := rec["published"].(map[string]any)["rejected"].(map[string]any)["bad_type"]; got != 5.0 {
		t.Fatalf("unexpected published rejections; got %v; want 5", got)
	}
}

func TestReportHTML(t *testing.T) {
	r := testReport()
	r.RunID = `</script><script>alert("x")</script>`
	r.Notes = append(r.Notes, `<img src=x onerror=alert(1)>`)
	var b bytes.Buffer
	if err := r.WriteHTML(&b); err != nil {
		t.Fatalf("unexpected error: %v", err)
	}
	page := b.String()
	if !strings.HasPrefix(page, "<!DOCTYPE html>") || !strings.HasSuffix(strings.TrimSpace(page), "</html>") {
		t.Fatalf("unexpected page shape: %.100s ... %.100s", page, page[len(page)-100:])
	}
	// The data is inlined and cannot escape its script element.
	if n := strings.Count(page, "<script"); n != 2 {
		t.Fatalf("unexpected number of script elements; got %d; want 2 (data and code)", n)
	}
	m := regexp.MustCompile(`(?s)<script id="report-data" type="application/json">(.*?)</script>`).FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("unexpected page without the report data")
	}
	// Self-contained: no external script, style, image or font; the only URL of the page
	// (the data aside) is the SVG namespace.
	code := strings.Replace(page, m[1], "", 1)
	for _, bad := range []string{"<link", " src=", "@import", "url("} {
		if strings.Contains(code, bad) {
			t.Fatalf("unexpected external reference %q in the page", bad)
		}
	}
	for _, u := range regexp.MustCompile(`https?://[^"'\s)]+`).FindAllString(code, -1) {
		if u != "http://www.w3.org/2000/svg" {
			t.Fatalf("unexpected URL %q in the page", u)
		}
	}
	var back Report
	if err := json.Unmarshal([]byte(m[1]), &back); err != nil {
		t.Fatalf("unexpected invalid inlined data: %v", err)
	}
	if back.RunID != r.RunID || len(back.Phases) != 2 || len(back.Series) != 2 || back.Capacity.Ratio != 0.909 ||
		back.Phases[0].StealCPU != 42 || back.Phases[1].Runtime.GCCycles != 3 || back.Capacity.Batch.MultipliersPerS != 60000 || back.Spike == nil ||
		back.Capacity.OpenRTB.OpenRTB.MultipliersPerS != 30000 || back.Capacity.OpenRTB.RatioPerCPU != 0.918 {
		t.Fatalf("unexpected inlined report %+v", back)
	}
	// The charts and tables the page draws.
	for _, want := range []string{`id="latency-chart"`, `id="bids-chart"`, `id="events-chart"`, `id="curve-chart"`, `id="phases"`,
		`id="reconcile"`, `id="capacity"`, `id="service-phases"`, `id="spike"`, "host stole % of a core", "scheduler latency p99 ms",
		"batch multipliers/s", "openrtb / batch", "createElementNS", "<title>bidpulse bench: spike &lt;/script&gt;"} {
		if !strings.Contains(page, want) {
			t.Fatalf("unexpected page without %q", want)
		}
	}
}

func TestReportText(t *testing.T) {
	var b bytes.Buffer
	testReport().WriteText(&b)
	out := b.String()
	for _, want := range []string{
		"scenario spike, run bench-test, jetstream publish",
		"pinning: service on CPU 1, load generator on CPU 0 (taskset)",
		"ratio     0.909",
		"phase           secs  target/s",
		"other% steal%",
		"  base 1",
		"  spike 1",
		"host stole 4% of a core",
		"batch of 100 keys (POST /v1/multipliers)",
		"60000 multipliers/s (3000 answered of 3000 asked); 63158 multipliers per service CPU-second, 3.01x the single GETs' 21000",
		"OpenRTB, 5 impressions x 3 candidates (POST /v1/openrtb/multipliers), against batches of the same 15 keys (POST /v1/multipliers):",
		"  openrtb         2000 req/s  p50 - ms  p99 1.250 ms",
		"  batch-15        2200 req/s  p50 - ms  p99 1.500 ms",
		"  openrtb        30000 multipliers/s (1500 answered of 1500 asked)  p99 1.250 ms  31250 multipliers per service CPU-second",
		"  batch-15       33000 multipliers/s (1650 answered of 1650 asked)  p99 1.500 ms  34021 multipliers per service CPU-second",
		"  openrtb / batch 0.909 multipliers/s (median of 3 rounds: 0.850 0.909 0.950), 0.918 per service CPU-second",
		"service by phase",
		"gc cycles",
		"  spike 1                3         6       0.065       0.082       0.131       2.048        12           1",
		"spike: p99 of each spike phase over the base phase before it (1 pairs): spike 1/base 1",
		"checkpoints: timed into the spikes",
		"PASS: every published event",
		"GC: 3 cycles",
		"restart: SIGKILL, service ready again after 1.50s",
		"note: a note",
	} {
		if !strings.Contains(out, want) {
			t.Fatalf("unexpected text report without %q:\n%s", want, out)
		}
	}
}
