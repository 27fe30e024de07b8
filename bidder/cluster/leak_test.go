package cluster

import (
	"testing"

	"github.com/bidpulse/bidpulse/internal/leakcheck"
)

// TestMain fails the package's tests when a goroutine outlives them: a Membership not left, an
// embedded server or a NATS connection that a test forgot to close.
func TestMain(m *testing.M) {
	leakcheck.VerifyTestMain(m)
}
