package bidder

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

// sseClient reads one GET /v1/snapshot/stream.
type sseClient struct {
	resp *http.Response
	r    *bufio.Reader
}

// sseHTTP has no connection limit per host, so many streams can be open.
var sseHTTP = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: -1, DisableKeepAlives: true}}

// openStream opens a stream of query and checks its status and headers.
func openStream(t *testing.T, e *testEnv, query string) *sseClient {
	t.Helper()
	resp, err := sseHTTP.Get(e.base + "/v1/snapshot/stream?" + query)
	if err != nil {
		t.Fatalf("cannot open stream: %v", err)
	}
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		t.Fatalf("unexpected stream status; got %d; want 200; body %s", resp.StatusCode, b)
	}
	f := func(name, want string) {
		t.Helper()
		if got := resp.Header.Get(name); got != want {
			t.Fatalf("unexpected %s; got %q; want %q", name, got, want)
		}
	}
	f("Content-Type", "text/event-stream; charset=utf-8")
	f("Cache-Control", "no-cache, no-store")
	c := &sseClient{resp: resp, r: bufio.NewReader(resp.Body)}
	t.Cleanup(c.close)
	return c
}

func (c *sseClient) close() { c.resp.Body.Close() }

// block reads the lines of the next event block (up to its blank line).
// It fails the test after 10 s or at the end of the stream.
func (c *sseClient) block(t *testing.T) []string {
	t.Helper()
	type result struct {
		lines []string
		err   error
	}
	ch := make(chan result, 1)
	go func() {
		var lines []string
		for {
			line, err := c.r.ReadString('\n')
			if err != nil {
				ch <- result{lines, err}
				return
			}
			line = strings.TrimSuffix(line, "\n")
			if line == "" {
				ch <- result{lines, nil}
				return
			}
			lines = append(lines, line)
		}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			t.Fatalf("cannot read an event block: %v (read %q)", r.err, r.lines)
		}
		return r.lines
	case <-time.After(10 * time.Second):
		t.Fatalf("no event block within 10s")
		return nil
	}
}

// sseFrameJSON is the part of a frame the tests read.
type sseFrameJSON struct {
	Seq        uint64          `json:"seq"`
	IntervalMs int64           `json:"interval_ms"`
	Ready      bool            `json:"ready"`
	Stats      map[string]any  `json:"stats"`
	Rates      map[string]any  `json:"rates"`
	Bid        map[string]any  `json:"bid"`
	Snapshot   json.RawMessage `json:"snapshot"`
}

// next reads the next snapshot event, skipping the retry advice, and
// checks the wire format: exactly "event: snapshot" and one "data: " line.
func (c *sseClient) next(t *testing.T) (sseFrameJSON, string) {
	t.Helper()
	lines := c.block(t)
	if len(lines) == 1 && strings.HasPrefix(lines[0], "retry: ") {
		lines = c.block(t)
	}
	if len(lines) != 2 || lines[0] != "event: snapshot" || !strings.HasPrefix(lines[1], "data: {") {
		t.Fatalf("unexpected event block; got %q; want [event: snapshot, data: {...}]", lines)
	}
	data := strings.TrimPrefix(lines[1], "data: ")
	var f sseFrameJSON
	if err := json.Unmarshal([]byte(data), &f); err != nil {
		t.Fatalf("data is not a frame: %v: %s", err, data)
	}
	return f, data
}

func jsonEqual(t *testing.T, a, b []byte) bool {
	t.Helper()
	var x, y any
	if err := json.Unmarshal(a, &x); err != nil {
		t.Fatalf("not JSON: %v: %s", err, a)
	}
	if err := json.Unmarshal(b, &y); err != nil {
		t.Fatalf("not JSON: %v: %s", err, b)
	}
	return reflect.DeepEqual(x, y)
}

