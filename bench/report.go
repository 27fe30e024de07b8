package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	hdr "github.com/HdrHistogram/hdrhistogram-go"
)

// ReportVersion is the version of the JSON report's layout.
const ReportVersion = 1

// Report is everything a run measured: what the text report prints, WriteJSON writes and
// WriteHTML draws. Latencies are in milliseconds, rates per second, CPU in percent of one core
// (up to 100 times the CPUs).
type Report struct {
	Version  int       `json:"version"`
	RunID    string    `json:"run_id"`
	Scenario string    `json:"scenario"`
	Started  time.Time `json:"started"`
	// DurationS is the measured run's length (capacity, preload and drain excluded).
	DurationS float64 `json:"duration_s"`
	Target    string  `json:"target"`
	NATSURL   string  `json:"nats_url"`
	// Publish is the event publish mode used: jetstream or core.
	Publish string `json:"publish"`
	// Partitions is the partitions of the service the run published for (each batch split by
	// campaign, bench/partitioned.go); 0: not partitioned.
	Partitions uint32 `json:"partitions"`
	// ServiceMode is the ingest mode /v1/stats reported ("core", "jetstream" or "").
	ServiceMode string  `json:"service_mode"`
	Spawned     bool    `json:"spawned"`
	Machine     Machine `json:"machine"`
	// Pinning says which CPUs the service and the load generator ran on.
	Pinning string `json:"pinning"`
	// Settings are the effective options, for reproducing the run.
	Settings       map[string]any  `json:"settings"`
	Capacity       *CapacityResult `json:"capacity,omitempty"`
	Phases         []PhaseReport   `json:"phases"`
	Series         []Second        `json:"series"`
	Ramp           *RampResult     `json:"ramp,omitempty"`
	Spike          *SpikeResult    `json:"spike,omitempty"`
	Restart        *RestartResult  `json:"restart,omitempty"`
	Reconciliation *Reconciliation `json:"reconciliation,omitempty"`
	Service        *ServiceReport  `json:"service,omitempty"`
	// Production holds the production scenario's retention, memory and checkpoint figures.
	Production *ProductionResult `json:"production,omitempty"`
	// Notes are warnings about the run's validity (the generator saturated, the in-flight cap
	// reached, events behind schedule).
	Notes []string `json:"notes"`
}

// Machine describes where the run happened.
type Machine struct {
	CPUs       int    `json:"cpus"`
	CPUModel   string `json:"cpu_model"`
	OS         string `json:"os"`
	Arch       string `json:"arch"`
	Go         string `json:"go"`
	GOMAXPROCS int    `json:"gomaxprocs"`
}

// Latency holds the percentiles of a latency histogram, in ms.
type Latency struct {
	Count int64   `json:"count"`
	Mean  float64 `json:"mean"`
	P50   float64 `json:"p50"`
	P90   float64 `json:"p90"`
	P99   float64 `json:"p99"`
	P999  float64 `json:"p99_9"`
	Max   float64 `json:"max"`
}

// CurvePoint is one point of a percentile distribution: the latency (ms) at percentile P.
type CurvePoint struct {
	P  float64 `json:"p"`
	Ms float64 `json:"ms"`
}

// PhaseReport is one phase's bid and event figures.
type PhaseReport struct {
	Name      string  `json:"name"`
	StartS    float64 `json:"start_s"`
	DurationS float64 `json:"duration_s"`
	// BidTarget is the mean intended rate; BidRate the rate of finished requests.
	BidTarget float64           `json:"bid_target"`
	BidRate   float64           `json:"bid_rate"`
	Requests  uint64            `json:"requests"`
	Latency   Latency           `json:"latency"`
	Outcomes  map[string]uint64 `json:"outcomes"`
	// CapWaits counts requests that were due while every connection was busy.
	CapWaits uint64 `json:"cap_waits"`
	// SendLag is the generator's own delay from intended to actual send.
	SendLag     Latency      `json:"send_lag"`
	Curve       []CurvePoint `json:"curve"`
	EventTarget float64      `json:"event_target"`
	Events      uint64       `json:"events"`
	EventRate   float64      `json:"event_rate"`
	GenCPU      float64      `json:"gen_cpu"`
	SvcCPU      float64      `json:"svc_cpu"`
	// OtherCPU is what the machine's other processes used, and StealCPU the time the host
	// (the hypervisor) took from this machine's CPUs for something else: two different
	// disturbances (see hostTimes).
	OtherCPU float64 `json:"other_cpu"`
	StealCPU float64 `json:"steal_cpu"`
	// Spike marks a spike phase of the spike scenario.
	Spike bool `json:"spike,omitempty"`
	// Runtime is what the service's Go runtime did during the phase (absent when the service
	// does not answer GET /debug/runtime, or restarted within the phase).
	Runtime *RuntimeReport `json:"runtime,omitempty"`
	// Checkpoints is the number of checkpoints the service wrote during the phase (absent
	// when it reports none: core ingest).
	Checkpoints *int `json:"checkpoints,omitempty"`
}

