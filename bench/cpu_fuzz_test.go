package bench

import (
	"fmt"
	"os"
	"testing"
	"time"
)

// FuzzProcParsers checks the readers of /proc/<pid>/stat, /proc/<pid>/status and /proc/stat:
// files written from the fuzzed figures (a command name with any bytes, parentheses and
// spaces included) read back to them, and any other bytes read to something without a panic.
func FuzzProcParsers(f *testing.F) {
	for _, path := range []string{"/proc/self/stat", "/proc/self/status", "/proc/stat"} {
		if b, err := os.ReadFile(path); err == nil {
			f.Add(b, "bench", uint32(0), uint32(0), uint32(0))
		}
	}
	f.Add([]byte("1 (a) b) R 1"), "x) (y", uint32(17), uint32(3), uint32(9))
	f.Add([]byte("cpu 1 2 3"), "", uint32(1<<31), uint32(1), uint32(2))
	f.Fuzz(func(t *testing.T, raw []byte, comm string, a, b, c uint32) {
		parseProcCPU(raw)
		parseProcRSS(raw)
		parseHostTimes(raw)
		tick := func(n uint32) time.Duration { return time.Duration(n) * 10 * time.Millisecond }
		// 52 fields; utime and stime are the 14th and 15th.
		stat := fmt.Sprintf("4242 (%s) S 1 4242 4242 0 -1 4194560 1 0 0 0 %d %d 0 0 20 0 1 0 5 1000 10 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0 0 0 0 0 0 0 0 0\n", comm, a, b)
		if got := parseProcCPU([]byte(stat)); got != tick(a)+tick(b) {
			t.Fatalf("unexpected CPU time of %q; got %v; want %v", stat, got, tick(a)+tick(b))
		}
		status := fmt.Sprintf("Name:\t%.15s\nVmPeak:\t  9 kB\nVmHWM:\t%8d kB\nVmRSS:\t%8d kB\nThreads:\t4\n", comm, a, b)
		if rss, peak := parseProcRSS([]byte(status)); rss != uint64(b)<<10 || peak != uint64(a)<<10 {
			t.Fatalf("unexpected memory of %q; got %d, %d; want %d, %d", status, rss, peak, uint64(b)<<10, uint64(a)<<10)
		}
		host := fmt.Sprintf("cpu  %d %d %d 999 77 %d %d %d 0 0\ncpu0 1 1 1 1 1 1 1 1 0 0\n", a, b, c, a, b, c)
		if got := parseHostTimes([]byte(host)); got.busy != tick(a)+tick(b)+tick(c)+tick(a)+tick(b) || got.steal != tick(c) {
			t.Fatalf("unexpected host times of %q; got %+v", host, got)
		}
	})
}
