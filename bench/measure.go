package bench

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"
)

// measure runs the schedule: open-loop bids, events, the restart and the dashboard reads, a
// live line each second, then the per-phase reports.
func (r *runner) measure(ctx context.Context, sched *Schedule) error {
	o := &r.o
	phases := sched.Phases()
	rec := NewRecorder(len(phases))
	bids, err := newHTTPBids(r.target, o.Conns, r.keys, o.bidShape(), o.Seed)
	if err != nil {
		return err
	}
	defer bids.close()
	g := &generator{sched: sched, rec: rec, doer: bids, conns: o.Conns, timeout: o.Timeout, now: time.Now,
		spin: r.pin.generator != ""}

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	phaseEvents := make([]atomic.Uint64, len(phases))
	var start time.Time
	if t := r.ckptTimer; t != nil {
		// Wait for the aligned start here rather than after opening the connections, which
		// could go idle and close meanwhile.
		start = t.alignStart(time.Now().Add(primeAllowance), sched)
		r.notice("checkpoints: the run starts in %s, so that the service's checkpoints (every %s) fall %s into each spike phase",
			time.Until(start).Round(time.Millisecond), t.interval, t.into)
		sleepCtx(ctx, time.Until(start.Add(-primeAllowance)))
	}
	if sched.Bids() > 0 {
		g.prime()
	}
	if t := r.ckptTimer; t != nil {
		if time.Until(start) < 10*time.Millisecond { // opening the connections took longer
			start = t.alignStart(time.Now().Add(50*time.Millisecond), sched)
		}
	} else {
		start = time.Now().Add(50 * time.Millisecond)
	}
	r.retention.start = start
	r.notice("run %s: %s, phases %d, %s; bids %s to %s, in-flight cap %d, timeout %s",
		r.o.RunID, o.Scenario, len(phases), sched.Duration(), o.Endpoint, r.target, o.Conns, o.Timeout)

	var wg sync.WaitGroup
	var bidsDone, eventsDone atomic.Bool
	wg.Add(2)
	go func() {
		defer wg.Done()
		defer bidsDone.Store(true)
		g.runOpen(runCtx, start)
	}()
	go func() {
		defer wg.Done()
		defer eventsDone.Store(true)
		r.publishEvents(runCtx, sched, start, phaseEvents)
	}()
	for i, p := range phases {
		if p.Restart {
			r.rep.Restart = &RestartResult{Signal: o.RestartSignal}
			wg.Add(1)
			go func() {
				defer wg.Done()
				r.restart(runCtx, start.Add(sched.PhaseStart(i)), r.rep.Restart)
			}()
		}
	}
	if o.Scenario == ScenarioMixed {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.dashboardReads(runCtx, start.Add(sched.Duration()))
		}()
	}
	var latest atomic.Pointer[ServiceStats]
	pollDone := make(chan struct{})
	go func() {
		defer close(pollDone)
		r.pollStats(runCtx, &latest)
	}()
	runtimeSamples := make([]*runtimeSample, len(phases)+1)
	scrapeDone := make(chan struct{})
	go func() {
		defer close(scrapeDone)
		r.scrapeRuntime(runCtx, sched, start, runtimeSamples)
	}()

	// The live loop: one line per second, and the ramp's verdict at each step's end.
	base := latest.Load()
	if base == nil {
		if st, err := r.stats.get(); err == nil {
			base = &st
		} else {
			base = &ServiceStats{}
		}
	}
	sleepCtx(ctx, time.Until(start)) // the first second's CPU figures start with it
	lastSelf, lastSvc, lastPid, lastHost := selfCPU(), time.Duration(0), 0, readHostTimes()
	if r.svc != nil {
		lastPid = r.svc.pid()
		lastSvc = procCPU(lastPid)
	}
	lastPub, lastAcked := r.pubEvents.Load(), uint64(0)
	if r.pub != nil {
		lastAcked = r.pub.ackedEvents()
	}
	ackedBase := lastAcked
	lastReceived := base.Received
	lastTick := start
	stopAt := start.Add(sched.Duration())
	nextRampCheck := 0
	if o.Scenario == ScenarioRamp {
		r.rep.Ramp = &RampResult{ThresholdMs: float64(o.P99Threshold.Microseconds()) / 1000}
	}
	for k := 1; ; k++ {
		tick := start.Add(time.Duration(k) * time.Second)
		final := false
		if !tick.Before(stopAt) || runCtx.Err() != nil {
			// The last (partial) second: wait for the in-flight requests and the publisher.
			wait := make(chan struct{})
			go func() { wg.Wait(); close(wait) }()
			select {
			case <-wait:
			case <-ctx.Done():
			}
			tick = time.Now()
			final = true
		} else {
			time.Sleep(time.Until(tick))
		}
		el := tick.Sub(start)
		span := tick.Sub(lastTick).Seconds()
		if span <= 0 {
			span = 1
		}
		sec := rec.TakeSecond()
		phase := sched.PhaseAt(el - time.Millisecond)
		s := Second{
			T: el.Seconds(), Phase: phases[phase].Name,
			BidTarget: (sched.BidsDue(el) - sched.BidsDue(lastTick.Sub(start))) / span,
			Bids:      sec.Requests(), OK: sec.Counts[OK], Timeouts: sec.TimedOut(),
			Errors: sec.Errors(), CapWaits: sec.CapWaits,
			P50: usToMs(sec.P50), P99: usToMs(sec.P99), Max: usToMs(sec.Max),
		}
		pub, acked := r.pubEvents.Load(), uint64(0)
		if r.pub != nil {
			acked = r.pub.ackedEvents()
		}
		s.Events, s.Acked = pub-lastPub, acked-lastAcked
		lastPub, lastAcked = pub, acked
		if st := latest.Load(); st != nil {
			s.Received = delta(st.Received, lastReceived)
			lastReceived = st.Received
			s.Backlog = int64(acked-ackedBase) - delta(st.Received, base.Received)
			s.LagMs = st.IngestLagMs
		}
		self, host := selfCPU(), readHostTimes()
		s.GenCPU = 100 * (self - lastSelf).Seconds() / span
		svcUsed := time.Duration(0)
		if r.svc != nil {
			pid := r.svc.pid()
			c := procCPU(pid)
			if pid == lastPid && c >= lastSvc {
				svcUsed = c - lastSvc
				s.SvcCPU = 100 * svcUsed.Seconds() / span
			}
			lastSvc, lastPid = c, pid
		}
		used := host.sub(lastHost)
		s.OtherCPU = 100 * max(used.busy-(self-lastSelf)-svcUsed, 0).Seconds() / span
		s.StealCPU = 100 * max(used.steal, 0).Seconds() / span
		lastSelf, lastHost = self, host
		if st := latest.Load(); st != nil && tick.Sub(st.readAt) < statsFresh {
			if st.Buffer != nil && st.Buffer.Kind == "stream" {
				b := st.Buffer.Bytes
				s.StreamBytes = &b
			}
			r.retention.observe(st)
		}
		if r.svc != nil {
			if rss, _ := procRSS(r.svc.pid()); rss > 0 {
				mb := float64(rss) / (1 << 20)
				s.RSSMB = &mb
			}
		}
		s.Events = uint64(float64(s.Events) / span)
		s.Acked = uint64(float64(s.Acked) / span)
		s.Received = int64(float64(s.Received) / span)
		r.rep.Series = append(r.rep.Series, s)
		r.liveLine(&s, span)
		lastTick = tick

		if o.Scenario == ScenarioRamp {
			for nextRampCheck < len(phases) && el >= sched.PhaseStart(nextRampCheck+1) {
				if phases[nextRampCheck].Name != warmupPhase && r.rampStep(rec, sched, nextRampCheck) {
					cancel()
					stopAt = start.Add(sched.PhaseStart(nextRampCheck + 1))
				}
				nextRampCheck++
				if runCtx.Err() != nil {
					break
				}
			}
		}
		if final {
			break
		}
	}
	cancel()
	wg.Wait()
	<-pollDone
	<-scrapeDone
	r.rep.DurationS = lastTick.Sub(start).Seconds()
	r.phaseReports(rec, sched, phaseEvents, runtimeSamples, stopAt.Sub(start))
	return nil
}

