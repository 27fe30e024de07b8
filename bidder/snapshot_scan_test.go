package bidder

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/bidpulse/bidpulse/windows"
)

// publishKeys publishes impressions and clicks on 4 campaigns x 50
// placements, with counts that differ from key to key, and returns how many
// events it published.
func publishKeys(t *testing.T, e *testEnv) int {
	t.Helper()
	var batch []string
	n := 0
	for c := 0; c < 4; c++ {
		for p := 0; p < 50; p++ {
			i := c*50 + p
			impr, clicks := 1+(i*7)%23, i%5
			for k := 0; k < impr; k++ {
				batch = append(batch, ev(fmt.Sprintf("i-%d-%d", i, k), "impression", testNow-1000, fmt.Sprintf("c%d", c), "", fmt.Sprintf("p%02d", p)))
			}
			for k := 0; k < clicks; k++ {
				batch = append(batch, ev(fmt.Sprintf("i-%d-%d", i, k), "click", testNow-1000, fmt.Sprintf("c%d", c), "", fmt.Sprintf("p%02d", p)))
			}
			if len(batch) >= 400 {
				e.publish(t, "["+strings.Join(batch, ",")+"]")
				n += len(batch)
				batch = batch[:0]
			}
		}
	}
	if len(batch) > 0 {
		e.publish(t, "["+strings.Join(batch, ",")+"]")
		n += len(batch)
	}
	e.waitReceived(t, uint64(n))
	return n
}

