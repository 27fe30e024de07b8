package bidder

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"
)

// testNow is a fixed service time for tests: 2026-01-02T03:04:05Z.
const testNow = int64(1767323045000)

type testEnv struct {
	svc   *Service
	nc    *nats.Conn
	clock *ManualClock
	base  string
}

// startTestService starts a Service with an embedded NATS server on a random
// loopback port and the HTTP API on a random loopback port, driven by a
// manual clock. edit may change the options before New.
func startTestService(t *testing.T, edit func(o *Options)) *testEnv {
	t.Helper()
	clock := NewManualClock(testNow)
	o := Options{
		HTTPAddr:  "127.0.0.1:0",
		NATSAddr:  "127.0.0.1:-1",
		DataDir:   t.TempDir(),
		Instance:  "test",
		DedupSize: 32 << 20,
		Logger:    zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel),
		Clock:     clock,
	}
	if edit != nil {
		edit(&o)
	}
	svc, err := New(o)
	if err != nil {
		t.Fatalf("cannot create service: %v", err)
	}
	if err := svc.Start(); err != nil {
		t.Fatalf("cannot start service: %v", err)
	}
	url := svc.NATSURL()
	if url == "" {
		url = o.NATSURL
	}
	connOpts, err := o.NATSClient.Options() // the external server's credentials, if any
	if err != nil {
		t.Fatal(err)
	}
	if svc.opts.natsAuth {
		// The embedded server requires authentication: the test
		// publishes as a producer.
		nk, err := nats.NkeyOptionFromSeed(NATSSeedFile(svc.opts.DataDir, NATSUserProducer))
		if err != nil {
			t.Fatalf("cannot read the producer's seed: %v", err)
		}
		connOpts = append(connOpts, nk)
	}
	nc, err := nats.Connect(url, connOpts...)
	if err != nil {
		t.Fatalf("cannot connect to NATS: %v", err)
	}
	env := &testEnv{svc: svc, nc: nc, clock: clock, base: "http://" + svc.HTTPAddr()}
	t.Cleanup(func() {
		nc.Close()
		if err := svc.Stop(context.Background()); err != nil {
			t.Errorf("unexpected error on stop: %v", err)
		}
	})
	return env
}

// publish publishes payload on an event subject and flushes.
func (e *testEnv) publish(t *testing.T, payload string) {
	t.Helper()
	if err := e.nc.Publish("bidpulse.events.test", []byte(payload)); err != nil {
		t.Fatalf("cannot publish: %v", err)
	}
	if err := e.nc.Flush(); err != nil {
		t.Fatalf("cannot flush: %v", err)
	}
}

// waitReceived waits until the service has received n events in all.
func (e *testEnv) waitReceived(t *testing.T, n uint64) {
	t.Helper()
	checkFor(t, 10*time.Second, 5*time.Millisecond, func() error {
		if got := e.svc.ingest.Stats().Received.Get(); got != n {
			return fmt.Errorf("received %d events; want %d", got, n)
		}
		return nil
	})
}

// checkFor calls fn every step until it returns nil, failing the test with
// fn's last error after total.
func checkFor(t *testing.T, total, step time.Duration, fn func() error) {
	t.Helper()
	deadline := time.Now().Add(total)
	var err error
	for time.Now().Before(deadline) {
		if err = fn(); err == nil {
			return
		}
		time.Sleep(step)
	}
	t.Fatalf("condition not met after %s: %v", total, err)
}

// do sends an HTTP request and returns the status and body.
func (e *testEnv) do(t *testing.T, method, path, token, body string) (int, []byte) {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, e.base+path, r)
	if err != nil {
		t.Fatalf("cannot build request: %v", err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("cannot %s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("cannot read body of %s %s: %v", method, path, err)
	}
	if ct := resp.Header.Get("Content-Type"); method != "HEAD" && path != "/metrics" && !strings.HasPrefix(ct, "application/json") {
		t.Fatalf("unexpected Content-Type of %s %s; got %q; want application/json", method, path, ct)
	}
	return resp.StatusCode, b
}

// getJSON GETs path, checks the status and decodes the body into a map.
func (e *testEnv) getJSON(t *testing.T, path string, wantStatus int) map[string]any {
	t.Helper()
	code, b := e.do(t, "GET", path, "", "")
	if code != wantStatus {
		t.Fatalf("unexpected status of GET %s; got %d; want %d; body %s", path, code, wantStatus, b)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("GET %s: body is not a JSON object: %v: %s", path, err, b)
	}
	return m
}

// num reads a number at a dotted path of m.
func num(t *testing.T, m map[string]any, path string) float64 {
	t.Helper()
	var cur any = m
	for _, p := range strings.Split(path, ".") {
		obj, ok := cur.(map[string]any)
		if !ok {
			t.Fatalf("no object at %q in %v", p, m)
		}
		cur = obj[p]
	}
	f, ok := cur.(float64)
	if !ok {
		t.Fatalf("no number at %q; got %v (%T)", path, cur, cur)
	}
	return f
}

// ev builds one event JSON object.
func ev(id, typ string, ts int64, campaign, creative, placement string) string {
	s := fmt.Sprintf(`{"id":%q,"type":%q,"campaign":%q`, id, typ, campaign)
	if ts != 0 {
		s += fmt.Sprintf(`,"ts":%d`, ts)
	}
	if creative != "" {
		s += fmt.Sprintf(`,"creative":%q`, creative)
	}
	if placement != "" {
		s += fmt.Sprintf(`,"placement":%q`, placement)
	}
	return s + "}"
}
