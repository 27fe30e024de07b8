package pace

import (
	"testing"
	"time"
)

// TestStepsAside checks that a busy loop paced by Step sleeps about once
// every Every of work, and not on every call.
func TestStepsAside(t *testing.T) {
	var p Pacer
	start := time.Now()
	steps, sleeps := 0, 0
	last := p.last
	for time.Since(start) < 50*time.Millisecond {
		p.Step()
		steps++
		if p.last != last {
			sleeps++
			last = p.last
		}
	}
	// 50 ms of work: about 25 steps aside (fewer on a busy machine, never
	// one per call).
	if sleeps < 5 || sleeps > 50 || sleeps*1000 > steps {
		t.Fatalf("%d steps aside in %d calls over 50 ms; want about one per %s", sleeps, steps, Every)
	}
}
