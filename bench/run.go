package bench

import (
	"context"
	"fmt"
	"io"
	"math"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/bidpulse/bidpulse/bidder/natsauth"
)

// Run runs the bench o describes and returns its report, after printing the live lines and
// the final text report to o.Out. A failed reconciliation is not an error: the report says so
// (Report.Reconciliation.OK); the error is for a run that could not be made. Cancelling ctx
// ends the run early; what was measured is still reported.
//
// With o.Spawn, Run starts the service and stops it before returning; with pinning, it pins
// its own process to the load generator's CPUs for the rest of the process's life.
func Run(ctx context.Context, o Options) (*Report, error) {
	o, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	r := &runner{o: o, out: o.Out}
	defer r.close()
	if err := r.setup(ctx); err != nil {
		return nil, err
	}
	return r.run(ctx)
}

// runner holds one run's parts. Its methods run on Run's goroutine unless noted.
type runner struct {
	o       Options
	out     io.Writer
	pin     pinning
	svc     *spawnedService
	target  string
	natsURL string
	nc      *nats.Conn
	pub     *publisher
	pubMode string
	stats   *statsClient
	syn     *Synthetic
	keys    *keySpace
	events  *eventGen
	rep     *Report
	// sizer draws the event message sizes of a batch mix (nil: EventBatch each).
	sizer *batchSizer
	// retention follows the service's checkpoints and trims (the live loop's).
	retention retentionTracker
	// ckptTimer, when set, times the spike phases to the service's checkpoints.
	ckptTimer *checkpointTimer

	// gcSkip is the spawned service's GC cycles before the measurements.
	gcSkip int

	// pubEvents counts the events handed to the publisher (any goroutine).
	pubEvents atomic.Uint64
	pubErrors atomic.Uint64
	// pubBytes counts the event JSON bytes handed to the publisher.
	pubBytes atomic.Uint64
	readsOK  atomic.Uint64
	readsErr atomic.Uint64
}

func (r *runner) notice(format string, args ...any) {
	fmt.Fprintf(r.out, format+"\n", args...)
}

// setup starts the spawned service, pins, connects to NATS and picks the publish mode.
func (r *runner) setup(ctx context.Context) error {
	o := &r.o
	var err error
	if r.pin, err = planPinning(o.Pin, o.Spawn != nil); err != nil {
		return err
	}
	r.target, r.natsURL = strings.TrimRight(o.Target, "/"), o.NATSURL
	if o.Spawn != nil {
		sp := *o.Spawn
		if o.restarts() && sp.JetStream == "" {
			if !strings.Contains(serveHelp(sp.Exe), "-jetstream") {
				return fmt.Errorf("the %s scenario needs JetStream ingest, and this bidpulse's serve has no --jetstream flag", o.Scenario)
			}
			sp.JetStream = "true"
		}
		sp.Args = append([]string(nil), sp.Args...)
		if o.CheckpointInterval > 0 {
			sp.Args = append(sp.Args, "--checkpoint-interval="+o.CheckpointInterval.String())
		}
		if o.RemoteCheckpointInterval > 0 {
			sp.Args = append(sp.Args, "--remote-checkpoint-interval="+o.RemoteCheckpointInterval.String())
		}
		if o.Partitions > 0 {
			sp.Args = append(sp.Args, "--partitions="+strconv.FormatUint(uint64(o.Partitions), 10))
		}
		if r.svc, err = newSpawnedService(sp, r.pin.service); err != nil {
			return err
		}
		r.svc.onUnexpected = func(msg string) { r.notice("warning: %s", msg) }
		t0 := time.Now()
		if err := r.svc.start(); err != nil {
			return err
		}
		if err := r.svc.waitReady(r.svc.httpAddr, "/readyz", o.ReadyTimeout); err != nil {
			return err
		}
		r.target, r.natsURL = "http://"+r.svc.httpAddr, r.svc.natsURL
		r.notice("spawned bidpulse: pid %d, http %s, nats %s, dir %s, ready in %s",
			r.svc.pid(), r.svc.httpAddr, natsauth.Redact(r.svc.natsURL), r.svc.dir, time.Since(t0).Round(time.Millisecond))
		if seed := r.svc.producerSeed(); seed != "" && !o.NATSClient.HasAuth() && sp.NATSURL == "" {
			o.NATSClient.NkeyFile = seed
			r.notice("the spawned service's NATS requires authentication: publishing as its producer user (%s)", seed)
		}
	}
	if r.pin.generator != "" {
		if err := pinSelf(r.pin.generator); err != nil {
			return err
		}
	}
	if runtime.GOMAXPROCS(0) < 2 {
		runtime.GOMAXPROCS(2) // the pacer's thread needs a P of its own (see newPreciseSleep)
	}
	r.notice("pinning: %s", r.pin.note)

	if r.stats, err = newStatsClient(r.target); err != nil {
		return err
	}
	if _, err := r.stats.get(); err != nil {
		return fmt.Errorf("cannot read the service's stats at %s (is bidpulse running there?): %w", r.target, err)
	}

	r.syn = NewSynthetic(SyntheticConfig{
		Campaigns: o.Campaigns, Creatives: o.Creatives, Placements: o.Placements,
		Seed: o.Seed, RunID: o.RunID, Skew: o.Skew,
	})
	r.keys = newKeySpace(r.syn)
	r.events = newEventGen(r.syn, o.DupRate, o.BadRate, o.Seed)
	if len(o.BatchMix) > 0 {
		r.sizer = newBatchSizer(o.BatchMix, o.Seed)
	}
	if o.EventRate > 0 || o.Preload > 0 || o.Scenario == ScenarioProduction {
		return r.connectNATS(ctx)
	}
	return nil
}

