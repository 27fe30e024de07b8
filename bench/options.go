package bench

import (
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"time"

	"github.com/bidpulse/bidpulse/bidder/natsauth"
)

// Scenarios.
const (
	// ScenarioSteady: bids and events at constant rates.
	ScenarioSteady = "steady"
	// ScenarioSpike: the promotion: bids steady, events x SpikeFactor for SpikeDuration, then
	// back, SpikeRounds times: phases base 1, spike 1, base 2, spike 2, ..., after. Each spike's
	// p99 is compared with the base phase just before it, so a neighbour's load or a GC that
	// hits one pair does not decide the ratio (the median of the pairs' ratios).
	ScenarioSpike = "spike"
	// ScenarioRamp: the bid rate climbs in steps until p99 crosses P99Threshold; the last step
	// under it is the capacity figure.
	ScenarioRamp = "ramp"
	// ScenarioRestart: the spawned service is killed and restarted mid-run (JetStream mode);
	// every acknowledged event must still be counted exactly once.
	ScenarioRestart = "restart"
	// ScenarioMixed: single and batch bid requests, duplicates and malformed events, and
	// dashboard reads, together.
	ScenarioMixed = "mixed"
	// ScenarioCapacity: closed-loop saturation of GET /v1/multiplier (and of the baseline
	// server with Baseline): the throughput figure.
	ScenarioCapacity = "capacity"
	// ScenarioProduction: production volume for a long run (see ProductionDefaults): events at
	// a high rate in batch messages of mixed sizes over about a million live keys, bids at half
	// of the measured capacity, checkpoints every 30 s, the spawned service killed once in the
	// middle; the report adds the stream's bytes and the service's RSS over time, the longest
	// ingest pause and the bids around the checkpoints.
	ScenarioProduction = "production"
)

// Scenarios lists the scenario names.
var Scenarios = []string{ScenarioSteady, ScenarioSpike, ScenarioRamp, ScenarioRestart, ScenarioMixed, ScenarioCapacity, ScenarioProduction}