// referenceSnapshot answers q the way the snapshot did before scans were
// shared: one scan of the store for this query alone, filtered, sorted,
// limited.
func referenceSnapshot(t *testing.T, s *Service, q *snapshotQuery, nowMs int64) []byte {
	t.Helper()
	type ent struct {
		key  []byte
		c    windows.Counts
		mult float64
	}
	var ents []ent
	s.store.Scan(q.level, q.span, nowMs, func(key []byte, c windows.Counts) bool {
		if c.Impressions == 0 && c.Clicks == 0 && c.Conversions == 0 {
			return true
		}
		if (q.sortBy == sortCTR || q.sortBy == sortCVR) && c.Impressions < q.minImpr {
			return true
		}
		var v windows.Values
		if _, err := windows.DecodeKey(key, s.rollups, &v); err != nil {
			t.Fatalf("cannot decode a stored key: %v", err)
		}
		if q.campaign != nil && !bytes.Equal(v[windows.DimCampaign], q.campaign) {
			return true
		}
		ents = append(ents, ent{key: append([]byte(nil), key...), c: c})
		return true
	})
	sc := getScratch()
	defer putScratch(sc)
	sc.noTrack = true
	for i := range ents {
		ents[i].mult = s.multiplierOfKey(sc, ents[i].key, nowMs)
	}
	sc.noTrack = false
	metric := func(e *ent) float64 {
		switch q.sortBy {
		case sortClicks:
			return float64(e.c.Clicks)
		case sortConversions:
			return float64(e.c.Conversions)
		case sortCTR:
			return e.c.CTR()
		case sortCVR:
			return e.c.CVR()
		case sortMultiplier:
			return e.mult
		}
		return float64(e.c.Impressions)
	}
	sort.Slice(ents, func(i, j int) bool {
		a, b := metric(&ents[i]), metric(&ents[j])
		if a != b {
			return a > b
		}
		return bytes.Compare(ents[i].key, ents[j].key) < 0
	})
	if len(ents) > q.limit {
		ents = ents[:q.limit]
	}
	type keyJSON struct {
		Key         map[string]string `json:"key"`
		Impressions uint64            `json:"impressions"`
		Clicks      uint64            `json:"clicks"`
		Conversions uint64            `json:"conversions"`
		CTR         float64           `json:"ctr"`
		CVR         float64           `json:"cvr"`
		Multiplier  json.RawMessage   `json:"multiplier"`
	}
	out := struct {
		Level  string    `json:"level"`
		Window string    `json:"window"`
		Sort   string    `json:"sort"`
		Keys   []keyJSON `json:"keys"`
	}{Level: s.rollups.Levels[q.level].Name, Window: q.span.String(), Sort: sortNames[q.sortBy], Keys: []keyJSON{}}
	for _, e := range ents {
		var v windows.Values
		lvl, _ := windows.DecodeKey(e.key, s.rollups, &v)
		k := map[string]string{}
		for _, d := range s.rollups.Levels[lvl].Dims {
			k[windows.DimNames[d]] = string(v[d])
		}
		out.Keys = append(out.Keys, keyJSON{Key: k, Impressions: e.c.Impressions, Clicks: e.c.Clicks, Conversions: e.c.Conversions,
			CTR: e.c.CTR(), CVR: e.c.CVR(), Multiplier: appendRounded(nil, e.mult)})
	}
	b, err := json.Marshal(out)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// distinctSnapshotQueries returns n distinct snapshot queries of one level
// and window: every sort, limits, min_impressions and campaigns.
func distinctSnapshotQueries(n int, level string) []string {
	var qs []string
	for i := 0; len(qs) < n; i++ {
		q := fmt.Sprintf("level=%s&window=1h&sort=%s&limit=%d&min_impressions=%d", level, sortNames[i%len(sortNames)], 1+i%17, i%9)
		if i%3 == 0 {
			q += fmt.Sprintf("&campaign=c%d", i%4)
		}
		qs = append(qs, q)
	}
	return qs
}

// TestSnapshotDistinctQueriesShareOneScan sends 64 concurrent snapshot
// requests with distinct queries on one level and window: one scan answers
// them all, and each answer is what a scan of its own would have given.
func TestSnapshotDistinctQueriesShareOneScan(t *testing.T) {
	e := startTestService(t, nil)
	publishKeys(t, e)
	c := e.svc.scans
	c.ttl = time.Hour // the whole test runs on one scan, however slow the machine
	scans0, shared0 := c.scans.Get(), c.shared.Get()

	qs := distinctSnapshotQueries(64, "campaign/placement")
	bodies := make([][]byte, len(qs))
	var wg sync.WaitGroup
	for i, q := range qs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := sseHTTP.Get(e.base + "/v1/snapshot?" + q)
			if err != nil {
				t.Errorf("cannot GET /v1/snapshot?%s: %v", q, err)
				return
			}
			defer resp.Body.Close()
			var buf bytes.Buffer
			buf.ReadFrom(resp.Body)
			if resp.StatusCode != 200 {
				t.Errorf("unexpected status of /v1/snapshot?%s; got %d; want 200: %s", q, resp.StatusCode, buf.Bytes())
			}
			bodies[i] = buf.Bytes()
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	if got := c.scans.Get() - scans0; got != 1 {
		t.Fatalf("unexpected scans for 64 distinct queries of one level and window; got %d; want 1", got)
	}
	if got := c.shared.Get() - shared0; got != 63 {
		t.Fatalf("unexpected answers from a shared scan; got %d; want 63", got)
	}
	for i, q := range qs {
		pq, err := e.svc.parseSnapshotQuery(queryArgs(q))
		if err != nil {
			t.Fatal(err)
		}
		want := referenceSnapshot(t, e.svc, &pq, testNow)
		if !jsonEqual(t, bodies[i], want) {
			t.Fatalf("unexpected snapshot of %s; got %s; want %s", q, bodies[i], want)
		}
	}
	var m map[string]any
	if err := json.Unmarshal(bodies[0], &m); err != nil || len(m["keys"].([]any)) == 0 {
		t.Fatalf("the first query found no key: %s", bodies[0])
	}
}

// TestSnapshotStreamsDistinctQueriesShareScans opens 64 streams with
// distinct queries over two levels: the streams' frames come from one scan
// per level, at their start and at each tick.
func TestSnapshotStreamsDistinctQueriesShareScans(t *testing.T) {
	e := startTestService(t, func(o *Options) { o.SSEInterval = time.Hour })
	publishKeys(t, e)
	h, c := e.svc.sse, e.svc.scans
	scans0 := c.scans.Get()
	qs := append(distinctSnapshotQueries(32, "campaign/placement"), distinctSnapshotQueries(32, "campaign")...)
	var streams []*sseClient
	for _, q := range qs {
		streams = append(streams, openStream(t, e, q))
	}
	for _, st := range streams {
		st.next(t)
	}
	if got := c.scans.Get() - scans0; got != 2 {
		t.Fatalf("unexpected scans for 64 streams over 2 levels; got %d; want 2", got)
	}
	if got := h.snapshots.Get(); got != 64 {
		t.Fatalf("unexpected frames computed; got %d; want 64", got)
	}
	// A tick once the scans are past their age: one new scan per level.
	c.mu.Lock()
	for _, en := range c.entries {
		en.res.at = en.res.at.Add(-2 * time.Second)
	}
	c.mu.Unlock()
	h.tick(time.Now())
	for _, st := range streams {
		if f, _ := st.next(t); f.Seq != 1 {
			t.Fatalf("unexpected seq after a tick; got %d; want 1", f.Seq)
		}
	}
	if got := c.scans.Get() - scans0; got != 4 {
		t.Fatalf("unexpected scans after a tick; got %d; want 4", got)
	}
}

// TestSnapshotScanBudget spends the scan budget: a query of a level and
// window not scanned yet gets a JSON 503 with Retry-After, a new stream of
// it too, while a stream of a scanned one keeps getting frames from its
// last scan.
func TestSnapshotScanBudget(t *testing.T) {
	e := startTestService(t, func(o *Options) {
		o.SSEInterval = time.Hour
		o.SnapshotScanRate = 10 // keys per second: one scan of 200 keys spends it for 19 s
	})
	publishKeys(t, e)
	c := e.svc.scans
	c.ttl = time.Hour // GET /v1/snapshot is answered from the first scan, however slow the machine
	st := openStream(t, e, "level=campaign/placement&limit=3")
	st.next(t)
	if got := c.keys.Get(); got != 200 {
		t.Fatalf("unexpected keys scanned; got %d; want 200", got)
	}
	for _, path := range []string{"/v1/snapshot?level=campaign", "/v1/snapshot/stream?level=campaign/placement&window=5m"} {
		resp, err := sseHTTP.Get(e.base + path)
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]string
		err = json.NewDecoder(resp.Body).Decode(&m)
		resp.Body.Close()
		if resp.StatusCode != 503 || err != nil || !strings.Contains(m["error"], "--snapshot-scan-rate") {
			t.Fatalf("unexpected answer to %s past the scan budget; got %d %v %v", path, resp.StatusCode, m, err)
		}
		if ra := resp.Header.Get("Retry-After"); ra == "" || ra == "0" || ra == "1" {
			t.Fatalf("unexpected Retry-After of %s; got %q; want the seconds until the budget refills (about 19)", path, ra)
		}
	}
	if got := c.refused.Get(); got != 2 {
		t.Fatalf("unexpected refused scans; got %d; want 2", got)
	}
	// A new query of the scanned level is still answered from its scan,
	// unless a filter (campaign, min_impressions of the ctr and cvr sorts)
	// could make its walk over the scan long: that one waits for the budget.
	if code, _ := e.do(t, "GET", "/v1/snapshot?level=campaign/placement&sort=multiplier", "", ""); code != 200 {
		t.Fatalf("unexpected status of a query of the scanned level; got %d; want 200", code)
	}
	for _, q := range []string{"sort=ctr", "campaign=c1"} {
		if code, b := e.do(t, "GET", "/v1/snapshot?level=campaign/placement&"+q, "", ""); code != 503 {
			t.Fatalf("unexpected status of a filtered query (%s) past the budget; got %d; want 503: %s", q, code, b)
		}
	}
	// Once that scan is too old for a new frame (older than a second), but
	// still kept (scanKeep), the stream goes on with it.
	c.mu.Lock()
	c.ttl = time.Second
	for _, en := range c.entries {
		en.res.at = en.res.at.Add(-2 * time.Second)
	}
	c.mu.Unlock()
	e.svc.sse.tick(time.Now())
	if f, _ := st.next(t); f.Seq != 1 || len(f.Snapshot) < 10 {
		t.Fatalf("unexpected frame past the budget; got seq %d snapshot %s", f.Seq, f.Snapshot)
	}
	if got := c.scans.Get(); got != 1 {
		t.Fatalf("unexpected scans past the budget; got %d; want 1", got)
	}
}

// queryArgs parses a query string as a request's.
func queryArgs(q string) *fasthttp.Args {
	var a fasthttp.Args
	a.Parse(q)
	return &a
}
