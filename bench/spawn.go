package bench

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/bidpulse/bidpulse/bidder"
	"github.com/bidpulse/bidpulse/bidder/natsauth"
)

// SpawnOptions configure a bidpulse started by the bench as a child process for the run.
type SpawnOptions struct {
	// Exe is the bidpulse binary (default: the running executable, os.Executable).
	Exe string
	// Args are extra `serve` flags, e.g. --config or --max-keys.
	Args []string
	// JetStream, when set, is passed as --jetstream (the restart scenario sets "true").
	JetStream string
	// NATSURL, when set, makes the service use that NATS server (--nats-url) instead of its
	// embedded one.
	NATSURL string
	// NATSClient is how the service authenticates to the NATS server of NATSURL (ignored
	// without it). It is passed in the child's environment, never on its command line.
	NATSClient natsauth.Config
	// Keep keeps the temporary directory (data dir and service log) after the run.
	Keep bool
	// Env are extra environment variables of the child.
	Env []string
}

// child is a process the bench started and stops: the spawned service or the baseline
// server. Its stderr goes to a log file; Go's gctrace lines in it are parsed into GC figures.
// start and signal are called by one goroutine at a time (the runner, or the restart during a
// run); running and pid may be called concurrently with them.
type child struct {
	name    string
	argv    []string // the command line, taskset prefix included
	env     []string
	logPath string
	gc      *gcStats

	mu     sync.Mutex // guards cmd and exited, replaced by each start
	cmd    *exec.Cmd
	exited chan struct{}
	// waitErr is the last exit's error (guarded by mu).
	waitErr error
	// stopping is set by signal until the next start: an exit meanwhile is expected. The
	// other exits are kept in unexpected, and passed to onUnexpected when it is set (before
	// start; it is called from the goroutine that waits for the process). Guarded by mu.
	stopping     bool
	unexpected   []string
	onUnexpected func(msg string)
}

// current returns the running command and its exit channel (nil before the first start).
func (c *child) current() (*exec.Cmd, chan struct{}) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cmd, c.exited
}

// freePort returns a loopback port that was free a moment ago.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("cannot find a free loopback port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// start starts the child (again, for a restart: same command line, same ports and data dir).
func (c *child) start() error {
	// Owner only, like what the service writes in its data dir.
	logf, err := os.OpenFile(c.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("cannot open the %s log: %w", c.name, err)
	}
	cmd := exec.Command(c.argv[0], c.argv[1:]...)
	cmd.Env = append(os.Environ(), c.env...)
	cmd.Stdout = logf
	stderr, err := cmd.StderrPipe()
	if err != nil {
		logf.Close()
		return err
	}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("cannot start the %s (%s): %w", c.name, strings.Join(c.argv, " "), err)
	}
	exited := make(chan struct{})
	c.mu.Lock()
	c.cmd, c.exited, c.stopping = cmd, exited, false
	c.mu.Unlock()
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		c.gc.scan(stderr, logf)
	}()
	go func() {
		<-copied
		err := cmd.Wait()
		logf.Close()
		c.mu.Lock()
		c.waitErr = err
		var msg string
		if !c.stopping {
			msg = fmt.Sprintf("the %s (pid %d) exited unexpectedly at %s: %s; its log: %s", c.name, cmd.Process.Pid,
				time.Now().UTC().Format("15:04:05.000"), cmd.ProcessState, c.logPath)
			c.unexpected = append(c.unexpected, msg)
		}
		notify := c.onUnexpected
		c.mu.Unlock()
		close(exited)
		if msg != "" && notify != nil {
			notify(msg)
		}
	}()
	return nil
}

// running reports whether the process has not exited.
func (c *child) running() bool {
	cmd, exited := c.current()
	if cmd == nil {
		return false
	}
	select {
	case <-exited:
		return false
	default:
		return true
	}
}

// pid returns the process id, 0 when not running.
func (c *child) pid() int {
	cmd, exited := c.current()
	if cmd == nil {
		return 0
	}
	select {
	case <-exited:
		return 0
	default:
		return cmd.Process.Pid
	}
}

// unexpectedExits returns a line for each exit that no signal asked for.
func (c *child) unexpectedExits() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.unexpected...)
}

// exitErr returns the error of the last exit.
func (c *child) exitErr() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.waitErr
}

// signal sends sig and waits up to timeout for the exit; past it the process is killed.
func (c *child) signal(sig syscall.Signal, timeout time.Duration) error {
	cmd, exited := c.current()
	if cmd == nil {
		return nil
	}
	c.mu.Lock()
	c.stopping = true
	c.mu.Unlock()
	if err := cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("cannot signal the %s: %w", c.name, err)
	}
	select {
	case <-exited:
		return nil
	case <-time.After(timeout):
		cmd.Process.Kill()
		<-exited
		return fmt.Errorf("the %s did not exit within %s of %s: killed", c.name, timeout, sig)
	}
}