// Options configure a bench run. Zero values take the defaults noted.
type Options struct {
	// Scenario is one of Scenarios (default steady).
	Scenario string
	// Target is the base URL of a running service; with Spawn it is ignored.
	Target string
	// NATSURL is the NATS server the service consumes from; with Spawn it is the spawned
	// service's (its embedded server, or SpawnOptions.NATSURL).
	NATSURL string
	// NATSClient is how the bench authenticates to the NATS server and verifies it. With a
	// Spawn on its embedded server, a zero NATSClient takes the producer's seed the service
	// generated, if it runs with authentication (--spawn-args --nats-auth=on).
	NATSClient natsauth.Config
	// Subject is where events are published (default bidpulse.events.bench).
	Subject string
	// Publish is PublishAuto (default), PublishJetStream or PublishCore.
	Publish string
	// Partitions, when > 0, load-tests a service partitioned by campaign (serve --partitions,
	// docs/SCALING.md): the spawned service gets --partitions Partitions (an external one must
	// run with it), and each batch is split by campaign and sent to
	// <base>.<campaign>.<name>, Subject being <base>.<name> (bench/partitioned.go). It needs
	// JetStream publishing.
	Partitions uint32
	// Spawn, when set, starts a bidpulse as a child process for the run and stops it after.
	Spawn *SpawnOptions
	// Pin is PinAuto (default), PinOff or "SERVICE_CPUS:GENERATOR_CPUS" (taskset lists).
	Pin string
	// Baseline adds a closed-loop run against a bare fasthttp server with a body of the same
	// size, for the throughput ratio (a child process pinned like the service with Spawn, in
	// this process otherwise).
	Baseline bool

	// Duration is the length of each phase: the whole steady and mixed runs, each base phase
	// of a spike run, before and after a restart, each ramp step, each capacity measurement
	// (default 10s).
	Duration time.Duration
	// Warmup is a first phase at the run's rates, reported apart (0: none).
	Warmup time.Duration
	// BidRate is the open-loop bid rate in requests/s.
	BidRate float64
	// BidCapacityPercent, when > 0, sets BidRate to this percentage of the closed-loop
	// capacity, measured first for CapacityDuration.
	BidCapacityPercent float64
	// Endpoint is EndpointSingle (default), EndpointBatch, EndpointMix (mixed's default) or
	// EndpointOpenRTB.
	Endpoint string
	// BatchSize is the keys per POST /v1/multipliers (default 10).
	BatchSize int
	// OpenRTBImps and OpenRTBCandidates shape the OpenRTB requests (EndpointOpenRTB,
	// BidOpenRTB): impressions per BidRequest (default 5, at most 64) and candidates per
	// impression (default 3, at most 32), as the service allows.
	OpenRTBImps, OpenRTBCandidates int
	// Conns caps the open-loop requests in flight, one connection each (default 256).
	Conns int
	// Timeout is the bid request timeout, from the intended send time (default 10ms).
	Timeout time.Duration
	// CapacityConns is the closed loop's concurrency (default 32); CapacityDuration the length
	// of the capacity measurement made for BidCapacityPercent or a ramp (default 5s).
	CapacityConns    int
	CapacityDuration time.Duration
	// CapacityRounds alternates that many baseline and service measurements (default 1).
	CapacityRounds int
	// BidBatch, when > 1, adds to each capacity round a closed-loop measurement of POST
	// /v1/multipliers with BidBatch keys per request, reported as multipliers/s and per
	// CPU-second of the service, next to the single GETs (0 or 1: single GETs only). It
	// belongs to the capacity scenario and turns Baseline on, so that the single GETs'
	// ratio to the bare fasthttp handler is measured in the same run.
	BidBatch int
	// BidOpenRTB adds to each capacity round a closed-loop measurement of POST
	// /v1/openrtb/multipliers (OpenRTBImps x OpenRTBCandidates) and one of POST
	// /v1/multipliers with as many keys (the same work), reported side by side as
	// multipliers/s, per CPU-second of the service and p99, and their ratio. It belongs to
	// the capacity scenario.
	BidOpenRTB bool

	// EventRate is the event rate in events/s (0: no events but Preload).
	EventRate float64
	// EventBatch is the events per NATS message (default 100).
	EventBatch int
	// Preload events are published, and drained, before any measurement, so bids find
	// windows with data (default 0).
	Preload int
	// SpikeFactor multiplies the event rate during a spike (default 10); SpikeDuration is its
	// length (default Duration); SpikeRounds the number of base + spike pairs (default 3).
	//
	// With Spawn and no CheckpointInterval, the spike scenario sets the service's checkpoint
	// interval to one pair (Duration + SpikeDuration) and starts the run when the service's
	// checkpoint ticker puts a checkpoint a quarter into each spike phase (it waits for the
	// service's first checkpoint to learn the ticker's phase): every spike then holds one
	// checkpoint and no base phase does. The service has no way to be asked for a
	// checkpoint, so its own timer is timed instead. Give a CheckpointInterval to leave the
	// checkpoints where they fall; the report says per phase whether one did.
	SpikeFactor   float64
	SpikeDuration time.Duration
	SpikeRounds   int
	// RampFrom and RampTo bound the ramp's bid rates (default 10% and 100% of the measured
	// capacity); RampSteps is the number of steps (default 10); P99Threshold the p99 that ends
	// it (default 1ms).
	RampFrom, RampTo float64
	RampSteps        int
	P99Threshold     time.Duration
	// DupRate and BadRate add duplicates and malformed events, as fractions of the synthetic
	// events (mixed's defaults: 0.01 and 0.005).
	DupRate, BadRate float64
	// Campaigns, Creatives, Placements, Skew and Seed shape the keys of bids and events (see
	// SyntheticConfig).
	Campaigns, Creatives, Placements int
	Skew                             float64
	Seed                             int64
	// Keys, when > 0, sizes the key space instead of Campaigns, Creatives and Placements: the
	// largest space whose keys under the default rollups stay within Keys (see keyDims;
	// production's default is ProductionDefaults.Keys, the service's default --max-keys).
	Keys int
	// BatchMix, when set, draws the size of each event message from it instead of sending
	// EventBatch events per message (production's default: ProductionDefaults.BatchMix).
	BatchMix BatchMix
	// CheckpointInterval and RemoteCheckpointInterval, when > 0, are passed to the spawned
	// service as --checkpoint-interval and --remote-checkpoint-interval (production's
	// defaults: ProductionDefaults).
	CheckpointInterval, RemoteCheckpointInterval time.Duration
	// RunID prefixes every event and message id (default "bench-" and the start time).
	RunID string
	// DrainTimeout bounds the wait for ingest to catch up after the run (default 60s).
	DrainTimeout time.Duration
	// RestartDown is how long the service stays down in the restart scenario (default 1s);
	// RestartSignal is "kill" (SIGKILL, default) or "term" (SIGTERM, a graceful stop).
	RestartDown   time.Duration
	RestartSignal string
	// ReadyTimeout bounds the wait for the spawned service's /readyz (default 60s).
	ReadyTimeout time.Duration
	// Out receives the live line each second, notices and the final text report (nil:
	// discarded).
	Out io.Writer

	// alignCheckpoints is set by withDefaults when the spike scenario times the spawned
	// service's checkpoints into its spike phases (see SpikeRounds).
	alignCheckpoints bool
}

