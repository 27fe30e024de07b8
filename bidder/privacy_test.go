package bidder

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/bidpulse/bidpulse/bidder/ingest"
)

// Personal data a tracker adds to its events, outside the schema.
const (
	canaryUser = "canary-user-7f3a"
	canaryIP   = "203.0.113.77"
)

// canaryCampaign names the events' campaign: the checks that look for the
// canary also look for it, to show they read the content they check.
const canaryCampaign = "cpriv"

// canaryPayloads returns events carrying the canary in fields outside the
// schema, valid and rejected, and how many of each.
func canaryPayloads() (payloads [][]byte, valid, rejected int) {
	pd := `"user_id":"` + canaryUser + `","ip":"` + canaryIP + `"`
	evt := func(id, typ, extra string) string {
		return fmt.Sprintf(`{"id":%q,"type":%q,"ts":%d,"campaign":%q,"placement":"p1",%s%s}`, id, typ, testNow, canaryCampaign, pd, extra)
	}
	long := strings.Repeat("x", 129)
	for _, p := range []string{
		evt("v1", "impression", ""), // valid
		"[" + evt("v2", "impression", `,"user":{"id":"`+canaryUser+`","ips":["`+canaryIP+`"]}`) + "," +
			evt("v2", "click", `,"cost":0.5`) + "]", // valid, valid
		evt("r1", "view", ""), // bad_type
		strings.Replace(evt("r2", "click", ""), fmt.Sprint(testNow), fmt.Sprint(testNow/1000), 1), // bad_ts: seconds
		"[" + strings.Replace(evt("r3", "click", ""), `"campaign":"cpriv"`, `"campaign":""`, 1) + "," +
			evt("v3", "impression", "") + "]", // bad_campaign, valid
		`{` + pd + `,"id":"r4",`,                                          // bad_json
		`["` + canaryUser + `",` + evt("v4", "impression", "") + "]",      // not_object, valid
		evt("r5", "click", `,"creative":"`+canaryUser+long+`"`),           // field_too_long
		evt("r6", "conversion", `,"value":-1,"device_ip":"`+canaryIP+`"`), // bad_money
	} {
		payloads = append(payloads, []byte(p))
	}
	return payloads, 5, 7
}

// noCanary fails the test when b holds the canary, as text or in base64
// (how JSON encodes bytes: a checkpoint's letters); it reports whether b
// holds the campaign (what it read was the content it checks).
func noCanary(t *testing.T, where string, b []byte) bool {
	t.Helper()
	for _, c := range []string{canaryUser, canaryIP} {
		forms := []string{c}
		for o := 0; o < 3; o++ {
			// The base64 of c at each offset: the characters that only
			// c's bytes determine.
			padded := append(make([]byte, o), c...)
			enc := base64.StdEncoding.EncodeToString(padded[:len(padded)/3*3])
			if o > 0 {
				enc = enc[4:]
			}
			forms = append(forms, enc)
		}
		for _, f := range forms {
			if i := bytes.Index(b, []byte(f)); i >= 0 {
				t.Errorf("personal data %q (as %q) in %s: ...%q...", c, f, where, b[max(0, i-80):min(len(b), i+80)])
			}
		}
	}
	return bytes.Contains(b, []byte(canaryCampaign))
}

