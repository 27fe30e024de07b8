package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// bidpulseBinary builds the bidpulse binary once per test run.
func bidpulseBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "bidpulse-bin")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "bidpulse")
		cmd := exec.Command("go", "build", "-o", binPath, ".")
		cmd.Env = append(os.Environ(), "GOTOOLCHAIN=local")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// child is a bidpulse serve process.
type child struct {
	cmd  *exec.Cmd
	http string
	log  *os.File
}

func startChild(t *testing.T, args ...string) *child {
	t.Helper()
	logf, err := os.CreateTemp(t.TempDir(), "serve-*.log")
	if err != nil {
		t.Fatal(err)
	}
	// Port 0, read back from the log: a port found free and released
	// before the child binds it can be taken by another test's server,
	// whose answers this test would then read.
	cmd := exec.Command(bidpulseBinary(t), append([]string{"serve", "--http-addr", "127.0.0.1:0", "--log-level", "info"}, args...)...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &child{cmd: cmd, log: logf}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if c.http == "" {
			if addr := logAddr(logf.Name(), "HTTP API listening"); addr != "" {
				c.http = "http://" + addr
			}
			time.Sleep(20 * time.Millisecond)
			continue
		}
		if resp, err := http.Get(c.http + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return c
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	logs, _ := os.ReadFile(logf.Name())
	t.Fatalf("bidpulse not ready after 30s; log:\n%s", logs)
	return nil
}

// addrRE finds the addr field of a log line, console or JSON.
var addrRE = regexp.MustCompile(`"?addr"?[=:]"?([0-9.]+:[0-9]+)`)

// logAddr returns the address in the first line of the log at path that
// contains msg, or "".
func logAddr(path, msg string) string {
	b, _ := os.ReadFile(path)
	for line := range strings.Lines(string(b)) {
		if strings.Contains(line, msg) {
			if m := addrRE.FindStringSubmatch(line); m != nil {
				return m[1]
			}
		}
	}
	return ""
}

// natsAddr returns the address of the child's embedded NATS server (started
// with --nats-addr 127.0.0.1:-1).
func (c *child) natsAddr(t *testing.T) string {
	t.Helper()
	addr := logAddr(c.log.Name(), "embedded NATS server started")
	if addr == "" {
		t.Fatal("no embedded NATS address in the log")
	}
	return addr
}

func (c *child) stats(t *testing.T) map[string]any {
	t.Helper()
	return c.getJSON(t, "/v1/stats")
}

func (c *child) getJSON(t *testing.T, path string) map[string]any {
	t.Helper()
	resp, err := http.Get(c.http + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("GET %s: %v: %s", path, err, b)
	}
	return m
}

func (c *child) signal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	if err := c.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- c.cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatalf("bidpulse did not exit after %v", sig)
	}
}

// publisher publishes batches with acknowledged JetStream publishes,
// retrying each until acknowledged (through restarts), in order.
type publisher struct {
	url    string
	nc     *nats.Conn
	js     jetstream.JetStream
	acked  int // events acknowledged
	perMin map[int]int
}

func newPublisher(t *testing.T, url string) *publisher {
	t.Helper()
	nc, err := nats.Connect(url, nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond), nats.RetryOnFailedConnect(true))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return &publisher{url: url, nc: nc, js: js, perMin: map[int]int{}}
}

