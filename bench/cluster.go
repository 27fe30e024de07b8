package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/valyala/fasthttp"

	"github.com/bidpulse/bidpulse/bidder/partition"
)

// ScenarioCluster: bidpulse cluster members (`serve --cluster`, child processes) over a
// 3-node NATS JetStream cluster started in the bench's process, on this machine. It measures
// ingest per member CPU-second with 1 member and with Members, the latency of a bid answered
// by the member asked against one forwarded to its partition's owner, and the time from a
// member's death (SIGKILL) to every partition served by the others. RunCluster runs it.
const ScenarioCluster = "cluster"

// ClusterOptions configure RunCluster. Zero values take the defaults noted.
type ClusterOptions struct {
	// Exe is the bidpulse binary (default: the running executable).
	Exe string
	// Members is the member count of the scaled run (default 3).
	Members int
	// Partitions is the stream's --partitions (default 16).
	Partitions uint32
	// Events is how many events each ingest run applies (default 400,000), in batches of
	// 500 events of one campaign over Campaigns campaigns (default 200), each campaign over
	// 1,000 placements (up to 200,000 campaign/placement keys).
	Events    int
	Campaigns int
	// Bids is how many bids of each kind, local and forwarded, the latency run asks, one at
	// a time (default 20,000).
	Bids int
	// LeaseTTL is the members' --lease-ttl (default 3s): what a member's death costs before
	// the others see it gone.
	LeaseTTL time.Duration
	// ForwardTimeout is the members' --forward-timeout (default: serve's).
	ForwardTimeout time.Duration
	// Replicas is the members' --replicas, R (default 1): with 2, a dead member's partitions
	// are answered by their replicas while their new primaries start.
	Replicas int
	// Keep keeps the temporary directory (NATS stores, data dirs, logs).
	Keep bool
}

// ClusterReport is what RunCluster measured.
type ClusterReport struct {
	Scenario   string    `json:"scenario"`
	Started    time.Time `json:"started"`
	CPU        string    `json:"cpu"`
	Cores      int       `json:"cores"`
	Partitions uint32    `json:"partitions"`
	Events     int       `json:"events"`
	LeaseTTL   string    `json:"lease_ttl"`
	Replicas   int       `json:"replicas"`
	// Ingest has one run per member count (1, then Members).
	Ingest []ClusterIngest `json:"ingest"`
	// PerCoreRatio is the scaled run's events per member CPU-second over the single
	// member's (aim: at least 0.8).
	PerCoreRatio float64 `json:"per_core_ratio"`
	// Bids are the latency of bids asked to member 0, by where they were answered.
	Local     LatencySummary `json:"local"`
	Forwarded LatencySummary `json:"forwarded"`
	// ForwardP99OverheadMs is forwarded p99 minus local p99 (aim: at most 0.5 ms).
	ForwardP99OverheadMs float64 `json:"forward_p99_overhead_ms"`
	Neutral              int     `json:"neutral"`
	// Checkpoints are the partitions' last checkpoints in the scaled run, written after
	// the backlog was applied.
	Checkpoints ClusterCheckpoints `json:"checkpoints"`
	// Failover is the death of the last member: how many partitions it held and how long
	// until the others served them all; CountedAfter is the events the survivors counted
	// (Events: nothing lost, nothing twice).
	Failover ClusterFailover `json:"failover"`
}

// ClusterIngest is one ingest run.
type ClusterIngest struct {
	Members int `json:"members"`
	// Seconds from the first publish to every event counted; CPUSeconds the members' CPU
	// time over the same span (user + system, /proc).
	// StartCPUSeconds is the members' CPU before the first event was counted (their start).
	Seconds         float64 `json:"seconds"`
	CPUSeconds      float64 `json:"cpu_seconds"`
	StartCPUSeconds float64 `json:"start_cpu_seconds"`
	EventsPerS      float64 `json:"events_per_s"`
	EventsPerCS     float64 `json:"events_per_cpu_s"`
	Counted         uint64  `json:"counted"`
}