// Events that carry a user id and an IP address outside the schema, valid
// and rejected, leave no trace in what the service keeps or shows: the
// checkpoint files, every stream but the event stream (the KV buckets, the
// object store, the audit stream, the DLQ), the objects kept in NATS, the
// logs, /metrics and every /v1 answer. The event stream keeps them
// (documented as a store of personal data); with --dlq-raw the DLQ does
// (which shows the checks can see them).
func TestPersonalDataLeavesNoTrace(t *testing.T) {
	logs, logger := newLogCapture(t)
	dir := t.TempDir()
	opts := func(o *Options) {
		o.DataDir, o.Logger, o.AdminToken = dir, logger, "tok"
		o.CheckpointInterval, o.RemoteCheckpointInterval = 50*time.Millisecond, time.Millisecond
		o.ShutdownTimeout = time.Second
	}
	payloads, valid, rejected := canaryPayloads()

	// 1. The DLQ does not store (a stream that refuses every letter holds
	// its subject): the letters stay queued, so the checkpoints hold them.
	e := startTestService(t, opts)
	// A long default timeout: the checks walk every stream message by
	// message, and under the race detector on a loaded machine one request
	// has taken past the default 5s.
	js, err := jetstream.New(e.nc, jetstream.WithDefaultTimeout(30*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	blockDLQ(t, js)
	jsPublish(t, e.nc, "priv", payloads)
	e.waitReceived(t, uint64(valid+rejected))
	if code, b := e.do(t, "PUT", "/v1/overrides", "tok", `{"campaign":"cpriv","placement":"p1","multiplier":1.5}`); code != 200 {
		t.Fatalf("cannot set an override: %d %s", code, b)
	}
	if code, b := e.do(t, "PUT", "/v1/policies", "tok", `{"campaign":"cpriv","policy":{"pacing":{"daily_budget":100}}}`); code != 200 {
		t.Fatalf("cannot set a policy: %d %s", code, b)
	}
	checkFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if d := e.svc.ingest.DLQ(); d.Pending != rejected {
			return fmt.Errorf("%d dead letters queued; want %d", d.Pending, rejected)
		}
		if kept, applied := e.svc.ckpt.remoteSeq.Load(), e.svc.ingest.Applied(); kept < applied {
			return fmt.Errorf("checkpoint kept in NATS at seq %d; want %d", kept, applied)
		}
		return nil
	})
	checkAnswers(t, e)
	checkNATS(t, js)
	if err := e.svc.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	checkFiles(t, dir)
	// The final checkpoint holds the letters, without the payloads.
	h, _, err := readCheckpointFile(filepath.Join(dir, "checkpoints", "bidpulse_test.ckpt"))
	if err != nil || len(h.DeadLetters) != rejected {
		t.Fatalf("unexpected letters in the final checkpoint; got %v: %v; want %d", h, err, rejected)
	}
	for _, l := range h.DeadLetters {
		if l.Data != nil || !strings.HasPrefix(l.Hash, "hmac-sha256:") || len(l.Fields) == 0 {
			t.Fatalf("unexpected letter in the checkpoint: %+v", l)
		}
	}

	// 2. The DLQ answers again: the letters of the checkpoint are stored.
	unblockDLQ(t, dir)
	e = startTestService(t, opts)
	js, _ = jetstream.New(e.nc, jetstream.WithDefaultTimeout(30*time.Second))
	letters := dlqMessages(t, js, rejected)
	key, err := loadDLQKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	reasons := map[string]int{}
	for _, m := range letters {
		reasons[m.Header.Get(ingest.RejectHeader)]++
		if m.Header.Get(ingest.BodyHeader) != ingest.BodyFields || !json.Valid(m.Data) {
			t.Fatalf("unexpected letter %v %q", m.Header, m.Data)
		}
		// The hash is the keyed one of the rejected payload.
		if m.Header.Get(ingest.RejectHeader) == "bad_type" {
			mac := hmac.New(sha256.New, key)
			mac.Write(payloads[2])
			if got, want := m.Header.Get(ingest.PayloadHashHeader), "hmac-sha256:"+hex.EncodeToString(mac.Sum(nil)); got != want {
				t.Fatalf("unexpected payload hash; got %s; want %s", got, want)
			}
			if want := `{"id":"r1","type":"view","campaign":"cpriv","placement":"p1","ts":1767323045000}`; string(m.Data) != want {
				t.Fatalf("unexpected letter body; got %s; want %s", m.Data, want)
			}
		}
	}
	for _, r := range []string{"bad_type", "bad_ts", "bad_campaign", "bad_json", "not_object", "field_too_long", "bad_money"} {
		if reasons[r] != 1 {
			t.Fatalf("unexpected letters by reason; got %v; want one of each", reasons)
		}
	}
	checkAnswers(t, e)
	checkNATS(t, js)
	if err := e.svc.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	checkFiles(t, dir)
	if !noCanary(t, "the logs", logs.bytes()) {
		t.Errorf("the logs name no event of the campaign: were they captured?")
	}
	if len(logs.linesWith(`"reason":"bad_ts"`)) == 0 {
		t.Errorf("the bad_ts warning is not in the captured logs")
	}

	// 3. With --dlq-raw the letters keep the payloads, and so the canary:
	// the checks above can see it.
	e = startTestService(t, func(o *Options) { o.DLQRaw = true })
	jsPublish(t, e.nc, "raw", payloads)
	js, _ = jetstream.New(e.nc, jetstream.WithDefaultTimeout(30*time.Second))
	var all []byte
	for _, m := range dlqMessages(t, js, rejected) {
		if m.Header.Get(ingest.BodyHeader) != ingest.BodyRaw {
			t.Fatalf("unexpected letter with --dlq-raw: %v", m.Header)
		}
		all = append(all, m.Data...)
	}
	if !bytes.Contains(all, []byte(canaryUser)) || !bytes.Contains(all, []byte(canaryIP)) {
		t.Fatalf("the payloads kept with --dlq-raw do not hold the canary: %s", all)
	}
}

