// Package leakcheck makes a package's tests fail when a goroutine outlives them (goleak), with
// one list, kept here, of the library goroutines that are not leaks. Each package whose code or
// tests start goroutines calls VerifyTestMain from its TestMain.
package leakcheck

import (
	"testing"

	"go.uber.org/goleak"
)

// ignored are goroutines of libraries that outlive the code that started them by design; each
// says why it is not a leak. Anything else still running after the tests is one.
var ignored = []goleak.Option{
	// fasthttp's date header clock: started once by the first Server, for the process.
	goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.updateServerDate.func1"),
	// fasthttp's default dialer's DNS cache cleaner: started once by the first dial, for the
	// process.
	goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*TCPDialer).tcpAddrsClean"),
	// A fasthttp Server's idle-worker cleaner: after Shutdown it exits when it next wakes, up
	// to MaxIdleWorkerDuration (10 s) later. A server never shut down is caught all the same:
	// its Serve goroutine is not ignored.
	goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*workerPool).Start.func2"),
	// A fasthttp HostClient's idle-connection cleaner: it closes the client's idle
	// connections and exits when it next wakes with none left, up to MaxIdleConnDuration
	// later (the clients are dropped, not closed: fasthttp has no Close).
	goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*HostClient).connsCleaner"),
}

// VerifyTestMain runs the tests of m and fails them, printing the stacks, when goroutines
// other than the ignored ones are still running once they are done (goleak retries for a
// while first, so goroutines that are ending do not count). It calls os.Exit.
func VerifyTestMain(m *testing.M) {
	goleak.VerifyTestMain(m, ignored...)
}