// Second is one second of the run (the live line and the charts).
type Second struct {
	T         float64  `json:"t"`
	Phase     string   `json:"phase"`
	BidTarget float64  `json:"bid_target"`
	Bids      uint64   `json:"bids"`
	OK        uint64   `json:"ok"`
	Timeouts  uint64   `json:"timeouts"`
	Errors    uint64   `json:"errors"`
	CapWaits  uint64   `json:"cap_waits"`
	P50       float64  `json:"p50"`
	P99       float64  `json:"p99"`
	Max       float64  `json:"max"`
	Events    uint64   `json:"events"`
	Acked     uint64   `json:"acked"`
	Received  int64    `json:"received"`
	Backlog   int64    `json:"backlog"`
	LagMs     *float64 `json:"lag_ms"`
	GenCPU    float64  `json:"gen_cpu"`
	SvcCPU    float64  `json:"svc_cpu"`
	OtherCPU  float64  `json:"other_cpu"`
	StealCPU  float64  `json:"steal_cpu"`
	// StreamBytes is the service's events stream (/v1/stats buffer.bytes) and RSSMB the
	// spawned service's resident memory (VmRSS of /proc/<pid>/status, MiB), sampled in the
	// second; absent when unknown (no JetStream, not spawned, or the service down).
	StreamBytes *uint64  `json:"stream_bytes,omitempty"`
	RSSMB       *float64 `json:"rss_mb,omitempty"`
	// Checkpoint says a checkpoint of the service was being written during the second.
	Checkpoint bool `json:"checkpoint,omitempty"`
}

// Throughput is one closed-loop measurement.
type Throughput struct {
	Name      string            `json:"name"`
	Requests  uint64            `json:"requests"`
	OK        uint64            `json:"ok"`
	RPS       float64           `json:"rps"`
	Latency   Latency           `json:"latency"`
	Outcomes  map[string]uint64 `json:"outcomes"`
	GenCPU    float64           `json:"gen_cpu"`
	ServerCPU float64           `json:"server_cpu"`
	// OtherCPU is what the machine's other processes used meanwhile and StealCPU what the
	// host took from its CPUs (percent of one core).
	OtherCPU float64 `json:"other_cpu"`
	StealCPU float64 `json:"steal_cpu"`
	// Runtime is what the service's Go runtime did during the measurement (the service's
	// runs only, when it answers GET /debug/runtime).
	Runtime *RuntimeReport `json:"runtime,omitempty"`
}

// CapacityRound is one baseline + service pair of a capacity measurement.
type CapacityRound struct {
	Baseline float64 `json:"baseline_rps"`
	Service  float64 `json:"service_rps"`
	OtherCPU float64 `json:"other_cpu"`
	StealCPU float64 `json:"steal_cpu"`
	// BatchMultipliers is the round's multipliers/s in batches (0 without a batch mode).
	BatchMultipliers float64 `json:"batch_multipliers_per_s,omitempty"`
}

