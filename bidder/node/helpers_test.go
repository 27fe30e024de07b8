package node

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	natstest "github.com/nats-io/nats-server/v2/test"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/bidpulse/bidpulse/bidder"
	"github.com/bidpulse/bidpulse/bidder/partition"
)

// testNow is the units' clock: the events are a minute older.
const testNow = int64(1767323045000)

// natsCluster is the package's 3-node JetStream cluster on loopback, shared
// by the tests (each uses its own stream and membership bucket).
type natsCluster struct {
	mu      sync.Mutex
	servers []*server.Server
	opts    []*server.Options
	url     string
}

var cluster3 *natsCluster

// runs numbers the test clusters of this process.
var runs atomic.Int32

func TestMain(m *testing.M) {
	c, err := startNATSCluster()
	if err != nil {
		fmt.Fprintln(os.Stderr, "cannot start the 3-node NATS cluster:", err)
		os.Exit(1)
	}
	cluster3 = c
	code := m.Run()
	c.shutdown()
	os.Exit(code)
}

// freePort returns a free loopback TCP port.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// startNATSCluster starts three JetStream servers routed to each other
// (nats-server's test.RunServer), and waits until JetStream answers with a
// meta leader, polling with short per-attempt deadlines.
func startNATSCluster() (*natsCluster, error) {
	c := &natsCluster{}
	var routes []string
	ports := make([]int, 3)
	for i := range ports {
		p, err := freePort()
		if err != nil {
			return nil, err
		}
		ports[i] = p
		routes = append(routes, "nats-route://127.0.0.1:"+strconv.Itoa(p))
	}
	var urls []string
	for i := range 3 {
		dir, err := os.MkdirTemp("", "bidpulse-node-js")
		if err != nil {
			return nil, err
		}
		o := natstest.DefaultTestOptions
		o.Port = -1
		o.ServerName = "n" + strconv.Itoa(i)
		o.JetStream = true
		o.StoreDir = dir
		o.Cluster.Name = "bidpulse-test"
		o.Cluster.Host = "127.0.0.1"
		o.Cluster.Port = ports[i]
		o.Routes = server.RoutesFromStr(strings.Join(routes, ","))
		o.MaxPayload = 8 << 20
		o.NoLog, o.NoSigs = true, true
		s := natstest.RunServer(&o)
		c.servers = append(c.servers, s)
		c.opts = append(c.opts, &o)
		urls = append(urls, s.ClientURL())
	}
	c.url = strings.Join(urls, ",")
	nc, err := nats.Connect(c.url)
	if err != nil {
		return nil, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		_, err := js.AccountInfo(ctx)
		cancel()
		if err == nil {
			return c, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("no JetStream meta leader after 30s: %w", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (c *natsCluster) shutdown() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, s := range c.servers {
		if s != nil {
			s.Shutdown()
			s.WaitForShutdown()
		}
		os.RemoveAll(c.opts[i].StoreDir)
	}
}

// testLogger discards the logs, or writes them to stderr when
// BIDPULSE_TEST_LOG is set (a failing test's story).
func testLogger(member string) zerolog.Logger {
	if os.Getenv("BIDPULSE_TEST_LOG") == "" {
		return zerolog.New(io.Discard)
	}
	return zerolog.New(zerolog.ConsoleWriter{Out: os.Stderr, TimeFormat: "04:05.000", NoColor: true}).With().Timestamp().Str("m", member).Logger()
}

// testCluster is one test's members over cluster3.
type testCluster struct {
	t       *testing.T
	stream  string
	base    string // the events' base subject: streams may not overlap
	root    string // the members' data dirs are in it
	nats    *natsCluster
	bucket  string
	parts   uint32
	clock   *bidder.ManualClock
	members map[string]*Node
	dirs    map[string]string
	edit    func(o *Options)
}

// newTestCluster returns a test's cluster of no members yet, over its own
// stream and membership bucket.
func newTestCluster(t *testing.T, parts uint32, edit func(o *Options)) *testCluster {
	// Unique per run (-count): the cluster, its buckets and the
	// checkpoints kept in it outlive a test.
	// First: removed after the members stopped (cleanups run last first).
	root := t.TempDir()
	run := strconv.Itoa(int(runs.Add(1)))
	name := strings.ToUpper(strings.NewReplacer("/", "_", "-", "_").Replace(t.Name())) + "_" + run
	tc := &testCluster{t: t, stream: "BP_" + name, base: "bp" + run + ".events", bucket: "bp_members_" + strings.ToLower(name), parts: parts,
		clock: bidder.NewManualClock(testNow), members: map[string]*Node{}, dirs: map[string]string{}, edit: edit, root: root, nats: cluster3}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		var wg sync.WaitGroup
		for _, n := range tc.members {
			wg.Add(1)
			go func() { defer wg.Done(); _ = n.Stop(ctx) }()
		}
		wg.Wait()
	})
	return tc
}

// options returns member name's options.
func (tc *testCluster) options(name string) Options {
	dir, ok := tc.dirs[name]
	if !ok {
		dir = filepath.Join(tc.root, name)
		tc.dirs[name] = dir
	}
	o := Options{
		Member:   name,
		HTTPAddr: "127.0.0.1:0",
		Bucket:   tc.bucket,
		LeaseTTL: 2 * time.Second,
		// The members of a test start one after the other.
		InitialSettle: -1,
		// Forwarding crosses the test process's own connections; under
		// the race detector an answer can take milliseconds.
		ForwardTimeout: 2 * time.Second,
		Unit: bidder.Options{
			NATSURL: tc.nats.url,
			DataDir: dir,
			Stream:  tc.stream,
			Subject: tc.base + ".>",
			// JetStream reserves a stream's MaxBytes on every replica's
			// server: the tests' streams share one cluster.
			StreamMaxBytes:           256 << 20,
			Partitions:               tc.parts,
			Replicas:                 3,
			Clock:                    tc.clock,
			Logger:                   testLogger(name),
			DedupSize:                32 << 20,
			CheckpointInterval:       200 * time.Millisecond,
			RemoteCheckpointInterval: 300 * time.Millisecond,
			AdminToken:               "admin-secret",
			ControlKey:               "cluster-test-control-key",
			ShutdownTimeout:          10 * time.Second,
		},
	}
	if tc.edit != nil {
		tc.edit(&o)
	}
	return o
}

// start starts member name (again, with its data dir, after a stop).
func (tc *testCluster) start(name string) *Node {
	tc.t.Helper()
	n, err := New(tc.options(name))
	if err != nil {
		tc.t.Fatal(err)
	}
	if err := n.Start(); err != nil {
		tc.t.Fatal(err)
	}
	tc.members[name] = n
	return n
}

// startMembers starts members m0..m(k-1) and waits until they serve every
// partition between them.
func (tc *testCluster) startMembers(k int) {
	tc.t.Helper()
	for i := range k {
		tc.start("m" + strconv.Itoa(i))
	}
	tc.waitStable(k, 30*time.Second)
}

// stop stops member name gracefully.
func (tc *testCluster) stop(name string) {
	tc.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := tc.members[name].Stop(ctx); err != nil {
		tc.t.Fatalf("stop %s: %v", name, err)
	}
	delete(tc.members, name)
}

// kill stops member name as a crash would.
func (tc *testCluster) kill(name string) {
	tc.members[name].Kill()
	delete(tc.members, name)
}

// waitStable waits until every member is ready and they all see the same
// members, the given number, and serve disjoint partitions covering all.
func (tc *testCluster) waitStable(members int, within time.Duration) {
	tc.t.Helper()
	deadline := time.Now().Add(within)
	var why string
	for time.Now().Before(deadline) {
		why = tc.stableWhy(members)
		if why == "" {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	tc.t.Fatalf("cluster not stable after %s: %s", within, why)
}

func (tc *testCluster) stableWhy(members int) string {
	served := make([][]string, tc.parts)
	want := 1
	for name, n := range tc.members {
		want = min(n.opts.Replicas, members)
		if ok, why := n.isReady(); !ok {
			return name + " not ready: " + why
		}
		v := n.view.Load()
		if len(v.members) != members {
			return fmt.Sprintf("%s sees %d members", name, len(v.members))
		}
		for p, u := range *n.serving.Load() {
			if u == nil {
				continue
			}
			served[p] = append(served[p], name)
		}
		n.mu.Lock()
		k := len(n.units)
		n.mu.Unlock()
		if k != len(n.owned()) {
			return fmt.Sprintf("%s has %d units for %d owned partitions", name, k, len(n.owned()))
		}
	}
	for p, s := range served {
		if len(s) != want {
			return fmt.Sprintf("partition %d served by %v, want %d members", p, s, want)
		}
	}
	return ""
}

// counted returns the events counted by all members' primary units (a
// replica counts its primary's events again).
func (tc *testCluster) counted() uint64 {
	var sum uint64
	for _, n := range tc.members {
		for _, u := range n.unitReports() {
			if u.Role == "primary" {
				sum += u.Counted
			}
		}
	}
	return sum
}

// waitCounted waits until the members' units have counted want events in
// all and stay there (a double count would pass it).
func (tc *testCluster) waitCounted(want uint64, within time.Duration) {
	tc.t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		if tc.counted() == want && tc.stableWhy(len(tc.members)) == "" {
			time.Sleep(300 * time.Millisecond)
			if got := tc.counted(); got != want {
				tc.t.Fatalf("counted moved past the events sent: %d, want %d", got, want)
			}
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	tc.t.Fatalf("counted %d events after %s; want %d (%s)", tc.counted(), within, want, tc.stableWhy(len(tc.members)))
}

// get does GET path on member n and returns the status and decoded body.
func get(t *testing.T, n *Node, path string) (int, map[string]any) {
	t.Helper()
	code, b := do(t, n, "GET", path, "", "")
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("GET %s: not a JSON object: %s", path, b)
	}
	return code, m
}

var httpClient = &http.Client{Timeout: 10 * time.Second}

// do sends one request to member n.
func do(t *testing.T, n *Node, method, path, token, body string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+n.HTTPAddr()+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, b
}

// publisher publishes events to the test's stream, acknowledged.
type publisher struct {
	t    *testing.T
	nc   *nats.Conn
	js   jetstream.JetStream
	base string
	sent map[string]int
	// byPlacement is the impressions acknowledged per campaign and placement.
	byPlacement map[[2]string]int // impressions acknowledged per campaign
	n           int
}

func (tc *testCluster) newPublisher() *publisher {
	t := tc.t
	nc, err := nats.Connect(tc.nats.url, nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return &publisher{t: t, nc: nc, js: js, base: tc.base, sent: map[string]int{}, byPlacement: map[[2]string]int{}}
}

// publish sends a batch of k impressions of campaign (placements p0..p2),
// retrying until acknowledged (a NATS node may be down) for 30s; it
// returns false if it never was.
func (p *publisher) publish(campaign string, k int) bool {
	var b strings.Builder
	b.WriteByte('[')
	for i := range k {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"id":"%s-%d-%d","type":"impression","campaign":%q,"placement":"p%d","ts":%d}`,
			campaign, p.n, i, campaign, i%3, testNow-60_000)
	}
	b.WriteByte(']')
	m := &nats.Msg{Subject: p.base + "." + campaign + ".t", Data: []byte(b.String()), Header: nats.Header{}}
	m.Header.Set(jetstream.MsgIDHeader, fmt.Sprintf("%s-%d", campaign, p.n))
	p.n++
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err := p.js.PublishMsg(ctx, m)
		cancel()
		if err == nil {
			p.sent[campaign] += k
			for i := range k {
				p.byPlacement[[2]string{campaign, "p" + strconv.Itoa(i%3)}]++
			}
			return true
		}
		time.Sleep(50 * time.Millisecond)
	}
	return false
}

// total is the impressions acknowledged.
func (p *publisher) total() uint64 {
	var s uint64
	for _, k := range p.sent {
		s += uint64(k)
	}
	return s
}

// checkRates asks each campaign's and each campaign/placement's 1h
// impressions of the member that owns it and compares them with what was
// acknowledged: key by key, what a single instance given the same events
// would answer.
func (tc *testCluster) checkRates(pub *publisher) {
	tc.t.Helper()
	sent := pub.sent
	for key, want := range pub.byPlacement {
		n := tc.members[tc.ownerName(key[0])]
		code, m := get(tc.t, n, "/v1/rates?campaign="+key[0]+"&placement="+key[1])
		if code != 200 {
			tc.t.Fatalf("rates of %v at its owner: %d %v", key, code, m)
		}
		if got := m["windows"].(map[string]any)["1h"].(map[string]any)["impressions"].(float64); int(got) != want {
			tc.t.Fatalf("impressions of %v at its owner: %v; want %d", key, got, want)
		}
	}
	for campaign, want := range sent {
		answered := 0
		for _, n := range tc.members {
			code, m := get(tc.t, n, "/v1/rates?campaign="+campaign)
			if code == 421 {
				continue
			}
			if code != 200 {
				tc.t.Fatalf("rates of %s: %d %v", campaign, code, m)
			}
			got := m["windows"].(map[string]any)["1h"].(map[string]any)["impressions"].(float64)
			if int(got) != want {
				tc.t.Fatalf("impressions of %s at its owner: %v; want %d", campaign, got, want)
			}
			answered++
		}
		if answered != 1 {
			tc.t.Fatalf("%d members hold campaign %s; want 1", answered, campaign)
		}
	}
}

// streamLeader returns the index of the server leading stream.
func (c *natsCluster) streamLeader(t *testing.T, stream string) int {
	t.Helper()
	nc, err := nats.Connect(c.url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, stream)
	if err != nil {
		t.Fatal(err)
	}
	leader := st.CachedInfo().Cluster.Leader
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, s := range c.servers {
		if s != nil && s.Name() == leader {
			return i
		}
	}
	t.Fatalf("stream %s's leader %q is none of the servers", stream, leader)
	return -1
}

// stopServer shuts server i down, its store kept.
func (c *natsCluster) stopServer(i int) {
	c.mu.Lock()
	s := c.servers[i]
	c.servers[i] = nil
	c.mu.Unlock()
	s.Shutdown()
	s.WaitForShutdown()
}

// ownerName returns the member that owns campaign, as the members see it.
func (tc *testCluster) ownerName(campaign string) string {
	tc.t.Helper()
	for _, n := range tc.members {
		owner, _ := n.ownerOf(partition.OfString(tc.parts, campaign))
		return owner
	}
	tc.t.Fatal("no member")
	return ""
}
