package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/bidpulse/bidpulse/bidder"
)

// dlqTestNow is the service clock of the dlq tests: 2026-01-02T03:04:05Z.
const dlqTestNow = int64(1767323045000)

// startDLQService starts a service in JetStream mode on an embedded NATS
// server and the HTTP API, both on random loopback ports, driven by a
// manual clock, and returns it with its clock and a client connection.
func startDLQService(t *testing.T, raw bool, opts ...func(*bidder.Options)) (*bidder.Service, *bidder.ManualClock, *nats.Conn) {
	t.Helper()
	clock := bidder.NewManualClock(dlqTestNow)
	o := bidder.Options{HTTPAddr: "127.0.0.1:0", NATSAddr: "127.0.0.1:-1", DataDir: t.TempDir(),
		Instance: "dlq", DedupSize: 32 << 20, JetStream: "true", DLQRaw: raw, Clock: clock,
		Logger: zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.ErrorLevel)}
	for _, f := range opts {
		f(&o)
	}
	svc, err := bidder.New(o)
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.Start(); err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(svc.NATSURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		nc.Close()
		if err := svc.Stop(context.Background()); err != nil {
			t.Errorf("unexpected error on stop: %v", err)
		}
	})
	return svc, clock, nc
}

// jsPublish publishes each payload on bidpulse.events.test, acknowledged.
func jsPublish(t *testing.T, nc *nats.Conn, payloads ...string) {
	t.Helper()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range payloads {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err := js.Publish(ctx, "bidpulse.events.test", []byte(p))
		cancel()
		if err != nil {
			t.Fatalf("cannot publish %s: %v", p, err)
		}
	}
}

// dlqRun runs bidpulse dlq against url and returns its output.
func dlqRun(t *testing.T, url string, args ...string) string {
	t.Helper()
	var out bytes.Buffer
	if err := runDLQTo(append(args, "--nats-url", url), &out); err != nil {
		t.Fatalf("bidpulse dlq %q: %v\n%s", args, err, out.String())
	}
	return out.String()
}

func dlqJSON[T any](t *testing.T, url string, args ...string) T {
	t.Helper()
	out := dlqRun(t, url, append(args, "--json")...)
	var v T
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("bidpulse dlq %q: not JSON: %v\n%s", args, err, out)
	}
	return v
}

