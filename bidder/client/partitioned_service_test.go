package client_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/bidpulse/bidpulse/bidder"
	"github.com/bidpulse/bidpulse/bidder/client"
)

// TestPartitionedEndToEnd publishes with the client's partitioned
// Publisher into a service started with --partitions 8: every event is
// counted exactly once, per campaign as sent, none is rejected, and the
// client's bids answer from the counted events.
func TestPartitionedEndToEnd(t *testing.T) {
	svc := startService(t, func(o *bidder.Options) { o.Partitions = 8 })
	nc := connect(t, svc)
	p, err := client.NewPublisher(nc, client.PublisherOptions{
		PartitionedBase: "bidpulse.events", Producer: "e2e", Mode: client.ModeJetStream, MaxEvents: 50,
	})
	if err != nil {
		t.Fatal(err)
	}
	const campaigns, each = 40, 25
	ts := time.Now().UnixMilli()
	for i := range each {
		for c := range campaigns { // interleaved: every message still holds one campaign
			ev := client.Event{ID: fmt.Sprintf("e%d-%d", c, i), Type: client.Impression, TS: ts,
				Campaign: fmt.Sprintf("camp-%d", c), Placement: "p1"}
			if err := p.Publish(&ev); err != nil {
				t.Fatal(err)
			}
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := p.Close(ctx); err != nil {
		t.Fatalf("unexpected error on close: %v", err)
	}
	waitCounted(t, svc, campaigns*each)
	_, b := httpGet(t, svc, "/v1/stats")
	var st struct {
		RejectedTotal uint64 `json:"rejected_total"`
	}
	if err := json.Unmarshal(b, &st); err != nil || st.RejectedTotal != 0 {
		t.Fatalf("unexpected rejections (%v): %.300s", err, b)
	}
	c, err := client.NewHTTP("http://"+svc.HTTPAddr(), client.Options{Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for i := range campaigns {
		code, body := httpGet(t, svc, fmt.Sprintf("/v1/rates?campaign=camp-%d", i))
		var r struct {
			Windows map[string]struct {
				Impressions uint64 `json:"impressions"`
			} `json:"windows"`
		}
		if code != 200 || json.Unmarshal(body, &r) != nil || r.Windows["1h"].Impressions != each {
			t.Fatalf("unexpected rates of camp-%d: %d %s; want %d impressions in 1h", i, code, body, each)
		}
		a, err := c.Multiplier(context.Background(), client.Key{Campaign: fmt.Sprintf("camp-%d", i), Placement: "p1"})
		if err != nil || a.Level != "campaign/placement" {
			t.Fatalf("unexpected answer for camp-%d: %+v (%v)", i, a, err)
		}
	}
}

// TestPublisherRefusesUnpartitionedIntoPartitioned checks that a producer
// without PartitionedBase is refused against a partitioned stream, in auto
// mode too (it would otherwise publish with core NATS, beside the stream,
// and every event would be lost).
func TestPublisherRefusesUnpartitionedIntoPartitioned(t *testing.T) {
	svc := startService(t, func(o *bidder.Options) { o.Partitions = 8 })
	nc := connect(t, svc)
	for _, mode := range []string{client.ModeAuto, client.ModeJetStream} {
		_, err := client.NewPublisher(nc, client.PublisherOptions{Subject: "bidpulse.events.tracker", Mode: mode})
		if err == nil || !strings.Contains(err.Error(), "is partitioned") || !strings.Contains(err.Error(), "PartitionedBase") {
			t.Fatalf("mode %s: unexpected error %v; want a refusal naming the partitioned stream and PartitionedBase", mode, err)
		}
	}
	if _, err := client.NewPublisher(nc, client.PublisherOptions{Subject: "bidpulse.events.tracker", Mode: client.ModeCore}); err != nil {
		t.Fatalf("unexpected error in core mode (chosen by the caller): %v", err)
	}
}
