package bench

import (
	"runtime"
	"syscall"
	"time"
	"unsafe"
)

// prSetTimerSlack is PR_SET_TIMERSLACK of prctl(2).
const prSetTimerSlack = 29

// newPreciseSleep returns a sleep function accurate to a few tens of microseconds, for the
// goroutine that paces an open-loop schedule. Go's timers wake an idle process at best once
// per millisecond on Linux (the netpoller waits in whole milliseconds), which would send a
// 20,000 req/s schedule as bursts of 20 requests each millisecond and inflate the tail of the
// service's latency with the generator's own artefact.
//
// The caller's goroutine is locked to its OS thread, with the thread's timer slack cut to 1 ns;
// gaps under 2 ms are slept in nanosleep(2) issued as a raw system call, so the thread keeps
// its P and the runtime hands nothing else to it meanwhile. That needs a second P for the
// rest of the program: with GOMAXPROCS < 2, ok is false and the caller should use time.Sleep.
// Call the returned release function when done pacing, from the same goroutine.
func newPreciseSleep() (sleep func(time.Duration), release func(), ok bool) {
	if runtime.GOMAXPROCS(0) < 2 {
		return time.Sleep, func() {}, false
	}
	runtime.LockOSThread()
	syscall.RawSyscall(syscall.SYS_PRCTL, prSetTimerSlack, 1, 0)
	sleep = func(d time.Duration) {
		if d >= 2*time.Millisecond {
			time.Sleep(d - time.Millisecond)
			return // the caller checks the time and sleeps the rest
		}
		ts := syscall.NsecToTimespec(int64(d))
		// An interrupted sleep (EINTR, e.g. a preemption signal) returns early: the caller
		// re-checks the time.
		syscall.RawSyscall(syscall.SYS_NANOSLEEP, uintptr(unsafe.Pointer(&ts)), 0, 0)
	}
	return sleep, runtime.UnlockOSThread, true
}
