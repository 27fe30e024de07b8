package windows

import (
	"sync"
	"syscall"
	"unsafe"
)

// slabMem owns the off-heap reservations of a Store's slabs; a cleanup
// attached to the Store unmaps them once the Store is unreachable.
type slabMem struct {
	mu      sync.Mutex
	regions [][]byte
}

// reserve maps size bytes of anonymous memory aligned to 2 MiB, without
// committing it (MAP_NORESERVE: pages are committed on first write), and asks
// for transparent huge pages past the first 2 MiB (a small store stays on
// 4 KiB pages). It returns nil when the mapping fails; the slab then
// allocates its chunks on the Go heap.
func (m *slabMem) reserve(size uintptr) unsafe.Pointer {
	if size == 0 {
		return nil
	}
	b, err := syscall.Mmap(-1, 0, int(size+hugePageBytes), syscall.PROT_READ|syscall.PROT_WRITE,
		syscall.MAP_PRIVATE|syscall.MAP_ANONYMOUS|syscall.MAP_NORESERVE)
	if err != nil {
		return nil
	}
	start := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	skip := (hugePageBytes - start%hugePageBytes) % hugePageBytes
	if size > 2*hugePageBytes {
		// Best effort: without THP the slab still works on 4 KiB pages.
		_ = syscall.Madvise(b[skip+hugePageBytes:skip+size], syscall.MADV_HUGEPAGE)
	}
	m.mu.Lock()
	m.regions = append(m.regions, b)
	m.mu.Unlock()
	return unsafe.Pointer(&b[skip])
}

// release unmaps every reservation. It runs when no Store uses them any more.
func (m *slabMem) release() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, b := range m.regions {
		_ = syscall.Munmap(b)
	}
	m.regions = nil
}
