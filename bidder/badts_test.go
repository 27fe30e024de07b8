package bidder

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/bidpulse/bidpulse/bidder/event"
	"github.com/bidpulse/bidpulse/bidder/ingest"
)

// A time in the wrong unit is refused as bad_ts, dead-lettered, counted with
// its reason and logged (throttled), instead of being counted as late or
// future; a time just ahead of the clock stays future.
func TestEventTimeOutsideMillisecondsOfThisEra(t *testing.T) {
	logs, logger := newLogCapture(t)
	e := startTestService(t, func(o *Options) { o.Logger = logger })
	dlq, err := e.nc.SubscribeSync(DLQSubject)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	bad := []struct {
		name, field string
		ts          int64
	}{
		{"seconds", "ts", testNow / 1000},
		{"microseconds", "ts", testNow * 1000},
		{"nanoseconds", "ts", testNow * 1_000_000},
		{"negative", "ts", -testNow},
		{"zero", "ts", 0},
		{"a day ahead", "ts", testNow + event.MaxTSAhead + 1},
		{"click in seconds", "click_ts", testNow / 1000},
	}
	for _, b := range bad {
		e.publish(t, fmt.Sprintf(`{"id":%q,"type":"conversion","campaign":"c1",%q:%d}`, b.name, b.field, b.ts))
	}
	// Still in milliseconds: late, future, counted.
	e.publish(t, ev("late", "impression", testNow-25*3600*1000, "c1", "", ""))
	e.publish(t, ev("future", "impression", testNow+10_000, "c1", "", ""))
	e.publish(t, ev("ok", "impression", testNow, "c1", "", ""))
	e.waitReceived(t, uint64(len(bad)+3))

	st := e.getJSON(t, "/v1/stats", 200)
	for k, v := range map[string]float64{"rejected.bad_ts": 6, "rejected.bad_click_ts": 1, "late": 1, "future": 1, "counted": 1} {
		if got := num(t, st, k); got != v {
			t.Fatalf("unexpected %s; got %v; want %v: %v", k, got, v, st)
		}
	}
	code, metrics := e.do(t, "GET", "/metrics", "", "")
	if code != 200 || !strings.Contains(string(metrics), `bidpulse_ingest_events_total{outcome="rejected",reason="bad_ts"} 6`) {
		t.Fatalf("bad_ts not counted in /metrics with its reason")
	}

	// Every one is a dead letter with its reason.
	reasons := map[string]int{}
	for range bad {
		msg, err := dlq.NextMsg(5 * time.Second)
		if err != nil {
			t.Fatalf("dead letter missing: %v (got %v)", err, reasons)
		}
		reasons[msg.Header.Get(ingest.RejectHeader)]++
	}
	if reasons["bad_ts"] != 6 || reasons["bad_click_ts"] != 1 {
		t.Fatalf("unexpected dead letters; got %v; want 6 bad_ts, 1 bad_click_ts", reasons)
	}

	// Logged, throttled: the first with the refused time among the known
	// fields, the others (within the interval) suppressed.
	lines := logs.linesWith(`"reason":"bad_ts"`, `"fields":{"id":"seconds","type":"conversion","campaign":"c1","ts":1767323045}`)
	if len(lines) != 1 {
		t.Fatalf("unexpected log lines of the first bad_ts; got %q; want 1", lines)
	}
	if all := logs.linesWith("is not Unix milliseconds of this era"); len(all) >= len(bad) {
		t.Fatalf("unexpected log lines: %d for %d refused times, not throttled", len(all), len(bad))
	}
}
