package bidder

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bidpulse/bidpulse/bidder/ingest"
)

func TestDLQKey(t *testing.T) {
	dir := t.TempDir()
	key, err := loadDLQKey(dir)
	if err != nil || len(key) != ingest.DLQKeySize || bytes.Equal(key, make([]byte, ingest.DLQKeySize)) {
		t.Fatalf("unexpected new key %x: %v", key, err)
	}
	path := filepath.Join(dir, dlqKeyFile)
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("unexpected key file %v: %v; want mode 0600", fi, err)
	}
	// Kept: the same key at the next start.
	again, err := loadDLQKey(dir)
	if err != nil || !bytes.Equal(again, key) {
		t.Fatalf("unexpected key at the next start; got %x, %v; want %x", again, err, key)
	}
	// Another data dir, another key.
	other, err := loadDLQKey(t.TempDir())
	if err != nil || bytes.Equal(other, key) {
		t.Fatalf("unexpected key of another data dir; got %x, %v", other, err)
	}
	// A damaged file stops the start, with the way out.
	for _, bad := range []string{"", "zz", strings.Repeat("ab", ingest.DLQKeySize-1)} {
		if err := os.WriteFile(path, []byte(bad), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := loadDLQKey(dir); err == nil || !strings.Contains(err.Error(), "remove the file") {
			t.Fatalf("unexpected result for a key file holding %q; got %v; want an error", bad, err)
		}
	}
}