// liveLine prints one second's line.
func (r *runner) liveLine(s *Second, span float64) {
	lag := ""
	switch {
	case s.LagMs != nil:
		lag = fmt.Sprintf(" lag %.0fms", *s.LagMs)
	case r.pub != nil:
		lag = fmt.Sprintf(" backlog %d", s.Backlog)
	}
	extra := ""
	if s.CapWaits > 0 {
		extra = fmt.Sprintf(" CAP %d", s.CapWaits)
	}
	mem := ""
	if s.StreamBytes != nil {
		mem += fmt.Sprintf(" | stream %.0fMB", float64(*s.StreamBytes)/(1<<20))
	}
	if s.RSSMB != nil {
		mem += fmt.Sprintf(" rss %.0fMB", *s.RSSMB)
	}
	fmt.Fprintf(r.out, "%6.1fs %-12s bids %6.0f/s p50 %s p99 %s max %s ms  to %d err %d%s | events %6d/s acked %6d/s recv %6d/s%s | cpu gen %3.0f%% svc %3.0f%% other %3.0f%% steal %3.0f%%%s\n",
		s.T, s.Phase, float64(s.Bids)/span, ms(s.P50), ms(s.P99), ms(s.Max), s.Timeouts, s.Errors, extra,
		s.Events, s.Acked, s.Received, lag, s.GenCPU, s.SvcCPU, s.OtherCPU, s.StealCPU, mem)
}