// CapacityResult is the closed-loop throughput of GET /v1/multiplier, and of the baseline.
type CapacityResult struct {
	Conns     int         `json:"conns"`
	DurationS float64     `json:"duration_s"`
	BodyBytes int         `json:"body_bytes"`
	Service   Throughput  `json:"service"`
	Baseline  *Throughput `json:"baseline,omitempty"`
	// Rounds is the number of measurements of each; Service and Baseline sum them.
	Rounds int `json:"rounds"`
	// Ratio is the median of the rounds' service/baseline rate ratios (0 without a baseline);
	// Ratios are the rounds' ratios, sorted.
	Ratio  float64   `json:"ratio"`
	Ratios []float64 `json:"ratios,omitempty"`
	// RatioPerCPU compares requests per server CPU-second (service over baseline): the
	// ratio of the work per request, which holds when the load generator, not the server,
	// limited a rate (a server under 90% CPU).
	RatioPerCPU float64 `json:"ratio_per_cpu,omitempty"`
	// RoundFigures are the rounds in the order run.
	RoundFigures []CapacityRound `json:"round_figures,omitempty"`
	// Batch is the batch mode's measurement (Options.BidBatch), made in each round after
	// the single GETs.
	Batch *BatchCapacity `json:"batch,omitempty"`
	// OpenRTB compares OpenRTB requests with batches of the same work (Options.BidOpenRTB),
	// measured in each round after the rest.
	OpenRTB *OpenRTBCapacity `json:"openrtb,omitempty"`
}

// OpenRTBCapacity is the closed-loop throughput of POST /v1/openrtb/multipliers with Imps
// impressions of Candidates candidates each, against POST /v1/multipliers with as many keys
// per request: the same multipliers asked, in two shapes. Both sides are BatchCapacity figures
// of Imps x Candidates multipliers per request (Throughput counts requests).
type OpenRTBCapacity struct {
	Imps       int           `json:"imps"`
	Candidates int           `json:"candidates"`
	OpenRTB    BatchCapacity `json:"openrtb"`
	Batch      BatchCapacity `json:"batch"`
	// Ratio is the median of the rounds' OpenRTB over batch multipliers/s; Ratios are the
	// rounds' ratios, sorted.
	Ratio  float64   `json:"ratio"`
	Ratios []float64 `json:"ratios,omitempty"`
	// RatioPerCPU is OpenRTB's multipliers per service CPU-second over the batch's (0 when the
	// service's CPU is unknown): the ratio of the service's work per multiplier, which holds
	// when the load generator, not the service, limited a rate.
	RatioPerCPU float64 `json:"ratio_per_cpu,omitempty"`
}

// BatchCapacity is the closed-loop throughput of POST /v1/multipliers with Size keys per
// request. Its Throughput counts requests; the multipliers are the answered items (an item
// the service answered with an error is not one).
type BatchCapacity struct {
	Size int `json:"size"`
	Throughput
	Multipliers     uint64  `json:"multipliers"`
	MultipliersPerS float64 `json:"multipliers_per_s"`
	// MultipliersPerCPUS is multipliers per CPU-second of the service, and SinglePerCPUS the
	// single GETs' answers per CPU-second in the same rounds; PerCPUGain is their ratio (what
	// a batch saves per multiplier). All 0 when the service's CPU is unknown (not spawned).
	MultipliersPerCPUS float64 `json:"multipliers_per_cpu_s"`
	SinglePerCPUS      float64 `json:"single_per_cpu_s"`
	PerCPUGain         float64 `json:"per_cpu_gain"`
}

// RampResult is the outcome of a ramp.
type RampResult struct {
	ThresholdMs float64 `json:"threshold_ms"`
	// Capacity is the highest step rate whose p99 stayed under the threshold with under 1% of
	// errors and timeouts (0 if none did).
	Capacity float64 `json:"capacity"`
	// Crossed names the first step over the threshold ("" if none was).
	Crossed string `json:"crossed"`
}

// RestartResult is what the restart scenario did.
type RestartResult struct {
	Signal string `json:"signal"`
	// DownS is from the signal to the service's /readyz answering 200 again.
	DownS float64 `json:"down_s"`
	Error string  `json:"error,omitempty"`
}

// ServiceReport holds the spawned service's process figures over the measured run.
type ServiceReport struct {
	GC        GCReport `json:"gc"`
	RSSMB     float64  `json:"rss_mb"`
	PeakRSSMB float64  `json:"peak_rss_mb"`
	Keys      uint64   `json:"keys"`
}

func usToMs(us int64) float64 { return float64(us) / 1000 }

