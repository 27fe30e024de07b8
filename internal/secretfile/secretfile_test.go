package secretfile

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRead(t *testing.T) {
	dir := t.TempDir()
	f := func(content, want string, ok bool) {
		t.Helper()
		p := filepath.Join(dir, "s")
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		got, err := Read(p)
		if (err == nil) != ok || got != want {
			t.Fatalf("unexpected Read of %q: %q, %v; want %q", content, got, err, want)
		}
	}
	f("s3cr:et,x\n", "s3cr:et,x", true)
	f("abc\r\n\n", "abc", true)
	f("\n  pass word \n", "  pass word ", true)
	f("a\nb\n", "", false)
	f("\n \n", "", false)
	if _, err := Read(filepath.Join(dir, "missing")); err == nil {
		t.Fatal("unexpected success reading a missing file")
	}
	p := filepath.Join(dir, "pairs")
	os.WriteFile(p, []byte("alice:1\n\nbob:2\r\n"), 0o600)
	if got, err := ReadLines(p); err != nil || strings.Join(got, ",") != "alice:1,bob:2" {
		t.Fatalf("unexpected ReadLines: %q, %v", got, err)
	}
}
