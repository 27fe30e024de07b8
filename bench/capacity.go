package bench

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"
)

// BaselineFlag and BaselineSizeFlag are the `bidpulse bench` flags that make the process serve
// the baseline handler (see StartBaseline) instead of running a bench: the bench spawns its
// own executable with them to put the baseline server in a process pinned like the service.
const (
	BaselineFlag     = "serve-baseline"
	BaselineSizeFlag = "baseline-size"
)

// capacityWarmup is the closed-loop warm-up before each capacity measurement (not recorded).
const capacityWarmup = 500 * time.Millisecond

// capacity measures the closed-loop throughput of GET /v1/multiplier, and of the baseline
// server when asked, under the same connections and pinning. With several rounds the two
// alternate (baseline, service, baseline, service, ...), so a neighbour's load on a shared
// machine hits both alike; the ratio is the median of the rounds' ratios. With a bid batch,
// each round goes on with the service's batches (POST /v1/multipliers); with BidOpenRTB, it
// ends with OpenRTB requests and batches of the same keys (openRTBRound).
func (r *runner) capacity(ctx context.Context) (*CapacityResult, error) {
	o := &r.o
	d := o.CapacityDuration
	if o.Scenario == ScenarioCapacity {
		d = o.Duration
	}
	k := r.keys.keys[r.keys.pick(0)]
	sample := "/v1/multiplier?" + url.Values{"campaign": {k.Campaign}, "creative": {k.Creative}, "placement": {k.Placement}}.Encode()
	addr, tls, _ := parseTarget(r.target)
	code, body, err := getBody(&fasthttp.HostClient{Addr: addr, IsTLS: tls}, sample, 2*time.Second)
	if err != nil || code != fasthttp.StatusOK {
		return nil, fmt.Errorf("cannot GET %s for a sample answer (status %d): %v %.200s", sample, code, err, body)
	}
	res := &CapacityResult{Conns: o.CapacityConns, DurationS: d.Seconds(), BodyBytes: len(body), Rounds: o.CapacityRounds}
	r.notice("capacity: closed loop, %d connections, %s per measurement, %d rounds; a sample answer is %d bytes: %s",
		o.CapacityConns, d, o.CapacityRounds, len(body), body)
	baseTarget, basePid := "", 0
	if o.Baseline {
		stop, err := r.startBaseline(len(body), &baseTarget, &basePid)
		if err != nil {
			return nil, err
		}
		defer stop()
	}
	var svcRuns, baseRuns, batchRuns []closedRun
	var ortb openRTBRuns
	for round := 0; round < o.CapacityRounds && ctx.Err() == nil; round++ {
		if o.Baseline {
			baseRuns = append(baseRuns, r.closedLoop(ctx, baseTarget, "baseline", d, basePid, singleShape))
		}
		pid := 0
		if r.svc != nil {
			pid = r.svc.pid()
		}
		svcRuns = append(svcRuns, r.closedLoop(ctx, r.target, "service", d, pid, singleShape))
		if o.BidBatch > 1 && ctx.Err() == nil {
			batchRuns = append(batchRuns, r.closedLoop(ctx, r.target, "batch", d, pid, bidShape{endpoint: EndpointBatch, batch: o.BidBatch}))
		}
		if o.BidOpenRTB && ctx.Err() == nil {
			r.openRTBRound(ctx, round, d, pid, &ortb)
		}
	}
	res.Service = combineRuns("service", svcRuns)
	if len(batchRuns) > 0 {
		res.Batch = batchCapacity(o.BidBatch, batchRuns, &res.Service)
	}
	if len(ortb.openrtb) > 0 && len(ortb.batch) > 0 {
		res.OpenRTB = r.openRTBCapacity(&ortb, &res.Service)
	}
	if o.Baseline {
		b := combineRuns("baseline", baseRuns)
		res.Baseline = &b
		var ratios []float64
		for i := range min(len(svcRuns), len(baseRuns)) {
			if baseRuns[i].rps() > 0 {
				ratios = append(ratios, svcRuns[i].rps()/baseRuns[i].rps())
			}
		}
		if b.ServerCPU > 0 && res.Service.ServerCPU > 0 {
			res.RatioPerCPU = (res.Service.RPS / res.Service.ServerCPU) / (b.RPS / b.ServerCPU)
		}
		for i := range min(len(svcRuns), len(baseRuns)) {
			cr := CapacityRound{
				Baseline: baseRuns[i].rps(), Service: svcRuns[i].rps(),
				OtherCPU: 100 * (baseRuns[i].otherCPU + svcRuns[i].otherCPU).Seconds() / (baseRuns[i].wall + svcRuns[i].wall),
				StealCPU: 100 * (baseRuns[i].stealCPU + svcRuns[i].stealCPU).Seconds() / (baseRuns[i].wall + svcRuns[i].wall),
			}
			if i < len(batchRuns) {
				cr.BatchMultipliers = float64(batchRuns[i].items) / batchRuns[i].wall
			}
			res.RoundFigures = append(res.RoundFigures, cr)
		}
		if len(ratios) > 0 {
			res.Ratio = median(ratios) // sorts them
			res.Ratios = ratios
			r.notice("capacity: ratio %.3f (median of %d rounds, %.3f..%.3f; service %.0f req/s, baseline %.0f req/s overall)",
				res.Ratio, len(ratios), ratios[0], ratios[len(ratios)-1], res.Service.RPS, b.RPS)
		}
	}
	return res, nil
}

