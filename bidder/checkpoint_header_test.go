package bidder

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestCheckpointHeaderSplicesControllers writes checkpoints whose
// controller state, kept in chunks, is spliced into the header (several
// chunks, and none) and reads them back.
func TestCheckpointHeaderSplicesControllers(t *testing.T) {
	s := newIdleService(t)
	var big bytes.Buffer
	big.WriteString(`{"campaigns":{},"keys":{`)
	for i := range 5000 {
		if i > 0 {
			big.WriteByte(',')
		}
		fmt.Fprintf(&big, `"k%d":{"value":%d.5,"note":"<&>\u00e9"}`, i, i)
	}
	big.WriteString(`}}`)
	for _, ctl := range [][]byte{big.Bytes(), nil} {
		var cb chunkBuf
		// Written in uneven pieces, as writeControllers does.
		for p := ctl; len(p) > 0; {
			k := min(len(p), 1+len(p)%977)
			cb.Write(p[:k])
			p = p[k:]
		}
		if len(ctl) > 2*chunkSize && len(cb.chunks) < 3 {
			t.Fatalf("unexpected %d chunks for %d bytes", len(cb.chunks), len(ctl))
		}
		snap, err := s.store.BeginSnapshot()
		if err != nil {
			t.Fatal(err)
		}
		h := checkpointHeader{Version: checkpointVersion, Instance: "i", Stream: "S", Seq: 42, WrittenAt: time.UnixMilli(testNow).UTC(),
			Stats: map[string]uint64{"counted": 7}, Controllers: json.RawMessage(`{"ignored":true}`)}
		path := filepath.Join(t.TempDir(), "c.ckpt")
		size, err := writeCheckpointTemp(path, &h, &cb, snap)
		if err != nil {
			t.Fatal(err)
		}
		got, win, err := readCheckpointFile(path)
		if err != nil {
			t.Fatalf("unexpected error reading the checkpoint of %d bytes: %v", size, err)
		}
		if !bytes.Equal(got.Controllers, ctl) {
			t.Fatalf("unexpected controllers (%d bytes); want the %d written", len(got.Controllers), len(ctl))
		}
		if got.Seq != 42 || got.Stream != "S" || got.Stats["counted"] != 7 || !got.WrittenAt.Equal(h.WrittenAt) {
			t.Fatalf("unexpected header %+v", got)
		}
		if err := s.store.ReadCheckpoint(bytes.NewReader(win)); err != nil {
			t.Fatalf("unexpected error reading the windows: %v", err)
		}
	}
}

// TestRenameReplacingKeepsLinkedFile replaces a file that has another name
// (a hard link): the file behind the other name must stay whole, and the
// new file must be in place.
func TestRenameReplacingKeepsLinkedFile(t *testing.T) {
	dir := t.TempDir()
	path, link, tmp := filepath.Join(dir, "c.ckpt"), filepath.Join(dir, "backup"), filepath.Join(dir, "c.ckpt.tmp")
	old := bytes.Repeat([]byte("old"), 10<<20/3)
	if err := os.WriteFile(path, old, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(path, link); err != nil {
		t.Skipf("no hard links here: %v", err)
	}
	if err := os.WriteFile(tmp, []byte("new"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := renameReplacing(tmp, path); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(path); string(b) != "new" {
		t.Fatalf("unexpected content at path: %.20q", b)
	}
	if b, _ := os.ReadFile(link); !bytes.Equal(b, old) {
		t.Fatalf("unexpected content of the linked file: %d bytes; want %d", len(b), len(old))
	}
	// With no other name, the replaced file is released.
	os.Remove(link)
	os.WriteFile(tmp, []byte("newer"), 0o644)
	if err := renameReplacing(tmp, path); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(path); string(b) != "newer" {
		t.Fatalf("unexpected content at path: %.20q", b)
	}
}
