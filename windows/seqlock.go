package windows

import (
	"runtime"
	"sync/atomic"
)

// seqlock guards one shard. Writers (Add, insert, eviction, checkpoint load)
// exclude each other by moving the sequence from even to odd with a
// compare-and-swap and back to even when done; readers (Read, ReadSpan,
// Contains, Scan, WriteCheckpoint) never write it: they note the sequence,
// read, and retry if it changed or was odd. Reads therefore share cache
// lines across cores instead of bouncing a lock word, and a read that
// overlapped a write (which could mix counters of two states, e.g. a click
// without its impression) is never returned.
//
// Why that is sound, by design rather than by the race detector (which does
// not see the off-heap blocks): on amd64 stores are not reordered with
// stores nor loads with loads, and a locked instruction (the writer's CAS and
// its final add) is a full barrier, so a reader that saw any byte of a write
// also sees the sequence moved by it; the Go compiler keeps plain loads
// between the two atomic loads of the sequence. On other architectures that
// reasoning does not hold without read fences, so readers there take the
// writer lock (optimisticReads is false) and the design is plain mutual
// exclusion. Heap memory a reader touches (index, metas, arena headers) is
// read with atomic loads or was published before it by an atomic store, so
// the race detector sees no race there.
//
// A waiting writer or reader spins briefly and then yields the processor,
// so a writer preempted while holding the lock delays others by a
// scheduling round, not a spin storm.
type seqlock struct {
	seq atomic.Uint64
}

const optimisticReads = runtime.GOARCH == "amd64"

func (l *seqlock) lock() {
	if s := l.seq.Load(); s&1 == 0 && l.seq.CompareAndSwap(s, s+1) {
		return
	}
	l.lockSlow()
}

func (l *seqlock) lockSlow() {
	for i := 0; ; i++ {
		s := l.seq.Load()
		if s&1 == 0 && l.seq.CompareAndSwap(s, s+1) {
			return
		}
		backoff(i)
	}
}

func (l *seqlock) unlock() {
	l.seq.Add(1)
}

// readBegin returns the even sequence a read starts from (or takes the
// writer lock where reads are not optimistic).
func (l *seqlock) readBegin() uint64 {
	if optimisticReads {
		if s := l.seq.Load(); s&1 == 0 {
			return s
		}
	}
	return l.readBeginSlow()
}

func (l *seqlock) readBeginSlow() uint64 {
	if !optimisticReads {
		l.lock()
		return 0
	}
	for i := 0; ; i++ {
		if s := l.seq.Load(); s&1 == 0 {
			return s
		}
		backoff(i)
	}
}

// readValid reports whether no writer ran since readBegin returned s; when
// false the reader discards what it read and starts again.
func (l *seqlock) readValid(s uint64) bool {
	if !optimisticReads {
		l.unlock()
		return true
	}
	return l.seq.Load() == s || skipReadValidation
}

// Test hooks, unset outside tests: midReadHook runs inside Read after each
// ring is summed; skipReadValidation takes every read as valid (the guard
// test shows that it then fails).
var (
	midReadHook        func(ring int)
	skipReadValidation bool
)

func backoff(i int) {
	if i >= 64 {
		runtime.Gosched()
	}
}
