//go:build !linux

package bench

import "time"

// newPreciseSleep returns time.Sleep: outside Linux the pacer makes do with the runtime's
// timers (see pace_linux.go).
func newPreciseSleep() (sleep func(time.Duration), release func(), ok bool) {
	return time.Sleep, func() {}, false
}
