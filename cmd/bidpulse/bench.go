package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/bidpulse/bidpulse/bench"
)

const benchSynopsis = `Usage: bidpulse bench [flags]

Load-tests bidpulse: open-loop bid requests over HTTP (latency from the intended
send time, HDR percentiles), events over NATS, a scenario (steady, spike, ramp,
restart, mixed, capacity, production), and a reconciliation of what was
published against the /v1/stats deltas. Drive a running service (--target,
--nats-url) or --spawn one for the run.

The spike scenario alternates base and spike phases (--spike-rounds pairs, then
an "after" phase) and compares each spike's p99 with the base phase before it.
Per phase, the reports give the host's stolen CPU time apart from other
processes' use, the service's GC pauses and scheduler latency (its GET
/debug/runtime) and whether it wrote a checkpoint.

The production scenario runs 10 minutes of 100,000 events/s in messages of
mixed sizes over 1,000,000 live keys, bids at 50% of the measured capacity,
checkpoints every 30 s, and one SIGKILL of the spawned service in the middle;
its defaults apply to the flags not given.

Examples:
  bidpulse bench --spawn --scenario spike --bid-rate 50% --html spike.html
  bidpulse bench --spawn --scenario production --json prod.json --html prod.html
  bidpulse bench --target http://127.0.0.1:8080 --nats-url nats://127.0.0.1:4222 --bid-rate 2000
  bidpulse bench --spawn --scenario spike --bid-rate 50% --duration 3s --spike-duration 3s --spike-rounds 5
  bidpulse bench --spawn --scenario capacity --baseline
  bidpulse bench --spawn --partitions 8 --scenario steady --event-rate 20000
  bidpulse bench --spawn --scenario capacity --bid-batch 100 --capacity-rounds 3
  bidpulse bench --spawn --scenario capacity --bid-openrtb --capacity-rounds 3`

// benchFlags are the command's flags that are not fields of bench.Options as they are.
type benchFlags struct {
	spawn     bool
	spawnArgs string
	jetstream string
	keep      bool
	bidRate   string
	jsonPath  string
	htmlPath  string
	baseAddr  string
	baseSize  int
	batchMix  string
	// partitions is bench.Options.Partitions, as serve reads its --partitions.
	partitions uint
}