// batch publishes n impressions of campaign c1 at event time ts and
// retries until acknowledged.
func (p *publisher) batch(t *testing.T, id string, n int, ts int64, minute int) {
	t.Helper()
	var sb strings.Builder
	sb.WriteByte('[')
	for i := 0; i < n; i++ {
		if i > 0 {
			sb.WriteByte(',')
		}
		fmt.Fprintf(&sb, `{"id":"%s-%d","type":"impression","ts":%d,"campaign":"c1","placement":"p%d"}`, id, i, ts, i%7)
	}
	sb.WriteByte(']')
	m := &nats.Msg{Subject: "bidpulse.events.test", Data: []byte(sb.String()), Header: nats.Header{}}
	m.Header.Set(jetstream.MsgIDHeader, id)
	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := p.js.PublishMsg(ctx, m)
		cancel()
		if err == nil {
			p.acked += n
			p.perMin[minute] += n
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("batch %s not acknowledged after 60s: %v", id, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func waitCounted(t *testing.T, c *child, want int) map[string]any {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	var st map[string]any
	for time.Now().Before(deadline) {
		st = c.stats(t)
		if st["counted"].(float64) == float64(want) {
			return st
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("counted %v; want %d: %v", st["counted"], want, st)
	return nil
}

// checkMinutes checks that events published at three event-time minutes
// (now-10m, now-7m, now-2m) are still in their own buckets: the 5m span
// holds only the last minute's, the 15m span all of them.
func checkMinutes(t *testing.T, c *child, p *publisher) {
	t.Helper()
	m := c.getJSON(t, "/v1/rates?campaign=c1")
	w := m["windows"].(map[string]any)
	got5 := w["5m"].(map[string]any)["impressions"].(float64)
	got15 := w["15m"].(map[string]any)["impressions"].(float64)
	if got5 != float64(p.perMin[2]) || got15 != float64(p.acked) {
		t.Fatalf("event times not kept: 5m %v (want %d), 15m %v (want %d)", got5, p.perMin[2], got15, p.acked)
	}
}

// runKillRestart publishes in three minutes, kills bidpulse with sig half
// way, restarts it and checks that every acknowledged event is counted
// exactly once.
func runKillRestart(t *testing.T, sig syscall.Signal, natsURL string, args []string) *child {
	c := startChild(t, args...)
	p := newPublisher(t, natsURL)
	now := time.Now().UnixMilli()
	minutes := []int{10, 7, 2}
	for i := 0; i < 30; i++ {
		min := minutes[i%3]
		p.batch(t, fmt.Sprintf("a%d", i), 100, now-int64(min)*60_000, min)
	}
	// Let a checkpoint (every second) happen, then publish more that the
	// next checkpoint will not see before the kill.
	time.Sleep(1500 * time.Millisecond)
	for i := 0; i < 30; i++ {
		min := minutes[i%3]
		p.batch(t, fmt.Sprintf("b%d", i), 100, now-int64(min)*60_000, min)
	}
	c.signal(t, sig)
	// Published while bidpulse is down (with an external server), or
	// retried until it is back (embedded server).
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < 15; i++ {
			min := minutes[i%3]
			p.batch(t, fmt.Sprintf("c%d", i), 100, now-int64(min)*60_000, min)
		}
	}()
	c2 := startChild(t, args...)
	<-done
	st := waitCounted(t, c2, p.acked)
	if st["duplicates"].(float64) != 0 || st["received"].(float64) != float64(p.acked) {
		t.Fatalf("events counted twice or seen twice: %v", st)
	}
	checkMinutes(t, c2, p)
	// A checkpoint (every second) covered at least the first 30 messages:
	// the restart loaded it and replayed only what came after it.
	if st["checkpoint"].(map[string]any)["loaded"] != true || st["replay"].(map[string]any)["start_seq"].(float64) <= 30 {
		t.Fatalf("restart did not start from the checkpoint: %v", st)
	}
	t.Logf("after %v: restarted from sequence %v, checkpoint loaded: %v", sig,
		st["replay"].(map[string]any)["start_seq"], st["checkpoint"].(map[string]any)["loaded"])
	return c2
}

func TestKillAndRestartEmbedded(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary; skipped in -short mode")
	}
	dir := t.TempDir()
	natsAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	args := []string{"--nats-addr", natsAddr, "--data-dir", dir, "--instance", "kill", "--checkpoint-interval", "1s"}
	c := runKillRestart(t, syscall.SIGKILL, "nats://"+natsAddr, args)
	c.signal(t, syscall.SIGTERM)
}

// startNATS starts an external nats-server with JetStream on a random
// loopback port, stopped at the end of the test.
func startNATS(t *testing.T) *server.Server {
	t.Helper()
	srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoSigs: true, NoLog: true})
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	t.Cleanup(srv.Shutdown)
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("NATS server not ready")
	}
	return srv
}

func TestKillAndRestartExternal(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary; skipped in -short mode")
	}
	srv := startNATS(t)
	args := []string{"--nats-url", srv.ClientURL(), "--data-dir", t.TempDir(), "--instance", "kill-ext", "--checkpoint-interval", "1s"}
	c := runKillRestart(t, syscall.SIGKILL, srv.ClientURL(), args)
	c.signal(t, syscall.SIGTERM)
}

func TestTermAndRestartUsesCheckpoint(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary; skipped in -short mode")
	}
	srv := startNATS(t)
	args := []string{"--nats-url", srv.ClientURL(), "--data-dir", t.TempDir(), "--instance", "term", "--checkpoint-interval", "1h"}
	c := runKillRestart(t, syscall.SIGTERM, srv.ClientURL(), args)
	st := c.stats(t)
	ck := st["checkpoint"].(map[string]any)
	// The checkpoint written on SIGTERM held every event applied: the
	// restart replayed none of them (the first batches' sequences).
	if ck["loaded"] != true || st["replay"].(map[string]any)["start_seq"].(float64) != 61 {
		t.Fatalf("checkpoint not used on restart: %v", st)
	}
	c.signal(t, syscall.SIGTERM)
}