func latencyOf(h *hdr.Histogram) Latency {
	if h.TotalCount() == 0 {
		return Latency{}
	}
	return Latency{
		Count: h.TotalCount(),
		Mean:  h.Mean() / 1000,
		P50:   usToMs(h.ValueAtQuantile(50)),
		P90:   usToMs(h.ValueAtQuantile(90)),
		P99:   usToMs(h.ValueAtQuantile(99)),
		P999:  usToMs(h.ValueAtQuantile(99.9)),
		Max:   usToMs(h.Max()),
	}
}

// curveOf samples the percentile distribution at 0, 90, 99, 99.9, ... (four points per nine).
func curveOf(h *hdr.Histogram) []CurvePoint {
	if h.TotalCount() == 0 {
		return nil
	}
	var pts []CurvePoint
	for k := 0; k <= 20; k++ {
		p := 100 * (1 - math.Pow(10, -float64(k)/4))
		pts = append(pts, CurvePoint{P: math.Round(p*1e4) / 1e4, Ms: usToMs(h.ValueAtQuantile(p))})
	}
	pts = append(pts, CurvePoint{P: 100, Ms: usToMs(h.Max())})
	return pts
}

func outcomesOf(c [numOutcomes]uint64) map[string]uint64 {
	m := map[string]uint64{}
	for o, n := range c {
		if n > 0 {
			m[Outcome(o).String()] = n
		}
	}
	return m
}

// WriteJSON writes the report as indented JSON.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// ms formats a latency in ms with 3 significant-ish digits.
func ms(v float64) string {
	switch {
	case v == 0:
		return "-"
	case v < 10:
		return fmt.Sprintf("%.3f", v)
	case v < 100:
		return fmt.Sprintf("%.2f", v)
	}
	return fmt.Sprintf("%.0f", v)
}

// fmtCheckpoints formats a phase's checkpoint count for the tables ("-" when unknown).
func fmtCheckpoints(n *int) string {
	if n == nil {
		return "-"
	}
	return strconv.Itoa(*n)
}

// median returns the median of xs (0 for none): of an even count, the mean of the middle
// two. xs is sorted in place.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	slices.Sort(xs)
	m := xs[len(xs)/2]
	if len(xs)%2 == 0 {
		m = (xs[len(xs)/2-1] + xs[len(xs)/2]) / 2
	}
	return m
}

func fmtRatios(r []float64) string {
	var b strings.Builder
	for i, x := range r {
		if i > 0 {
			b.WriteString(" ")
		}
		fmt.Fprintf(&b, "%.3f", x)
	}
	return b.String()
}

