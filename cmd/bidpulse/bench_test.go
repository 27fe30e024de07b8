package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/bidpulse/bidpulse/internal/leakcheck"
)

// benchExecMainEnv makes the test binary run main() instead of the tests: `bidpulse bench
// --spawn` starts its own executable (os.Executable) as `serve`, which in a test is this
// binary.
const benchExecMainEnv = "BIDPULSE_TEST_EXEC_MAIN"

// TestMain runs main() when the bench spawns this binary (benchExecMainEnv), else the tests,
// which fail when a goroutine outlives them (goleak).
func TestMain(m *testing.M) {
	if os.Getenv(benchExecMainEnv) == "1" {
		main()
		os.Exit(0)
	}
	leakcheck.VerifyTestMain(m)
}

// benchReport reads a JSON report into a map.
func benchReport(t *testing.T, path string) map[string]any {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("cannot read the report: %v", err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("invalid JSON report: %v", err)
	}
	return m
}

// TestBenchSpawnSteady is the bench's end-to-end check: `bidpulse bench --spawn` starts a
// service, runs a short low-rate steady scenario with duplicates and malformed events, writes
// the JSON and HTML reports, and the run must reconcile exactly (runBench fails otherwise).
func TestBenchSpawnSteady(t *testing.T) {
	t.Setenv(benchExecMainEnv, "1")
	dir := t.TempDir()
	jsonPath, htmlPath := filepath.Join(dir, "r.json"), filepath.Join(dir, "r.html")
	err := runBench([]string{"--spawn", "--pin", "off", "--jetstream", "true",
		"--scenario", "steady", "--duration", "1500ms", "--warmup", "0",
		"--bid-rate", "200", "--timeout", "100ms", "--conns", "16",
		"--event-rate", "1000", "--event-batch", "50", "--preload", "500", "--dup-rate", "0.02", "--bad-rate", "0.01",
		"--campaigns", "5", "--creatives", "2", "--placements", "4",
		"--drain-timeout", "30s", "--json", jsonPath, "--html", htmlPath})
	if err != nil {
		t.Fatalf("unexpected error: %v", err)
	}
	rep := benchReport(t, jsonPath)
	if rep["spawned"] != true || rep["publish"] != "jetstream" || rep["service_mode"] != "jetstream" {
		t.Fatalf("unexpected run: spawned %v, publish %v, service mode %v", rep["spawned"], rep["publish"], rep["service_mode"])
	}
	rec := rep["reconciliation"].(map[string]any)
	if rec["ok"] != true {
		t.Fatalf("unexpected reconciliation %v", rec)
	}
	phases := rep["phases"].([]any)
	if p := phases[0].(map[string]any); p["requests"] != 300.0 {
		t.Fatalf("unexpected phase %v", p)
	}
	html, err := os.ReadFile(htmlPath)
	if err != nil || !strings.Contains(string(html), `<script id="report-data" type="application/json">`) {
		t.Fatalf("unexpected HTML report (%v)", err)
	}
}