func runBench(args []string) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.Usage = usageWithEnv(fs, benchSynopsis)
	var o bench.Options
	var f benchFlags
	prod := bench.ProductionDefaults()
	fs.StringVar(&o.Scenario, "scenario", bench.ScenarioSteady, "scenario: "+strings.Join(bench.Scenarios, ", ")+", "+bench.ScenarioCluster+
		" (members over a 3-node NATS cluster started by the bench: ingest per core with 1 and --members members, forwarded-bid latency, failover; --partitions, --cluster-events, --cluster-bids, --cluster-lease-ttl, --replicas, --json)")
	var co bench.ClusterOptions
	fs.IntVar(&co.Members, "members", 3, "cluster scenario: members of the scaled run")
	fs.IntVar(&co.Events, "cluster-events", 400_000, "cluster scenario: events of each ingest run")
	fs.IntVar(&co.Bids, "cluster-bids", 20_000, "cluster scenario: bids of each kind (local, forwarded)")
	fs.DurationVar(&co.LeaseTTL, "cluster-lease-ttl", 3*time.Second, "cluster scenario: the members' --lease-ttl")
	fs.IntVar(&co.Replicas, "replicas", 1, "cluster scenario: the members' --replicas")
	fs.StringVar(&o.Target, "target", "http://127.0.0.1:8080", "base URL of a running bidpulse (ignored with --spawn)")
	fs.StringVar(&o.NATSURL, "nats-url", "", "NATS server of the service (default: the spawned service's, or nats://127.0.0.1:4222); with --spawn, the service uses it too")
	fs.StringVar(&o.Subject, "subject", "bidpulse.events.bench", "subject to publish events on")
	natsClient := natsClientFlags(fs)
	fs.UintVar(&f.partitions, "partitions", 0, "the service's --partitions: with --spawn, the spawned service gets it; with --target, say what the service runs with. Each event batch is split by campaign and sent to <base>.<campaign>.<name> for --subject <base>.<name>, its duplicates and malformed events to campaign "+bench.InjectedCampaign+"'s subject; needs JetStream (0: not partitioned)")
	fs.StringVar(&o.Publish, "publish", bench.PublishAuto, "event publishing: auto (JetStream when a stream captures the subject), jetstream (acknowledged, Nats-Msg-Id) or core")
	fs.BoolVar(&f.spawn, "spawn", false, "start a bidpulse serve child process on free loopback ports with a temporary data dir, and stop it after")
	fs.StringVar(&f.spawnArgs, "spawn-args", "", "extra flags of the spawned `bidpulse serve`, space-separated")
	fs.StringVar(&f.jetstream, "jetstream", "", "--jetstream value of the spawned service (default: its own default; restart sets true)")
	fs.BoolVar(&f.keep, "keep", false, "keep the spawned service's directory (data and log) after the run")
	fs.StringVar(&o.Pin, "pin", bench.PinAuto, "CPU pinning with taskset: auto (with --spawn: service on the upper half of the CPUs, generator on the lower), off, or SERVICE_CPUS:GENERATOR_CPUS such as 1:0")
	fs.BoolVar(&o.Baseline, "baseline", false, "also measure a bare fasthttp handler serving a body of the same size, for the throughput ratio")
	fs.DurationVar(&o.Duration, "duration", 10*time.Second, "length of each phase (steady, each base phase of a spike run, each side of a restart, each ramp step, each capacity measurement); production: the whole run, "+prod.Duration.String())
	fs.DurationVar(&o.Warmup, "warmup", 2*time.Second, "a first phase at the run's rates, reported apart; 0 for none")
	fs.StringVar(&f.bidRate, "bid-rate", "1000", "open-loop bid requests/s, or a percentage of the closed-loop capacity measured first, such as 50% (production: "+strconv.FormatFloat(prod.BidCapacityPercent, 'f', -1, 64)+"%)")
	fs.StringVar(&o.Endpoint, "endpoint", "", "bid endpoint: single (GET /v1/multiplier), batch (POST /v1/multipliers), mix, or openrtb (POST /v1/openrtb/multipliers: BidRequests of --openrtb-imps impressions with --openrtb-candidates candidates each) (default: single; mix for the mixed scenario)")
	fs.IntVar(&o.BatchSize, "batch-size", 10, "keys per POST /v1/multipliers")
	fs.IntVar(&o.OpenRTBImps, "openrtb-imps", 5, "impressions per OpenRTB BidRequest (1..64), each a placement of the key space")
	fs.IntVar(&o.OpenRTBCandidates, "openrtb-candidates", 3, "candidates (campaign and creative) per OpenRTB impression (1..32)")
	fs.IntVar(&o.Conns, "conns", 256, "cap on open-loop requests in flight (one connection each); reported when reached")
	fs.DurationVar(&o.Timeout, "timeout", 10*time.Millisecond, "bid request timeout, from the intended send time (an ad server gives up)")
	fs.IntVar(&o.CapacityConns, "capacity-conns", 32, "concurrency of the closed-loop capacity measurement")
	fs.IntVar(&o.CapacityRounds, "capacity-rounds", 1, "capacity measurements of each target; with --baseline they alternate and the ratio is the median")
	fs.IntVar(&o.BidBatch, "bid-batch", 0, "capacity scenario: also measure POST /v1/multipliers with this many keys per request (multipliers/s, and per CPU-second of the service), next to the single GETs and the baseline (implies --baseline); 0 or 1: single GETs only")
	fs.BoolVar(&o.BidOpenRTB, "bid-openrtb", false, "capacity scenario: also measure POST /v1/openrtb/multipliers (--openrtb-imps x --openrtb-candidates) against POST /v1/multipliers with as many keys, the same work, side by side: multipliers/s, per CPU-second of the service, p99")
	fs.DurationVar(&o.CapacityDuration, "capacity-duration", 5*time.Second, "length of the capacity measurement made for --bid-rate N% and ramps")
	fs.Float64Var(&o.EventRate, "event-rate", 2000, "events/s published during the run (0: none; production: "+strconv.FormatFloat(prod.EventRate, 'f', -1, 64)+")")
	fs.IntVar(&o.EventBatch, "event-batch", 100, "events per NATS message (without --batch-mix)")
	fs.StringVar(&f.batchMix, "batch-mix", "", "event message sizes drawn per message, SIZE:WEIGHT,... with weights as shares of the messages, sizes up to 10000 (production: "+prod.BatchMix+")")
	fs.IntVar(&o.Preload, "preload", 20000, "events published and drained before measuring, so bids find data (production: 0, after its sweep of one impression per cell)")
	fs.Float64Var(&o.SpikeFactor, "spike-factor", 10, "event rate multiplier during a spike")
	fs.DurationVar(&o.SpikeDuration, "spike-duration", 0, "length of each spike phase (default --duration)")
	fs.IntVar(&o.SpikeRounds, "spike-rounds", 3, "spike scenario: base + spike pairs, each spike's p99 over the base's before it, and their median; with --spawn and no --checkpoint-interval, the service's checkpoints are timed into the spikes")
	fs.Float64Var(&o.RampFrom, "ramp-from", 0, "first ramp step, req/s (default 10% of the measured capacity)")
	fs.Float64Var(&o.RampTo, "ramp-to", 0, "last ramp step, req/s (default 100% of the measured capacity)")
	fs.IntVar(&o.RampSteps, "ramp-steps", 10, "ramp steps")
	fs.DurationVar(&o.P99Threshold, "p99-threshold", time.Millisecond, "the p99 that ends a ramp")
	fs.Float64Var(&o.DupRate, "dup-rate", 0, "duplicate events, as a fraction of the synthetic events (mixed: 0.01)")
	fs.Float64Var(&o.BadRate, "bad-rate", 0, "malformed events, as a fraction of the synthetic events (mixed: 0.005)")
	fs.IntVar(&o.Campaigns, "campaigns", 20, "campaigns of the key space (c1..cN)")
	fs.IntVar(&o.Creatives, "creatives", 5, "creatives per campaign")
	fs.IntVar(&o.Placements, "placements", 10, "placements")
	fs.IntVar(&o.Keys, "keys", 0, "size the key space to this many live keys under the default rollups instead of --campaigns, --creatives and --placements (production: "+strconv.Itoa(prod.Keys)+", the service's default --max-keys)")
	fs.DurationVar(&o.CheckpointInterval, "checkpoint-interval", 0, "--checkpoint-interval of the spawned service (0: its default; spike: one base + spike pair, timed so that each spike phase holds a checkpoint; production: "+prod.CheckpointInterval.String()+")")
	fs.DurationVar(&o.RemoteCheckpointInterval, "remote-checkpoint-interval", 0, "--remote-checkpoint-interval of the spawned service: how often its stream is trimmed (0: its default; production: "+prod.RemoteCheckpointInterval.String()+")")
	fs.Float64Var(&o.Skew, "skew", 1, "Zipf exponent of campaign, creative and placement popularity, shared by bids and events (0: the synthetic profile)")
	fs.Int64Var(&o.Seed, "seed", 1, "seed of keys, traffic and true rates")
	fs.StringVar(&o.RunID, "run-id", "", "prefix of event and message ids (default: bench- and the start time, unique per run)")
	fs.DurationVar(&o.DrainTimeout, "drain-timeout", 60*time.Second, "how long to wait for ingest to catch up after the run")
	fs.DurationVar(&o.RestartDown, "restart-down", time.Second, "restart and production scenarios: how long the service stays down")
	fs.StringVar(&o.RestartSignal, "restart-signal", "kill", "restart and production scenarios: kill (SIGKILL) or term (SIGTERM)")
	fs.StringVar(&f.jsonPath, "json", "", "write the report as JSON to this file")
	fs.StringVar(&f.htmlPath, "html", "", "write the report as a self-contained HTML page to this file")
	fs.StringVar(&f.baseAddr, bench.BaselineFlag, "", "internal: serve the baseline handler on this address instead of running a bench")
	fs.IntVar(&f.baseSize, bench.BaselineSizeFlag, 128, "internal: body size of --"+bench.BaselineFlag)
	if err := parseFlags(fs, args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if o.Scenario == bench.ScenarioCluster {
		co.Partitions = uint32(min(f.partitions, 1<<16))
		co.Keep = f.keep
		rep, err := bench.RunCluster(co, os.Stdout)
		if err != nil {
			return err
		}
		if f.jsonPath != "" {
			b, _ := json.MarshalIndent(rep, "", "  ")
			return os.WriteFile(f.jsonPath, append(b, '\n'), 0o644)
		}
		return nil
	}
	if f.baseAddr != "" {
		sigs := make(chan os.Signal, 1)
		signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
		return bench.ServeBaseline(f.baseAddr, f.baseSize, sigs)
	}
	if o.Scenario == bench.ScenarioProduction {
		productionFlags(fs, &o, &f)
	}
	o.NATSClient = *natsClient
	for _, w := range natsSecretWarnings(args, o.NATSURL) {
		fmt.Fprintf(os.Stderr, "warning: %s\n", w)
	}
	if err := f.apply(&o); err != nil {
		return err
	}
	o.Out = os.Stdout

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	rep, err := bench.Run(ctx, o)
	if err != nil {
		return err
	}
	if f.jsonPath != "" {
		if err := writeReport(f.jsonPath, rep.WriteJSON); err != nil {
			return err
		}
		fmt.Printf("wrote %s\n", f.jsonPath)
	}
	if f.htmlPath != "" {
		if err := writeReport(f.htmlPath, rep.WriteHTML); err != nil {
			return err
		}
		fmt.Printf("wrote %s\n", f.htmlPath)
	}
	if rep.Reconciliation != nil && !rep.Reconciliation.OK {
		return errors.New("reconciliation failed: the service did not count exactly what was published")
	}
	return nil
}