// startBaseline starts the baseline server (a child pinned like the service when the service
// is spawned, in this process otherwise) and returns its stop function.
func (r *runner) startBaseline(size int, target *string, pid *int) (func(), error) {
	if r.svc == nil {
		b, err := StartBaseline("127.0.0.1:0", size)
		if err != nil {
			return nil, err
		}
		*target = "http://" + b.Addr()
		return func() { b.Close() }, nil
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	c := &child{
		name:    "baseline server",
		argv:    withTaskset(r.pin.service, []string{r.svc.exe, "bench", "--" + BaselineFlag, addr, "--" + BaselineSizeFlag, strconv.Itoa(size)}),
		logPath: filepath.Join(r.svc.dir, "baseline.log"),
		gc:      &gcStats{},
	}
	if err := c.start(); err != nil {
		return nil, err
	}
	stop := func() { c.signal(syscall.SIGTERM, 10*time.Second) }
	if err := c.waitReady(addr, "/", 10*time.Second); err != nil {
		stop()
		return nil, err
	}
	*target, *pid = "http://"+addr, c.pid()
	return stop, nil
}

// closedRun is one closed-loop measurement.
type closedRun struct {
	rec           PhaseResult
	wall          float64 // seconds
	genCPU, svCPU time.Duration
	// otherCPU is what the rest of the machine used meanwhile, stealCPU what the host took.
	otherCPU, stealCPU time.Duration
	// items are the multipliers answered in batch and OpenRTB requests (0 for single GETs).
	items uint64
	// rt is what the service's runtime did (ok: known).
	rt   runtimeDelta
	rtOK bool
}

func (c *closedRun) rps() float64 { return float64(c.rec.Counts[OK]) / c.wall }

// singleShape is the capacity's single-key GETs.
var singleShape = bidShape{endpoint: EndpointSingle, batch: 1}

// closedLoop measures one target's closed-loop throughput with requests of the given shape,
// counting the multipliers answered in batch and OpenRTB requests. The service's runtime
// figures are read around the service's runs (the target is r.target).
func (r *runner) closedLoop(ctx context.Context, target, name string, d time.Duration, serverPid int, shape bidShape) closedRun {
	o := &r.o
	bids, err := newHTTPBids(target, o.CapacityConns, r.keys, shape, o.Seed)
	if err != nil {
		panic(fmt.Sprintf("BUG: cannot build the capacity client of %s: %v", target, err))
	}
	defer bids.close()
	counted := shape.endpoint != EndpointSingle
	bids.countItems = counted
	// Closed-loop latency is the queue of CapacityConns requests: allow it a generous timeout,
	// so the throughput is not cut by the bid timeout.
	g := &generator{rec: NewRecorder(1), doer: bids, conns: o.CapacityConns, timeout: time.Second, now: time.Now}
	g.runClosed(ctx, capacityWarmup, 0)
	g.rec = NewRecorder(1)
	items0 := bids.items()
	var rt0 *runtimeSample
	if target == r.target {
		rt0, _ = r.stats.runtime()
	}
	self0, svc0, host0, t0 := selfCPU(), procCPU(serverPid), readHostTimes(), time.Now()
	g.runClosed(ctx, d, 0)
	run := closedRun{rec: g.rec.Phase(0), wall: time.Since(t0).Seconds(), genCPU: selfCPU() - self0}
	if serverPid > 0 {
		run.svCPU = procCPU(serverPid) - svc0
	}
	host := readHostTimes().sub(host0)
	run.otherCPU = max(host.busy-run.genCPU-run.svCPU, 0)
	run.stealCPU = max(host.steal, 0)
	run.items = bids.items() - items0
	if rt0 != nil {
		rt1, _ := r.stats.runtime()
		run.rt, run.rtOK = runtimeBetween(rt0, rt1)
	}
	extra := ""
	if counted {
		extra = fmt.Sprintf(" (%.0f multipliers/s)", float64(run.items)/run.wall)
	}
	r.notice("capacity: %-8s %8.0f req/s%s, p50 %s ms, p99 %s ms, %d not ok; cpu server %.0f%%, generator %.0f%%, other processes %.0f%%, host stole %.0f%% of a core",
		name, run.rps(), extra, ms(usToMs(run.rec.Latency.ValueAtQuantile(50))), ms(usToMs(run.rec.Latency.ValueAtQuantile(99))),
		run.rec.Requests()-run.rec.Counts[OK], 100*run.svCPU.Seconds()/run.wall, 100*run.genCPU.Seconds()/run.wall,
		100*run.otherCPU.Seconds()/run.wall, 100*run.stealCPU.Seconds()/run.wall)
	return run
}

// batchCapacity sums the batch runs and compares their service CPU per multiplier with the
// single GETs' (single).
func batchCapacity(size int, runs []closedRun, single *Throughput) *BatchCapacity {
	return namedBatchCapacity("batch", size, runs, single)
}

// namedBatchCapacity is batchCapacity with the Throughput's name.
func namedBatchCapacity(name string, size int, runs []closedRun, single *Throughput) *BatchCapacity {
	b := &BatchCapacity{Size: size, Throughput: combineRuns(name, runs)}
	var wall float64
	for _, r := range runs {
		b.Multipliers += r.items
		wall += r.wall
	}
	b.MultipliersPerS = float64(b.Multipliers) / wall
	if b.ServerCPU > 0 && single.ServerCPU > 0 {
		b.MultipliersPerCPUS = b.MultipliersPerS / (b.ServerCPU / 100)
		b.SinglePerCPUS = single.RPS / (single.ServerCPU / 100)
		b.PerCPUGain = b.MultipliersPerCPUS / b.SinglePerCPUS
	}
	return b
}

// combineRuns sums closed-loop runs into one Throughput.
func combineRuns(name string, runs []closedRun) Throughput {
	t := Throughput{Name: name}
	if len(runs) == 0 {
		return t
	}
	hist := newHist()
	var counts [numOutcomes]uint64
	var wall float64
	var gen, svc, other, steal time.Duration
	var rt runtimeDelta
	rtOK := true
	for _, r := range runs {
		other += r.otherCPU
		steal += r.stealCPU
		if rtOK = rtOK && r.rtOK; rtOK {
			rt.add(r.rt)
		}
		hist.Merge(r.rec.Latency)
		for i, n := range r.rec.Counts {
			counts[i] += n
		}
		wall += r.wall
		gen += r.genCPU
		svc += r.svCPU
	}
	t.Requests, t.OK = 0, counts[OK]
	for _, n := range counts {
		t.Requests += n
	}
	t.RPS = float64(t.OK) / wall
	t.Latency, t.Outcomes = latencyOf(hist), outcomesOf(counts)
	t.GenCPU, t.ServerCPU, t.OtherCPU = 100*gen.Seconds()/wall, 100*svc.Seconds()/wall, 100*other.Seconds()/wall
	t.StealCPU = 100 * steal.Seconds() / wall
	if rtOK {
		t.Runtime = rt.report()
	}
	return t
}

// ServeBaseline serves the baseline handler on addr with a body of size bytes until SIGTERM or
// SIGINT (the child process of a spawned baseline measurement).
func ServeBaseline(addr string, size int, sigs <-chan os.Signal) error {
	b, err := StartBaseline(addr, size)
	if err != nil {
		return err
	}
	<-sigs
	return b.Close()
}