func TestSnapshotStreamMatchesSnapshot(t *testing.T) {
	e := startTestService(t, func(o *Options) { o.SSEInterval = time.Hour })
	n := publishTraffic(t, e, testNow-1000)
	e.waitReceived(t, uint64(n))

	// The same query gives the same snapshot, and the stats of /v1/stats.
	for _, q := range []string{
		"",
		"level=campaign/placement&sort=multiplier&limit=2&campaign=c1",
		"level=campaign/creative/placement&window=5m&sort=ctr&min_impressions=0",
	} {
		c := openStream(t, e, q)
		f, _ := c.next(t)
		code, want := e.do(t, "GET", "/v1/snapshot?"+q, "", "")
		if code != 200 {
			t.Fatalf("unexpected status of /v1/snapshot?%s: %d", q, code)
		}
		if !jsonEqual(t, f.Snapshot, want) {
			t.Fatalf("unexpected snapshot of %q; got %s; want %s", q, f.Snapshot, want)
		}
		if got := f.Stats["counted"]; got != float64(n) {
			t.Fatalf("unexpected stats.counted; got %v; want %d", got, n)
		}
		if !f.Ready || f.IntervalMs != 3600_000 {
			t.Fatalf("unexpected ready %v or interval_ms %d", f.Ready, f.IntervalMs)
		}
		c.close()
	}

	// Invalid queries get the errors of /v1/snapshot.
	for _, q := range []string{"level=nope", "window=2h", "sort=bogus", "limit=0", "limit=1001", "min_impressions=-1", "campaign=", "placment=x"} {
		code, want := e.do(t, "GET", "/v1/snapshot?"+q, "", "")
		gotCode, got := e.do(t, "GET", "/v1/snapshot/stream?"+q, "", "")
		if code != 400 || gotCode != 400 || string(got) != string(want) {
			t.Fatalf("unexpected answer to stream?%s; got %d %s; want %d %s", q, gotCode, got, code, want)
		}
	}
}

func TestSnapshotStreamCadence(t *testing.T) {
	const interval = 50 * time.Millisecond
	e := startTestService(t, func(o *Options) { o.SSEInterval = interval })
	c := openStream(t, e, "level=campaign/placement")
	first, _ := c.next(t)
	if first.IntervalMs != 50 {
		t.Fatalf("unexpected interval_ms; got %d; want 50", first.IntervalMs)
	}
	// The service clock is frozen: the ticker alone sets the pace.
	var at []time.Time
	prev := first.Seq
	for i := 0; i < 6; i++ {
		f, _ := c.next(t)
		at = append(at, time.Now())
		if f.Seq != prev+1 {
			t.Fatalf("unexpected seq; got %d; want %d", f.Seq, prev+1)
		}
		prev = f.Seq
	}
	elapsed := at[len(at)-1].Sub(at[0])
	if min := 5 * interval * 8 / 10; elapsed < min || elapsed > 5*interval+2*time.Second {
		t.Fatalf("unexpected cadence: 5 intervals took %s; want about %s", elapsed, 5*interval)
	}
}

func TestSnapshotStreamSharedComputation(t *testing.T) {
	// No ticker tick during the test: ticks are driven by hand.
	e := startTestService(t, func(o *Options) { o.SSEInterval = time.Hour })
	h := e.svc.sse
	n := publishTraffic(t, e, testNow-1000)
	e.waitReceived(t, uint64(n))
	ticks0 := h.ticks.Get()

	const same = 40
	var streams []*sseClient
	for i := 0; i < same; i++ {
		q := "level=campaign/placement&sort=ctr&limit=5"
		if i%2 == 1 {
			q = "limit=5&sort=ctr&level=campaign/placement" // same query, other order
		}
		streams = append(streams, openStream(t, e, q))
	}
	other := []*sseClient{openStream(t, e, "level=campaign"), openStream(t, e, "level=campaign")}
	streams = append(streams, other...)

	read := func(wantSeq uint64) {
		t.Helper()
		var mu sync.Mutex
		datas := map[string]int{}
		var wg sync.WaitGroup
		for _, c := range streams {
			wg.Add(1)
			go func() {
				defer wg.Done()
				f, data := c.next(t)
				if f.Seq != wantSeq {
					t.Errorf("unexpected seq; got %d; want %d", f.Seq, wantSeq)
				}
				mu.Lock()
				datas[data]++
				mu.Unlock()
			}()
		}
		wg.Wait()
		// Every stream of a query got the very same bytes.
		if len(datas) != 2 {
			t.Fatalf("unexpected distinct frames; got %d; want 2 (one per query)", len(datas))
		}
	}
	f := func(snapshots, ticks uint64) {
		t.Helper()
		if got := h.snapshots.Get(); got != snapshots {
			t.Fatalf("unexpected snapshot computations; got %d; want %d", got, snapshots)
		}
		if got := h.ticks.Get() - ticks0; got != ticks {
			t.Fatalf("unexpected tick computations; got %d; want %d", got, ticks)
		}
	}
	read(0)
	f(2, 0) // the first frame of each query, computed when it was first asked for
	base := time.Now()
	for i := 1; i <= 3; i++ {
		h.tick(base.Add(time.Duration(i) * time.Second))
		read(uint64(i))
		f(uint64(2+2*i), uint64(i))
	}
	if got := h.openStreams(); got != same+2 {
		t.Fatalf("unexpected open streams; got %d; want %d", got, same+2)
	}
}

