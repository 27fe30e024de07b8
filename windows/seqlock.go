package windows

import (
	"runtime"
	"sync"
	"sync/atomic"
)

// seqlock guards one shard. Writers (Add, insert, eviction, checkpoint load)
// exclude each other with a mutex and move the sequence from even to odd
// and back to even around their change; readers (Read, ReadSpan,
// Contains, Scan, WriteCheckpoint) never write it: they note the sequence,
// read, and retry if it changed or was odd. Reads therefore share cache
// lines across cores instead of bouncing a lock word, and a read that
// overlapped a write (which could mix counters of two states, e.g. a click
// without its impression) is never returned.
//
// Why that is sound, by design rather than by the race detector (which does
// not see the off-heap blocks): on amd64 stores are not reordered with
// stores nor loads with loads, and a locked instruction (the writer's two
// atomic adds) is a full barrier, so a reader that saw any byte of a write
// also sees the sequence moved by it; the Go compiler keeps plain loads
// between the two atomic loads of the sequence. On other architectures that
// reasoning does not hold without read fences, so readers there take the
// writer lock (optimisticReads is false) and the design is plain mutual
// exclusion. Heap memory a reader touches (index, metas, arena headers) is
// read with atomic loads or was published before it by an atomic store, so
// the race detector sees no race there.
//
// Writers exclude each other with a sync.Mutex, held around the odd
// sequence. A reader that finds a write in progress spins and yields
// briefly (a write normally holds the shard for microseconds: at most
// batchWindow merged writes), then waits on that mutex, parked. The writer
// may be off its CPU: its thread preempted by the OS on a machine with more
// busy threads than cores, or its goroutine by the Go scheduler. A reader
// that kept yielding (runtime.Gosched) meanwhile kept its P, which ran it
// again before polling the network, so bid requests that arrived meanwhile
// waited too, and its thread burned the CPU the writer's thread waited for:
// bench spike runs with GOMAXPROCS=2 on 2 shared cores showed such reads
// waiting up to 21 ms. Parked, the reader leaves its P to other goroutines
// and its core to the writer, and wakes when the writer unlocks.
type seqlock struct {
	seq atomic.Uint64
	mu  sync.Mutex // held by the writer while seq is odd
}

const optimisticReads = runtime.GOARCH == "amd64"

func (l *seqlock) lock() {
	l.mu.Lock()
	l.seq.Add(1)
}

func (l *seqlock) unlock() {
	l.seq.Add(1)
	l.mu.Unlock()
}

// A reader that finds a write in progress looks again readSpins times, then
// yields readYields times (a write normally ends meanwhile: it holds the
// shard for microseconds), then waits on the writer's mutex.
const (
	readSpins  = 64
	readYields = 32
)

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
		switch {
		case i < readSpins:
		case i < readSpins+readYields:
			runtime.Gosched()
		default:
			// The writer is off its CPU: wait parked until it unlocks
			// (sync.Mutex spins briefly, then parks this goroutine). The
			// critical section is empty: only the wait matters.
			l.mu.Lock()
			l.mu.Unlock()
			i = 0
		}
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