// rampStep judges ramp step i once it has ended and reports whether the ramp must stop.
func (r *runner) rampStep(rec *Recorder, sched *Schedule, i int) bool {
	res := r.rep.Ramp
	if res.Crossed != "" {
		return true
	}
	p := rec.Phase(i)
	ph := sched.Phases()[i]
	n := p.Requests()
	bad := n - p.Counts[OK]
	p99 := usToMs(p.Latency.ValueAtQuantile(99))
	target := sched.BidsOf(i)
	ok := n > 0 && p99 <= res.ThresholdMs && float64(bad) < 0.01*float64(n) && float64(n) >= 0.95*target
	if ok {
		res.Capacity = ph.BidRate
		return false
	}
	res.Crossed = fmt.Sprintf("%s (p99 %s ms, %d of %d requests failed or timed out)", ph.Name, ms(p99), bad, n)
	return true
}

// phaseReports fills the report's phases from the recorder, the service's runtime figures at
// the phase boundaries and its checkpoints, up to ran (the run's length).
func (r *runner) phaseReports(rec *Recorder, sched *Schedule, phaseEvents []atomic.Uint64, runtimeSamples []*runtimeSample, ran time.Duration) {
	for i, ph := range sched.Phases() {
		st := sched.PhaseStart(i)
		if st >= ran {
			break
		}
		d := min(ph.Duration, ran-st).Seconds()
		p := rec.Phase(i)
		pr := PhaseReport{
			Name: ph.Name, StartS: st.Seconds(), DurationS: d,
			BidTarget: sched.BidsOf(i) / ph.Duration.Seconds(),
			BidRate:   float64(p.Requests()) / d,
			Requests:  p.Requests(), Latency: latencyOf(p.Latency), Outcomes: outcomesOf(p.Counts),
			CapWaits: p.CapWaits, SendLag: latencyOf(p.SendLag), Curve: curveOf(p.Latency),
			EventTarget: ph.EventRate, Events: phaseEvents[i].Load(), Spike: ph.Spike,
		}
		pr.EventRate = float64(pr.Events) / d
		var gen, svc, other, steal float64
		var n int
		for _, s := range r.rep.Series {
			if s.Phase == ph.Name {
				gen += s.GenCPU
				svc += s.SvcCPU
				other += s.OtherCPU
				steal += s.StealCPU
				n++
			}
		}
		if n > 0 {
			pr.GenCPU, pr.SvcCPU, pr.OtherCPU, pr.StealCPU = gen/float64(n), svc/float64(n), other/float64(n), steal/float64(n)
		}
		if rd, ok := runtimeBetween(runtimeSamples[i], runtimeSamples[i+1]); ok {
			pr.Runtime = rd.report()
		}
		if r.retention.processes > 0 {
			pr.Checkpoints = new(r.retention.during(st.Seconds(), st.Seconds()+d))
		}
		r.rep.Phases = append(r.rep.Phases, pr)
	}
}

