package bidder

import (
	"os"
	"syscall"
)

// sync_file_range(2) flags.
const (
	syncRangeWaitBefore = 1
	syncRangeWrite      = 2
	syncRangeWaitAfter  = 4
)

// writeback starts the writeback of bytes [off, off+n) of f to its disk
// and, when wait, waits until they are written. Best effort: errors are
// left to the final fsync.
func writeback(f *os.File, off, n int64, wait bool) {
	flags := uintptr(syncRangeWrite)
	if wait {
		flags |= syncRangeWaitBefore | syncRangeWaitAfter
	}
	if rc, err := f.SyscallConn(); err == nil {
		rc.Control(func(fd uintptr) {
			syscall.Syscall6(syscall.SYS_SYNC_FILE_RANGE, fd, uintptr(off), uintptr(n), flags, 0, 0)
		})
	}
}

// unlinked reports whether no name refers to the file of fi any more.
func unlinked(fi os.FileInfo) bool {
	st, ok := fi.Sys().(*syscall.Stat_t)
	return ok && st.Nlink == 0
}