// waitLetters waits until the DLQ holds n letters.
func waitLetters(t *testing.T, url string, n int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		var out bytes.Buffer
		err := runDLQTo([]string{"count", "--json", "--nats-url", url}, &out)
		var c struct{ Letters int }
		if err == nil {
			err = json.Unmarshal(out.Bytes(), &c)
		}
		if err == nil && c.Letters == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the DLQ holds %d letters after 20s; want %d (%v)", c.Letters, n, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func waitStat(t *testing.T, c *child, key string, want float64) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		st := c.stats(t)
		if st[key] == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("unexpected stats after 20s: %s %v; want %v", key, st[key], want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// count, tail and show read the letters of a real service: their reasons,
// subjects, bodies; the default letter holds the known fields only.
func TestDLQCountTailShow(t *testing.T) {
	svc, _, nc := startDLQService(t, false)
	url := svc.NATSURL()
	jsPublish(t, nc,
		`{"id":"e1","type":"click","ts":1767323045,"campaign":"c42","user_id":"u-829"}`,
		`{"id":"e2","type":"impression"}`,
		`{"id":"e3","type":"impression","campaign":"c1"}`,
		`{"id":"e4","type":"click","ts":5,"campaign":"c42"}`)
	waitLetters(t, url, 3)

	c := dlqJSON[struct {
		Letters  int
		ByReason map[string]int `json:"by_reason"`
	}](t, url, "count")
	if c.Letters != 3 || c.ByReason["bad_ts"] != 2 || c.ByReason["bad_campaign"] != 1 || len(c.ByReason) != 2 {
		t.Fatalf("unexpected count %+v; want 2 bad_ts, 1 bad_campaign", c)
	}
	if out := dlqRun(t, url, "count", "--reason", "bad_campaign"); !strings.Contains(out, "selected: 1") {
		t.Fatalf("unexpected count by reason:\n%s", out)
	}

	tail := dlqJSON[[]dlqLetter](t, url, "tail", "--n", "2")
	if len(tail) != 2 || tail[0].Reason != "bad_campaign" || tail[1].Reason != "bad_ts" || tail[0].Seq >= tail[1].Seq {
		t.Fatalf("unexpected tail %+v; want the last two letters, oldest first", tail)
	}
	var fields bytes.Buffer
	json.Compact(&fields, tail[1].Fields)
	if tail[1].Body != "fields" || fields.String() != `{"id":"e4","type":"click","campaign":"c42","ts":5}` || tail[1].Payload != "" {
		t.Fatalf("unexpected letter %+v; want the known fields only", tail[1])
	}
	if out := dlqRun(t, url, "tail", "--reason", "bad_campaign"); strings.Count(out, "\n") != 1 || !strings.Contains(out, "bad_campaign") {
		t.Fatalf("unexpected tail of bad_campaign:\n%s", out)
	}

	first := dlqJSON[[]dlqLetter](t, url, "tail", "--n", "3")[0]
	show := dlqRun(t, url, "show", strconv.FormatUint(first.Seq, 10))
	for _, want := range []string{"reason    bad_ts", "subject   bidpulse.events.test", "hmac-sha256:", "body      fields",
		"replay    only its known fields, with --from-fields", `"campaign": "c42"`} {
		if !strings.Contains(show, want) {
			t.Fatalf("unexpected show: want %q in:\n%s", want, show)
		}
	}
	if strings.Contains(show, "u-829") {
		t.Fatalf("show prints a field outside the schema:\n%s", show)
	}
	var out bytes.Buffer
	if err := runDLQTo([]string{"show", "999", "--nats-url", url}, &out); err == nil || !strings.Contains(err.Error(), "no letter 999") {
		t.Fatalf("unexpected show of a missing letter: %v", err)
	}
	if err := runDLQTo([]string{"count", "--reason", "bad_thing", "--nats-url", url}, &out); err == nil || !strings.Contains(err.Error(), "bad_ts") {
		t.Fatalf("unexpected error for an unknown reason: %v", err)
	}

	// Fields-only letters are skipped by replay unless --from-fields.
	rep := dlqJSON[dlqReplayReport](t, url, "replay", "--dry-run")
	if rep.Selected != 3 || rep.Replayed != 0 || rep.Skipped[skipFieldsOnly] != 3 {
		t.Fatalf("unexpected dry run %+v; want 3 fields-only letters skipped", rep)
	}
	rep = dlqJSON[dlqReplayReport](t, url, "replay", "--dry-run", "--from-fields", "--reason", "bad_ts")
	if rep.Selected != 2 || rep.Replayed != 2 || rep.FromFields != 2 || rep.Letters[0].Action != "would_replay" {
		t.Fatalf("unexpected dry run %+v; want 2 would be replayed from their fields", rep)
	}
}

// Raw letters replayed after the fix (here: the service clock reaching
// the event's time) are counted once, however many times replay runs: the
// second run's publishes carry the same Nats-Msg-Id and the event stream
// drops them.
func TestDLQReplayRawOnce(t *testing.T) {
	svc, clock, nc := startDLQService(t, true)
	url := svc.NATSURL()
	c := &child{http: "http://" + svc.HTTPAddr()}
	ahead := dlqTestNow + 25*time.Hour.Milliseconds() // past the 24 h bound: bad_ts
	jsPublish(t, nc,
		fmt.Sprintf(`{"id":"r1","type":"impression","campaign":"c1","ts":%d}`, ahead),
		fmt.Sprintf(`{"id":"r2","type":"click","campaign":"c1","ts":%d}`, ahead),
		`{"id":"r3","type":"impression"}`,
		fmt.Sprintf(`{"id":"r4","type":"impression","campaign":"c1","ts":%d}`, dlqTestNow))
	waitLetters(t, url, 3)
	waitStat(t, c, "counted", 1)

	show := dlqJSON[dlqLetter](t, url, "show", "1")
	if show.Body != "raw" || !strings.Contains(show.Payload, `"id":"r1"`) {
		t.Fatalf("unexpected raw letter %+v", show)
	}
	clock.Set(ahead)
	rep := dlqJSON[dlqReplayReport](t, url, "replay", "--reason", "bad_ts")
	if rep.Selected != 2 || rep.Replayed != 2 || rep.Duplicates != 0 || len(rep.Skipped) != 0 {
		t.Fatalf("unexpected first replay %+v; want 2 replayed", rep)
	}
	if rep.Letters[0].MsgID != replayMsgID(&show) || rep.Letters[0].StreamSeq == 0 {
		t.Fatalf("unexpected replayed letter %+v", rep.Letters[0])
	}
	waitStat(t, c, "counted", 3)

	out := dlqRun(t, url, "replay", "--reason", "bad_ts")
	if !strings.Contains(out, "replayed 2, of which 2 already in the event stream") {
		t.Fatalf("unexpected second replay:\n%s", out)
	}
	// The second run stored nothing: after one more event, received says
	// so (7 events: the 4 first, 2 replayed once, this one; 9 had the
	// second run been stored, whatever the service's own dedup did).
	jsPublish(t, nc, fmt.Sprintf(`{"id":"r5","type":"impression","campaign":"c1","ts":%d}`, ahead))
	waitStat(t, c, "counted", 4)
	st := c.stats(t)
	if st["received"] != float64(7) {
		t.Fatalf("unexpected received %v; want 7: the second replay was stored again", st["received"])
	}

	// Replay by sequence range: only letter 3 (bad_campaign), raw, is
	// replayed, and rejected again by the service, which letters it again.
	rep = dlqJSON[dlqReplayReport](t, url, "replay", "--from-seq", "3", "--to-seq", "3")
	if rep.Selected != 1 || rep.Replayed != 1 || rep.Letters[0].Reason != "bad_campaign" {
		t.Fatalf("unexpected replay of letter 3 %+v", rep)
	}
	waitLetters(t, url, 4)
}

// TestDLQReplaySkipsWrongPartition checks that a wrong_partition letter is
// skipped, with its reason, not published again to the subject that
// refused it.
func TestDLQReplaySkipsWrongPartition(t *testing.T) {
	svc, _, nc := startDLQService(t, true, func(o *bidder.Options) { o.Partitions = 4 })
	url := svc.NATSURL()
	c := &child{http: "http://" + svc.HTTPAddr()}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	payload := fmt.Sprintf(`[{"id":"w1","type":"impression","campaign":"c1","ts":%d},{"id":"w2","type":"impression","campaign":"c2","ts":%d}]`, dlqTestNow, dlqTestNow)
	if _, err := js.Publish(ctx, "bidpulse.events.c1.t", []byte(payload)); err != nil {
		t.Fatal(err)
	}
	waitLetters(t, url, 1)
	waitStat(t, c, "counted", 1)
	rep := dlqJSON[dlqReplayReport](t, url, "replay")
	if rep.Selected != 1 || rep.Replayed != 0 || rep.Skipped[skipWrongPartition] != 1 {
		t.Fatalf("unexpected replay %+v; want the wrong_partition letter skipped", rep)
	}
}

func TestEscapeControls(t *testing.T) {
	f := func(in, want string) {
		t.Helper()
		if got := escapeControls(in); got != want {
			t.Fatalf("unexpected escapeControls(%q); got %q; want %q", in, got, want)
		}
	}
	f(`{"id":"a"}`, `{"id":"a"}`)
	f("{\"a\n\x1b[2J", `{"a\x0a\x1b[2J`)
	f("é\x7f", `é\x7f`)
}
