package node

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bidpulse/bidpulse/bidder"
	"github.com/bidpulse/bidpulse/bidder/cluster"
	"github.com/bidpulse/bidpulse/bidder/partition"
)

func campaigns(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = "c" + strconv.Itoa(i)
	}
	return out
}

// TestClusterDisjointUnion: three members own disjoint partitions that cover
// all P, each counts its campaigns' events exactly, and every member
// answers bids for every campaign, the same multiplier wherever asked.
func TestClusterDisjointUnion(t *testing.T) {
	const parts = 8
	tc := newTestCluster(t, parts, nil)
	tc.startMembers(3)
	pub := tc.newPublisher()
	cs := campaigns(40)
	for round := range 3 {
		for i, c := range cs {
			if !pub.publish(c, 1+(i+round)%5) {
				t.Fatal("publish not acknowledged")
			}
		}
	}
	tc.waitCounted(pub.total(), 30*time.Second)
	tc.checkRates(pub)

	// The assignment every member computed is Assign's, and each member
	// serves exactly its own partitions.
	want := cluster.Assign(parts, []string{"m0", "m1", "m2"}, 1)
	for name, n := range tc.members {
		code, b := do(t, n, "GET", "/v1/cluster", "", "")
		if code != 200 {
			t.Fatalf("/v1/cluster: %d %s", code, b)
		}
		var v struct {
			Owners  []string `json:"owners"`
			Serving []uint32 `json:"serving"`
			Members []struct {
				Instance string `json:"instance"`
			} `json:"members"`
		}
		if err := json.Unmarshal(b, &v); err != nil {
			t.Fatal(err)
		}
		var mine []uint32
		for p := range want {
			if v.Owners[p] != want[p][0] {
				t.Fatalf("%s: owner of %d is %s; want %s", name, p, v.Owners[p], want[p][0])
			}
			if want[p][0] == name {
				mine = append(mine, uint32(p))
			}
		}
		if !slices.Equal(v.Serving, mine) {
			t.Fatalf("%s serves %v; want %v", name, v.Serving, mine)
		}
	}

	// Bids: every campaign through every member, single and batch, the
	// same answer everywhere, none neutral.
	for _, c := range cs {
		var first string
		for name, n := range tc.members {
			code, b := do(t, n, "GET", "/v1/multiplier?campaign="+c+"&placement=p1", "", "")
			if code != 200 {
				t.Fatalf("bid %s at %s: %d %s", c, name, code, b)
			}
			var a map[string]any
			if err := json.Unmarshal(b, &a); err != nil {
				t.Fatal(err)
			}
			if a["neutral"] != nil || a["impressions"].(float64) == 0 {
				t.Fatalf("bid %s at %s: answered without the campaign's counts: %s", c, name, b)
			}
			if first == "" {
				first = string(b)
			} else if string(b) != first {
				t.Fatalf("bid %s: %s at %s; another member answered %s", c, b, name, first)
			}
		}
	}
	var body []byte
	body = append(body, '[')
	for i, c := range cs {
		if i > 0 {
			body = append(body, ',')
		}
		body = fmt.Appendf(body, `{"campaign":%q,"placement":"p%d"}`, c, i%3)
	}
	body = append(body, `,{"placement":"p1"},{"campaign":7}]`...)
	var firstBatch string
	for name, n := range tc.members {
		code, b := do(t, n, "POST", "/v1/multipliers", "", string(body))
		if code != 200 {
			t.Fatalf("batch at %s: %d %s", name, code, b)
		}
		var answers []map[string]any
		if err := json.Unmarshal(b, &answers); err != nil {
			t.Fatalf("batch at %s: %s", name, b)
		}
		if len(answers) != len(cs)+2 {
			t.Fatalf("batch at %s: %d answers; want %d", name, len(answers), len(cs)+2)
		}
		for i := range cs {
			if answers[i]["neutral"] != nil || answers[i]["impressions"].(float64) == 0 {
				t.Fatalf("batch at %s: item %d answered without counts: %v", name, i, answers[i])
			}
		}
		for _, a := range answers[len(cs):] {
			if a["error"] == nil {
				t.Fatalf("batch at %s: an item without a string campaign answered %v; want an error", name, a)
			}
		}
		if firstBatch == "" {
			firstBatch = string(b)
		} else if string(b) != firstBatch {
			t.Fatalf("batch answered differently at %s:\n%s\nvs\n%s", name, b, firstBatch)
		}
	}
	// Each member forwarded what it does not own and answered the rest.
	for name, n := range tc.members {
		fw := n.stats.forwarded[epMultiplier].Get()
		own := 0
		for _, c := range cs {
			if slices.Contains(n.owned(), partition.OfString(parts, c)) {
				own++
			}
		}
		if fw != uint64(len(cs)-own) {
			t.Fatalf("%s forwarded %d single bids; want %d", name, fw, len(cs)-own)
		}
	}
}

