package main

import (
	"os"
	"path/filepath"
	"testing"
)

// TestPublishSyntheticOnce publishes synthetic traffic, then the same run
// again: the first is counted exactly (rate x duration), and the second is
// recognised by the stream's duplicate window (same run id, same message
// ids) and stored nowhere.
func TestPublishSyntheticOnce(t *testing.T) {
	c := startChild(t, "--nats-addr", "127.0.0.1:-1", "--data-dir", t.TempDir())
	natsAddr := c.natsAddr(t)
	args := []string{"--nats-url", "nats://" + natsAddr, "--synthetic", "--rate", "2000", "--duration", "1s",
		"--batch", "50", "--run-id", "once", "--jetstream", "true"}
	if err := runPublish(args); err != nil {
		t.Fatalf("cannot publish: %v", err)
	}
	waitCounted(t, c, 2000)
	if err := runPublish(args); err != nil {
		t.Fatalf("cannot publish again: %v", err)
	}
	// A third, distinct run proves that events published after the
	// repeat are applied, so the count below is final.
	events := filepath.Join(t.TempDir(), "events.ndjson")
	if err := os.WriteFile(events, []byte(`{"id":"last","type":"impression","campaign":"c1"}`+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := runPublish([]string{"--nats-url", "nats://" + natsAddr, "--file", events, "--jetstream", "true"}); err != nil {
		t.Fatalf("cannot publish the file: %v", err)
	}
	st := waitCounted(t, c, 2001)
	if st["duplicates"].(float64) != 0 {
		t.Fatalf("unexpected duplicates counted by the service: %v (the stream should have dropped the repeated messages)", st["duplicates"])
	}
}