// TestBenchSpawnCapacity measures the closed-loop throughput against the spawned service and
// the spawned baseline server (the same executable with --serve-baseline), the batch mode's
// multipliers in POST /v1/multipliers of 10 keys (which implies the baseline), and OpenRTB
// requests of 2 x 3 candidates against batches of 6 keys, in two rounds.
func TestBenchSpawnCapacity(t *testing.T) {
	t.Setenv(benchExecMainEnv, "1")
	dir := t.TempDir()
	jsonPath, htmlPath := filepath.Join(dir, "c.json"), filepath.Join(dir, "c.html")
	err := runBench([]string{"--spawn", "--pin", "off", "--scenario", "capacity", "--bid-batch", "10",
		"--bid-openrtb", "--openrtb-imps", "2", "--openrtb-candidates", "3", "--capacity-rounds", "2",
		"--duration", "300ms", "--capacity-conns", "4", "--preload", "200", "--event-rate", "0", "--json", jsonPath, "--html", htmlPath})
	if err != nil {
		t.Fatalf("unexpected error: %v", err)
	}
	c := benchReport(t, jsonPath)["capacity"].(map[string]any)
	svc, base := c["service"].(map[string]any), c["baseline"].(map[string]any)
	if svc["rps"].(float64) <= 0 || base["rps"].(float64) <= 0 || c["ratio"].(float64) <= 0 || c["body_bytes"].(float64) < 50 {
		t.Fatalf("unexpected capacity %v", c)
	}
	if base["ok"] != base["requests"] || svc["ok"] != svc["requests"] {
		t.Fatalf("unexpected failed requests in the capacity runs: %v", c)
	}
	// Every batch answered 10 multipliers, counted; per CPU-second of the spawned service.
	b := c["batch"].(map[string]any)
	if b["size"] != 10.0 || b["ok"] != b["requests"] || b["ok"].(float64) < 1 || b["multipliers"] != 10*b["ok"].(float64) ||
		b["multipliers_per_s"].(float64) <= b["rps"].(float64) || b["multipliers_per_cpu_s"].(float64) <= 0 ||
		b["single_per_cpu_s"].(float64) <= 0 || b["per_cpu_gain"].(float64) <= 0 {
		t.Fatalf("unexpected batch capacity %v", b)
	}
	// OpenRTB against batches of the same 6 keys: every request answered, every candidate and
	// key counted, per CPU-second of the service, a ratio per round.
	oc := c["openrtb"].(map[string]any)
	ortb, ob := oc["openrtb"].(map[string]any), oc["batch"].(map[string]any)
	for _, x := range []map[string]any{ortb, ob} {
		if x["size"] != 6.0 || x["ok"] != x["requests"] || x["ok"].(float64) < 1 || x["multipliers"] != 6*x["ok"].(float64) ||
			x["multipliers_per_cpu_s"].(float64) <= 0 || x["latency"].(map[string]any)["p99"].(float64) <= 0 {
			t.Fatalf("unexpected OpenRTB comparison side %v", x)
		}
	}
	if ortb["name"] != "openrtb" || ob["name"] != "batch-6" || oc["imps"] != 2.0 || oc["candidates"] != 3.0 ||
		oc["ratio"].(float64) <= 0 || len(oc["ratios"].([]any)) != 2 || oc["ratio_per_cpu"].(float64) <= 0 {
		t.Fatalf("unexpected OpenRTB comparison %v", oc)
	}
	if html, err := os.ReadFile(htmlPath); err != nil || !strings.Contains(string(html), `"openrtb":{"imps":2`) {
		t.Fatalf("unexpected HTML report without the OpenRTB comparison (%v)", err)
	}
	// The service's runs carry its runtime's figures, the baseline's none.
	for _, x := range []map[string]any{svc, b, ortb, ob} {
		rt, ok := x["runtime"].(map[string]any)
		if !ok || rt["sched_samples"].(float64) <= 0 || rt["gc_cycles"].(float64) < 0 {
			t.Fatalf("unexpected runtime figures of %v: %v", x["name"], x["runtime"])
		}
	}
	if _, ok := base["runtime"]; ok {
		t.Fatalf("unexpected runtime figures of the baseline %v", base)
	}
	if s := svc["steal_cpu"].(float64); s < 0 || s > 100*float64(runtime.NumCPU()) {
		t.Fatalf("unexpected steal %v", s)
	}
}