// bidLoop asks bids for every campaign through the members in alive, round
// robin, until stop or 20,000 requests: each must be answered 200 with a
// multiplier (by the owner or neutrally).
type bidLoop struct {
	mu      sync.Mutex
	alive   []*Node
	stop    chan struct{}
	done    chan struct{}
	asked   atomic.Int64
	neutral atomic.Int64
	err     atomic.Pointer[string]
}

func startBidLoop(t *testing.T, cs []string, alive []*Node) *bidLoop {
	b := &bidLoop{alive: slices.Clone(alive), stop: make(chan struct{}), done: make(chan struct{})}
	client := &http.Client{Timeout: 5 * time.Second}
	go func() {
		defer close(b.done)
		for i := 0; i < 20_000; i++ {
			select {
			case <-b.stop:
				return
			default:
			}
			b.mu.Lock()
			n := b.alive[i%len(b.alive)]
			b.mu.Unlock()
			c := cs[i%len(cs)]
			resp, err := client.Get("http://" + n.HTTPAddr() + "/v1/multiplier?campaign=" + c)
			if err != nil {
				msg := fmt.Sprintf("bid %s at %s: %v", c, n.opts.Member, err)
				b.err.CompareAndSwap(nil, &msg)
				return
			}
			var a map[string]any
			err = json.NewDecoder(resp.Body).Decode(&a)
			resp.Body.Close()
			if err != nil || resp.StatusCode != 200 || a["multiplier"] == nil {
				msg := fmt.Sprintf("bid %s at %s: %d %v %v", c, n.opts.Member, resp.StatusCode, a, err)
				b.err.CompareAndSwap(nil, &msg)
				return
			}
			b.asked.Add(1)
			if a["neutral"] != nil {
				b.neutral.Add(1)
			}
			time.Sleep(time.Millisecond)
		}
	}()
	return b
}

// without stops sending to n (before n goes).
func (b *bidLoop) without(n *Node) {
	b.mu.Lock()
	b.alive = slices.DeleteFunc(b.alive, func(x *Node) bool { return x == n })
	b.mu.Unlock()
}

func (b *bidLoop) finish(t *testing.T) {
	t.Helper()
	close(b.stop)
	<-b.done
	if e := b.err.Load(); e != nil {
		t.Fatal(*e)
	}
	t.Logf("bids during the test: %d, %d of them neutral", b.asked.Load(), b.neutral.Load())
	if b.asked.Load() == 0 {
		t.Fatal("no bid was answered")
	}
}

func (tc *testCluster) nodes() []*Node {
	var out []*Node
	for _, name := range slices.Sorted(maps.Keys(tc.members)) {
		out = append(out, tc.members[name])
	}
	return out
}