// WriteText writes the final text report: the capacity, a table per phase, the ramp or restart
// outcome, the reconciliation verdicts, the service's figures and the notes.
func (r *Report) WriteText(w io.Writer) {
	fmt.Fprintf(w, "\nbidpulse bench: scenario %s, run %s, %s publish, %s\n", r.Scenario, r.RunID, r.Publish, r.Target)
	if r.Partitions > 0 {
		fmt.Fprintf(w, "partitioned: %d partitions, each event batch split by campaign (duplicates and malformed events to campaign %s's subject)\n", r.Partitions, InjectedCampaign)
	}
	fmt.Fprintf(w, "machine: %d CPUs (%s), %s/%s, %s; pinning: %s\n", r.Machine.CPUs, r.Machine.CPUModel, r.Machine.OS, r.Machine.Arch, r.Machine.Go, r.Pinning)
	if c := r.Capacity; c != nil {
		fmt.Fprintf(w, "\ncapacity (closed loop, %d connections, %d x %.0fs each, GET /v1/multiplier answers of %d bytes):\n", c.Conns, c.Rounds, c.DurationS, c.BodyBytes)
		line := func(t *Throughput) {
			fmt.Fprintf(w, "  %-9s %10.0f req/s  p50 %s ms  p99 %s ms  errors %d  server cpu %.0f%%  generator cpu %.0f%%  other processes %.0f%%  host stole %.0f%% of a core\n",
				t.Name, t.RPS, ms(t.Latency.P50), ms(t.Latency.P99), t.Requests-t.OK, t.ServerCPU, t.GenCPU, t.OtherCPU, t.StealCPU)
			if rt := t.Runtime; rt != nil {
				fmt.Fprintf(w, "  %-9s GC %d cycles, pause p99 %s ms max %s ms; scheduler latency p99 %s ms max %s ms\n", "",
					rt.GCCycles, ms(rt.GCPauseP99Ms), ms(rt.GCPauseMaxMs), ms(rt.SchedLatencyP99Ms), ms(rt.SchedLatencyMaxMs))
			}
		}
		if c.Baseline != nil {
			line(c.Baseline)
		}
		line(&c.Service)
		if c.Baseline != nil {
			fmt.Fprintf(w, "  ratio     %.3f (service / bare fasthttp handler; median of %d rounds: %s)\n", c.Ratio, len(c.Ratios), fmtRatios(c.Ratios))
			if c.RatioPerCPU > 0 {
				fmt.Fprintf(w, "  ratio per server CPU %.3f (requests per CPU-second of the server, service / baseline)\n", c.RatioPerCPU)
			}
		}
		if b := c.Batch; b != nil {
			fmt.Fprintf(w, "  batch of %d keys (POST /v1/multipliers):\n", b.Size)
			line(&b.Throughput)
			fmt.Fprintf(w, "  batch     %10.0f multipliers/s (%d answered of %d asked)", b.MultipliersPerS, b.Multipliers, b.OK*uint64(b.Size))
			if b.MultipliersPerCPUS > 0 {
				fmt.Fprintf(w, "; %.0f multipliers per service CPU-second, %.2fx the single GETs' %.0f", b.MultipliersPerCPUS, b.PerCPUGain, b.SinglePerCPUS)
			}
			fmt.Fprintln(w)
		}
		if oc := c.OpenRTB; oc != nil {
			oc.writeText(w, line)
		}
	}
	if len(r.Phases) > 0 {
		fmt.Fprintf(w, "\nbids (latency in ms from the intended send time; timeouts = answers later than %v, none, or not sent in time; all count in the percentiles;\n"+
			"  CPU in %% of one core: gen = load generator, svc = service, other = other processes, steal = stolen by the host for something else):\n", r.Settings["timeout"])
		fmt.Fprintf(w, "  %-14s %5s %9s %9s %9s %7s %7s %7s %7s %7s %8s %7s %6s %9s %5s %5s %6s %6s\n",
			"phase", "secs", "target/s", "done/s", "requests", "p50", "p90", "p99", "p99.9", "max", "timeouts", "errors", "capw", "events/s", "gen%", "svc%", "other%", "steal%")
		for i := range r.Phases {
			p := &r.Phases[i]
			to := p.Outcomes["late"] + p.Outcomes["timeout"] + p.Outcomes["expired"]
			errs := p.Requests - p.Outcomes["ok"] - to
			fmt.Fprintf(w, "  %-14s %5.1f %9.0f %9.0f %9d %7s %7s %7s %7s %7s %8d %7d %6d %9.0f %5.0f %5.0f %6.0f %6.0f\n",
				p.Name, p.DurationS, p.BidTarget, p.BidRate, p.Requests, ms(p.Latency.P50), ms(p.Latency.P90),
				ms(p.Latency.P99), ms(p.Latency.P999), ms(p.Latency.Max), to, errs, p.CapWaits, p.EventRate, p.GenCPU, p.SvcCPU, p.OtherCPU, p.StealCPU)
		}
		r.writeServicePhases(w)
	}
	if r.Spike != nil {
		fmt.Fprintln(w)
		r.Spike.WriteText(w)
	}
	if rr := r.Ramp; rr != nil {
		if rr.Capacity > 0 {
			fmt.Fprintf(w, "\nramp: capacity %.0f req/s (the highest step with p99 <= %s ms and < 1%% errors)", rr.Capacity, ms(rr.ThresholdMs))
		} else {
			fmt.Fprintf(w, "\nramp: no step kept p99 <= %s ms", ms(rr.ThresholdMs))
		}
		if rr.Crossed != "" {
			fmt.Fprintf(w, "; crossed at %s", rr.Crossed)
		}
		fmt.Fprintln(w)
	}
	if rs := r.Restart; rs != nil {
		fmt.Fprintf(w, "\nrestart: SIG%s, service ready again after %.2fs", strings.ToUpper(rs.Signal), rs.DownS)
		if rs.Error != "" {
			fmt.Fprintf(w, " (%s)", rs.Error)
		}
		fmt.Fprintln(w)
	}
	if r.Reconciliation != nil {
		fmt.Fprintln(w)
		r.Reconciliation.WriteText(w)
	}
	if r.Production != nil {
		fmt.Fprintln(w)
		r.Production.WriteText(w)
	}
	if s := r.Service; s != nil {
		fmt.Fprintf(w, "\nservice: %d keys, RSS %.0f MB (peak %.0f MB); GC: %d cycles, stop-the-world max %.3f ms, p99 %.3f ms, total %.1f ms\n",
			s.Keys, s.RSSMB, s.PeakRSSMB, s.GC.Cycles, s.GC.MaxPauseMs, s.GC.P99PauseMs, s.GC.TotalPauseMs)
	}
	for _, n := range r.Notes {
		fmt.Fprintf(w, "note: %s\n", n)
	}
}

