package bench

import (
	"testing"

	"github.com/bidpulse/bidpulse/internal/leakcheck"
)

// TestMain fails the package's tests when a goroutine outlives them: a component whose Stop
// leaves one behind, or a test that forgets to stop what it started.
func TestMain(m *testing.M) {
	leakcheck.VerifyTestMain(m)
}