// TestClusterMemberKilled: a member dies mid-stream; its partitions move to
// the others from their checkpoints kept in NATS, every acknowledged event
// is counted exactly once, and bids are answered throughout.
func TestClusterMemberKilled(t *testing.T) {
	const parts = 16
	tc := newTestCluster(t, parts, nil)
	tc.startMembers(3)
	cs := campaigns(40)
	bids := startBidLoop(t, cs, tc.nodes())
	pub := tc.newPublisher()
	for round := range 6 {
		for i, c := range cs {
			if !pub.publish(c, 1+(i+round)%7) {
				t.Fatal("publish not acknowledged")
			}
		}
		if round == 2 {
			// Checkpoints kept in NATS every 300ms: let one or two go by
			// so the new owners restore one, then replay after it.
			time.Sleep(700 * time.Millisecond)
			victim := tc.members["m1"]
			lost := len(victim.owned())
			bids.without(victim)
			t0 := time.Now()
			tc.kill("m1")
			tc.waitStable(2, 30*time.Second)
			t.Logf("m1 (%d partitions) killed: the others serve all partitions after %s", lost, time.Since(t0).Round(time.Millisecond))
			var in uint64
			for _, n := range tc.members {
				in += n.stats.handoversIn.Get()
			}
			if want := uint64(parts); in != want {
				t.Fatalf("%d partitions taken in all; want %d (the first assignment's, then m1's)", in, want)
			}
		}
	}
	tc.waitCounted(pub.total(), 30*time.Second)
	tc.checkRates(pub)
	bids.finish(t)
	// The units that took m1's partitions started from a checkpoint kept
	// in NATS, not from the stream's start.
	from := 0
	for _, n := range tc.members {
		for _, u := range n.unitReports() {
			if u.FromCheckpoint != "" {
				from++
			}
		}
	}
	if from == 0 {
		t.Fatal("no unit started from a checkpoint kept in NATS")
	}
}

// TestClusterGrowShrink: 2 -> 3 -> 2 members. Only the partitions the
// assignment moves are handed over, and the counts stay exact.
func TestClusterGrowShrink(t *testing.T) {
	const parts = 16
	tc := newTestCluster(t, parts, nil)
	tc.start("m0")
	tc.start("m1")
	tc.waitStable(2, 30*time.Second)
	cs := campaigns(60)
	pub := tc.newPublisher()
	publish := func(round int) {
		for i, c := range cs {
			if !pub.publish(c, 1+(i+round)%4) {
				t.Fatal("publish not acknowledged")
			}
		}
	}
	publish(0)
	tc.waitCounted(pub.total(), 30*time.Second)
	moves := func(before, after []string) int {
		a, b := cluster.Assign(parts, before, 1), cluster.Assign(parts, after, 1)
		k := 0
		for p := range a {
			if a[p][0] != b[p][0] {
				k++
			}
		}
		return k
	}
	// Per member, kept after a member stops.
	taken, given := map[string]uint64{}, map[string]uint64{}
	handovers := func() (in, out uint64) {
		for name, n := range tc.members {
			taken[name], given[name] = n.stats.handoversIn.Get(), n.stats.handoversOut.Get()
		}
		for name := range taken {
			in += taken[name]
			out += given[name]
		}
		return in, out
	}
	in0, out0 := handovers()
	tc.start("m2")
	tc.waitStable(3, 30*time.Second)
	publish(1)
	tc.waitCounted(pub.total(), 30*time.Second)
	in1, out1 := handovers()
	want := moves([]string{"m0", "m1"}, []string{"m0", "m1", "m2"})
	if int(in1-in0) != want || int(out1-out0) != want {
		t.Fatalf("2 -> 3: %d partitions taken, %d given up; want %d each (the assignment's moves)", in1-in0, out1-out0, want)
	}
	if got := len(tc.members["m2"].owned()); got != want {
		t.Fatalf("m2 owns %d partitions; want %d", got, want)
	}
	tc.checkRates(pub)
	// m0 leaves gracefully: its partitions go to m1 and m2 at once (its
	// membership key is deleted), from the final checkpoints it kept.
	m0Owned := len(tc.members["m0"].owned())
	handovers()
	tc.stop("m0")
	tc.waitStable(2, 30*time.Second)
	publish(2)
	tc.waitCounted(pub.total(), 30*time.Second)
	in2, _ := handovers()
	if want := moves([]string{"m0", "m1", "m2"}, []string{"m1", "m2"}); int(in2-in1) != want || want != m0Owned {
		t.Fatalf("3 -> 2: %d partitions taken; want %d (m0 owned %d)", in2-in1, want, m0Owned)
	}
	tc.checkRates(pub)
}