// writeText writes the OpenRTB comparison: each side's requests (line), then its multipliers
// side by side, then the ratios.
func (c *OpenRTBCapacity) writeText(w io.Writer, line func(*Throughput)) {
	fmt.Fprintf(w, "  OpenRTB, %d impressions x %d candidates (POST /v1/openrtb/multipliers), against batches of the same %d keys (POST /v1/multipliers):\n",
		c.Imps, c.Candidates, c.OpenRTB.Size)
	line(&c.OpenRTB.Throughput)
	line(&c.Batch.Throughput)
	for _, b := range []*BatchCapacity{&c.OpenRTB, &c.Batch} {
		fmt.Fprintf(w, "  %-9s %10.0f multipliers/s (%d answered of %d asked)  p99 %s ms", b.Name, b.MultipliersPerS, b.Multipliers, b.OK*uint64(b.Size), ms(b.Latency.P99))
		if b.MultipliersPerCPUS > 0 {
			fmt.Fprintf(w, "  %.0f multipliers per service CPU-second", b.MultipliersPerCPUS)
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintf(w, "  openrtb / batch %.3f multipliers/s (median of %d rounds: %s)", c.Ratio, len(c.Ratios), fmtRatios(c.Ratios))
	if c.RatioPerCPU > 0 {
		fmt.Fprintf(w, ", %.3f per service CPU-second", c.RatioPerCPU)
	}
	fmt.Fprintln(w)
}

// writeServicePhases writes the service's side of each phase: its Go runtime's GC pauses and
// scheduler latency, and its checkpoints (nothing when no phase has either).
func (r *Report) writeServicePhases(w io.Writer) {
	known := false
	for i := range r.Phases {
		known = known || r.Phases[i].Runtime != nil || r.Phases[i].Checkpoints != nil
	}
	if !known {
		return
	}
	fmt.Fprintf(w, "\nservice by phase (GET /debug/runtime at each phase's start and end; percentiles and max are bucket upper bounds, within 25%%; checkpoints from /v1/stats):\n")
	fmt.Fprintf(w, "  %-14s %9s %9s %11s %11s %11s %11s %9s %11s\n",
		"phase", "gc cycles", "gc pauses", "pause p99", "pause max", "sched p99", "sched max", "heap MB", "checkpoints")
	for i := range r.Phases {
		p := &r.Phases[i]
		if rt := p.Runtime; rt != nil {
			fmt.Fprintf(w, "  %-14s %9d %9d %11s %11s %11s %11s %9.0f %11s\n", p.Name, rt.GCCycles, rt.GCPauses,
				ms(rt.GCPauseP99Ms), ms(rt.GCPauseMaxMs), ms(rt.SchedLatencyP99Ms), ms(rt.SchedLatencyMaxMs), rt.HeapLiveMB, fmtCheckpoints(p.Checkpoints))
		} else {
			fmt.Fprintf(w, "  %-14s %9s %9s %11s %11s %11s %11s %9s %11s\n", p.Name, "-", "-", "-", "-", "-", "-", "-", fmtCheckpoints(p.Checkpoints))
		}
	}
}
