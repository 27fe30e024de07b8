package bench

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

func TestOptionsDefaultsAndErrors(t *testing.T) {
	o, err := Options{Target: "http://127.0.0.1:1", BidRate: 10}.withDefaults()
	if err != nil {
		t.Fatalf("unexpected error: %v", err)
	}
	if o.Scenario != ScenarioSteady || o.Timeout != 10*time.Millisecond || o.Conns != 256 || o.Endpoint != EndpointSingle ||
		o.Subject != "bidpulse.events.bench" || o.Publish != PublishAuto || !strings.HasPrefix(o.RunID, "bench-") || o.Out == nil {
		t.Fatalf("unexpected defaults %+v", o)
	}
	m, _ := Options{Target: "http://x", Scenario: ScenarioMixed, BidRate: 1}.withDefaults()
	if m.Endpoint != EndpointMix || m.DupRate != 0.01 || m.BadRate != 0.005 {
		t.Fatalf("unexpected mixed defaults %+v", m)
	}
	f := func(o Options, want string) {
		t.Helper()
		_, err := o.withDefaults()
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("unexpected error for %+v; got %v; want one containing %q", o, err, want)
		}
	}
	f(Options{BidRate: 1}, "no target")
	f(Options{Target: "x", Scenario: "soak", BidRate: 1}, "unknown scenario")
	f(Options{Target: "x"}, "nothing to send")
	f(Options{Target: "x", BidRate: -1}, "invalid bid rate")
	f(Options{Target: "x", BidRate: 1, DupRate: 2}, "invalid duplicate rate")
	f(Options{Target: "x", BidRate: 1, Conns: -3}, "invalid conns")
	f(Options{Target: "x", BidRate: 1, Publish: "maybe"}, "invalid publish mode")
	f(Options{Target: "x", BidRate: 1, Scenario: ScenarioRestart}, "needs --spawn")
	f(Options{Spawn: &SpawnOptions{}, BidRate: 1, Scenario: ScenarioRestart, Publish: PublishCore}, "needs JetStream")
	f(Options{Target: "x", BidRate: 1, RestartSignal: "hup"}, "invalid restart signal")
	f(Options{Target: "x", Scenario: ScenarioProduction}, "needs --spawn")
	f(Options{Spawn: &SpawnOptions{}, Scenario: ScenarioProduction, Publish: PublishCore}, "needs JetStream")
	f(Options{Target: "x", BidRate: 1, CheckpointInterval: time.Second}, "need --spawn")
	f(Options{Target: "x", BidRate: 1, BatchMix: BatchMix{{Events: 20_000, Weight: 1}}}, "invalid batch mix size")
	f(Options{Target: "x", BidRate: 1, BidBatch: 100}, "a mode of the capacity scenario")
	f(Options{Target: "x", Scenario: ScenarioCapacity, BidBatch: 1001}, "invalid bid batch")
	f(Options{Target: "x", BidRate: 1, Scenario: ScenarioSpike, SpikeRounds: -1}, "invalid spike rounds")

	// A batch mode measures the baseline too; single GETs only with 0 or 1.
	if c, err := (Options{Target: "x", Scenario: ScenarioCapacity, BidBatch: 100}).withDefaults(); err != nil || !c.Baseline {
		t.Fatalf("unexpected batch capacity options %+v, %v", c, err)
	}
	if c, err := (Options{Target: "x", Scenario: ScenarioCapacity, BidBatch: 1}).withDefaults(); err != nil || c.Baseline {
		t.Fatalf("unexpected single capacity options %+v, %v", c, err)
	}
	// A spawned spike run times the checkpoints into its spikes unless given an interval.
	sp, err := Options{Spawn: &SpawnOptions{}, Scenario: ScenarioSpike, BidRate: 1, Duration: 3 * time.Second, SpikeDuration: 2 * time.Second}.withDefaults()
	if err != nil || !sp.alignCheckpoints || sp.CheckpointInterval != 5*time.Second || sp.SpikeRounds != 3 {
		t.Fatalf("unexpected spawned spike options %+v, %v", sp, err)
	}
	sp, err = Options{Spawn: &SpawnOptions{}, Scenario: ScenarioSpike, BidRate: 1, CheckpointInterval: time.Minute}.withDefaults()
	if err != nil || sp.alignCheckpoints || sp.CheckpointInterval != time.Minute {
		t.Fatalf("unexpected spike options with an interval %+v, %v", sp, err)
	}
	if sp, _ := (Options{Target: "x", Scenario: ScenarioSpike, BidRate: 1}).withDefaults(); sp.alignCheckpoints || sp.CheckpointInterval != 0 {
		t.Fatalf("unexpected checkpoint timing of a service not spawned %+v", sp)
	}

	// The production scenario's zero fields take ProductionDefaults; given ones stay.
	p, err := Options{Spawn: &SpawnOptions{}, Scenario: ScenarioProduction, EventRate: 500}.withDefaults()
	if err != nil {
		t.Fatalf("unexpected error: %v", err)
	}
	d := ProductionDefaults()
	if p.EventRate != 500 || p.Duration != d.Duration || p.Keys != d.Keys || p.BatchMix.String() != d.BatchMix ||
		p.BidCapacityPercent != d.BidCapacityPercent || p.CheckpointInterval != d.CheckpointInterval ||
		p.RemoteCheckpointInterval != d.RemoteCheckpointInterval || p.ReadyTimeout != d.ReadyTimeout {
		t.Fatalf("unexpected production defaults %+v", p)
	}
	if p.Campaigns != 100 || p.Creatives != 39 || p.Placements != 249 {
		t.Fatalf("unexpected key space %d x %d x %d; want 100 x 39 x 249", p.Campaigns, p.Creatives, p.Placements)
	}
}