// productionFlags gives the production scenario's defaults (bench.ProductionDefaults) to the
// flags whose general default does not fit it and that were not given.
func productionFlags(fs *flag.FlagSet, o *bench.Options, f *benchFlags) {
	set := map[string]bool{}
	fs.Visit(func(fl *flag.Flag) { set[fl.Name] = true })
	// A zero field takes the production default in bench.Options.
	if !set["event-rate"] {
		o.EventRate = 0
	}
	if !set["duration"] {
		o.Duration = 0
	}
	if !set["bid-rate"] {
		f.bidRate = strconv.FormatFloat(bench.ProductionDefaults().BidCapacityPercent, 'f', -1, 64) + "%"
	}
	if !set["preload"] {
		o.Preload = 0
	}
}

// apply moves the command-only flags into o.
func (f *benchFlags) apply(o *bench.Options) error {
	mix, err := bench.ParseBatchMix(f.batchMix)
	if err != nil {
		return err
	}
	o.BatchMix = mix
	if f.partitions > math.MaxInt32 {
		return fmt.Errorf("invalid --partitions %d: want 0..%d", f.partitions, math.MaxInt32)
	}
	o.Partitions = uint32(f.partitions)
	rate := strings.TrimSpace(f.bidRate)
	if pct, ok := strings.CutSuffix(rate, "%"); ok {
		v, err := strconv.ParseFloat(pct, 64)
		if err != nil || v <= 0 {
			return fmt.Errorf("invalid --bid-rate %q: want requests/s or a positive percentage such as 50%%", f.bidRate)
		}
		o.BidCapacityPercent = v
	} else {
		v, err := strconv.ParseFloat(rate, 64)
		if err != nil || v < 0 {
			return fmt.Errorf("invalid --bid-rate %q: want requests/s or a percentage such as 50%%", f.bidRate)
		}
		o.BidRate = v
	}
	if f.spawn {
		o.Spawn = &bench.SpawnOptions{Args: strings.Fields(f.spawnArgs), JetStream: f.jetstream, NATSURL: o.NATSURL, NATSClient: o.NATSClient, Keep: f.keep}
	} else if f.spawnArgs != "" || f.jetstream != "" || f.keep {
		return errors.New("--spawn-args, --jetstream and --keep need --spawn")
	}
	return nil
}

// writeReport writes a report file through write.
func writeReport(path string, write func(w io.Writer) error) error {
	fh, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("cannot create the report: %w", err)
	}
	if err := write(fh); err != nil {
		fh.Close()
		return fmt.Errorf("cannot write %s: %w", path, err)
	}
	if err := fh.Close(); err != nil {
		return fmt.Errorf("cannot write %s: %w", path, err)
	}
	return nil
}
