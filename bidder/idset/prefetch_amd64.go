package idset

import "unsafe"

// prefetch asks the CPU to start loading the cache line at p (PREFETCHT0).
// It is a hint: it reads nothing a program can observe, never faults, and
// so takes part in no data race whatever p points at.
//
//go:noescape
func prefetch(p unsafe.Pointer)