// LatencySummary are latency quantiles in milliseconds.
type LatencySummary struct {
	N     int     `json:"n"`
	P50   float64 `json:"p50_ms"`
	P99   float64 `json:"p99_ms"`
	P999  float64 `json:"p999_ms"`
	Max   float64 `json:"max_ms"`
	Mean  float64 `json:"mean_ms"`
	Total float64 `json:"-"`
}

// ClusterCheckpoints summarise the partitions' checkpoints.
type ClusterCheckpoints struct {
	Partitions  int     `json:"partitions"`
	Keys        int     `json:"keys"`
	MeanBytes   float64 `json:"mean_bytes"`
	MaxBytes    int64   `json:"max_bytes"`
	BytesPerKey float64 `json:"bytes_per_key"`
	MaxWriteMs  int64   `json:"max_write_ms"`
	MeanWriteMs float64 `json:"mean_write_ms"`
}

// checkpoints waits for a checkpoint written after the backlog in every partition and
// summarises them.
func (r *clusterRun) checkpoints(rep *ClusterReport) error {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		var c ClusterCheckpoints
		complete := true
		for _, m := range r.members {
			_, body, err := getBody(m.hc, "/v1/stats", time.Second)
			if err != nil {
				return err
			}
			var v struct {
				Units []struct {
					Role              string `json:"role"`
					AppliedSeq        uint64 `json:"applied_seq"`
					CheckpointSeq     uint64 `json:"checkpoint_seq"`
					Keys              int    `json:"keys"`
					CheckpointBytes   int64  `json:"checkpoint_bytes"`
					CheckpointWriteMs int64  `json:"checkpoint_write_ms"`
				} `json:"units"`
			}
			if err := json.Unmarshal(body, &v); err != nil {
				return err
			}
			for _, u := range v.Units {
				if u.Role == "replica" {
					continue // it writes none: it starts from its primary's
				}
				if u.CheckpointSeq != u.AppliedSeq || u.CheckpointBytes == 0 {
					complete = false
				}
				c.Partitions++
				c.Keys += u.Keys
				c.MeanBytes += float64(u.CheckpointBytes)
				c.MaxBytes = max(c.MaxBytes, u.CheckpointBytes)
				c.MeanWriteMs += float64(u.CheckpointWriteMs)
				c.MaxWriteMs = max(c.MaxWriteMs, u.CheckpointWriteMs)
			}
		}
		if complete && c.Partitions == int(r.o.Partitions) {
			total := c.MeanBytes
			c.MeanBytes /= float64(c.Partitions)
			c.MeanWriteMs /= float64(c.Partitions)
			if c.Keys > 0 {
				c.BytesPerKey = total / float64(c.Keys)
			}
			rep.Checkpoints = c
			return nil
		}
		time.Sleep(200 * time.Millisecond)
	}
	return errors.New("no checkpoint of every partition after the backlog within 30s")
}

// ClusterFailover is the death of a member.
type ClusterFailover struct {
	Member       string  `json:"member"`
	Partitions   int     `json:"partitions"`
	Seconds      float64 `json:"seconds"`
	CountedAfter uint64  `json:"counted_after"`
	// Bids were asked through member 0 from the kill until every partition was owned
	// again, NeutralBids of them answered neutrally (no owner answered in time).
	Bids        int `json:"bids"`
	NeutralBids int `json:"neutral_bids"`
}

func (o *ClusterOptions) defaults() error {
	if o.Members == 0 {
		o.Members = 3
	}
	if o.Members < 2 {
		return fmt.Errorf("the cluster scenario needs at least 2 members, not %d", o.Members)
	}
	if o.Partitions == 0 {
		o.Partitions = 16
	}
	if o.Events == 0 {
		o.Events = 400_000
	}
	if o.Campaigns == 0 {
		o.Campaigns = 200
	}
	if o.Bids == 0 {
		o.Bids = 20_000
	}
	if o.Replicas == 0 {
		o.Replicas = 1
	}
	if o.LeaseTTL == 0 {
		o.LeaseTTL = 3 * time.Second
	}
	if o.Exe == "" {
		exe, err := os.Executable()
		if err != nil {
			return err
		}
		o.Exe = exe
	}
	return nil
}

// natsTrio is the bench's 3-node NATS cluster.
type natsTrio struct {
	servers []*server.Server
	url     string
}