// waitReady polls GET path on addr until it answers 200, the process exits, or timeout.
func (c *child) waitReady(addr, path string, timeout time.Duration) error {
	hc := &fasthttp.HostClient{Addr: addr, MaxConns: 1}
	deadline := time.Now().Add(timeout)
	var last string
	for time.Now().Before(deadline) {
		if !c.running() {
			return fmt.Errorf("the %s exited before it was ready (%v); its log: %s\n%s", c.name, c.exitErr(), c.logPath, tailFile(c.logPath, 20))
		}
		code, body, err := getBody(hc, path, time.Second)
		if err == nil && code == fasthttp.StatusOK {
			return nil
		}
		if err != nil {
			last = err.Error()
		} else {
			last = fmt.Sprintf("status %d: %.200s", code, body)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("the %s was not ready within %s (last answer of %s: %s); its log: %s", c.name, timeout, path, last, c.logPath)
}

// tailFile returns the last n lines of a file (for an error message).
func tailFile(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// spawnedService is a `bidpulse serve` child on free loopback ports with its own data dir.
type spawnedService struct {
	*child
	exe      string
	dir      string
	dataDir  string
	httpAddr string
	natsURL  string // the NATS server the service and the bench use
}

// newSpawnedService prepares (does not start) a bidpulse serve child pinned to cpus (a
// taskset CPU list; empty: no pinning).
func newSpawnedService(o SpawnOptions, cpus string) (*spawnedService, error) {
	exe := o.Exe
	if exe == "" {
		var err error
		if exe, err = os.Executable(); err != nil {
			return nil, fmt.Errorf("cannot find the bidpulse executable to spawn: %w", err)
		}
	}
	dir, err := os.MkdirTemp("", "bidpulse-bench-")
	if err != nil {
		return nil, fmt.Errorf("cannot create the spawned service's directory: %w", err)
	}
	httpPort, err := freePort()
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	args := []string{exe, "serve",
		"--http-addr", "127.0.0.1:" + strconv.Itoa(httpPort),
		"--data-dir", filepath.Join(dir, "data"),
		"--instance", "bench",
	}
	s := &spawnedService{exe: exe, dir: dir, dataDir: filepath.Join(dir, "data"), httpAddr: "127.0.0.1:" + strconv.Itoa(httpPort)}
	var env []string
	if o.NATSURL != "" {
		if natsauth.URLCredentials(o.NATSURL) != "" {
			env = append(env, "BIDPULSE_NATS_URL="+o.NATSURL) // not in argv: it carries a secret
		} else {
			args = append(args, "--nats-url", o.NATSURL)
		}
		env = append(env, natsClientEnv(o.NATSClient)...)
		s.natsURL = o.NATSURL
	} else {
		natsPort, err := freePort()
		if err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
		args = append(args, "--nats-addr", "127.0.0.1:"+strconv.Itoa(natsPort))
		s.natsURL = "nats://127.0.0.1:" + strconv.Itoa(natsPort)
	}
	if o.JetStream != "" {
		args = append(args, "--jetstream="+o.JetStream)
	}
	if o.Exe == "" || strings.Contains(serveHelp(exe), "-http-max-conns-per-ip") {
		// Every bench connection comes from 127.0.0.1: the cap per client
		// address would refuse an in-flight cap (--conns) above it.
		args = append(args, "--http-max-conns-per-ip=-1")
	}
	args = append(args, o.Args...)
	s.child = &child{
		name:    "spawned bidpulse",
		argv:    withTaskset(cpus, args),
		env:     append(append([]string{"GODEBUG=gctrace=1"}, env...), o.Env...),
		logPath: filepath.Join(dir, "service.log"),
		gc:      &gcStats{},
	}
	return s, nil
}

// natsClientEnv is c as the environment of a bidpulse child: every setting, the empty ones
// included, so that the child's are c's whatever the bench's own environment holds.
func natsClientEnv(c natsauth.Config) []string {
	return []string{
		"BIDPULSE_NATS_CREDS=" + c.CredsFile,
		"BIDPULSE_NATS_NKEY=" + c.NkeyFile,
		"BIDPULSE_NATS_USER=" + c.User,
		"BIDPULSE_NATS_PASSWORD=" + c.Password,
		"BIDPULSE_NATS_PASSWORD_FILE=" + c.PasswordFile,
		"BIDPULSE_NATS_TOKEN=" + c.Token,
		"BIDPULSE_NATS_TOKEN_FILE=" + c.TokenFile,
		"BIDPULSE_NATS_TLS_CA=" + c.TLSCA,
		"BIDPULSE_NATS_TLS_CERT=" + c.TLSCert,
		"BIDPULSE_NATS_TLS_KEY=" + c.TLSKey,
	}
}

// producerSeed returns the producer's nkey seed file the service generated for its embedded
// server, or "" when there is none (it runs without authentication, or with --nats-url).
func (s *spawnedService) producerSeed() string {
	p := bidder.NATSSeedFile(s.dataDir, bidder.NATSUserProducer)
	if _, err := os.Stat(p); err != nil {
		return ""
	}
	return p
}

// remove deletes the service's directory.
func (s *spawnedService) remove() { os.RemoveAll(s.dir) }

// withTaskset prefixes argv with `taskset -c cpus` when cpus is set.
func withTaskset(cpus string, argv []string) []string {
	if cpus == "" {
		return argv
	}
	return append([]string{"taskset", "-c", cpus}, argv...)
}

// serveHelp returns the output of `<exe> serve --help`, to learn the flags a binary has.
func serveHelp(exe string) string {
	if exe == "" {
		exe, _ = os.Executable()
	}
	out, _ := exec.Command(exe, "serve", "--help").CombinedOutput()
	return string(out)
}

// gcStats are the garbage collections of a child, from its GODEBUG=gctrace=1 lines. Safe for
// concurrent use.
type gcStats struct {
	mu     sync.Mutex
	cycles int
	// pausesUs holds each cycle's stop-the-world time: sweep termination plus mark
	// termination, wall clock, in µs.
	pausesUs []float64
}

// scan copies r to w line by line, parsing the gctrace lines on the way. Every byte reaches w
// (a final line without a newline gets one), however long its lines.
func (g *gcStats) scan(r io.Reader, w io.Writer) {
	br := bufio.NewReaderSize(r, 64<<10)
	long := false // inside a line longer than the buffer: not parsed
	for {
		chunk, err := br.ReadSlice('\n')
		if !long && err == nil {
			if pause, ok := parseGCTrace(string(chunk[:len(chunk)-1])); ok {
				g.mu.Lock()
				g.cycles++
				g.pausesUs = append(g.pausesUs, pause)
				g.mu.Unlock()
			}
		}
		w.Write(chunk)
		switch {
		case err == bufio.ErrBufferFull:
			long = true
		case err != nil:
			if len(chunk) > 0 {
				w.Write([]byte{'\n'})
			}
			return
		default:
			long = false
		}
	}
}

// parseGCTrace reads the stop-the-world time (µs) of one gctrace line:
//
//	gc 7 @1.234s 2%: 0.021+1.5+0.030 ms clock, 0.042+0.20/1.1/0.5+0.061 ms cpu, 4->4->1 MB, ...
//
// The first and third clock figures are the two stop-the-world phases.
func parseGCTrace(line string) (float64, bool) {
	if !strings.HasPrefix(line, "gc ") {
		return 0, false
	}
	i := strings.Index(line, ": ")
	j := strings.Index(line, " ms clock")
	if i < 0 || j < i {
		return 0, false
	}
	parts := strings.Split(line[i+2:j], "+")
	if len(parts) != 3 {
		return 0, false
	}
	a, err1 := strconv.ParseFloat(parts[0], 64)
	c, err2 := strconv.ParseFloat(parts[2], 64)
	if err1 != nil || err2 != nil {
		return 0, false
	}
	return (a + c) * 1000, true
}

// GCReport summarises a child's garbage collections over the run.
type GCReport struct {
	Cycles int `json:"cycles"`
	// MaxPauseMs and P99PauseMs are stop-the-world times per cycle; TotalPauseMs their sum.
	MaxPauseMs   float64 `json:"max_pause_ms"`
	P99PauseMs   float64 `json:"p99_pause_ms"`
	TotalPauseMs float64 `json:"total_pause_ms"`
}

// since returns the report of the cycles after the first skip ones.
func (g *gcStats) since(skip int) GCReport {
	g.mu.Lock()
	p := append([]float64(nil), g.pausesUs[min(skip, len(g.pausesUs)):]...)
	g.mu.Unlock()
	r := GCReport{Cycles: len(p)}
	if len(p) == 0 {
		return r
	}
	slices.Sort(p)
	for _, x := range p {
		r.TotalPauseMs += x / 1000
	}
	r.MaxPauseMs = p[len(p)-1] / 1000
	r.P99PauseMs = p[min(len(p)-1, int(float64(len(p))*0.99))] / 1000
	return r
}

func (g *gcStats) count() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.cycles
}