// TestClusterOverrideReachesAll: an override set through one member is
// answered by every member that owns the campaign, through the control
// plane's KV watch.
func TestClusterOverrideReachesAll(t *testing.T) {
	const parts = 8
	tc := newTestCluster(t, parts, nil)
	tc.startMembers(3)
	// A campaign owned by each member.
	owned := map[string]string{}
	for i := 0; len(owned) < 3; i++ {
		c := "ov" + strconv.Itoa(i)
		owner, _ := tc.members["m0"].ownerOf(partition.OfString(parts, c))
		if _, ok := owned[owner]; !ok {
			owned[owner] = c
		}
	}
	via := tc.members["m0"]
	var worst time.Duration
	for owner, c := range owned {
		t0 := time.Now()
		code, b := do(t, via, "PUT", "/v1/overrides", "admin-secret", `{"campaign":"`+c+`","multiplier":1.7}`)
		if code != 200 {
			t.Fatalf("override through m0: %d %s", code, b)
		}
		n := tc.members[owner]
		for {
			_, a := get(t, n, "/v1/multiplier?campaign="+c)
			if a["multiplier"].(float64) == 1.7 {
				break
			}
			if time.Since(t0) > 5*time.Second {
				t.Fatalf("override of %s not answered by its owner %s after 5s: %v", c, owner, a)
			}
			time.Sleep(time.Millisecond)
		}
		d := time.Since(t0)
		worst = max(worst, d)
		t.Logf("override of %s set through m0, answered by its owner %s after %s", c, owner, d)
	}
	if worst > time.Second {
		t.Fatalf("an override took %s to reach its owner; want well under a second", worst)
	}
}

// TestClusterNATSLeaderKilled: the NATS node leading the event stream dies
// mid-stream; the members reconnect to the others, and every acknowledged
// event is counted exactly once. It has a NATS cluster of its own: the
// shared one would count the stopped node offline for the next tests.
func TestClusterNATSLeaderKilled(t *testing.T) {
	const parts = 8
	own, err := startNATSCluster()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(own.shutdown)
	tc := newTestCluster(t, parts, nil)
	tc.nats = own
	tc.startMembers(3)
	cs := campaigns(30)
	pub := tc.newPublisher()
	for round := range 6 {
		for i, c := range cs {
			if !pub.publish(c, 1+(i+round)%3) {
				t.Fatal("publish not acknowledged")
			}
		}
		if round == 2 {
			i := own.streamLeader(t, tc.stream)
			t0 := time.Now()
			own.stopServer(i)
			t.Logf("NATS node n%d, the stream's leader, stopped in %s", i, time.Since(t0).Round(time.Millisecond))
		}
	}
	t.Logf("published and acknowledged: %d events", pub.total())
	tc.waitCounted(pub.total(), 60*time.Second)
	tc.checkRates(pub)
	t.Log("every acknowledged event counted once")
}

// TestClusterReadToken: with --read-token, a member's own read routes ask
// for it, as a single instance's do; the bid routes stay open.
func TestClusterReadToken(t *testing.T) {
	tc := newTestCluster(t, 4, func(o *Options) { o.Unit.ReadToken = "read-secret" })
	n := tc.start("m0")
	tc.waitStable(1, 30*time.Second)
	for _, path := range []string{"/v1/stats", "/v1/cluster", "/metrics", "/v1/rates?campaign=c1"} {
		if code, b := do(t, n, "GET", path, "", ""); code != 401 {
			t.Fatalf("GET %s without the read token: %d %s; want 401", path, code, b)
		}
		if code, b := do(t, n, "GET", path, "read-secret", ""); code != 200 {
			t.Fatalf("GET %s with the read token: %d %s; want 200", path, code, b)
		}
		if code, b := do(t, n, "GET", path, "admin-secret", ""); code != 200 {
			t.Fatalf("GET %s with an admin token: %d %s; want 200", path, code, b)
		}
	}
	if code, b := do(t, n, "GET", "/v1/multiplier?campaign=c1", "", ""); code != 200 {
		t.Fatalf("bid without a token: %d %s; want 200", code, b)
	}
}

