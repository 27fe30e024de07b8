package main

import (
	"os/exec"
	"regexp"
	"runtime/debug"
	"strings"
	"testing"
)

func TestVersionText(t *testing.T) {
	bi := &debug.BuildInfo{GoVersion: "go1.26.0", Main: debug.Module{Path: "github.com/bidpulse/bidpulse", Version: "v1.2.3"},
		Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "21c9c23abcdef0123456789"}, {Key: "vcs.modified", Value: "true"},
			{Key: "vcs.time", Value: "2026-01-02T03:04:05Z"}}}
	got := versionText(bi, true)
	for _, want := range []string{"bidpulse v1.2.3\n", "revision  21c9c23abcdef0123456789 (modified", "committed 2026-01-02T03:04:05Z", "go        go1.26.0"} {
		if !strings.Contains(got, want) {
			t.Fatalf("unexpected version; want %q in:\n%s", want, got)
		}
	}
	bi.Settings = nil
	if got := versionText(bi, true); !strings.Contains(got, "revision  none recorded") {
		t.Fatalf("unexpected version without VCS information:\n%s", got)
	}
	if got := versionText(nil, false); !strings.Contains(got, "no build information") {
		t.Fatalf("unexpected version without build information:\n%s", got)
	}
}

// The binary prints a revision of 40 hex digits, or says none is recorded.
func TestVersionCommand(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary; skipped in -short mode")
	}
	out, err := exec.Command(bidpulseBinary(t), "version").CombinedOutput()
	if err != nil {
		t.Fatalf("bidpulse version: %v\n%s", err, out)
	}
	if !regexp.MustCompile(`(?m)^bidpulse \S+\nmodule    github.com/bidpulse/bidpulse\nrevision  ([0-9a-f]{40}|none recorded)`).Match(out) {
		t.Fatalf("unexpected bidpulse version:\n%s", out)
	}
}
