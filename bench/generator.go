package bench

import (
	"context"
	"runtime"
	"sync"
	"time"
)

// bidDoer sends bid requests. Worker w (0 <= w < the number of connections) calls do from its
// own goroutine only, so an implementation may keep per-worker buffers indexed by w. do must
// return by deadline (with Timeout if there is no answer by then, closing the connection). The real one is httpclient.go's,
// through bidpulse's Go client; tests use a fake service with a scripted latency.
type bidDoer interface {
	do(w int, deadline time.Time) Outcome
}

// minBudgetDiv sets the least time budget worth sending with: a request with less than
// timeout/minBudgetDiv left when a connection frees expires unsent.
const minBudgetDiv = 4

// spinBelow is the gap under which a spinning dispatcher yields instead of sleeping.
const spinBelow = 40 * time.Microsecond

// ticket is one due request handed from the dispatcher to a worker.
type ticket struct {
	intended time.Time
	phase    int
}

// generator is the open-loop bid load: a dispatcher walks the Schedule and hands each request,
// at its intended time, to an idle worker; there are as many workers as allowed requests in
// flight (each worker has at most one, on its own connection). When no worker is idle, the
// in-flight cap is reached: the dispatcher counts it and waits, and a request that a worker picks
// up after its deadline is recorded as Expired without being sent. Every latency is measured
// from the intended time, so the waiting shows.
type generator struct {
	sched   *Schedule
	rec     *Recorder
	doer    bidDoer
	conns   int
	timeout time.Duration
	// now is the process clock; sleep, when set, replaces the dispatcher's precise sleep
	// (newPreciseSleep). Tests inject a synctest bubble's time.Now and time.Sleep.
	now   func() time.Time
	sleep func(time.Duration)
	// spin makes the dispatcher yield (runtime.Gosched) instead of sleeping through the last
	// spinBelow before a request is due. The workers then run on the dispatcher's own thread
	// the moment a request is handed over, without a thread wake-up: lower and steadier
	// latency, at the price of a load generator that looks 100% busy. Only for a generator
	// with cores of its own (pinned); unpinned, it would take CPU from the service.
	spin bool
}

// prime opens the connections before a run: every worker sends one request at once, with a
// generous deadline, unrecorded. A cold start would otherwise dial hundreds of connections
// while the schedule is already due, and a timed-out request closes its connection, so a
// run could begin with a storm of dials that says nothing about the service.
func (g *generator) prime() {
	var wg sync.WaitGroup
	for w := range g.conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			g.doer.do(w, g.now().Add(5*time.Second))
		}()
	}
	wg.Wait()
}

// runOpen runs the schedule from start (the offset-0 time, which may be slightly in the past)
// until its last request has finished, or until ctx is done.
func (g *generator) runOpen(ctx context.Context, start time.Time) {
	work := make(chan ticket) // unbuffered: a send succeeds only into an idle worker
	var wg sync.WaitGroup
	for w := range g.conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for t := range work {
				g.serve(w, t)
			}
		}()
	}
	defer wg.Wait()
	defer close(work)

	sleep := g.sleep
	if sleep == nil {
		precise, release, _ := newPreciseSleep()
		defer release()
		sleep = precise
	}
	var n uint64
	hint := 0
	for {
		off, phase, ok := g.sched.BidAt(n, hint)
		if !ok {
			return
		}
		hint = phase
		due := start.Add(off)
		for {
			d := due.Sub(g.now())
			if d <= 0 {
				break
			}
			if ctx.Err() != nil {
				return
			}
			// Let the workers just handed a request run first: the precise sleep keeps this
			// goroutine's P, and they were queued on it.
			runtime.Gosched()
			d = due.Sub(g.now())
			switch {
			case !g.spin:
				if d > 0 {
					sleep(min(d, 100*time.Millisecond))
				}
			case d > spinBelow:
				// Sleep short of the time (a sleep overshoots by tens of µs), then yield
				// until it.
				sleep(min(d-spinBelow/2, 100*time.Millisecond))
			}
		}
		t := ticket{intended: due, phase: phase}
		select {
		case work <- t:
		default:
			g.rec.CapWait(phase)
			select {
			case work <- t:
			case <-ctx.Done():
				return
			}
		}
		n++
	}
}

// hardDeadline is how long after its intended time a request may hold its connection: an
// answer after the timeout is recorded as Late, but waiting for it keeps the connection. A
// request abandoned at the timeout would close its connection (HTTP/1.1 cannot cancel one),
// and after a pause of the service every request would pay a new connection, a storm of dials
// that outlives the pause. Only a service that stays silent past this is cut off.
func hardDeadline(timeout time.Duration) time.Duration {
	return max(10*timeout, time.Second)
}

// serve sends one request for worker w, unless too little of its time budget is left.
func (g *generator) serve(w int, t ticket) {
	sent := g.now()
	deadline := t.intended.Add(g.timeout)
	if deadline.Sub(sent) < g.timeout/minBudgetDiv {
		// An ad server does not start a call it cannot finish in time; nor does sending it
		// help a load generator that is behind. Recorded at the full timeout.
		g.rec.Record(t.phase, t.intended, time.Time{}, deadline, Expired)
		return
	}
	o := g.doer.do(w, t.intended.Add(hardDeadline(g.timeout)))
	done := g.now()
	if o != Timeout && o.hasLatency() && done.After(deadline) {
		o = Late
	}
	g.rec.Record(t.phase, t.intended, sent, done, o)
}

// runClosed runs a closed loop for d: every worker sends its next request as soon as the
// previous one is answered, which measures the highest throughput the service sustains with
// g.conns requests in flight. Latencies are then from each actual send (there is no schedule)
// and are recorded in phase.
func (g *generator) runClosed(ctx context.Context, d time.Duration, phase int) {
	end := g.now().Add(d)
	var wg sync.WaitGroup
	for w := range g.conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				sent := g.now()
				if !sent.Before(end) {
					return
				}
				o := g.doer.do(w, sent.Add(g.timeout))
				g.rec.Record(phase, sent, sent, g.now(), o)
				if !o.hasLatency() {
					time.Sleep(time.Millisecond) // nothing listens: do not spin
				}
			}
		}()
	}
	wg.Wait()
}