func (o Options) withDefaults() (Options, error) {
	def := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	if o.Scenario == "" {
		o.Scenario = ScenarioSteady
	}
	known := false
	for _, s := range Scenarios {
		known = known || s == o.Scenario
	}
	if !known {
		return o, fmt.Errorf("unknown scenario %q: want one of %v", o.Scenario, Scenarios)
	}
	if o.Scenario == ScenarioProduction {
		o.productionDefaults()
	}
	if o.Spawn == nil && o.Target == "" {
		return o, errors.New("no target: give the service's base URL (--target) or spawn one (--spawn)")
	}
	if o.Subject == "" {
		o.Subject = "bidpulse.events.bench"
	}
	if o.Publish == "" {
		o.Publish = PublishAuto
	}
	switch o.Publish {
	case PublishAuto, PublishJetStream, PublishCore:
	default:
		return o, fmt.Errorf("invalid publish mode %q: want auto, jetstream or core", o.Publish)
	}
	if o.Partitions > 0 {
		if o.Publish == PublishCore {
			return o, errors.New("partitioned publishing needs JetStream: a partitioned service consumes only its stream, not core NATS")
		}
		if _, _, err := PartitionedSubject(o.Subject); err != nil {
			return o, err
		}
	}
	if o.Pin == "" {
		o.Pin = PinAuto
	}
	def(&o.Duration, 10*time.Second)
	def(&o.Timeout, 10*time.Millisecond)
	def(&o.CapacityDuration, 5*time.Second)
	def(&o.DrainTimeout, 60*time.Second)
	def(&o.RestartDown, time.Second)
	def(&o.ReadyTimeout, 60*time.Second)
	def(&o.P99Threshold, time.Millisecond)
	def(&o.SpikeDuration, o.Duration)
	if o.Endpoint == "" {
		o.Endpoint = EndpointSingle
		if o.Scenario == ScenarioMixed {
			o.Endpoint = EndpointMix
		}
	}
	if o.Scenario == ScenarioMixed {
		if o.DupRate == 0 {
			o.DupRate = 0.01
		}
		if o.BadRate == 0 {
			o.BadRate = 0.005
		}
	}
	if o.BatchSize == 0 {
		o.BatchSize = 10
	}
	if o.OpenRTBImps == 0 {
		o.OpenRTBImps = 5
	}
	if o.OpenRTBCandidates == 0 {
		o.OpenRTBCandidates = 3
	}
	if o.Conns == 0 {
		o.Conns = 256
	}
	if o.CapacityConns == 0 {
		o.CapacityConns = 32
	}
	if o.CapacityRounds == 0 {
		o.CapacityRounds = 1
	}
	if o.EventBatch == 0 {
		o.EventBatch = 100
	}
	if o.SpikeFactor == 0 {
		o.SpikeFactor = 10
	}
	if o.SpikeRounds == 0 {
		o.SpikeRounds = 3
	}
	if o.RampSteps == 0 {
		o.RampSteps = 10
	}
	if o.RestartSignal == "" {
		o.RestartSignal = "kill"
	}
	if o.RunID == "" {
		o.RunID = "bench-" + time.Now().UTC().Format("20060102T150405.000")
	}
	if o.Out == nil {
		o.Out = io.Discard
	}
	for _, c := range []struct {
		name string
		v    float64
		ok   bool
	}{
		{"bid rate", o.BidRate, o.BidRate >= 0},
		{"bid capacity percent", o.BidCapacityPercent, o.BidCapacityPercent >= 0 && o.BidCapacityPercent <= 1000},
		{"event rate", o.EventRate, o.EventRate >= 0},
		{"spike factor", o.SpikeFactor, o.SpikeFactor > 0},
		{"duplicate rate", o.DupRate, o.DupRate >= 0 && o.DupRate <= 1},
		{"malformed rate", o.BadRate, o.BadRate >= 0 && o.BadRate <= 1},
		{"ramp from", o.RampFrom, o.RampFrom >= 0},
		{"ramp to", o.RampTo, o.RampTo >= 0},
	} {
		if !c.ok || math.IsNaN(c.v) || math.IsInf(c.v, 0) {
			return o, fmt.Errorf("invalid %s %v", c.name, c.v)
		}
	}
	for _, c := range []struct {
		name string
		v    int
		lo   int
		hi   int
	}{
		{"conns", o.Conns, 1, 100_000},
		{"capacity conns", o.CapacityConns, 1, 100_000},
		{"capacity rounds", o.CapacityRounds, 1, 100},
		{"event batch", o.EventBatch, 1, 10_000},
		{"batch size", o.BatchSize, 1, 1000},
		{"OpenRTB impressions", o.OpenRTBImps, 1, maxOpenRTBImps},
		{"OpenRTB candidates", o.OpenRTBCandidates, 1, maxOpenRTBCandidates},
		{"ramp steps", o.RampSteps, 1, 1000},
		{"spike rounds", o.SpikeRounds, 1, 100},
		{"bid batch", o.BidBatch, 0, 1000},
		{"preload", o.Preload, 0, math.MaxInt32},
		{"keys", o.Keys, 0, math.MaxInt32},
	} {
		if c.v < c.lo || c.v > c.hi {
			return o, fmt.Errorf("invalid %s %d: must be in %d..%d", c.name, c.v, c.lo, c.hi)
		}
	}
	if sh := o.bidShape(); sh.check() != nil {
		return o, sh.check()
	}
	if o.RestartSignal != "kill" && o.RestartSignal != "term" {
		return o, fmt.Errorf("invalid restart signal %q: want kill or term", o.RestartSignal)
	}
	if err := o.BatchMix.check(); err != nil {
		return o, err
	}
	if o.Keys > 0 {
		o.Campaigns, o.Creatives, o.Placements = keyDims(o.Keys)
	}
	if o.restarts() && o.Spawn == nil {
		return o, fmt.Errorf("the %s scenario kills and restarts the service: it needs --spawn", o.Scenario)
	}
	if o.restarts() && o.Publish == PublishCore {
		return o, fmt.Errorf("the %s scenario needs JetStream publishing (core NATS loses what is sent while the service is down)", o.Scenario)
	}
	if o.CheckpointInterval < 0 || o.RemoteCheckpointInterval < 0 {
		return o, fmt.Errorf("invalid checkpoint intervals %s and %s: must be positive (0: the service's own)", o.CheckpointInterval, o.RemoteCheckpointInterval)
	}
	if (o.CheckpointInterval > 0 || o.RemoteCheckpointInterval > 0) && o.Spawn == nil {
		return o, errors.New("checkpoint intervals are flags of the spawned service: they need --spawn")
	}
	if o.BidBatch > 1 {
		if o.Scenario != ScenarioCapacity {
			return o, fmt.Errorf("a bid batch of %d is a mode of the capacity scenario, not of %s (the open-loop scenarios batch with --endpoint batch)", o.BidBatch, o.Scenario)
		}
		o.Baseline = true
	}
	if o.BidOpenRTB {
		if o.Scenario != ScenarioCapacity {
			return o, fmt.Errorf("the OpenRTB comparison is a mode of the capacity scenario, not of %s (the open-loop scenarios send OpenRTB with --endpoint openrtb)", o.Scenario)
		}
		if n := o.OpenRTBImps * o.OpenRTBCandidates; n > 1000 {
			return o, fmt.Errorf("an OpenRTB comparison of %d x %d candidates needs batches of %d keys, over the batch endpoint's 1000", o.OpenRTBImps, o.OpenRTBCandidates, n)
		}
	}
	if o.Scenario == ScenarioSpike && o.Spawn != nil && o.CheckpointInterval == 0 {
		o.CheckpointInterval = o.Duration + o.SpikeDuration
		o.alignCheckpoints = true
	}
	needsRate := o.Scenario != ScenarioCapacity && o.Scenario != ScenarioRamp
	if needsRate && o.BidRate == 0 && o.BidCapacityPercent == 0 && o.EventRate == 0 {
		return o, errors.New("nothing to send: give a bid rate, a bid capacity percentage or an event rate")
	}
	return o, nil
}

