package bench

import (
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bidpulse/bidpulse/bidder/natsauth"
)

// TestChildUnexpectedExit: an exit that no signal of the bench asked for is recorded and
// reported at once; a stop or a kill by signal is not.
func TestChildUnexpectedExit(t *testing.T) {
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Skip("no sleep command")
	}
	c := &child{name: "test child", argv: []string{sleep, "30"}, logPath: filepath.Join(t.TempDir(), "child.log"), gc: &gcStats{}}
	got := make(chan string, 1)
	c.onUnexpected = func(msg string) { got <- msg }
	waitExit := func() {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); c.running(); time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("the child did not exit")
			}
		}
	}
	if err := c.start(); err != nil {
		t.Fatalf("unexpected error: %v", err)
	}
	if err := c.signal(syscall.SIGKILL, 5*time.Second); err != nil {
		t.Fatalf("unexpected error: %v", err)
	}
	if err := c.start(); err != nil { // a restart, as the restart scenario does
		t.Fatalf("unexpected error: %v", err)
	}
	if err := syscall.Kill(c.pid(), syscall.SIGKILL); err != nil { // from outside the bench
		t.Fatalf("unexpected error: %v", err)
	}
	waitExit()
	select {
	case msg := <-got:
		if !strings.Contains(msg, "exited unexpectedly") || !strings.Contains(msg, "signal: killed") {
			t.Fatalf("unexpected message %q", msg)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("no notice of the unexpected exit")
	}
	if u := c.unexpectedExits(); len(u) != 1 {
		t.Fatalf("unexpected exits recorded %q; want the one from outside", u)
	}
}

// TestGCStatsKeepsLongLines: a line too long for the gctrace parser still reaches the log.
func TestGCStatsKeepsLongLines(t *testing.T) {
	long := strings.Repeat("x", 2<<20)
	in := "a\n" + long + "\nfatal error: b\n"
	var sink strings.Builder
	(&gcStats{}).scan(strings.NewReader(in), &sink)
	if !strings.HasPrefix(sink.String(), "a\n") || !strings.HasSuffix(sink.String(), "fatal error: b\n") || sink.Len() != len(in) {
		t.Fatalf("unexpected copy of the log: %d bytes, ends %q", sink.Len(), sink.String()[max(0, sink.Len()-20):])
	}
}

// The spawned service gets the bench's NATS client settings in its environment, and a URL
// that carries a secret there too: nothing secret is on its command line.
func TestSpawnNATSSecretsNotInArgv(t *testing.T) {
	s, err := newSpawnedService(SpawnOptions{Exe: "/bin/true", NATSURL: "nats://u:s3cret@127.0.0.1:1",
		NATSClient: natsauth.Config{Token: "t0ken", TLSCA: "ca.pem"}}, "")
	if err != nil {
		t.Fatal(err)
	}
	defer s.remove()
	for _, a := range s.argv {
		if strings.Contains(a, "s3cret") || strings.Contains(a, "t0ken") {
			t.Fatalf("a secret is on the command line: %q", s.argv)
		}
	}
	env := strings.Join(s.env, "\n")
	for _, want := range []string{"BIDPULSE_NATS_URL=nats://u:s3cret@127.0.0.1:1", "BIDPULSE_NATS_TOKEN=t0ken",
		"BIDPULSE_NATS_TLS_CA=ca.pem", "BIDPULSE_NATS_PASSWORD="} {
		if !strings.Contains(env, want+"\n") && !strings.HasSuffix(env, want) {
			t.Fatalf("%q not in the child's environment:\n%s", want, env)
		}
	}

	// Without secrets in it, the URL stays a flag.
	s2, err := newSpawnedService(SpawnOptions{Exe: "/bin/true", NATSURL: "nats://127.0.0.1:1"}, "")
	if err != nil {
		t.Fatal(err)
	}
	defer s2.remove()
	if !strings.Contains(strings.Join(s2.argv, " "), "--nats-url nats://127.0.0.1:1") {
		t.Fatalf("unexpected command line %q", s2.argv)
	}
}
