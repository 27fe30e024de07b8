package control

import (
	"testing"

	"github.com/bidpulse/bidpulse/internal/leakcheck"
)

// TestMain fails the package's tests when one leaves a goroutine behind
// (the KV watch, the delayed audit publications).
func TestMain(m *testing.M) { leakcheck.VerifyTestMain(m) }