// TestBenchSpawnSpike runs the spike scenario in two short rounds against a spawned service:
// the bench sets the service's checkpoint interval to one base + spike pair and times the run
// so that each spike phase holds a checkpoint and no base phase does.
func TestBenchSpawnSpike(t *testing.T) {
	t.Setenv(benchExecMainEnv, "1")
	dir := t.TempDir()
	jsonPath, htmlPath := filepath.Join(dir, "s.json"), filepath.Join(dir, "s.html")
	err := runBench([]string{"--spawn", "--pin", "off", "--scenario", "spike", "--spike-rounds", "2",
		"--duration", "1s", "--spike-duration", "1s", "--warmup", "0", "--spike-factor", "5",
		"--bid-rate", "200", "--timeout", "100ms", "--conns", "16", "--event-rate", "500", "--event-batch", "50", "--preload", "200",
		"--campaigns", "5", "--creatives", "2", "--placements", "4", "--drain-timeout", "30s", "--json", jsonPath, "--html", htmlPath})
	if err != nil {
		t.Fatalf("unexpected error: %v", err)
	}
	rep := benchReport(t, jsonPath)
	var names []string
	maxCPU := 100 * float64(runtime.NumCPU())
	for _, x := range rep["phases"].([]any) {
		p := x.(map[string]any)
		name := p["name"].(string)
		names = append(names, name)
		want := 0.0
		if strings.HasPrefix(name, "spike") {
			want = 1
		}
		if p["checkpoints"] != want {
			t.Fatalf("unexpected checkpoints in phase %s; got %v; want %v (the checkpoint marks: %v)", name, p["checkpoints"], want, rep["series"])
		}
		if s := p["steal_cpu"].(float64); s < 0 || s > maxCPU {
			t.Fatalf("unexpected steal %v in phase %s", s, name)
		}
		if rt, ok := p["runtime"].(map[string]any); !ok || rt["sched_samples"].(float64) <= 0 {
			t.Fatalf("unexpected runtime figures of phase %s: %v", name, p["runtime"])
		}
	}
	if strings.Join(names, ",") != "base 1,spike 1,base 2,spike 2,after" {
		t.Fatalf("unexpected phases %v", names)
	}
	sp := rep["spike"].(map[string]any)
	pairs := sp["pairs"].([]any)
	if len(pairs) != 2 || sp["median_ratio"].(float64) <= 0 || !strings.Contains(sp["checkpoints"].(string), "interval was set to 2s") {
		t.Fatalf("unexpected spike result %v", sp)
	}
	for _, x := range pairs {
		if p := x.(map[string]any); p["ratio"].(float64) <= 0 || p["spike_checkpoints"] != 1.0 || p["base_checkpoints"] != 0.0 {
			t.Fatalf("unexpected pair %v", p)
		}
	}
	if settings := rep["settings"].(map[string]any); settings["checkpoint_interval"] != "2s" || settings["spike_rounds"] != 2.0 {
		t.Fatalf("unexpected settings %v", settings)
	}
	html, err := os.ReadFile(htmlPath)
	if err != nil || !strings.Contains(string(html), `id="spike-section"`) {
		t.Fatalf("unexpected HTML report (%v)", err)
	}
}

func TestBenchFlags(t *testing.T) {
	f := func(args []string, want string) {
		t.Helper()
		err := runBench(args)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("unexpected error of %q; got %v; want one containing %q", args, err, want)
		}
	}
	f([]string{"--bid-rate", "fast"}, "invalid --bid-rate")
	f([]string{"--bid-rate", "-5%"}, "invalid --bid-rate")
	f([]string{"--keep"}, "need --spawn")
	f([]string{"--scenario", "soak"}, "unknown scenario")
	f([]string{"--scenario", "restart"}, "needs --spawn")
	f([]string{"--scenario", "production"}, "needs --spawn")
	f([]string{"--batch-mix", "100"}, "invalid batch mix")
	f([]string{"--checkpoint-interval", "1s"}, "need --spawn")
	f([]string{"--bid-batch", "100"}, "a mode of the capacity scenario")
	f([]string{"--bid-openrtb"}, "a mode of the capacity scenario")
	f([]string{"--scenario", "capacity", "--bid-openrtb", "--openrtb-imps", "64", "--openrtb-candidates", "32"}, "over the batch endpoint's 1000")
	f([]string{"--endpoint", "grpc"}, "invalid endpoint")
	f([]string{"--endpoint", "openrtb", "--openrtb-imps", "65"}, "invalid OpenRTB impressions 65")
	f([]string{"--endpoint", "openrtb", "--openrtb-candidates", "-1"}, "invalid OpenRTB candidates -1")
	f([]string{"--scenario", "spike", "--spike-rounds", "-1", "--target", "http://127.0.0.1:1"}, "invalid spike rounds")
	f([]string{"extra"}, "unexpected argument")
	f([]string{"--partitions", "-1"}, "-partitions")
	f([]string{"--partitions", "4294967296"}, "invalid --partitions")
	f([]string{"--partitions", "8", "--publish", "core"}, "partitioned publishing needs JetStream")
	f([]string{"--partitions", "8", "--subject", "bench"}, `invalid subject "bench" for a partitioned stream`)
	// --partitions is read from BIDPULSE_BENCH_PARTITIONS too.
	t.Setenv("BIDPULSE_BENCH_PARTITIONS", "8")
	f([]string{"--publish", "core"}, "partitioned publishing needs JetStream")
}