// connectNATS connects to the service's NATS server and resolves the publish mode.
func (r *runner) connectNATS(ctx context.Context) error {
	o := &r.o
	url := r.natsURL
	if url == "" {
		url = nats.DefaultURL
		r.natsURL = url
	}
	if err := o.NATSClient.CheckURL(url); err != nil {
		return err
	}
	opts, err := o.NATSClient.Options()
	if err != nil {
		return err
	}
	r.nc, err = nats.Connect(url, append(opts, nats.Name("bidpulse bench "+o.RunID),
		nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond),
		nats.ReconnectBufSize(256<<20))...)
	if err != nil {
		return fmt.Errorf("cannot connect to NATS at %s: %w", natsauth.Redact(url), err)
	}
	mode := o.Publish
	if mode == PublishAuto && o.Partitions > 0 {
		mode = PublishJetStream // the only mode a partitioned service consumes
	}
	if mode == PublishAuto {
		mode = PublishCore
		js, err := jetstream.New(r.nc)
		if err == nil {
			if _, err = streamFor(ctx, js, o.Subject); err == nil {
				mode = PublishJetStream
			}
		}
		if mode == PublishCore {
			r.notice("publish: core NATS (no JetStream stream captures %s)", o.Subject)
		}
	}
	if o.restarts() && mode != PublishJetStream {
		return fmt.Errorf("the %s scenario needs JetStream publishing, and no stream captures %s", o.Scenario, o.Subject)
	}
	r.pubMode = mode
	if r.pub, err = newPublisher(ctx, r.nc, o.Subject, o.RunID, mode, o.Partitions > 0); err != nil {
		return err
	}
	if o.Partitions > 0 {
		base, name, _ := PartitionedSubject(o.Subject)
		r.notice("publish: JetStream, acknowledged, Nats-Msg-Id per message, partitioned (%d partitions): each batch split by campaign to %s.<campaign>.%s, its duplicates and malformed events to %s.%s.%s",
			o.Partitions, base, name, base, InjectedCampaign, name)
	} else if mode == PublishJetStream {
		r.notice("publish: JetStream, acknowledged, Nats-Msg-Id per message, on %s", o.Subject)
	}
	return nil
}

// close stops what setup started.
func (r *runner) close() {
	if r.pub != nil {
		r.pub.abandon()
	}
	if r.nc != nil {
		r.nc.Close()
	}
	if r.svc != nil {
		if err := r.svc.signal(syscall.SIGTERM, 30*time.Second); err != nil {
			r.notice("warning: %v", err)
		}
		if r.o.Spawn.Keep {
			r.notice("kept the spawned service's directory: %s (log: %s)", r.svc.dir, r.svc.logPath)
		} else {
			r.svc.remove()
		}
	}
}