// publishEvents publishes the schedule's events in batches, every 5 ms catching up with what
// is due; it runs in its own goroutine. With a batch mix, each message waits until its drawn
// size is due (a producer filling its batch), except the last one of the run.
func (r *runner) publishEvents(ctx context.Context, sched *Schedule, start time.Time, perPhase []atomic.Uint64) {
	if r.pub == nil || sched.Events() == 0 {
		return
	}
	time.Sleep(time.Until(start))
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	var sent uint64
	size := -1 // index of the next message's size in the mix
	if r.sizer != nil {
		size = r.sizer.next()
	}
	for {
		now := time.Now()
		el := now.Sub(start)
		due := sched.EventsDue(el)
		phase := sched.PhaseAt(el)
		for sent < due && ctx.Err() == nil {
			n := int(min(due-sent, uint64(r.o.EventBatch)))
			if size >= 0 {
				want := uint64(r.sizer.mix[size].Events)
				if due-sent < want && el < sched.Duration() {
					break
				}
				n = int(min(due-sent, want))
			}
			data, t := r.events.next(n, now.UnixMilli())
			sent += t.Counted()
			if err := r.pub.publish(data, &t); err != nil {
				if r.pubErrors.Add(1) == 1 {
					r.notice("warning: %v", err)
				}
				continue
			}
			if size >= 0 {
				r.sizer.sent(size, t.Events)
				size = r.sizer.next()
			}
			perPhase[phase].Add(t.Events)
			r.pubEvents.Add(t.Events)
			r.pubBytes.Add(uint64(len(data)))
		}
		if el >= sched.Duration() {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// pollStats reads /v1/stats every second into latest; it runs in its own goroutine.
func (r *runner) pollStats(ctx context.Context, latest *atomic.Pointer[ServiceStats]) {
	for {
		pid := 0
		if r.svc != nil {
			pid = r.svc.pid()
		}
		if st, err := r.stats.get(); err == nil {
			if r.svc != nil && r.svc.pid() == pid {
				st.pid = pid
			}
			if r.svc == nil {
				st.pid = externalPid
			}
			st.readAt = time.Now()
			latest.Store(&st)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
}

// restart kills (or stops) the spawned service at at, waits RestartDown, starts it again and
// waits until it is ready; it runs in its own goroutine.
func (r *runner) restart(ctx context.Context, at time.Time, res *RestartResult) {
	select {
	case <-ctx.Done():
		return
	case <-time.After(time.Until(at)):
	}
	sig, name := syscall.SIGKILL, "SIGKILL"
	if r.o.RestartSignal == "term" {
		sig, name = syscall.SIGTERM, "SIGTERM"
	}
	t0 := time.Now()
	fail := func(err error) {
		res.Error = err.Error()
		r.notice("restart: %v", err)
	}
	r.notice("restart: sending %s to the service (pid %d)", name, r.svc.pid())
	if err := r.svc.signal(sig, 30*time.Second); err != nil {
		fail(err)
	}
	time.Sleep(r.o.RestartDown)
	if err := r.svc.start(); err != nil {
		fail(err)
		return
	}
	if err := r.svc.waitReady(r.svc.httpAddr, "/readyz", r.o.ReadyTimeout); err != nil {
		fail(err)
		return
	}
	res.DownS = time.Since(t0).Seconds()
	r.notice("restart: the service is ready again (pid %d) %.2fs after the signal", r.svc.pid(), res.DownS)
}

// dashboardReads reads /v1/snapshot and /v1/rates five times a second until end, as an
// operator's dashboard would; it runs in its own goroutine.
func (r *runner) dashboardReads(ctx context.Context, end time.Time) {
	addr, tls, _ := parseTarget(r.target)
	hc := &fasthttp.HostClient{Addr: addr, IsTLS: tls, MaxConns: 2}
	paths := []string{
		"/v1/snapshot?level=campaign/placement&window=1h&sort=multiplier&limit=20",
		"/v1/rates?campaign=c1&placement=news.example/top",
	}
	for i := 0; time.Now().Before(end) && ctx.Err() == nil; i++ {
		code, _, err := getBody(hc, paths[i%len(paths)], time.Second)
		if err == nil && code == fasthttp.StatusOK {
			r.readsOK.Add(1)
		} else {
			r.readsErr.Add(1)
		}
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
}