func TestSnapshotStreamRates(t *testing.T) {
	e := startTestService(t, func(o *Options) { o.SSEInterval = time.Hour })
	h := e.svc.sse
	c := openStream(t, e, "")
	c.next(t)
	base := time.Now()
	h.tick(base)
	c.next(t)
	n := publishTraffic(t, e, testNow-1000)
	e.publish(t, `{"id":"x","type":"view","campaign":"c"}`) // rejected: bad_type
	e.waitReceived(t, uint64(n+1))
	for i := 0; i < 7; i++ {
		e.getJSON(t, "/v1/multiplier?campaign=c1&placement=news.example/top", 200)
	}
	h.tick(base.Add(2 * time.Second))
	fr, _ := c.next(t)
	f := func(m map[string]any, name string, want float64) {
		t.Helper()
		if got, _ := m[name].(float64); got != want {
			t.Fatalf("unexpected %s; got %v; want %v in %v", name, m[name], want, m)
		}
	}
	f(fr.Rates, "counted", float64(n)/2)
	f(fr.Rates, "received", float64(n+1)/2)
	f(fr.Rates, "rejected", 0.5)
	f(fr.Rates, "impression", 10010.0/2)
	f(fr.Rates, "click", 225.0/2)
	f(fr.Rates, "duplicate", 0)
	f(fr.Bid, "requests", 7)
	f(fr.Bid, "rps", 3.5)
	if p50, ok := fr.Bid["p50_ms"].(float64); !ok || p50 <= 0 || p50 > 1000 {
		t.Fatalf("unexpected bid p50_ms %v", fr.Bid["p50_ms"])
	}
	if _, ok := fr.Stats["buffer"].(map[string]any)["fill"].(float64); !ok {
		t.Fatalf("no buffer fill in the stats of the frame: %v", fr.Stats)
	}
	// No request in the next interval: no percentile.
	h.tick(base.Add(3 * time.Second))
	fr, _ = c.next(t)
	if fr.Bid["p99_ms"] != nil || fr.Rates["counted"] != 0.0 {
		t.Fatalf("unexpected idle interval: bid %v rates %v", fr.Bid, fr.Rates)
	}
}

func TestSnapshotStreamLimit(t *testing.T) {
	e := startTestService(t, func(o *Options) {
		o.SSEInterval = 20 * time.Millisecond
		o.MaxSSEStreams = 2
	})
	a := openStream(t, e, "")
	openStream(t, e, "level=campaign/placement")
	resp, err := sseHTTP.Get(e.base + "/v1/snapshot/stream")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" || !strings.Contains(resp.Header.Get("Content-Type"), "application/json") ||
		!strings.Contains(string(body), `"error":"too many snapshot streams: the limit is 2`) {
		t.Fatalf("unexpected answer past the limit; got %d %q %s", resp.StatusCode, resp.Header, body)
	}
	if got := e.svc.sse.refused.Get(); got != 1 {
		t.Fatalf("unexpected refused count; got %d; want 1", got)
	}
	// A client that goes away frees its slot at the next write.
	a.close()
	checkFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if n := e.svc.sse.openStreams(); n != 1 {
			return fmt.Errorf("open streams %d; want 1", n)
		}
		return nil
	})
	openStream(t, e, "")
}

func TestSnapshotStreamShutdown(t *testing.T) {
	e := startTestService(t, func(o *Options) {
		o.SSEInterval = 20 * time.Millisecond
		o.ShutdownTimeout = 10 * time.Second
	})
	var streams []*sseClient
	for i := 0; i < 5; i++ {
		c := openStream(t, e, "")
		c.next(t)
		streams = append(streams, c)
	}
	t0 := time.Now()
	if err := e.svc.Stop(context.Background()); err != nil {
		t.Fatalf("unexpected error on stop: %v", err)
	}
	if took := time.Since(t0); took > 3*time.Second {
		t.Fatalf("unexpected stop duration with open streams; got %s; want well under the 10s shutdown timeout", took)
	}
	for _, c := range streams {
		// Frames sent before the stop may come first; then the goodbye, then the end.
		for {
			lines := c.block(t)
			if len(lines) > 0 && lines[0] == "event: snapshot" {
				continue
			}
			if len(lines) != 2 || lines[0] != "event: shutdown" {
				t.Fatalf("unexpected last event; got %q; want event: shutdown", lines)
			}
			break
		}
		if b, err := io.ReadAll(c.r); err != nil || len(b) != 0 {
			t.Fatalf("unexpected end of stream; got %q, %v; want EOF", b, err)
		}
	}
	if n := e.svc.sse.openStreams(); n != 0 {
		t.Fatalf("unexpected open streams after stop; got %d; want 0", n)
	}
}
