package windows

import (
	"runtime"
	"testing"
)

// A write that lands in the middle of a read, forced rather than left to
// chance: the read must be redone, so every span agrees. With validation
// disabled the same interleaving returns a torn read, which the check
// catches on every run.
func TestSeqlockGuardsTornReads(t *testing.T) {
	if !optimisticReads {
		t.Skip("readers take the writer lock on " + runtime.GOARCH + ": there is no read to validate")
	}
	f := func(skip bool) (torn bool) {
		t.Helper()
		s := mustStore(t, Config{MaxKeys: 100})
		key := testKey(0, "c")
		now := t0 + 30*minuteMs
		for i := 0; i < 5; i++ {
			s.Add(key, now, now, Counts{Impressions: 1})
		}
		written := false
		midReadHook = func(ring int) {
			if ring == 0 && !written {
				written = true
				// The writer's lock is free while a read runs: this Add
				// completes inside the read.
				s.Add(key, now, now, Counts{Impressions: 1})
			}
		}
		skipReadValidation = skip
		defer func() { midReadHook, skipReadValidation = nil, false }()
		var dst [NumSpans]Counts
		if !s.Read(key, now, &dst) {
			t.Fatalf("key not found")
		}
		if !written {
			t.Fatalf("the hook did not run: the interleaving was not forced")
		}
		for sp := Span(0); sp < NumSpans; sp++ {
			if dst[sp].Impressions != dst[0].Impressions {
				return true
			}
		}
		if dst[0].Impressions != 6 {
			t.Fatalf("unexpected impressions; got %d; want 6", dst[0].Impressions)
		}
		return false
	}
	if f(false) {
		t.Fatalf("unexpected torn read with validation on")
	}
	if !f(true) {
		t.Fatalf("the guard test passed with read validation disabled: it cannot fail for what it names")
	}
}