func TestScenarioPhases(t *testing.T) {
	names := func(o Options, rate, capacity float64) string {
		t.Helper()
		o, err := o.withDefaults()
		if err != nil {
			t.Fatalf("unexpected error: %v", err)
		}
		var s []string
		for _, p := range o.phases(rate, capacity) {
			s = append(s, fmt.Sprintf("%s:%v:%g:%g", p.Name, p.Duration, p.BidRate, p.EventRate))
			if p.Restart {
				s[len(s)-1] += ":restart"
			}
			if p.Spike {
				s[len(s)-1] += ":spike"
			}
		}
		return strings.Join(s, " ")
	}
	f := func(got, want string) {
		t.Helper()
		if got != want {
			t.Fatalf("unexpected phases; got %q; want %q", got, want)
		}
	}
	base := Options{Target: "x", Duration: 2 * time.Second, EventRate: 100, BidRate: 1}
	o := base
	f(names(o, 500, 0), "steady:2s:500:100")
	o.Warmup = time.Second
	f(names(o, 500, 0), "warmup:1s:500:100 steady:2s:500:100")
	o = base
	o.Scenario, o.SpikeDuration = ScenarioSpike, time.Second
	f(names(o, 500, 0), "base 1:2s:500:100 spike 1:1s:500:1000:spike base 2:2s:500:100 spike 2:1s:500:1000:spike "+
		"base 3:2s:500:100 spike 3:1s:500:1000:spike after:2s:500:100")
	o.SpikeRounds = 1
	f(names(o, 500, 0), "base 1:2s:500:100 spike 1:1s:500:1000:spike after:2s:500:100")
	o = base
	o.Scenario, o.Spawn = ScenarioRestart, &SpawnOptions{}
	f(names(o, 500, 0), "before:2s:500:100 restart:2s:500:100:restart after:2s:500:100")
	o = base
	o.Scenario, o.Spawn, o.Duration = ScenarioProduction, &SpawnOptions{}, 8*time.Second
	f(names(o, 500, 0), "before:4s:500:100 restart:2s:500:100:restart after:2s:500:100")
	o.Duration = 10 * time.Minute
	f(names(o, 500, 0), "before:5m0s:500:100 restart:1m0s:500:100:restart after:4m0s:500:100")
	o = base
	o.Scenario, o.RampSteps = ScenarioRamp, 4
	f(names(o, 0, 10000), "step 1 @1000:2s:1000:100 step 2 @4000:2s:4000:100 step 3 @7000:2s:7000:100 step 4 @10000:2s:10000:100")
	o.RampFrom, o.RampTo, o.RampSteps = 100, 200, 2
	f(names(o, 0, 0), "step 1 @100:2s:100:100 step 2 @200:2s:200:100")
	o.Warmup = time.Second
	f(names(o, 50, 0), "warmup:1s:100:100 step 1 @100:2s:100:100 step 2 @200:2s:200:100")
	if o.needsCapacity() {
		t.Fatalf("unexpected capacity measurement for a ramp with bounds")
	}
}

