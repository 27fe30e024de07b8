package bench

import (
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
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
