package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// TestRunEndToEndPartitioned runs a short, low-rate steady scenario against a service with 8
// partitions, with duplicates and malformed events: every batch split by campaign must be
// counted exactly (a part sent to another campaign's subject would be rejected
// wrong_partition, and the reconciliation, which compares every reason, would fail).
func TestRunEndToEndPartitioned(t *testing.T) {
	svc := startServiceWith(t, "true", 8)
	var out syncWriter
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	rep, err := Run(ctx, Options{
		Target: "http://" + svc.HTTPAddr(), NATSURL: svc.NATSURL(), Partitions: 8,
		Scenario: ScenarioSteady, Duration: 1500 * time.Millisecond,
		BidRate: 100, EventRate: 1000, EventBatch: 50, Preload: 500,
		DupRate: 0.02, BadRate: 0.01, Campaigns: 5, Creatives: 2, Placements: 4, Skew: 1,
		// Far above any answer time: this test checks the counting, not the machine's speed.
		Timeout: 2 * time.Second, Conns: 16, Pin: PinOff, DrainTimeout: 30 * time.Second, Out: &out,
	})
	t.Log(out.String())
	if err != nil {
		t.Fatalf("unexpected error: %v", err)
	}
	if rep.Publish != PublishJetStream || rep.Partitions != 8 {
		t.Fatalf("unexpected publish mode %s and partitions %d; want jetstream and 8", rep.Publish, rep.Partitions)
	}
	rc := rep.Reconciliation
	if rc == nil || !rc.OK || !rc.Drained {
		t.Fatalf("unexpected reconciliation %+v", rc)
	}
	// Split by campaign, the batches of 50 events over 5 campaigns went in more messages than
	// batches; every kind of event was sent.
	pub := rc.Published
	if pub.Duplicates == 0 || pub.RejectedTotal() == 0 || pub.Events < 2000 || pub.Messages <= pub.Events/50 {
		t.Fatalf("unexpected published tally %+v: want events, duplicates and malformed ones, in more messages than batches", pub)
	}
	if !strings.Contains(out.String(), "partitioned: 8 partitions") {
		t.Fatalf("unexpected text report without its partitioned line")
	}
	var buf bytes.Buffer
	if err := rep.WriteJSON(&buf); err != nil {
		t.Fatalf("unexpected error writing the JSON report: %v", err)
	}
	var j struct {
		Partitions uint32 `json:"partitions"`
	}
	if err := json.Unmarshal(buf.Bytes(), &j); err != nil || j.Partitions != 8 {
		t.Fatalf("unexpected JSON report partitions %d (error %v); want 8", j.Partitions, err)
	}
}
