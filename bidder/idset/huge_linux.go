package idset

import (
	"syscall"
	"unsafe"
)

// adviseHuge asks for transparent huge pages over the 2 MiB-aligned part of
// a large table, before its pages are first touched: a look-up is a random
// access over the whole table, and with 4 KiB pages nearly every one would
// also miss the TLB. Best effort: with THP off the table works the same.
func adviseHuge(t []uint64) {
	const huge = 2 << 20
	n := uintptr(len(t)) * 8
	if n < 4*huge {
		return
	}
	start := uintptr(unsafe.Pointer(unsafe.SliceData(t)))
	skip := (huge - start%huge) % huge
	b := unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(t))), n)
	_ = syscall.Madvise(b[skip:skip+(n-skip)/huge*huge], syscall.MADV_HUGEPAGE)
}