// run measures: preload, capacity, the scenario's phases, the drain and the reconciliation.
func (r *runner) run(ctx context.Context) (*Report, error) {
	o := &r.o
	r.rep = &Report{
		Version: ReportVersion, RunID: o.RunID, Scenario: o.Scenario, Started: time.Now().UTC(),
		Target: r.target, NATSURL: natsauth.Redact(r.natsURL), Publish: r.pubMode, Partitions: o.Partitions, Spawned: r.svc != nil,
		Pinning: r.pin.note, Settings: r.settings(), Notes: []string{},
		Machine: Machine{CPUs: runtime.NumCPU(), CPUModel: cpuModel(), OS: runtime.GOOS, Arch: runtime.GOARCH,
			Go: runtime.Version(), GOMAXPROCS: runtime.GOMAXPROCS(0)},
	}
	if r.pub == nil {
		r.rep.Publish = "none"
	}
	base, err := r.stats.get()
	if err != nil {
		return nil, err
	}
	r.rep.ServiceMode = base.Mode
	var preloadTook time.Duration
	if o.Preload > 0 || o.Scenario == ScenarioProduction {
		t0 := time.Now()
		if err := r.preload(ctx, base); err != nil {
			return nil, err
		}
		preloadTook = time.Since(t0)
	}
	if r.svc != nil {
		r.gcSkip = r.svc.gc.count() // the service's GC figures cover the measurements only
	}
	var capacity float64
	if o.needsCapacity() {
		c, err := r.capacity(ctx)
		if err != nil {
			return nil, err
		}
		r.rep.Capacity = c
		capacity = c.Service.RPS
	}
	if o.Scenario != ScenarioCapacity && ctx.Err() == nil {
		rate := o.BidRate
		if o.BidCapacityPercent > 0 {
			rate = math.Round(capacity * o.BidCapacityPercent / 100)
			r.rep.Settings["bid_rate"] = rate
			r.notice("bid rate: %.0f req/s (%.0f%% of the measured capacity %.0f req/s)", rate, o.BidCapacityPercent, capacity)
		}
		sched, err := NewSchedule(o.phases(rate, capacity))
		if err != nil {
			return nil, err
		}
		why := ""
		if o.alignCheckpoints {
			r.ckptTimer, why = r.learnCheckpointTimer(ctx, o.CheckpointInterval)
		}
		if err := r.measure(ctx, sched); err != nil {
			return nil, err
		}
		if o.Scenario == ScenarioSpike {
			r.rep.Spike = spikeResult(r.rep.Phases, o.SpikeRounds, r.checkpointNote(why))
		}
	}
	var final *ServiceStats
	if r.pub != nil {
		final = r.finishEvents(ctx, base)
	}
	if r.svc != nil {
		rss, peak := procRSS(r.svc.pid())
		r.rep.Service = &ServiceReport{GC: r.svc.gc.since(r.gcSkip),
			RSSMB: float64(rss) / (1 << 20), PeakRSSMB: float64(peak) / (1 << 20)}
		if st, err := r.stats.get(); err == nil {
			r.rep.Service.Keys = st.Keys
		}
	}
	if o.Scenario == ScenarioProduction {
		r.rep.Production = r.productionResult(preloadTook, final)
		r.rep.Notes = append(r.rep.Notes, r.rep.Production.notes()...)
	}
	r.addNotes()
	r.rep.WriteText(r.out)
	return r.rep, nil
}

// preload publishes o.Preload events as fast as the publisher takes them (and, in the
// production scenario, first one impression per cell: see sweep) and waits until the service
// has received them, so the measured bids find windows with data.
func (r *runner) preload(ctx context.Context, base ServiceStats) error {
	o := &r.o
	t0 := time.Now()
	send := func(data []byte, t *Tally) error {
		if err := r.pub.publish(data, t); err != nil {
			return fmt.Errorf("cannot preload events: %w", err)
		}
		r.pubEvents.Add(t.Events)
		r.pubBytes.Add(uint64(len(data)))
		return ctx.Err()
	}
	if o.Scenario == ScenarioProduction {
		if err := r.sweep(send); err != nil {
			return err
		}
	}
	var valid uint64
	for valid < uint64(o.Preload) && ctx.Err() == nil {
		data, t := r.events.next(min(o.Preload-int(valid), o.EventBatch), time.Now().UnixMilli())
		if err := send(data, &t); err != nil {
			return err
		}
		valid += t.Counted()
	}
	want := r.pubEvents.Load()
	for r.pub.ackedEvents() < want && ctx.Err() == nil && time.Since(t0) < o.DrainTimeout {
		time.Sleep(10 * time.Millisecond)
	}
	dctx, cancel := context.WithTimeout(ctx, o.DrainTimeout)
	defer cancel()
	st, ok, err := r.stats.waitDrained(dctx, base, want, 5*time.Second)
	if !ok {
		return fmt.Errorf("the service did not receive the %d preloaded events within %s (received %d; %v)", want, o.DrainTimeout, delta(st.Received, base.Received), err)
	}
	r.notice("preload: %d events received in %s; %d keys", want, time.Since(t0).Round(time.Millisecond), st.Keys)
	return nil
}

