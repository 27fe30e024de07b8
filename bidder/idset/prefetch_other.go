//go:build !amd64

package idset

import "unsafe"

// prefetch is a no-op off amd64.
func prefetch(unsafe.Pointer) {}
