package bidder

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"hash/crc32"
	"math"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"

	"github.com/bidpulse/bidpulse/bidder/event"
	"github.com/bidpulse/bidpulse/bidder/idset"
	"github.com/bidpulse/bidpulse/bidder/ingest"
	"github.com/bidpulse/bidpulse/internal/allocbound"
	"github.com/bidpulse/bidpulse/windows"
)

// frameCheckpoint returns a checkpoint file of header and windows bytes: magic, version, header
// length, header, windows and a CRC that matches, so that a fuzzer's mutations of the header
// and the windows reach the loader instead of stopping at the checksum.
func frameCheckpoint(header, win []byte) []byte {
	b := append([]byte(checkpointMagic), 0, 0, 0, 0, 0, 0, 0, 0)
	binary.LittleEndian.PutUint32(b[len(checkpointMagic):], checkpointVersion)
	binary.LittleEndian.PutUint32(b[len(checkpointMagic)+4:], uint32(len(header)))
	b = append(append(b, header...), win...)
	return binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, crcTable))
}

// FuzzReadCheckpointFile checks the framing of a checkpoint file (magic, version, header
// length, checksum) on any bytes, as given and with the checksum fixed: no panic, no
// allocation past the file's own size (the header length is a length field), and a header it
// accepts is written back by writeCheckpointTemp to a file that reads to the same header.
func FuzzReadCheckpointFile(f *testing.F) {
	f.Add(frameCheckpoint([]byte(`{"version":2,"stream":"S","seq":7,"written_at":"2026-01-02T03:04:05Z","stats":{"counted":3},"controllers":{"campaigns":{}},"dead_letters":[{"seq":5,"index":1,"reason":1,"data":"e30="}]}`), []byte("BPWINCKP")))
	f.Add(frameCheckpoint([]byte(`{}`), nil))
	f.Add(frameCheckpoint([]byte(`null`), nil))
	f.Add([]byte(checkpointMagic + "\x02\x00\x00\x00\xff\xff\xff\xff{}"))
	f.Add([]byte(checkpointMagic))
	s := newIdleService(f)
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		fixed := data
		if len(data) >= 4 {
			fixed = binary.LittleEndian.AppendUint32(append([]byte(nil), data[:len(data)-4]...), crc32.Checksum(data[:len(data)-4], crcTable))
		}
		for _, in := range [][]byte{data, fixed} {
			path := filepath.Join(dir, "c.ckpt")
			if err := os.WriteFile(path, in, 0o644); err != nil {
				t.Fatal(err)
			}
			var h *checkpointHeader
			var err error
			allocbound.Check(t, "readCheckpointFile", len(in), 1<<20, 64, func() { h, _, err = readCheckpointFile(path) })
			if err != nil {
				continue
			}
			// The header, written again around an empty store's windows, reads back the same.
			var ctl chunkBuf
			ctl.Write(h.Controllers)
			snap, err := s.store.BeginSnapshot()
			if err != nil {
				t.Fatal(err)
			}
			if _, err := writeCheckpointTemp(path, h, &ctl, snap); err != nil {
				t.Fatalf("unexpected error writing back header %+v: %v", h, err)
			}
			h2, _, err := readCheckpointFile(path)
			if err != nil {
				t.Fatalf("unexpected error reading back header %+v: %v", h, err)
			}
			j1, err1 := json.Marshal(h)
			j2, err2 := json.Marshal(h2)
			if err1 != nil || err2 != nil || !bytes.Equal(j1, j2) {
				t.Fatalf("unexpected header round trip; got %s (%v); want %s (%v)", j2, err2, j1, err1)
			}
		}
	})
}

// newLoadService returns a service that was never started, with a dedup file (dedup-5.idset)
// in its checkpoint directory, and the header and windows of a checkpoint of it that loads.
func newLoadService(tb testing.TB) (*Service, checkpointHeader, []byte) {
	tb.Helper()
	s, err := New(Options{DataDir: tb.TempDir(), Instance: "fuzz", MaxKeys: 256, MaxKeyStates: 64, MaxCampaignStates: 16,
		Logger: zerolog.Nop(), Clock: NewManualClock(testNow)})
	if err != nil {
		tb.Fatal(err)
	}
	dir := s.checkpointDir()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		tb.Fatal(err)
	}
	set := idset.New(64 << 10)
	set.Put(set.Hash([]byte("click/a")), 1)
	var db bytes.Buffer
	if _, err := set.Snapshot().WriteTo(&db); err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "dedup-5.idset"), db.Bytes(), 0o644); err != nil {
		tb.Fatal(err)
	}
	var vals windows.Values
	vals[windows.DimCampaign] = []byte("c1")
	s.store.Add(windows.AppendKey(nil, s.rollups.Campaign, s.rollups, &vals), testNow-5000, testNow, windows.Counts{Impressions: 40, Clicks: 3})
	snap, err := s.store.BeginSnapshot()
	if err != nil {
		tb.Fatal(err)
	}
	var win bytes.Buffer
	if _, err := snap.WriteTo(&win); err != nil {
		tb.Fatal(err)
	}
	s.resetState()
	h := checkpointHeader{Version: checkpointVersion, Instance: "fuzz", Stream: s.opts.Stream, Seq: 5, WrittenAt: time.UnixMilli(testNow).UTC(),
		Rollups: s.rollups.Names(), NewestTs: testNow, DedupFile: "dedup-5.idset", DedupGen: 1, Stats: map[string]uint64{"received": 4, "counted": 4},
		Controllers: json.RawMessage(`{"campaigns":{"c1":{"delays":{"weights":[1],"n":1,"start_ms":1}}},"keys":{}}`),
		DeadLetters: []ingest.DeadLetter{{Seq: 5, Index: 1, Subject: "bidpulse.events.x", Reason: event.BadJSON, Data: []byte("{")}}}
	for _, r := range s.store.Resolutions() {
		h.Resolutions = append(h.Resolutions, checkpointRes{WidthMs: r.Width.Milliseconds(), Buckets: r.Buckets})
	}
	return s, h, win.Bytes()
}