func startNATSTrio(dir string) (*natsTrio, error) {
	ports := make([]int, 3)
	var routeURLs []string
	for i := range ports {
		p, err := freePort()
		if err != nil {
			return nil, err
		}
		ports[i] = p
		routeURLs = append(routeURLs, "nats-route://127.0.0.1:"+strconv.Itoa(p))
	}
	t := &natsTrio{}
	var urls []string
	for i := range 3 {
		o := &server.Options{
			ServerName: "n" + strconv.Itoa(i), Host: "127.0.0.1", Port: -1,
			JetStream: true, StoreDir: filepath.Join(dir, "nats"+strconv.Itoa(i)),
			MaxPayload: 8 << 20, NoSigs: true, NoLog: true,
		}
		o.Cluster.Name = "bidpulse-bench"
		o.Cluster.Host = "127.0.0.1"
		o.Cluster.Port = ports[i]
		o.Routes = server.RoutesFromStr(strings.Join(routeURLs, ","))
		s, err := server.NewServer(o)
		if err != nil {
			t.stop()
			return nil, err
		}
		s.Start()
		if !s.ReadyForConnections(10 * time.Second) {
			t.stop()
			return nil, errors.New("a NATS node was not ready in 10s")
		}
		t.servers = append(t.servers, s)
		urls = append(urls, s.ClientURL())
	}
	t.url = strings.Join(urls, ",")
	nc, err := nats.Connect(t.url)
	if err != nil {
		t.stop()
		return nil, err
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	for deadline := time.Now().Add(30 * time.Second); ; {
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		_, err := js.AccountInfo(ctx)
		cancel()
		if err == nil {
			return t, nil
		}
		if time.Now().After(deadline) {
			t.stop()
			return nil, fmt.Errorf("the NATS cluster has no JetStream leader after 30s: %w", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (t *natsTrio) stop() {
	for _, s := range t.servers {
		s.Shutdown()
		s.WaitForShutdown()
	}
}

// member is one `bidpulse serve --cluster` child.
type member struct {
	*child
	name string
	addr string
	hc   *fasthttp.HostClient
}

// serving returns the partitions the member serves (GET /v1/cluster).
func (m *member) serving() ([]uint32, error) {
	code, body, err := getBody(m.hc, "/v1/cluster", time.Second)
	if err != nil {
		return nil, err
	}
	if code != 200 {
		return nil, fmt.Errorf("GET /v1/cluster: %d %.200s", code, body)
	}
	var v struct {
		Serving []uint32 `json:"serving"`
	}
	if err := json.Unmarshal(body, &v); err != nil {
		return nil, err
	}
	return v.Serving, nil
}

// clusterRun is one set of members over one stream.
type clusterRun struct {
	o       *ClusterOptions
	dir     string
	url     string
	stream  string
	base    string
	bucket  string
	members []*member
}

func (r *clusterRun) startMember(i int) (*member, error) {
	name := "m" + strconv.Itoa(i)
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	args := []string{r.o.Exe, "serve", "--cluster", "--partitions", strconv.FormatUint(uint64(r.o.Partitions), 10),
		"--nats-url", r.url, "--nats-replicas", "3", "--jetstream=true", "--stream", r.stream, "--subject", r.base + ".>",
		"--cluster-bucket", r.bucket, "--instance", name, "--http-addr", addr,
		"--data-dir", filepath.Join(r.dir, name), "--lease-ttl", r.o.LeaseTTL.String(), "--log-format", "json",
		"--control-key-file", filepath.Join(r.dir, "control.key"),
		// Checkpoints often enough to be measured within the run.
		"--checkpoint-interval", "2s", "--remote-checkpoint-interval", "4s"}
	if r.o.ForwardTimeout > 0 {
		args = append(args, "--forward-timeout", r.o.ForwardTimeout.String())
	}
	if r.o.Replicas > 1 {
		args = append(args, "--replicas", strconv.Itoa(r.o.Replicas))
	}
	m := &member{child: &child{name: "member " + name, argv: args, logPath: filepath.Join(r.dir, name+".log"), gc: &gcStats{}},
		name: name, addr: addr, hc: &fasthttp.HostClient{Addr: addr, MaxConns: 4}}
	if err := m.start(); err != nil {
		return nil, err
	}
	r.members = append(r.members, m)
	return m, nil
}

// waitStable waits until every member is ready and the members serve all partitions.
func (r *clusterRun) waitStable(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var why string
	for time.Now().Before(deadline) {
		served, ready, alive := 0, true, 0
		for _, m := range r.members {
			if !m.running() {
				if len(m.unexpectedExits()) > 0 {
					return fmt.Errorf("%s exited: %s\n%s", m.name, m.unexpectedExits()[0], tailFile(m.logPath, 10))
				}
				continue
			}
			alive++
			serving, err := m.serving()
			if err != nil {
				ready, why = false, fmt.Sprintf("%s: %v", m.name, err)
				break
			}
			served += len(serving)
			if code, _, _ := getBody(m.hc, "/readyz", time.Second); code != 200 {
				ready, why = false, m.name+" not ready"
			}
		}
		want := int(r.o.Partitions) * min(r.o.Replicas, alive)
		if ready && served == want {
			return nil
		}
		if ready {
			why = fmt.Sprintf("%d of %d partition places served", served, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("the members were not serving every partition after %s: %s", timeout, why)
}

// counted sums the live members' counted events.
func (r *clusterRun) counted() uint64 {
	var sum uint64
	for _, m := range r.members {
		if !m.running() {
			continue
		}
		_, body, err := getBody(m.hc, "/v1/stats", time.Second)
		if err != nil {
			continue
		}
		var v struct {
			Counted uint64 `json:"counted"`
		}
		if json.Unmarshal(body, &v) == nil {
			sum += v.Counted
		}
	}
	return sum
}

func (r *clusterRun) cpu() time.Duration {
	var d time.Duration
	for _, m := range r.members {
		d += procCPU(m.pid())
	}
	return d
}

func (r *clusterRun) stop() {
	for _, m := range r.members {
		if m.running() {
			_ = m.signal(syscall.SIGTERM, time.Minute)
		}
	}
}

// createStream makes the run's partitioned stream as bidpulse does, so that events can be
// published before the members start.
func (r *clusterRun) createStream(js jetstream.JetStream) error {
	ps, err := partition.StreamTransform(r.o.Partitions, r.base)
	if err != nil {
		return err
	}
	cfg := jetstream.StreamConfig{Name: r.stream, Subjects: []string{r.base + ".>"}, Storage: jetstream.FileStorage,
		Retention: jetstream.LimitsPolicy, Discard: jetstream.DiscardNew, MaxBytes: 8 << 30, Duplicates: 2 * time.Minute,
		MaxMsgSize: 8 << 20, Replicas: 3,
		Description: "bidpulse events (impressions, clicks, conversions): the spike buffer, trimmed to the oldest checkpoint"}
	ps.Apply(&cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err = js.CreateStream(ctx, cfg)
	return err
}

// publish sends o.Events impressions in batches of 500 of one campaign, acknowledged.
func (r *clusterRun) publish(js jetstream.JetStream) error {
	now := time.Now().UnixMilli()
	var futures []jetstream.PubAckFuture
	var b []byte
	for sent, k := 0, 0; sent < r.o.Events; k++ {
		c := "c" + strconv.Itoa(k%r.o.Campaigns)
		n := min(500, r.o.Events-sent)
		b = append(b[:0], '[')
		for i := range n {
			if i > 0 {
				b = append(b, ',')
			}
			b = fmt.Appendf(b, `{"id":"%d-%d","type":"impression","campaign":"%s","placement":"p%d","ts":%d}`, k, i, c, (7*k+i)%1000, now-int64(i))
		}
		b = append(b, ']')
		m := &nats.Msg{Subject: r.base + "." + c + ".bench", Data: slices.Clone(b), Header: nats.Header{}}
		m.Header.Set(jetstream.MsgIDHeader, r.stream+"-"+strconv.Itoa(k))
		f, err := js.PublishMsgAsync(m)
		if err != nil {
			return err
		}
		futures = append(futures, f)
		sent += n
		if len(futures) >= 128 {
			// Within the client's async window (256): wait for the oldest half.
			if err := waitAcks(futures[:64]); err != nil {
				return err
			}
			futures = futures[64:]
		}
	}
	return waitAcks(futures)
}

func waitAcks(futures []jetstream.PubAckFuture) error {
	for _, f := range futures {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			return fmt.Errorf("publish not acknowledged: %w", err)
		case <-time.After(time.Minute):
			return errors.New("publish not acknowledged within a minute")
		}
	}
	return nil
}

// ingest publishes o.Events into a new stream (acknowledged), then starts n members at once
// and times them until all are counted: a backlog, as after a spike, so that the members'
// work does not depend on how fast the bench publishes. Time and CPU run from the first event
// counted to the last; the members' CPU before (their start) is reported apart.
func (r *clusterRun) ingest(js jetstream.JetStream, n int) (ClusterIngest, error) {
	res := ClusterIngest{Members: n}
	if err := r.createStream(js); err != nil {
		return res, err
	}
	if err := r.publish(js); err != nil {
		return res, err
	}
	for i := range n {
		if _, err := r.startMember(i); err != nil {
			return res, err
		}
	}
	var t0 time.Time
	var cpu0 time.Duration
	deadline := time.Now().Add(5 * time.Minute)
	for res.Counted = r.counted(); res.Counted < uint64(r.o.Events); res.Counted = r.counted() {
		if time.Now().After(deadline) {
			return res, fmt.Errorf("%d of %d events counted after 5 minutes", res.Counted, r.o.Events)
		}
		for _, m := range r.members {
			if !m.running() {
				return res, fmt.Errorf("%s exited: %v\n%s", m.name, m.exitErr(), tailFile(m.logPath, 10))
			}
		}
		if res.Counted > 0 && t0.IsZero() {
			t0, cpu0 = time.Now(), r.cpu()
		}
		time.Sleep(5 * time.Millisecond)
	}
	if t0.IsZero() {
		t0, cpu0 = time.Now(), r.cpu()
	}
	res.Seconds = time.Since(t0).Seconds()
	total := r.cpu()
	res.StartCPUSeconds = cpu0.Seconds()
	res.CPUSeconds = (total - cpu0).Seconds()
	if err := r.waitStable(time.Minute); err != nil {
		return res, err
	}
	res.EventsPerS = float64(r.o.Events) / res.Seconds
	if res.CPUSeconds > 0 {
		res.EventsPerCS = float64(r.o.Events) / res.CPUSeconds
	}
	return res, nil
}

// bids asks o.Bids bids of campaigns member 0 serves and o.Bids of campaigns it forwards,
// interleaved, one at a time.
func (r *clusterRun) bids(rep *ClusterReport) error {
	m0 := r.members[0]
	serving, err := m0.serving()
	if err != nil {
		return err
	}
	var local, remote []string
	for k := range r.o.Campaigns {
		c := "c" + strconv.Itoa(k)
		if slices.Contains(serving, partition.OfString(r.o.Partitions, c)) {
			local = append(local, c)
		} else {
			remote = append(remote, c)
		}
	}
	if len(local) == 0 || len(remote) == 0 {
		return fmt.Errorf("member 0 serves %d of the campaigns and forwards %d: need both", len(local), len(remote))
	}
	var lat [2][]float64
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	for i := range 2 * r.o.Bids {
		kind := i % 2
		cs := local
		if kind == 1 {
			cs = remote
		}
		req.SetRequestURI("http://" + m0.addr + "/v1/multiplier?campaign=" + cs[(i/2)%len(cs)] + "&placement=p1")
		t0 := time.Now()
		if err := m0.hc.DoTimeout(req, resp, time.Second); err != nil {
			return err
		}
		d := time.Since(t0)
		if resp.StatusCode() != 200 {
			return fmt.Errorf("bid answered %d: %s", resp.StatusCode(), resp.Body())
		}
		if len(resp.Header.Peek("Bidpulse-Neutral")) > 0 {
			rep.Neutral++
		}
		lat[kind] = append(lat[kind], float64(d.Nanoseconds())/1e6)
	}
	rep.Local, rep.Forwarded = summarize(lat[0]), summarize(lat[1])
	rep.ForwardP99OverheadMs = rep.Forwarded.P99 - rep.Local.P99
	return nil
}

func summarize(ms []float64) LatencySummary {
	slices.Sort(ms)
	q := func(f float64) float64 { return ms[min(int(f*float64(len(ms))), len(ms)-1)] }
	var sum float64
	for _, v := range ms {
		sum += v
	}
	return LatencySummary{N: len(ms), P50: q(0.5), P99: q(0.99), P999: q(0.999), Max: ms[len(ms)-1], Mean: sum / float64(len(ms))}
}

// failover kills the last member and times until the others serve every partition.
func (r *clusterRun) failover(rep *ClusterReport) error {
	victim := r.members[len(r.members)-1]
	serving, err := victim.serving()
	if err != nil {
		return err
	}
	rep.Failover.Member, rep.Failover.Partitions = victim.name, len(serving)
	// Bids for every campaign through m0, one at a time, from the kill until the others
	// own every partition: how many were answered neutrally.
	stop := make(chan struct{})
	done := make(chan error, 1)
	go func() { done <- r.failoverBids(rep, stop) }()
	t0 := time.Now()
	if err := victim.signal(syscall.SIGKILL, 10*time.Second); err != nil {
		close(stop)
		<-done
		return err
	}
	err = r.waitStable(2 * time.Minute)
	rep.Failover.Seconds = time.Since(t0).Seconds()
	close(stop)
	if berr := <-done; err == nil {
		err = berr
	}
	if err != nil {
		return err
	}
	deadline := time.Now().Add(time.Minute)
	for rep.Failover.CountedAfter = r.counted(); rep.Failover.CountedAfter != uint64(r.o.Events) && time.Now().Before(deadline); rep.Failover.CountedAfter = r.counted() {
		time.Sleep(20 * time.Millisecond)
	}
	return nil
}

// failoverBids asks bids for every campaign through member 0, one at a time, until stop,
// counting them and the neutral answers.
func (r *clusterRun) failoverBids(rep *ClusterReport, stop chan struct{}) error {
	m0 := r.members[0]
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	for i := 0; ; i++ {
		select {
		case <-stop:
			return nil
		default:
		}
		req.SetRequestURI("http://" + m0.addr + "/v1/multiplier?campaign=c" + strconv.Itoa(i%r.o.Campaigns) + "&placement=p1")
		if err := m0.hc.DoTimeout(req, resp, time.Second); err != nil {
			return err
		}
		if resp.StatusCode() != 200 {
			return fmt.Errorf("bid answered %d during the failover: %s", resp.StatusCode(), resp.Body())
		}
		rep.Failover.Bids++
		if len(resp.Header.Peek("Bidpulse-Neutral")) > 0 {
			rep.Failover.NeutralBids++
		}
	}
}

// RunCluster runs the cluster scenario and writes its report to w.
func RunCluster(o ClusterOptions, w io.Writer) (*ClusterReport, error) {
	if err := o.defaults(); err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "bidpulse-bench-cluster-")
	if err != nil {
		return nil, err
	}
	if o.Keep {
		fmt.Fprintf(w, "keeping %s\n", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	trio, err := startNATSTrio(dir)
	if err != nil {
		return nil, err
	}
	defer trio.stop()
	nc, err := nats.Connect(trio.url)
	if err != nil {
		return nil, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(256))
	if err != nil {
		return nil, err
	}
	rep := &ClusterReport{Scenario: ScenarioCluster, Started: time.Now().UTC(), CPU: cpuModel(), Cores: runtime.NumCPU(),
		Partitions: o.Partitions, Events: o.Events, LeaseTTL: o.LeaseTTL.String(), Replicas: o.Replicas}
	var scaled *clusterRun
	for _, n := range []int{1, o.Members} {
		r := &clusterRun{o: &o, dir: filepath.Join(dir, "run"+strconv.Itoa(n)), url: trio.url,
			stream: "BENCH_" + strconv.Itoa(n), base: "bench" + strconv.Itoa(n) + ".events", bucket: "bench_members_" + strconv.Itoa(n)}
		if err := os.MkdirAll(r.dir, 0o700); err != nil {
			return nil, err
		}
		// The members of a cluster share one control key.
		if err := os.WriteFile(filepath.Join(r.dir, "control.key"), controlKey(), 0o600); err != nil {
			return nil, err
		}
		fmt.Fprintf(w, "ingest: %d member(s), %d events over %d partitions...\n", n, o.Events, o.Partitions)
		res, err := r.ingest(js, n)
		if err != nil {
			r.stop()
			return nil, fmt.Errorf("ingest with %d members: %w", n, err)
		}
		rep.Ingest = append(rep.Ingest, res)
		if n == 1 {
			r.stop()
		} else {
			scaled = r
		}
	}
	defer scaled.stop()
	if rep.Ingest[0].EventsPerCS > 0 {
		rep.PerCoreRatio = rep.Ingest[1].EventsPerCS / rep.Ingest[0].EventsPerCS
	}
	if err := scaled.checkpoints(rep); err != nil {
		return nil, fmt.Errorf("checkpoints: %w", err)
	}
	fmt.Fprintf(w, "bids: %d local and %d forwarded through member m0...\n", o.Bids, o.Bids)
	if err := scaled.bids(rep); err != nil {
		return nil, fmt.Errorf("bids: %w", err)
	}
	fmt.Fprintln(w, "failover: SIGKILL of the last member...")
	if err := scaled.failover(rep); err != nil {
		return nil, fmt.Errorf("failover: %w", err)
	}
	writeClusterReport(w, rep)
	return rep, nil
}

func writeClusterReport(w io.Writer, r *ClusterReport) {
	fmt.Fprintf(w, "\nbidpulse bench --scenario cluster: %d partitions, --replicas %d, 3-node NATS cluster (R3), %d cores (%s), lease %s\n",
		r.Partitions, r.Replicas, r.Cores, r.CPU, r.LeaseTTL)
	fmt.Fprintln(w, "ingest (a backlog published before the members start; time and CPU from the first event counted to the last):")
	for _, in := range r.Ingest {
		fmt.Fprintf(w, "  %d member(s): %d events in %.2fs = %.0f events/s; member CPU %.2fs = %.0f events per CPU-second (start: %.2f CPU-s)\n",
			in.Members, in.Counted, in.Seconds, in.EventsPerS, in.CPUSeconds, in.EventsPerCS, in.StartCPUSeconds)
	}
	fmt.Fprintf(w, "  per core, %d members against 1: %.2fx (aim: at least 0.8x)\n", r.Ingest[len(r.Ingest)-1].Members, r.PerCoreRatio)
	fmt.Fprintf(w, "bids through m0, one at a time (ms): local p50 %.3f p99 %.3f p99.9 %.3f | forwarded p50 %.3f p99 %.3f p99.9 %.3f; p99 overhead %.3f ms (aim: at most 0.5); neutral %d\n",
		r.Local.P50, r.Local.P99, r.Local.P999, r.Forwarded.P50, r.Forwarded.P99, r.Forwarded.P999, r.ForwardP99OverheadMs, r.Neutral)
	c := r.Checkpoints
	fmt.Fprintf(w, "checkpoints after the backlog: %d partitions, %d keys; per partition %.0f bytes on average (max %d), %.0f bytes per key; write %.1f ms on average (max %d)\n",
		c.Partitions, c.Keys, c.MeanBytes, c.MaxBytes, c.BytesPerKey, c.MeanWriteMs, c.MaxWriteMs)
	fmt.Fprintf(w, "failover: %s (SIGKILL, %d partitions) -> every partition served by the others after %.2fs; counted after: %d of %d; bids meanwhile: %d, neutral %d\n",
		r.Failover.Member, r.Failover.Partitions, r.Failover.Seconds, r.Failover.CountedAfter, r.Events, r.Failover.Bids, r.Failover.NeutralBids)
}

// controlKey returns a random control key (hex of 32 bytes).
func controlKey() []byte {
	var b [32]byte
	rand.Read(b[:])
	return []byte(hex.EncodeToString(b[:]))
}