// bidShape returns the open-loop bid requests' shape.
func (o *Options) bidShape() bidShape {
	return bidShape{endpoint: o.Endpoint, batch: o.BatchSize, imps: o.OpenRTBImps, candidates: o.OpenRTBCandidates}
}

// restarts reports whether the scenario kills and restarts the spawned service.
func (o *Options) restarts() bool {
	return o.Scenario == ScenarioRestart || o.Scenario == ScenarioProduction
}

// warmupPhase names the optional first phase; a ramp does not judge it.
const warmupPhase = "warmup"

// needsCapacity reports whether the run measures the closed-loop capacity first.
func (o *Options) needsCapacity() bool {
	return o.Scenario == ScenarioCapacity || o.BidCapacityPercent > 0 || o.Baseline ||
		(o.Scenario == ScenarioRamp && (o.RampFrom == 0 || o.RampTo == 0))
}

// phases returns the scenario's phases for the bid rate rate (requests/s) and, for a ramp
// without explicit bounds, the measured capacity.
func (o *Options) phases(rate, capacity float64) []Phase {
	var ps []Phase
	if o.Warmup > 0 {
		ps = append(ps, Phase{Name: warmupPhase, Duration: o.Warmup, BidRate: rate, EventRate: o.EventRate})
	}
	switch o.Scenario {
	case ScenarioSteady, ScenarioMixed:
		ps = append(ps, Phase{Name: o.Scenario, Duration: o.Duration, BidRate: rate, EventRate: o.EventRate})
	case ScenarioSpike:
		for i := 1; i <= max(o.SpikeRounds, 1); i++ {
			n := strconv.Itoa(i)
			ps = append(ps,
				Phase{Name: "base " + n, Duration: o.Duration, BidRate: rate, EventRate: o.EventRate},
				Phase{Name: "spike " + n, Duration: o.SpikeDuration, BidRate: rate, EventRate: o.EventRate * o.SpikeFactor, Spike: true})
		}
		ps = append(ps, Phase{Name: "after", Duration: o.Duration, BidRate: rate, EventRate: o.EventRate})
	case ScenarioRestart:
		ps = append(ps,
			Phase{Name: "before", Duration: o.Duration, BidRate: rate, EventRate: o.EventRate},
			Phase{Name: "restart", Duration: o.Duration, BidRate: rate, EventRate: o.EventRate, Restart: true},
			Phase{Name: "after", Duration: o.Duration, BidRate: rate, EventRate: o.EventRate})
	case ScenarioProduction:
		// One run of Duration: the kill at its middle, a recovery phase of a quarter of it (at
		// most productionRecovery), then the rest.
		before := o.Duration / 2
		recovery := min(o.Duration/4, productionRecovery)
		ps = append(ps,
			Phase{Name: "before", Duration: before, BidRate: rate, EventRate: o.EventRate},
			Phase{Name: "restart", Duration: recovery, BidRate: rate, EventRate: o.EventRate, Restart: true},
			Phase{Name: "after", Duration: o.Duration - before - recovery, BidRate: rate, EventRate: o.EventRate})
	case ScenarioRamp:
		from, to := o.RampFrom, o.RampTo
		if from == 0 {
			from = math.Max(1, math.Round(capacity*0.1))
		}
		if to == 0 {
			to = math.Max(from, math.Round(capacity))
		}
		if len(ps) > 0 {
			ps[0].BidRate = math.Round(from) // warm up at the first step's rate
		}
		for i := range o.RampSteps {
			r := from
			if o.RampSteps > 1 {
				r = from + (to-from)*float64(i)/float64(o.RampSteps-1)
			}
			r = math.Round(r)
			ps = append(ps, Phase{Name: "step " + strconv.Itoa(i+1) + " @" + strconv.FormatFloat(r, 'f', 0, 64), Duration: o.Duration, BidRate: r, EventRate: o.EventRate})
		}
	}
	return ps
}
