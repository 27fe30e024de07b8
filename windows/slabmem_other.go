//go:build !linux

package windows

import "unsafe"

// slabMem is the heap fallback: off Linux, slab chunks are allocated on the
// Go heap (pointer-free, so the garbage collector still does not scan them).
// The seqlock readers then read heap memory that writers change, which the
// race detector reports; the design is the same.
type slabMem struct{}

func (m *slabMem) reserve(uintptr) unsafe.Pointer { return nil }

func (m *slabMem) release() {}
