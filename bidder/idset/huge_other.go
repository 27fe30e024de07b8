//go:build !linux

package idset

// adviseHuge is a no-op off Linux.
func adviseHuge([]uint64) {}
