package bidder

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/bidpulse/bidpulse/bidder/ingest"
)

// A checkpoint written before dead letters kept known fields holds each
// queued letter as its payload. Loaded, the letters are stored in today's
// form: known fields, keyed hash and size, and no payload (the personal
// data in it goes no further).
func TestCheckpointWithLegacyDeadLetters(t *testing.T) {
	dir := t.TempDir()
	opts := func(o *Options) { o.DataDir, o.ShutdownTimeout = dir, time.Second }
	e := startTestService(t, opts)
	js, err := jetstream.New(e.nc)
	if err != nil {
		t.Fatal(err)
	}
	blockDLQ(t, js)
	pd := `"user_id":"` + canaryUser + `","ip":"` + canaryIP + `"`
	payloads := [][]byte{
		[]byte(`{"id":"r1","type":"view","campaign":"cpriv",` + pd + `}`),
		[]byte(fmt.Sprintf(`{"id":"r2","type":"click","campaign":"cpriv","ts":%d,%s}`, testNow/1000, pd)),
		[]byte(`{` + pd + `,"id":"r3"`),
	}
	jsPublish(t, e.nc, "legacy", payloads)
	e.waitReceived(t, 3)
	if err := e.svc.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}

	// The letters in the checkpoint, as an earlier bidpulse wrote them.
	path := filepath.Join(dir, "checkpoints", "bidpulse_test.ckpt")
	h, _, err := readCheckpointFile(path)
	if err != nil || len(h.DeadLetters) != 3 {
		t.Fatalf("unexpected checkpoint %v: %v; want 3 letters", h, err)
	}
	seqs := []uint64{h.DeadLetters[0].Seq, h.DeadLetters[1].Seq, h.DeadLetters[2].Seq}
	if !slices.IsSorted(seqs) {
		t.Fatalf("unexpected order of the letters: %v", seqs)
	}
	var legacy []map[string]any
	for i, l := range h.DeadLetters {
		legacy = append(legacy, map[string]any{"seq": l.Seq, "index": l.Index, "subject": l.Subject, "reason": l.Reason, "data": payloads[i]})
	}
	rewriteCheckpointHeader(t, path, func(h map[string]any) { h["dead_letters"] = legacy })
	if b, _ := os.ReadFile(path); !bytes.Contains(b, []byte(`"data":"`)) {
		t.Fatalf("the rewritten checkpoint holds no payload")
	}

	unblockDLQ(t, dir)

	e = startTestService(t, opts)
	js, _ = jetstream.New(e.nc)
	key, err := loadDLQKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		`{"id":"r1","type":"view","campaign":"cpriv"}`,
		fmt.Sprintf(`{"id":"r2","type":"click","campaign":"cpriv","ts":%d}`, testNow/1000),
		`{}`,
	}
	for i, m := range dlqMessages(t, js, 3) {
		mac := hmac.New(sha256.New, key)
		mac.Write(payloads[i])
		if string(m.Data) != want[i] || m.Header.Get(ingest.BodyHeader) != ingest.BodyFields ||
			m.Header.Get(ingest.PayloadHashHeader) != "hmac-sha256:"+hex.EncodeToString(mac.Sum(nil)) ||
			m.Header.Get(ingest.PayloadBytesHeader) != strconv.Itoa(len(payloads[i])) {
			t.Fatalf("unexpected letter %d; got %v %s; want the body %s", i, m.Header, m.Data, want[i])
		}
		noCanary(t, "a dead letter", m.Data)
	}
}

// rewriteCheckpointHeader rewrites the header of the checkpoint at path
// through edit (numbers kept exact), with the rest of the file as it was
// and a new CRC.
func rewriteCheckpointHeader(t *testing.T, path string, edit func(h map[string]any)) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	p := b[len(checkpointMagic) : len(b)-4]
	hl := binary.LittleEndian.Uint32(p[4:])
	d := json.NewDecoder(bytes.NewReader(p[8 : 8+hl]))
	d.UseNumber()
	var h map[string]any
	if err := d.Decode(&h); err != nil {
		t.Fatal(err)
	}
	edit(h)
	hj, err := json.Marshal(h)
	if err != nil {
		t.Fatal(err)
	}
	out := append([]byte(checkpointMagic), p[:4]...)
	out = binary.LittleEndian.AppendUint32(out, uint32(len(hj)))
	out = append(out, hj...)
	out = append(out, p[8+hl:]...)
	out = binary.LittleEndian.AppendUint32(out, crc32.Checksum(out, crcTable))
	if err := os.WriteFile(path, out, 0o600); err != nil {
		t.Fatal(err)
	}
}