func TestParseTargetAndErrors(t *testing.T) {
	f := func(target, addr string, tls bool) {
		t.Helper()
		a, s, err := parseTarget(target)
		if err != nil || a != addr || s != tls {
			t.Fatalf("unexpected parseTarget(%q); got %q, %v, %v; want %q, %v", target, a, s, err, addr, tls)
		}
	}
	f("http://127.0.0.1:8080", "127.0.0.1:8080", false)
	f("http://localhost", "localhost:80", false)
	f("https://bid.example", "bid.example:443", true)
	for _, bad := range []string{"", "127.0.0.1:8080", "ftp://x", "http://"} {
		if _, _, err := parseTarget(bad); err == nil {
			t.Fatalf("unexpected success of parseTarget(%q)", bad)
		}
	}

	c := func(err error, want Outcome) {
		t.Helper()
		if got := classifyError(err); got != want {
			t.Fatalf("unexpected class of %v; got %s; want %s", err, got, want)
		}
	}
	c(fasthttp.ErrTimeout, Timeout)
	c(fmt.Errorf("dial: %w", os.ErrDeadlineExceeded), Timeout)
	c(&net.OpError{Op: "dial", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}, ConnRefused)
	c(fasthttp.ErrConnectionClosed, ConnClosed)
	c(io.EOF, ConnClosed)
	c(&net.OpError{Op: "read", Err: os.NewSyscallError("read", syscall.ECONNRESET)}, ConnClosed)
	c(errors.New("something else"), OtherError)
}

func TestParseStats(t *testing.T) {
	st, err := parseStats([]byte(`{"received":10,"counted":7,"duplicates":1,"rejected":{"bad_json":2,"bad_id":0},` +
		`"late":0,"future":0,"overflow":0,"dropped_messages":0,"keys":4,"counted_by_type":{"impression":6,"click":1,"conversion":0},` +
		`"mode":"jetstream","ingest_lag_ms":12,"since":"2026-01-02T03:04:05Z","unknown":{"x":1}}`))
	if err != nil {
		t.Fatalf("unexpected error: %v", err)
	}
	if st.Received != 10 || st.Rejected["bad_json"] != 2 || st.CountedByType["impression"] != 6 || st.Mode != "jetstream" ||
		st.IngestLagMs == nil || *st.IngestLagMs != 12 {
		t.Fatalf("unexpected stats %+v", st)
	}
	if st, _ := parseStats([]byte(`{"received":1}`)); st.IngestLagMs != nil || st.Mode != "" {
		t.Fatalf("unexpected optional fields of a core-mode answer: %+v", st)
	}
	if _, err := parseStats([]byte(`<html>`)); err == nil {
		t.Fatalf("unexpected success on HTML")
	}
}

func TestParseGCTrace(t *testing.T) {
	f := func(line string, want float64, wantOK bool) {
		t.Helper()
		got, ok := parseGCTrace(line)
		if ok != wantOK || (ok && (got < want-1e-6 || got > want+1e-6)) {
			t.Fatalf("unexpected parse of %q; got %v, %v; want %v, %v", line, got, ok, want, wantOK)
		}
	}
	f("gc 7 @1.234s 2%: 0.021+1.5+0.030 ms clock, 0.042+0.20/1.1/0.5+0.061 ms cpu, 4->4->1 MB, 4 MB goal, 0 MB stacks, 0 MB globals, 2 P", 51, true)
	f("gc 1 @0.003s 1%: 1.5+0+2.25 ms clock, 3+0/0/0+4.5 ms cpu, 3->3->0 MB, 4 MB goal, 2 P (forced)", 3750, true)
	f(`{"level":"info","message":"gc 1 done"}`, 0, false)
	f("gc 1 @0.003s 1%: bogus ms clock", 0, false)

	g := &gcStats{}
	var sink strings.Builder
	g.scan(strings.NewReader("x\ngc 1 @0s 0%: 0.1+1+0.1 ms clock, ...\ngc 2 @1s 0%: 0.3+1+0.2 ms clock, ...\ny\n"), &sink)
	if sink.String() != "x\ngc 1 @0s 0%: 0.1+1+0.1 ms clock, ...\ngc 2 @1s 0%: 0.3+1+0.2 ms clock, ...\ny\n" {
		t.Fatalf("unexpected copy of the log: %q", sink.String())
	}
	r := g.since(0)
	if r.Cycles != 2 || r.MaxPauseMs != 0.5 || r.TotalPauseMs < 0.69 || r.TotalPauseMs > 0.71 {
		t.Fatalf("unexpected GC report %+v", r)
	}
	if r := g.since(1); r.Cycles != 1 || r.MaxPauseMs != 0.5 {
		t.Fatalf("unexpected GC report after one cycle %+v", r)
	}
}

