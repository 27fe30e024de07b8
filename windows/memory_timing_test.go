//go:build linux

package windows

import (
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"unsafe"
)

// chaseBuffer returns a buffer of n bytes (on the Go heap, or mmap'd with
// MADV_HUGEPAGE) whose cache lines form one random cycle: the first word of
// each line holds the index of the next line's first word.
func chaseBuffer(b *testing.B, n int, huge bool) []uint64 {
	var buf []uint64
	if huge {
		m, err := syscall.Mmap(-1, 0, n+hugePageBytes, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_PRIVATE|syscall.MAP_ANONYMOUS)
		if err != nil {
			b.Fatalf("unexpected error: %s", err)
		}
		b.Cleanup(func() { syscall.Munmap(m) })
		skip := (hugePageBytes - uintptr(unsafe.Pointer(&m[0]))%hugePageBytes) % hugePageBytes
		m = m[skip : skip+uintptr(n)]
		if err := syscall.Madvise(m, syscall.MADV_HUGEPAGE); err != nil {
			b.Fatalf("unexpected error: %s", err)
		}
		buf = unsafe.Slice((*uint64)(unsafe.Pointer(&m[0])), n/8)
	} else {
		buf = make([]uint64, n/8)
	}
	lines := n / 64
	// Sattolo's algorithm: a random permutation that is a single cycle.
	perm := make([]uint32, lines)
	for i := range perm {
		perm[i] = uint32(i)
	}
	rng := rand.New(rand.NewPCG(5, 6))
	for i := lines - 1; i > 0; i-- {
		j := rng.IntN(i)
		perm[i], perm[j] = perm[j], perm[i]
	}
	for i := range perm {
		buf[uint64(i)*8] = uint64(perm[i]) * 8
	}
	return buf
}

// BenchmarkPointerChase is the memory system's yardstick: one dependent
// random load per op over a buffer far larger than the caches, on the Go
// heap (4 KiB pages) and on transparent huge pages (2 MiB), and over smaller
// buffers to show the cache levels.
func BenchmarkPointerChase(b *testing.B) {
	for _, tc := range []struct {
		size int
		huge bool
	}{{1 << 30, false}, {1 << 30, true}, {16 << 20, false}, {64 << 20, false}, {256 << 20, false}} {
		pages := "4KiB"
		if tc.huge {
			pages = "2MiB"
		}
		b.Run(fmt.Sprintf("size=%dMiB/pages=%s", tc.size>>20, pages), func(b *testing.B) {
			buf := chaseBuffer(b, tc.size, tc.huge)
			p := uint64(0)
			for b.Loop() {
				p = buf[p]
			}
			if p >= uint64(len(buf)) {
				b.Fatalf("unexpected index")
			}
		})
		runtime.GC()
	}
}

// rssBytes returns the resident set size of the process.
func rssBytes(b *testing.B) int64 {
	data, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		b.Skipf("no /proc/self/statm: %s", err)
	}
	f := strings.Fields(string(data))
	pages, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil {
		b.Fatalf("unexpected statm %q", data)
	}
	return pages * int64(os.Getpagesize())
}

func settledRSS(b *testing.B) int64 {
	runtime.GC()
	debug.FreeOSMemory()
	return rssBytes(b)
}

// BenchmarkRSSPerKey reports the resident memory growth per live key (index,
// key bytes and buckets together, measured as RSS, not from MemStats) of a
// store of 1M keys at the default resolutions: busy keys (events in six
// different minutes, added key by key: dense blocks) and long-tail keys (one
// event: sparse blocks), with the map+mutex baseline for comparison. One op
// builds the store; the figure is the rss-bytes/key metric.
func BenchmarkRSSPerKey(b *testing.B) {
	const n = 1_000_000
	for _, tc := range []struct {
		name   string
		events int64
		make   func() benchStore
	}{
		{"busy/Store", 6, func() benchStore { return mustStore(b, Config{MaxKeys: n}) }},
		{"longtail/Store", 1, func() benchStore { return mustStore(b, Config{MaxKeys: n}) }},
		{"busy/map+mutex", 6, func() benchStore { return newMapStore(b) }},
	} {
		b.Run(tc.name, func(b *testing.B) {
			var perKey float64
			var g keyGen
			for b.Loop() {
				before := settledRSS(b)
				s := tc.make()
				for i := 0; i < n; i++ {
					k := g.key(i)
					for j := int64(0); j < tc.events; j++ {
						now := t0 + j*minuteMs
						s.Add(k, now, now, Counts{Impressions: 1, CostMicros: 2100})
					}
				}
				perKey = float64(settledRSS(b)-before) / n
				runtime.KeepAlive(s)
			}
			b.ReportMetric(perKey, "rss-bytes/key")
		})
		runtime.GC()
		runtime.GC()
	}
}