// TestBenchSpawnRestart kills the spawned service with SIGKILL mid-run and restarts it:
// every acknowledged event must still be counted exactly once (JetStream replay from the
// checkpoint), which runBench checks.
func TestBenchSpawnRestart(t *testing.T) {
	t.Setenv(benchExecMainEnv, "1")
	jsonPath := filepath.Join(t.TempDir(), "restart.json")
	err := runBench([]string{"--spawn", "--pin", "off", "--scenario", "restart", "--restart-down", "200ms",
		"--duration", "1s", "--warmup", "0", "--bid-rate", "100", "--timeout", "100ms", "--conns", "16",
		"--event-rate", "1000", "--event-batch", "50", "--preload", "200", "--dup-rate", "0.01",
		"--campaigns", "5", "--creatives", "2", "--placements", "4", "--drain-timeout", "30s", "--json", jsonPath})
	if err != nil {
		t.Fatalf("unexpected error: %v", err)
	}
	rep := benchReport(t, jsonPath)
	rs := rep["restart"].(map[string]any)
	if rs["signal"] != "kill" || rs["down_s"].(float64) <= 0 || rs["error"] != nil {
		t.Fatalf("unexpected restart %v", rs)
	}
	if rep["reconciliation"].(map[string]any)["ok"] != true {
		t.Fatalf("unexpected reconciliation %v", rep["reconciliation"])
	}
}

// TestBenchSpawnProduction runs the production scenario small and short: a few seconds of
// events in messages of mixed sizes over about 3,000 live keys, a checkpoint kept in NATS (and
// so a stream trim) every second, bids, and a SIGKILL of the spawned service in the middle.
// The reconciliation must pass (runBench fails otherwise) and the report must carry the
// stream's bytes and the service's RSS, once a second. 10 s, not less: under the race detector,
// with the rest of the suite on the same cores, one checkpoint took 1.9 s, and 6 s then held no
// checkpoint kept in NATS before the kill.
func TestBenchSpawnProduction(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns, kills and restarts a service for about 14 s")
	}
	t.Setenv(benchExecMainEnv, "1")
	dir := t.TempDir()
	jsonPath, htmlPath := filepath.Join(dir, "p.json"), filepath.Join(dir, "p.html")
	err := runBench([]string{"--spawn", "--pin", "off", "--scenario", "production", "--duration", "10s", "--warmup", "0",
		"--event-rate", "3000", "--keys", "3000", "--batch-mix", "10:2,100:1,1000:1",
		"--checkpoint-interval", "1s", "--remote-checkpoint-interval", "1s", "--restart-down", "200ms",
		"--bid-rate", "100", "--timeout", "100ms", "--conns", "16", "--drain-timeout", "30s",
		"--json", jsonPath, "--html", htmlPath})
	if err != nil {
		t.Fatalf("unexpected error: %v", err)
	}
	rep := benchReport(t, jsonPath)
	if rep["reconciliation"].(map[string]any)["ok"] != true {
		t.Fatalf("unexpected reconciliation %v", rep["reconciliation"])
	}
	if rs := rep["restart"].(map[string]any); rs["signal"] != "kill" || rs["down_s"].(float64) <= 0 || rs["error"] != nil {
		t.Fatalf("unexpected restart %v", rs)
	}
	var names []string
	for _, p := range rep["phases"].([]any) {
		names = append(names, p.(map[string]any)["name"].(string))
	}
	if strings.Join(names, " ") != "before restart after" {
		t.Fatalf("unexpected phases %v", names)
	}
	p := rep["production"].(map[string]any)
	if p["expected_keys"].(float64) > 3000 || p["keys_seen"] != p["expected_keys"] || p["processes"] != 2.0 ||
		p["checkpoints"].(float64) < 1 || p["trims"].(float64) < 1 || len(p["batch_mix"].([]any)) != 3 {
		t.Fatalf("unexpected production figures %v", p)
	}
	for _, name := range []string{"stream_mb", "rss_mb"} {
		if s := p[name].(map[string]any); s["samples"].(float64) < 3 || s["max"].(float64) <= 0 {
			t.Fatalf("unexpected %s series %v", name, s)
		}
	}
	var stream, rss int
	for _, s := range rep["series"].([]any) {
		sec := s.(map[string]any)
		if _, ok := sec["stream_bytes"]; ok {
			stream++
		}
		if v, ok := sec["rss_mb"].(float64); ok && v > 0 {
			rss++
		}
	}
	if stream < 3 || rss < 3 {
		t.Fatalf("unexpected series: %d seconds with the stream's bytes, %d with the RSS", stream, rss)
	}
	html, err := os.ReadFile(htmlPath)
	if err != nil || !strings.Contains(string(html), "Stream and memory") {
		t.Fatalf("unexpected HTML report (%v)", err)
	}
}