// TestClusterFrontDoorLimits: a member's API refuses what a single
// instance's refuses, with the same JSON answers and counters: a header
// block past the limit, a body past the route's, more connections from one
// address than allowed.
func TestClusterFrontDoorLimits(t *testing.T) {
	tc := newTestCluster(t, 4, func(o *Options) { o.Unit.HTTPMaxConnsPerIP = 2 })
	n := tc.start("m0")
	tc.waitStable(1, 30*time.Second)
	big := strings.Repeat("x", 20<<10)
	code, b := do(t, n, "GET", "/v1/multiplier?campaign=c1&placement="+big, "", "")
	if code != 431 || !strings.Contains(string(b), `"error"`) {
		t.Fatalf("a 20 KiB query: %d %s; want a JSON 431", code, b)
	}
	// Refused from its header, before the body is read.
	c, err := net.Dial("tcp", n.HTTPAddr())
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(c, "POST /v1/multipliers HTTP/1.1\r\nHost: m0\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", 1300000)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	var buf [512]byte
	k, _ := c.Read(buf[:])
	c.Close()
	if !strings.HasPrefix(string(buf[:k]), "HTTP/1.1 413") {
		t.Fatalf("a 1.3 MB batch announced: %q; want 413", buf[:k])
	}
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	refused := false
	for range 4 {
		c, err := net.Dial("tcp", n.HTTPAddr())
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		var buf [512]byte
		if k, _ := c.Read(buf[:]); k > 0 && strings.Contains(string(buf[:k]), "429") {
			refused = true
		}
	}
	if !refused {
		t.Fatal("4 connections from one address with a cap of 2: none refused")
	}
	for _, c := range conns {
		c.Close()
	}
	conns = nil
	// Until the member has counted the closed connections out: a new one
	// meanwhile is refused with a 429 written before any request, which
	// an HTTP client reads as an error, not as an answer.
	var m []byte
	hc := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 5 * time.Second}
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		resp, err := hc.Get("http://" + n.HTTPAddr() + "/metrics")
		if err != nil {
			continue
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == 200 {
			m = b
			break
		}
	}
	for _, want := range []string{`bidpulse_http_connections_refused_total{reason="per_ip"}`, `bidpulse_http_requests_refused_total{reason="headers_too_large"}`} {
		if !strings.Contains(string(m), want) {
			t.Fatalf("/metrics has no %s", want)
		}
	}
}

