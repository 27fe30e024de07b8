package main

import (
	"strings"
	"testing"
)

// TestSimulateExitsOnFailedClaim: a scenario cut short of its measurement
// fails its claims, and simulate returns the error that exits 1.
func TestSimulateExitsOnFailedClaim(t *testing.T) {
	err := runSimulate([]string{"--scenario", "ranking", "--duration", "1h"})
	if err == nil || !strings.Contains(err.Error(), "claims failed") {
		t.Fatalf("unexpected error; got %v; want one saying claims failed", err)
	}
	if err := runSimulate([]string{"--market", "--fractions", "4,x"}); err == nil || !strings.Contains(err.Error(), "--fractions") {
		t.Fatalf("unexpected error; got %v; want one naming --fractions", err)
	}
	for _, flag := range []string{"--campaigns", "--creatives"} {
		if err := runSimulate([]string{"--market", flag, "0"}); err == nil || !strings.Contains(err.Error(), flag) {
			t.Fatalf("unexpected error; got %v; want one naming %s", err, flag)
		}
	}
}
