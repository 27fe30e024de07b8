package client_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestREADMEProgram builds the Go program of README.md ("From Go") and runs
// it against a service started here, so the README's example cannot drift
// from the client. Only the addresses change (make run's become the test
// service's), and the per-call timeout: 5 ms is an auction's budget, and
// this machine runs the race-enabled suite beside it.
func TestREADMEProgram(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a program: skipped with -short")
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	const begin = "```go\npackage main\n"
	i := strings.Index(string(readme), begin)
	if i < 0 {
		t.Fatal("README.md has no Go program")
	}
	src := string(readme[i+len("```go\n"):])
	src = src[:strings.Index(src, "```")]
	svc := startService(t)
	for _, r := range [][2]string{
		{"nats://127.0.0.1:4222", svc.NATSURL()},
		{"http://127.0.0.1:8080", "http://" + svc.HTTPAddr()},
		{"5 * time.Millisecond", "2 * time.Second"},
	} {
		if !strings.Contains(src, r[0]) {
			t.Fatalf("the README program no longer contains %q", r[0])
		}
		src = strings.ReplaceAll(src, r[0], r[1])
	}
	// Inside the module (bin/ is ignored by git), so that it imports the
	// client as a program of this repository would.
	if err := os.MkdirAll(filepath.Join(root, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp(filepath.Join(root, "bin"), "readme-program-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	bin := filepath.Join(dir, "program")
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, ".")
	build.Dir = dir
	build.Env = append(os.Environ(), "GOTOOLCHAIN=local")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("cannot build the README program: %v\n%s", err, out)
	}
	out, err := exec.CommandContext(ctx, bin).CombinedOutput()
	if err != nil {
		t.Fatalf("the README program failed: %v\n%s", err, out)
	}
	// 100 impressions of c1 on one placement, no clicks: that placement is
	// its campaign, so the multiplier is 1, answered at campaign/placement;
	// c2 has no events (level none).
	want := "http: 1 campaign/placement answered <nil>\nnats: [{1 campaign/placement answered} {1 none answered}] <nil>\n"
	if got := string(out); got != want {
		t.Fatalf("unexpected output of the README program; got\n%s\nwant\n%s", got, want)
	}
	waitCounted(t, svc, 100)
}