// TestClusterOpenRTB: an OpenRTB request whose candidates' campaigns live
// in several partitions is answered by every member, each candidate as
// GET /v1/multiplier answers its campaign and placement; format=prebid is
// answered for one partition and refused for several.
func TestClusterOpenRTB(t *testing.T) {
	const parts = 8
	tc := newTestCluster(t, parts, nil)
	tc.startMembers(3)
	pub := tc.newPublisher()
	cs := campaigns(8)
	for i, c := range cs {
		if !pub.publish(c, 5+i) {
			t.Fatal("publish not acknowledged")
		}
	}
	tc.waitCounted(pub.total(), 30*time.Second)
	owners := map[uint32]bool{}
	for _, c := range cs {
		owners[partition.OfString(parts, c)] = true
	}
	if len(owners) < 2 {
		t.Fatalf("the campaigns are in %d partition(s); the test needs several", len(owners))
	}
	body := `{"id":"a1","imp":[
		{"id":"1","tagid":"p1","ext":{"bidpulse":{"candidates":[{"campaign":"c0"},{"campaign":"c1"},{"campaign":"c2"},{"campaign":"c3"}]}}},
		{"id":"2","tagid":"p2"}],
		"ext":{"bidpulse":{"candidates":[{"campaign":"c7"},{"campaign":"c4"},{"campaign":"c5"},{"campaign":"c6"}]}}}`
	want := func(n *Node, campaign, placement string) (float64, string) {
		_, a := get(t, n, "/v1/multiplier?campaign="+campaign+"&placement="+placement)
		return a["multiplier"].(float64), a["level"].(string)
	}
	for name, n := range tc.members {
		code, b := do(t, n, "POST", "/v1/openrtb/multipliers", "", body)
		if code != 200 {
			t.Fatalf("OpenRTB at %s: %d %s", name, code, b)
		}
		var ans struct {
			Imp []struct {
				ID         string           `json:"id"`
				Candidates []map[string]any `json:"candidates"`
			} `json:"imp"`
		}
		if err := json.Unmarshal(b, &ans); err != nil {
			t.Fatal(err)
		}
		placements := []string{"p1", "p2"}
		sizes := []int{4, 4}
		if len(ans.Imp) != 2 {
			t.Fatalf("OpenRTB at %s: %d impressions; want 2: %s", name, len(ans.Imp), b)
		}
		for i, imp := range ans.Imp {
			if len(imp.Candidates) != sizes[i] {
				t.Fatalf("OpenRTB at %s: imp %d has %d candidates: %s", name, i, len(imp.Candidates), b)
			}
			for _, c := range imp.Candidates {
				campaign := c["campaign"].(string)
				m, level := want(n, campaign, placements[i])
				if c["multiplier"].(float64) != m || c["level"].(string) != level || c["neutral"] != nil {
					t.Fatalf("OpenRTB at %s: %s on %s answered %v; GET answers %v at %s", name, campaign, placements[i], c, m, level)
				}
				if level == "none" {
					t.Fatalf("OpenRTB at %s: %s on %s has no data: the test sent some", name, campaign, placements[i])
				}
			}
		}
	}
	// format=prebid: several partitions refused, one answered.
	prebid := `{"id":"a2","imp":[{"id":"1","tagid":"p1","banner":{"w":300,"h":250}}],"ext":{"bidpulse":{"candidates":[%s]}}}`
	n := tc.members["m0"]
	code, b := do(t, n, "POST", "/v1/openrtb/multipliers?format=prebid", "", fmt.Sprintf(prebid, `{"campaign":"c0","bidder":"b0"},{"campaign":"c1","bidder":"b1"},{"campaign":"c2","bidder":"b2"},{"campaign":"c3","bidder":"b3"}`))
	if code != 501 {
		t.Fatalf("format=prebid over several partitions: %d %s; want 501", code, b)
	}
	for _, c := range cs {
		code, b = do(t, n, "POST", "/v1/openrtb/multipliers?format=prebid", "", fmt.Sprintf(prebid, `{"campaign":"`+c+`","bidder":"b0"}`))
		if code != 200 || !strings.Contains(string(b), "bidadjustments") {
			t.Fatalf("format=prebid of %s alone: %d %s", c, code, b)
		}
	}
	// A request the owners refuse is refused as a single instance does.
	if code, b = do(t, n, "POST", "/v1/openrtb/multipliers", "", `{"id":"x","imp":[]}`); code != 400 {
		t.Fatalf("no impressions: %d %s; want 400", code, b)
	}
}

