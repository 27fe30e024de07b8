package bidder

import (
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Everything a service started and stopped leaves in its data dir is its
// owner's only: files 0600, directories 0700, the embedded server's store
// included (nats-server makes it so; bidpulse creates the data dir before
// it starts). The data dir did not exist before; its checkpoints dir did,
// as an earlier bidpulse made it (0755).
func TestDataDirModes(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	if err := os.MkdirAll(filepath.Join(dir, "checkpoints"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	// A temporary file a crash of an earlier bidpulse left: written over.
	if err := os.WriteFile(filepath.Join(dir, "checkpoints", "bidpulse_test.ckpt.tmp"), []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	fresh := filepath.Join(t.TempDir(), "fresh", "data")
	for _, d := range []string{dir, fresh} {
		e := startTestService(t, func(o *Options) { o.DataDir = d; o.RemoteCheckpointInterval = time.Millisecond })
		jsPublish(t, e.nc, "m", keyedPayloads("m", 3, 10, 1, 1, testNow, map[string][2]int{}))
		jsPublish(t, e.nc, "bad", [][]byte{[]byte(`{"id":"x","type":"view","campaign":"c1"}`)})
		waitCounted(t, e, 30)
		if err := e.svc.Stop(context.Background()); err != nil {
			t.Fatal(err)
		}
		var files, dirs int
		seen := map[string]bool{}
		err := filepath.WalkDir(d, func(path string, de fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			fi, err := de.Info()
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(d, path)
			seen[filepath.ToSlash(rel)] = true
			want := os.FileMode(0o600)
			if de.IsDir() {
				want, dirs = 0o700, dirs+1
			} else {
				files++
			}
			if got := fi.Mode().Perm(); got != want {
				t.Errorf("unexpected mode of %s; got %#o; want %#o", rel, got, want)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		// What the walk must have seen: every kind of file bidpulse makes,
		// and the server's store.
		for _, name := range []string{".", "checkpoints", "checkpoints/bidpulse_test.ckpt", dlqKeyFile, "nats", "nats/jetstream"} {
			if !seen[name] {
				t.Errorf("%s not in the data dir %s", name, d)
			}
		}
		var dedup, streams bool
		for name := range seen {
			dedup = dedup || strings.HasPrefix(name, "checkpoints/dedup-")
			streams = streams || strings.Contains(name, "/streams/BIDPULSE_EVENTS/msgs/")
			if strings.HasSuffix(name, ".tmp") {
				t.Errorf("unexpected temporary file left: %s", name)
			}
		}
		if !dedup || !streams {
			t.Errorf("the walk missed the dedup set (%v) or the event stream's files (%v)", dedup, streams)
		}
		t.Logf("%s: %d files, %d directories", d, files, dirs)
	}
}

// A data dir others may read is used as it is (it may be a mount point set
// up so), with a warning at start.
func TestDataDirOpenToOthersWarned(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "shared")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	logs, logger := newLogCapture(t)
	startTestService(t, func(o *Options) { o.DataDir, o.Logger = dir, logger })
	if lines := logs.linesWith(`"level":"warn"`, "the data dir is open to other users", `"mode":"0755"`); len(lines) != 1 {
		t.Fatalf("unexpected warnings about the data dir; got %q; want 1", lines)
	}
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o755 {
		t.Fatalf("unexpected change of the data dir's mode: %v %v", fi, err)
	}
}