// finishEvents waits for the acknowledgements and the service's ingest, then reconciles; it
// returns the last stats read.
func (r *runner) finishEvents(ctx context.Context, base ServiceStats) *ServiceStats {
	o := &r.o
	t0 := time.Now()
	dctx, cancel := context.WithTimeout(ctx, o.DrainTimeout)
	defer cancel()
	acked, unacked, err := r.pub.finish(dctx)
	if err != nil {
		r.notice("warning: %v", err)
	}
	final, drained, err := r.stats.waitDrained(dctx, base, acked.Events, 5*time.Second)
	if err != nil {
		r.notice("warning: %v", err)
	}
	r.notice("drain: ingest caught up in %s (drained: %v)", time.Since(t0).Round(time.Millisecond), drained)
	rec := reconcile(r.pubMode, acked, unacked, base, final, drained)
	r.rep.Reconciliation = &rec
	if n := r.pub.retries(); n > 0 {
		r.rep.Notes = append(r.rep.Notes, fmt.Sprintf("%d JetStream publishes were sent again after an error or a timeout (Nats-Msg-Id keeps them from being stored twice)", n))
	}
	final.readAt = time.Now()
	if r.svc != nil {
		final.pid = r.svc.pid()
	}
	return &final
}

// settings returns the effective options for the report.
func (r *runner) settings() map[string]any {
	o := &r.o
	return map[string]any{
		"scenario": o.Scenario, "duration": o.Duration.String(), "warmup": o.Warmup.String(),
		"bid_rate": o.BidRate, "bid_capacity_percent": o.BidCapacityPercent,
		"endpoint": o.Endpoint, "batch_size": o.BatchSize, "openrtb_imps": o.OpenRTBImps, "openrtb_candidates": o.OpenRTBCandidates, "conns": o.Conns, "timeout": o.Timeout.String(),
		"timeout_ms":     float64(o.Timeout.Microseconds()) / 1000,
		"capacity_conns": o.CapacityConns, "capacity_duration": o.CapacityDuration.String(), "capacity_rounds": o.CapacityRounds, "baseline": o.Baseline,
		"event_rate": o.EventRate, "event_batch": o.EventBatch, "preload": o.Preload,
		"spike_factor": o.SpikeFactor, "spike_duration": o.SpikeDuration.String(), "spike_rounds": o.SpikeRounds, "bid_batch": o.BidBatch, "bid_openrtb": o.BidOpenRTB,
		"ramp_from": o.RampFrom, "ramp_to": o.RampTo, "ramp_steps": o.RampSteps, "p99_threshold": o.P99Threshold.String(),
		"dup_rate": o.DupRate, "bad_rate": o.BadRate,
		"campaigns": o.Campaigns, "creatives": o.Creatives, "placements": o.Placements, "cells": r.keys.len(),
		"skew": o.Skew, "seed": o.Seed, "subject": o.Subject, "publish": r.pubMode, "partitions": o.Partitions,
		"restart_signal": o.RestartSignal, "restart_down": o.RestartDown.String(),
		"keys": o.Keys, "batch_mix": o.BatchMix.String(),
		"checkpoint_interval": o.CheckpointInterval.String(), "remote_checkpoint_interval": o.RemoteCheckpointInterval.String(),
		"pacer": r.pacer(),
	}
}

// pacer describes how the open-loop dispatcher waits for each request's time.
func (r *runner) pacer() string {
	if r.pin.generator != "" {
		return "nanosleep, then yield for the last 40µs (pinned generator: its CPU figure is 100% by design)"
	}
	return "nanosleep"
}