// TestClusterReload: a member's Reload (SIGHUP) applies the new policies
// to each of its units, and to the units it starts after it; a config that
// changes the rollups is refused and the running one stays.
func TestClusterReload(t *testing.T) {
	const parts = 4
	tc := newTestCluster(t, parts, nil)
	tc.startMembers(2)
	cs := campaigns(8)
	pub := tc.newPublisher()
	for _, c := range cs {
		if !pub.publish(c, 3) {
			t.Fatal("publish not acknowledged")
		}
	}
	tc.waitCounted(pub.total(), 30*time.Second)
	dir := t.TempDir()
	load := func(name, yaml string) bidder.Config {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
			t.Fatal(err)
		}
		cfg, err := bidder.LoadConfig(path)
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	halve := load("halve.yaml", "policies:\n  default:\n    modifiers: {device: {mobile: 0.5}}\n")
	for _, name := range []string{"m0", "m1"} {
		if err := tc.members[name].Reload(halve); err != nil {
			t.Fatalf("reload of %s: %v", name, err)
		}
	}
	check := func(when string) {
		t.Helper()
		for name, n := range tc.members {
			for _, c := range cs {
				_, m := get(t, n, "/v1/multiplier?campaign="+c+"&device=mobile")
				if m["multiplier"] != 0.5 {
					t.Fatalf("%s: %s answers %s on mobile %v; want 0.5", when, name, c, m)
				}
			}
		}
	}
	check("after the reload")
	bad := load("bad.yaml", "rollups: [campaign]\n")
	if err := tc.members["m0"].Reload(bad); err == nil || !strings.Contains(err.Error(), "restart") {
		t.Fatalf("a rollup change must be refused; got %v", err)
	}
	check("after a refused reload")
	// m0 takes m1's partitions: its new units start with the reloaded
	// policies.
	tc.stop("m1")
	tc.waitStable(1, 30*time.Second)
	check("after m0 took every partition")
}

// TestClusterSnapshot: GET /v1/snapshot without a campaign on a member
// answers the top keys of the partitions it serves, merged from its units
// in the query's order; the members' answers together are every key once.
func TestClusterSnapshot(t *testing.T) {
	const parts = 4
	tc := newTestCluster(t, parts, nil)
	tc.startMembers(2)
	cs := campaigns(10)
	pub := tc.newPublisher()
	for i, c := range cs {
		if !pub.publish(c, 1+i) {
			t.Fatal("publish not acknowledged")
		}
	}
	tc.waitCounted(pub.total(), 30*time.Second)
	seen := map[string]int{}
	for name, n := range tc.members {
		code, b := do(t, n, "GET", "/v1/snapshot?level=campaign&sort=impressions&limit=1000", "", "")
		var a struct {
			Sort       string   `json:"sort"`
			Member     string   `json:"member"`
			Partitions []uint32 `json:"partitions"`
			Keys       []struct {
				Key         map[string]string `json:"key"`
				Impressions int               `json:"impressions"`
			} `json:"keys"`
		}
		if code != 200 || json.Unmarshal(b, &a) != nil || a.Member != name || a.Sort != "impressions" {
			t.Fatalf("snapshot of %s: %d %s", name, code, b)
		}
		for i, k := range a.Keys {
			c := k.Key["campaign"]
			if !slices.Contains(a.Partitions, partition.OfString(parts, c)) {
				t.Fatalf("%s answers %s, of a partition it does not serve (%v)", name, c, a.Partitions)
			}
			if k.Impressions != pub.sent[c] {
				t.Fatalf("%s: %s has %d impressions; %d were sent", name, c, k.Impressions, pub.sent[c])
			}
			if i > 0 && a.Keys[i-1].Impressions < k.Impressions {
				t.Fatalf("%s: keys not in impressions order: %s", name, b)
			}
			seen[c]++
		}
		// The limit cuts the merged answer.
		code, b = do(t, n, "GET", "/v1/snapshot?level=campaign&sort=impressions&limit=2", "", "")
		var top struct {
			Keys []struct {
				Key map[string]string `json:"key"`
			} `json:"keys"`
		}
		if code != 200 || json.Unmarshal(b, &top) != nil || len(top.Keys) != min(2, len(a.Keys)) ||
			len(a.Keys) > 0 && top.Keys[0].Key["campaign"] != a.Keys[0].Key["campaign"] {
			t.Fatalf("snapshot of %s, limit 2: %d %s", name, code, b)
		}
		if code, b := do(t, n, "GET", "/v1/snapshot?sort=nope", "", ""); code != 400 || !strings.Contains(string(b), "unknown sort") {
			t.Fatalf("a bad sort on %s: %d %s", name, code, b)
		}
	}
	for _, c := range cs {
		if seen[c] != 1 {
			t.Fatalf("campaign %s answered by %d members; want 1 (%v)", c, seen[c], seen)
		}
	}
}