// unblockDLQ removes, with the service stopped, the stream blockDLQ made in
// the embedded server's store under dir, so that the next start creates the
// DLQ again and stores the letters its checkpoint holds.
func unblockDLQ(t *testing.T, dir string) {
	t.Helper()
	srv := startExternalNATSDir(t, dir)
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	js, _ := jetstream.New(nc)
	if err := js.DeleteStream(context.Background(), "BLOCK_DLQ"); err != nil {
		t.Fatal(err)
	}
	nc.Close()
	srv.Shutdown()
	srv.WaitForShutdown()
}

// blockDLQ replaces the DLQ stream with one that refuses every message on
// its subject.
func blockDLQ(t *testing.T, js jetstream.JetStream) {
	t.Helper()
	ctx := context.Background()
	if err := js.DeleteStream(ctx, DLQStream); err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "BLOCK_DLQ", Subjects: []string{DLQSubject},
		MaxMsgs: 1, Discard: jetstream.DiscardNew}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, DLQSubject, []byte("filler")); err != nil {
		t.Fatal(err)
	}
}

// dlqMessages waits for n letters in the DLQ stream and returns them.
func dlqMessages(t *testing.T, js jetstream.JetStream, n int) []*jetstream.RawStreamMsg {
	t.Helper()
	var st jetstream.Stream
	checkFor(t, 20*time.Second, 20*time.Millisecond, func() error {
		var err error
		if st, err = js.Stream(context.Background(), DLQStream); err != nil {
			return err
		}
		if got := st.CachedInfo().State.Msgs; got != uint64(n) {
			return fmt.Errorf("%d dead letters stored; want %d", got, n)
		}
		return nil
	})
	info := st.CachedInfo().State
	var out []*jetstream.RawStreamMsg
	for seq := info.FirstSeq; seq <= info.LastSeq; seq++ {
		m, err := st.GetMsg(context.Background(), seq)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, m)
	}
	return out
}