func TestPlanPinning(t *testing.T) {
	p, err := planPinning(PinOff, true)
	if err != nil || p.service != "" || p.generator != "" || !strings.Contains(p.note, "none") {
		t.Fatalf("unexpected off pinning %+v, %v", p, err)
	}
	if p, _ := planPinning(PinAuto, false); p.service != "" || p.generator != "" {
		t.Fatalf("unexpected pinning without a spawned service: %+v", p)
	}
	if _, err := planPinning("1", true); err == nil {
		t.Fatalf("unexpected success of a bad spec")
	}
	if cpuRange(0, 0) != "0" || cpuRange(2, 3) != "2-3" {
		t.Fatalf("unexpected cpu ranges")
	}
}

func TestBaselineBody(t *testing.T) {
	for _, n := range []int{0, 2, 10, 25, 150, 4096} {
		b := baselineBody(n)
		if len(b) != max(n, 2) {
			t.Fatalf("unexpected body size; got %d; want %d", len(b), n)
		}
	}
	srv, err := StartBaseline("127.0.0.1:0", 150)
	if err != nil {
		t.Fatalf("unexpected error: %v", err)
	}
	defer srv.Close()
	code, body, err := getBody(&fasthttp.HostClient{Addr: srv.Addr()}, "/v1/multiplier?campaign=c1", time.Second)
	if err != nil || code != 200 || len(body) != 150 || !strings.HasPrefix(string(body), `{"multiplier":1,`) {
		t.Fatalf("unexpected baseline answer %d %q %v", code, body, err)
	}
}

func TestProcFigures(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc")
	}
	x := 0
	for selfCPU() < 100*time.Millisecond { // /proc counts in 10 ms ticks
		for i := range 1_000_000 {
			x += i
		}
	}
	_ = x
	if selfCPU() <= 0 || procCPU(os.Getpid()) <= 0 {
		t.Fatalf("unexpected CPU figures: self %v, proc %v", selfCPU(), procCPU(os.Getpid()))
	}
	if rss, peak := procRSS(os.Getpid()); rss == 0 || peak < rss {
		t.Fatalf("unexpected RSS figures %d, %d", rss, peak)
	}
	if procCPU(0) != 0 {
		t.Fatalf("unexpected CPU of pid 0")
	}
	if h := readHostTimes(); h.busy <= 0 || h.steal < 0 {
		t.Fatalf("unexpected host times %+v", h)
	}
}

func TestParseHostTimes(t *testing.T) {
	f := func(stat string, busy, steal time.Duration) {
		t.Helper()
		if got := parseHostTimes([]byte(stat)); got.busy != busy || got.steal != steal {
			t.Fatalf("unexpected host times of %q; got %+v; want busy %v, steal %v", stat, got, busy, steal)
		}
	}
	// user nice system idle iowait irq softirq steal guest guest_nice, in 1/100 s.
	f("cpu  100 20 30 5000 40 5 6 70 12 0\ncpu0 50 10 15 2500 20 2 3 35 6 0\n", 1610*time.Millisecond, 700*time.Millisecond)
	f("cpu  100 20 30 5000 40 5 6\n", 1610*time.Millisecond, 0) // before steal was counted
	f("intr 1 2 3\n", 0, 0)
	f("", 0, 0)
}

func TestDisturbance(t *testing.T) {
	f := func(other, steal float64, want string) {
		t.Helper()
		if got := disturbance(other, steal); !strings.Contains(got, want) || (want == "" && got != "") {
			t.Fatalf("unexpected disturbance of other %v, steal %v; got %q; want one containing %q", other, steal, got, want)
		}
	}
	f(5, 2, "")
	f(70, 0, "disturbed by other processes, not by the host")
	f(3, 70, "disturbed by the host, not by other processes (they used 3%): the host stole 70% of a core")
	f(30, 40, "disturbed by the host and by other processes")
}
