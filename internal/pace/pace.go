// Package pace lets a long loop off the request path step aside, so that
// request goroutines get the CPU on a process with one or two Ps.
package pace

import (
	"runtime"
	"time"
)

// Every is how much work a Pacer lets run between steps aside, and Pause
// how long it steps aside.
const (
	Every = 2 * time.Millisecond
	Pause = 20 * time.Microsecond
)

// Pacer steps a loop aside every Every of work: it sleeps Pause, then
// yields. runtime.Gosched alone is not enough on a process with one P: the
// yielding goroutine goes to the global run queue and is picked again
// before the scheduler polls the network, so requests that arrived
// meanwhile would wait for sysmon, up to 10 ms. The sleep parks the
// goroutine, and the idle P polls the network; but the timer that ends
// the sleep puts the walker back ahead of the goroutines the poll woke
// (an execution trace showed one request served per pause), so it then
// yields: every goroutine the poll woke runs before the walk resumes. The
// zero value is ready to use; not safe for concurrent use.
type Pacer struct {
	last time.Time
	n    uint32
}

// Step counts one unit of work and steps aside when Every has passed since
// the last time. It looks at the clock every 64 calls (time.Now costs
// tens of nanoseconds), so a unit of work must be short.
func (p *Pacer) Step() {
	p.n++
	if p.n&63 != 0 {
		return
	}
	p.Check()
}

// Check steps aside when Every has passed since the last time: call it
// between units of work that are long (a chunk, a shard).
func (p *Pacer) Check() {
	now := time.Now()
	if p.last.IsZero() {
		p.last = now
		return
	}
	if now.Sub(p.last) >= Every {
		time.Sleep(Pause)
		runtime.Gosched()
		p.last = time.Now()
	}
}