// addNotes adds the warnings that qualify the figures.
func (r *runner) addNotes() {
	rep := r.rep
	for i := range rep.Phases {
		p := &rep.Phases[i]
		if p.CapWaits > 0 {
			rep.Notes = append(rep.Notes, fmt.Sprintf("phase %s: the in-flight cap (%d connections) was reached %d times: "+
				"requests waited for a free connection (counted in their latency; %d expired unsent); raise --conns if the service was not the limit",
				p.Name, r.o.Conns, p.CapWaits, p.Outcomes["expired"]))
		}
		if p.SendLag.P99 > 1 {
			rep.Notes = append(rep.Notes, fmt.Sprintf("phase %s: the load generator sent late (send lag p99 %.2f ms, max %.2f ms): "+
				"it was short of CPU, and its delay is part of the latencies", p.Name, p.SendLag.P99, p.SendLag.Max))
		}
		if r.pin.generator == "" && p.GenCPU > 90 { // a pinned generator spins: see generator.spin
			rep.Notes = append(rep.Notes, fmt.Sprintf("phase %s: the load generator used %.0f%% CPU: it may be the bottleneck", p.Name, p.GenCPU))
		}
		if n := disturbance(p.OtherCPU, p.StealCPU); n != "" {
			rep.Notes = append(rep.Notes, "phase "+p.Name+": "+n)
		}
		if p.EventTarget > 0 && p.EventRate < 0.95*p.EventTarget {
			rep.Notes = append(rep.Notes, fmt.Sprintf("phase %s: events were published behind schedule: %.0f of %.0f events/s", p.Name, p.EventRate, p.EventTarget))
		}
	}
	if c := rep.Capacity; c != nil {
		if n := disturbance(c.Service.OtherCPU, c.Service.StealCPU); n != "" {
			rep.Notes = append(rep.Notes, "capacity: "+n)
		}
		if b := c.Batch; b != nil {
			if n := disturbance(b.OtherCPU, b.StealCPU); n != "" {
				rep.Notes = append(rep.Notes, "capacity, batches: "+n)
			}
		}
		if oc := c.OpenRTB; oc != nil {
			for _, b := range []*BatchCapacity{&oc.OpenRTB, &oc.Batch} {
				if n := disturbance(b.OtherCPU, b.StealCPU); n != "" {
					rep.Notes = append(rep.Notes, "capacity, "+b.Name+": "+n)
				}
				if n := generatorBound(&b.Throughput, r.svc != nil); n != "" {
					rep.Notes = append(rep.Notes, "capacity, "+b.Name+": "+n)
				}
			}
		}
	}
	if r.svc != nil {
		rep.Notes = append(rep.Notes, r.svc.unexpectedExits()...)
	}
	if n := r.pubErrors.Load(); n > 0 {
		rep.Notes = append(rep.Notes, fmt.Sprintf("%d event batches could not be handed to NATS (not counted as published)", n))
	}
	if n, e := r.readsOK.Load(), r.readsErr.Load(); n+e > 0 {
		rep.Notes = append(rep.Notes, fmt.Sprintf("dashboard reads (/v1/snapshot, /v1/rates): %d answered 200, %d failed", n, e))
	}
}

// generatorBound says when the load generator rather than the service limited a closed
// loop's rate: the generator busy, the service's core not ("" otherwise, or when the service's
// CPU is unknown).
func generatorBound(t *Throughput, known bool) string {
	if !known || t.GenCPU < 90 || t.ServerCPU >= 85 {
		return ""
	}
	return fmt.Sprintf("the load generator (%.0f%% CPU) rather than the service (%.0f%%) limited the rate: compare per service CPU-second", t.GenCPU, t.ServerCPU)
}

// Disturbance thresholds, in percent of one core. Stolen time stops this machine's threads
// (the service's among them) at any moment, so less of it disturbs a latency figure than of
// other processes' use, which the scheduler spreads.
const (
	otherDisturbs = 20
	stealDisturbs = 10
)

// disturbance says what disturbed a measurement: the host's stolen time, other processes, or
// both ("" when neither passed its threshold).
func disturbance(other, steal float64) string {
	const hostSays = "the host stole %.0f%% of a core (time the hypervisor ran something else while this VM's CPUs had work; no process here used it)"
	const othersSay = "other processes on this machine used %.0f%% CPU"
	switch {
	case steal > stealDisturbs && other > otherDisturbs:
		return fmt.Sprintf("disturbed by the host and by other processes: "+hostSays+", and "+othersSay, steal, other)
	case steal > stealDisturbs:
		return fmt.Sprintf("disturbed by the host, not by other processes (they used %.0f%%): "+hostSays, other, steal)
	case other > otherDisturbs:
		return fmt.Sprintf("disturbed by other processes, not by the host (it stole %.0f%% of a core): "+othersSay, steal, other)
	}
	return ""
}