// checkAnswers checks every answer of the API: /v1 (admin included),
// /metrics, the probes, the runtime stats and a frame of the dashboard's
// stream.
func checkAnswers(t *testing.T, e *testEnv) {
	t.Helper()
	seen := false
	for _, q := range []struct{ method, path, body string }{
		{"GET", "/v1/multiplier?campaign=cpriv&placement=p1&explain=1", ""},
		{"GET", "/v1/multiplier?campaign=cpriv", ""},
		{"POST", "/v1/multipliers", `[{"campaign":"cpriv","placement":"p1","explain":1},{"campaign":"cpriv"}]`},
		{"GET", "/v1/rates?campaign=cpriv&placement=p1", ""},
		{"GET", "/v1/rates?campaign=cpriv", ""},
		{"GET", "/v1/snapshot?level=campaign/placement&window=1h&sort=impressions", ""},
		{"GET", "/v1/snapshot?level=campaign&window=24h&sort=multiplier&min_impressions=0", ""},
		{"GET", "/v1/stats", ""},
		{"GET", "/v1/overrides", ""},
		{"GET", "/v1/policies", ""},
		{"GET", "/v1/killswitch", ""},
		{"GET", "/v1/audit", ""},
		{"GET", "/metrics", ""},
		{"GET", "/healthz", ""},
		{"GET", "/readyz", ""},
		{"GET", runtimeStatsPath, ""},
	} {
		code, b := e.do(t, q.method, q.path, "tok", q.body)
		if code != 200 {
			t.Fatalf("unexpected status of %s %s; got %d: %s", q.method, q.path, code, b)
		}
		seen = noCanary(t, q.method+" "+q.path, b) || seen
	}
	s := openStream(t, e, "level=campaign/placement&window=1h")
	seen = noCanary(t, "the snapshot stream", []byte(strings.Join(s.block(t), "\n"))) || seen
	s.close()
	if !seen {
		t.Errorf("no answer names the campaign of the events: were they counted?")
	}
}

// checkNATS checks what the service keeps in NATS: every message of every
// stream but the event stream (the KV buckets, the object store, the audit
// stream and the DLQ are streams), and every object kept, whole.
func checkNATS(t *testing.T, js jetstream.JetStream) {
	t.Helper()
	ctx := context.Background()
	seen := false
	names := js.StreamNames(ctx)
	for name := range names.Name() {
		if name == "BIDPULSE_EVENTS" {
			continue // the producers' payloads: a store of personal data (docs/EVENTS.md)
		}
		st, err := js.Stream(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		info := st.CachedInfo().State
		for seq := info.FirstSeq; seq <= info.LastSeq && info.Msgs > 0; seq++ {
			m, err := st.GetMsg(ctx, seq)
			if errors.Is(err, jetstream.ErrMsgNotFound) {
				continue
			}
			if err != nil {
				t.Fatal(err)
			}
			hb := []byte(m.Subject)
			for k, vs := range m.Header {
				hb = append(hb, k...)
				for _, v := range vs {
					hb = append(hb, v...)
				}
			}
			seen = noCanary(t, fmt.Sprintf("stream %s seq %d", name, seq), append(hb, m.Data...)) || seen
		}
	}
	if names.Err() != nil {
		t.Fatal(names.Err())
	}
	objects := 0
	stores := js.ObjectStoreNames(ctx)
	for name := range stores.Name() {
		obs, err := js.ObjectStore(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		list, err := obs.List(ctx)
		if err != nil && !errors.Is(err, jetstream.ErrNoObjectsFound) {
			t.Fatal(err)
		}
		for _, oi := range list {
			b, err := getObject(obs, oi.Name)
			if err != nil {
				t.Fatal(err)
			}
			objects++
			seen = noCanary(t, "object "+name+"/"+oi.Name, b) || seen
		}
	}
	if objects == 0 || !seen {
		t.Errorf("the checks read %d objects and no content naming the campaign: nothing checked?", objects)
	}
}

// checkFiles checks every file bidpulse keeps in the data dir, but the
// embedded server's store (nats/: the streams, checked through NATS).
func checkFiles(t *testing.T, dir string) {
	t.Helper()
	seen := false
	err := filepath.WalkDir(dir, func(path string, de os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if de.IsDir() && de.Name() == "nats" {
			return filepath.SkipDir
		}
		if de.IsDir() {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		seen = noCanary(t, path, b) || seen
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !seen {
		t.Errorf("no file names the campaign: nothing checked?")
	}
}

// getObject reads object name, again when a read fails: the service
// replaces its checkpoint object while it runs, and a read of the object it
// replaces waits for chunks that are purged (until its deadline).
func getObject(obs jetstream.ObjectStore, name string) ([]byte, error) {
	var err error
	for range 10 {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		var b []byte
		b, err = obs.GetBytes(ctx, name)
		cancel()
		if err == nil || errors.Is(err, jetstream.ErrObjectNotFound) {
			return b, err
		}
	}
	return nil, err
}