// TestLoadCheckpointDedupFileInItsDirectory loads checkpoints whose header names the dedup file
// beside it, and one outside the checkpoint directory: that one is not read.
func TestLoadCheckpointDedupFileInItsDirectory(t *testing.T) {
	s, h, win := newLoadService(t)
	f := func(name string, wantDedup bool) {
		t.Helper()
		defer s.resetState()
		h.DedupFile = name
		hj, err := json.Marshal(&h)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(s.checkpointPath(), frameCheckpoint(hj, win), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := s.loadCheckpoint(context.Background()); err != nil || !s.ckpt.loaded.Load() {
			t.Fatalf("unexpected refusal of the checkpoint naming %q: %v, %v", name, err, s.ckpt.loadErr.Load())
		}
		loadErr, _ := s.ckpt.loadErr.Load().(string)
		if got := loadErr == ""; got != wantDedup {
			t.Fatalf("unexpected dedup load of %q; got error %q; want loaded %v", name, loadErr, wantDedup)
		}
		s.ckpt.loadErr.Store("")
	}
	f("dedup-5.idset", true)
	// The same file, reached from outside the directory.
	if err := os.Rename(filepath.Join(s.checkpointDir(), "dedup-5.idset"), filepath.Join(s.opts.DataDir, "dedup-5.idset")); err != nil {
		t.Fatal(err)
	}
	f("../dedup-5.idset", false)
}

// FuzzLoadCheckpoint checks that a service loads any checkpoint (a header and windows, framed
// with a valid checksum, beside a real dedup file) without panicking, allocating past its
// bounds, or keeping half of a refused one; and that the state of one it loads answers stats
// and bids: a corrupt checkpoint on disk must never stop a restart.
func FuzzLoadCheckpoint(f *testing.F) {
	s, h, win := newLoadService(f)
	hj, err := json.Marshal(&h)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(hj, win)
	f.Add(hj, []byte{})
	h.DedupFile, h.Controllers, h.DeadLetters = "../dedup-5.idset", json.RawMessage(`{"campaigns":{"c1":{"state":{"clicks":{"head":-1}}}}}`), []ingest.DeadLetter{{Reason: 200}}
	hj, _ = json.Marshal(&h)
	f.Add(hj, win)
	f.Add([]byte(`{}`), []byte("BPWINCKP\x02\xff\xff\xff\xff\x0f"))
	path := s.checkpointPath()
	f.Fuzz(func(t *testing.T, header, win []byte) {
		defer s.resetState()
		if err := os.WriteFile(path, frameCheckpoint(header, win), 0o644); err != nil {
			t.Fatal(err)
		}
		var seq uint64
		allocbound.Check(t, "loadCheckpoint", len(header)+len(win), 80<<20, 64, func() { seq, err = s.loadCheckpoint(context.Background()) })
		if err != nil {
			t.Fatalf("unexpected error of a service with no checkpoint kept in NATS: %v", err)
		}
		if !s.ckpt.loaded.Load() {
			if seq != 0 || s.store.Len() != 0 || s.ingest.Stats().Received.Get() != 0 {
				t.Fatalf("unexpected state kept from a refused checkpoint; seq %d, %d keys", seq, s.store.Len())
			}
			return
		}
		if seq != s.ckpt.lastSeq.Load()+1 {
			t.Fatalf("unexpected sequence to consume from; got %d; want %d", seq, s.ckpt.lastSeq.Load()+1)
		}
		var ctx fasthttp.RequestCtx
		s.handleStats(&ctx)
		var m map[string]any
		if ctx.Response.StatusCode() != 200 || json.Unmarshal(ctx.Response.Body(), &m) != nil {
			t.Fatalf("unexpected stats after loading a checkpoint; got %d %s", ctx.Response.StatusCode(), ctx.Response.Body())
		}
		for _, q := range []string{"campaign=c1", "campaign=c1&placement=p&device=mobile", "campaign=c2"} {
			var ctx fasthttp.RequestCtx
			ctx.Request.SetRequestURI("/v1/multiplier?" + q)
			s.handleMultiplier(&ctx)
			if err := json.Unmarshal(ctx.Response.Body(), &m); ctx.Response.StatusCode() != 200 || err != nil {
				t.Fatalf("unexpected answer to %s after loading a checkpoint; got %d %s", q, ctx.Response.StatusCode(), ctx.Response.Body())
			}
			if mult, ok := m["multiplier"].(float64); !ok || math.IsNaN(mult) || mult < 0 || mult > 10 {
				t.Fatalf("unexpected multiplier for %s after loading a checkpoint: %s", q, ctx.Response.Body())
			}
		}
	})
}
