package windows

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

// fillRandom adds events to nKeys keys at random event times (late,
// out-of-order and future ones included) and returns the keys and the final now.
func fillRandom(t testing.TB, s *Store, rng *rand.Rand, nKeys, events int, now int64) ([][]byte, int64) {
	t.Helper()
	keys := make([][]byte, nKeys)
	for i := range keys {
		keys[i] = testKey(rng.IntN(4), fmt.Sprintf("key%d-%s", i, strings.Repeat("x", rng.IntN(40))))
	}
	for i := 0; i < events; i++ {
		switch rng.IntN(20) {
		case 0:
			now += rng.Int64N(3 * hourMs)
		default:
			now += rng.Int64N(10 * secondMs)
		}
		ts := now - rng.Int64N(2*hourMs)
		if rng.IntN(10) == 0 {
			ts = now - rng.Int64N(30*hourMs)
		}
		c := Counts{Impressions: rng.Uint64N(4), Clicks: rng.Uint64N(2), CostMicros: rng.Uint64N(5000)}
		if rng.IntN(30) == 0 {
			c = Counts{Impressions: math.MaxUint64 - 3, Conversions: 1, ValueMicros: math.MaxUint64}
		}
		if !s.Add(keys[rng.IntN(len(keys))], ts, now, c) {
			t.Fatalf("unexpected Add failure")
		}
	}
	return keys, now
}

func checkpointBytes(t testing.TB, s *Store) []byte {
	t.Helper()
	var buf bytes.Buffer
	n, err := s.WriteCheckpoint(&buf)
	if err != nil {
		t.Fatalf("unexpected error: %s", err)
	}
	if n != int64(buf.Len()) {
		t.Fatalf("unexpected size; got %d; want %d", n, buf.Len())
	}
	return buf.Bytes()
}

// sameContent fails unless a and b answer the same for keys at every time of nows.
func sameContent(t *testing.T, a, b *Store, keys [][]byte, nows []int64) {
	t.Helper()
	if a.Len() != b.Len() {
		t.Fatalf("unexpected Len; got %d; want %d", b.Len(), a.Len())
	}
	var da, db [NumSpans]Counts
	for _, now := range nows {
		for _, k := range keys {
			okA, okB := a.Read(k, now, &da), b.Read(k, now, &db)
			if okA != okB || da != db {
				t.Fatalf("unexpected Read(%q) at %d; got %v %+v; want %v %+v", k, now, okB, db, okA, da)
			}
		}
	}
}

func TestCheckpointRoundTrip(t *testing.T) {
	configs := [][]Resolution{
		DefaultResolutions(),
		{{10 * time.Second, 6}, {time.Minute, 15}, {15 * time.Minute, 4}, {time.Hour, 24}},
		{{time.Hour, 26}, {100 * time.Second, 40}, {12 * time.Second, 5}},
	}
	rng := rand.New(rand.NewPCG(3, 4))
	for ci, res := range configs {
		for round := 0; round < 10; round++ {
			a := mustStore(t, Config{Resolutions: res})
			start := t0
			if round == 0 {
				start = rng.Int64N(hourMs) // near the epoch
			}
			keys, now := fillRandom(t, a, rng, 1+rng.IntN(200), rng.IntN(3000), start)
			a.EvictIdle(now) // slots reused, arenas compacted
			more, now2 := fillRandom(t, a, rng, 50, 500, now)
			keys = append(keys, more...)
			data := checkpointBytes(t, a)

			b := mustStore(t, Config{Resolutions: res})
			b.Add(testKey(0, "stale"), now2, now2, Counts{Clicks: 9}) // replaced by the load
			if err := b.ReadCheckpoint(bytes.NewReader(data)); err != nil {
				t.Fatalf("cfg %d round %d: unexpected error: %s", ci, round, err)
			}
			if b.Contains(testKey(0, "stale")) && !a.Contains(testKey(0, "stale")) {
				t.Fatalf("unexpected key kept from before the load")
			}
			nows := []int64{now2, now2 - 7*secondMs, now2 - 40*minuteMs, now2 + 3*secondMs, now2 + 50*secondMs, now2 + 30*minuteMs, now2 + 23*hourMs, start}
			sameContent(t, a, b, keys, nows)
			// Writing the loaded store gives the same bytes count (order may differ).
			if data2 := checkpointBytes(t, b); len(data2) != len(data) {
				t.Fatalf("unexpected size of a re-written checkpoint; got %d; want %d", len(data2), len(data))
			}
			// Further Adds land the same (bucket tags restored), and the newest
			// event times evict the same keys at the same times.
			for i := 0; i < 200; i++ {
				k := keys[rng.IntN(len(keys))]
				now2 += rng.Int64N(20 * minuteMs)
				ts := now2 - rng.Int64N(3*hourMs)
				a.Add(k, ts, now2, Counts{Impressions: 1, Clicks: 1})
				b.Add(k, ts, now2, Counts{Impressions: 1, Clicks: 1})
			}
			sameContent(t, a, b, keys, []int64{now2, now2 - hourMs})
			for _, step := range []int64{hourMs, 20 * hourMs, 2 * hourMs, 3 * hourMs, 30 * hourMs} {
				now2 += step
				if na, nb := a.EvictIdle(now2), b.EvictIdle(now2); na != nb {
					t.Fatalf("unexpected EvictIdle at %d; got %d; want %d", now2, nb, na)
				}
				sameContent(t, a, b, keys, []int64{now2})
				for _, k := range keys {
					if a.Contains(k) != b.Contains(k) {
						t.Fatalf("unexpected Contains(%q) after eviction", k)
					}
				}
			}
		}
	}
}

func TestCheckpointEmptyAndSparse(t *testing.T) {
	a := mustStore(t, Config{})
	data := checkpointBytes(t, a)
	b := mustStore(t, Config{})
	b.Add(testKey(0, "c"), t0, t0, Counts{Impressions: 1})
	if err := b.ReadCheckpoint(bytes.NewReader(data)); err != nil || b.Len() != 0 {
		t.Fatalf("unexpected load of an empty checkpoint; err=%v len=%d", err, b.Len())
	}
	// A key that saw one event costs its key bytes plus a few dozen bytes.
	const n = 1000
	for i := 0; i < n; i++ {
		a.Add(testKey(1, fmt.Sprintf("c%04d", i)), t0, t0, Counts{Impressions: 1, CostMicros: 2100})
	}
	perKey := float64(len(checkpointBytes(t, a))-len(data)) / n
	if perKey > 48 {
		t.Fatalf("unexpected checkpoint bytes per sparse key; got %.1f; want <= 48", perKey)
	}
}

type failingWriter struct{ left int }

func (w *failingWriter) Write(p []byte) (int, error) {
	if len(p) > w.left {
		n := w.left
		w.left = 0
		return n, errors.New("disk full")
	}
	w.left -= len(p)
	return len(p), nil
}

func TestCheckpointWriteError(t *testing.T) {
	s := mustStore(t, Config{})
	fillRandom(t, s, rand.New(rand.NewPCG(1, 1)), 3000, 20000, t0)
	for _, left := range []int{0, 10, 100 << 10} {
		n, err := s.WriteCheckpoint(&failingWriter{left: left})
		if err == nil || !strings.Contains(err.Error(), "disk full") || n != int64(left) {
			t.Fatalf("unexpected result with a failing writer; got %d, %v; want %d, disk full", n, err, left)
		}
	}
	// The shard locks were released.
	s.Add(testKey(0, "after"), t0, t0, Counts{Impressions: 1})
}

// withCRC returns data with its last 4 bytes replaced by the CRC of the rest.
func withCRC(data []byte) []byte {
	if len(data) < 4 {
		return data
	}
	out := append([]byte(nil), data...)
	binary.LittleEndian.PutUint32(out[len(out)-4:], crc32.Checksum(out[:len(out)-4], ckptCRC))
	return out
}

func TestCheckpointRefused(t *testing.T) {
	a := mustStore(t, Config{MaxKeys: 100})
	keys, now := fillRandom(t, a, rand.New(rand.NewPCG(5, 6)), 60, 2000, t0)
	data := checkpointBytes(t, a)
	f := func(name string, s *Store, in []byte, wantSubstr string) {
		t.Helper()
		s.Add(testKey(0, "before"), t0, t0, Counts{Impressions: 1})
		err := s.ReadCheckpoint(bytes.NewReader(in))
		if err == nil {
			t.Fatalf("%s: unexpected success", name)
		}
		if !strings.Contains(err.Error(), wantSubstr) || !strings.HasPrefix(err.Error(), "cannot read windows checkpoint: ") {
			t.Fatalf("%s: unexpected error; got %q; want it to contain %q", name, err, wantSubstr)
		}
		if s.Len() != 0 || s.Contains(testKey(0, "before")) || s.Contains(keys[0]) {
			t.Fatalf("%s: unexpected content after a refused load; len=%d", name, s.Len())
		}
		n := 0
		s.Scan(-1, Span24h, now, func([]byte, Counts) bool { n++; return true })
		if n != 0 {
			t.Fatalf("%s: unexpected keys scanned after a refused load: %d", name, n)
		}
	}
	b := mustStore(t, Config{MaxKeys: 100})
	f("empty", b, nil, "bad magic")
	f("magic", b, []byte("BPWINCKQ\x01"), "bad magic")
	f("json", b, []byte(`{"keys":[]}`), "bad magic")
	for _, v := range []byte{1, 3} {
		other := append([]byte(ckptMagic), v)
		f(fmt.Sprintf("version %d", v), b, append(other, data[len(other):]...), fmt.Sprintf("format version %d is not supported", v))
	}
	f("resolutions", mustStore(t, Config{Resolutions: []Resolution{{5 * time.Second, 12}, {time.Minute, 15}, {5 * time.Minute, 12}, {time.Hour, 25}}}), data,
		"written with resolutions 12 x 5s, 15 x 1m0s, 12 x 5m0s, 24 x 1h0m0s; this store uses 12 x 5s, 15 x 1m0s, 12 x 5m0s, 25 x 1h0m0s")
	f("fewer rings", mustStore(t, Config{Resolutions: []Resolution{{time.Minute, 1440}}}), data, "written with resolutions")
	f("max keys", mustStore(t, Config{MaxKeys: 59}), data, "more than MaxKeys (59)")
	f("trailing", b, append(append([]byte(nil), data...), 0), "unexpected data after")
	f("truncated", b, data[:len(data)-1], "truncated data")
	small := mustStore(t, Config{})
	fillRandom(t, small, rand.New(rand.NewPCG(9, 9)), 8, 100, t0)
	sdata := checkpointBytes(t, small)
	for cut := 0; cut < len(sdata); cut++ {
		f(fmt.Sprintf("truncated at %d", cut), b, sdata[:cut], "")
	}
	// Every single-byte corruption is refused, by the checksum if nothing else.
	for i := len(ckptMagic); i < len(sdata); i++ {
		bad := append([]byte(nil), sdata...)
		bad[i] ^= 0x40
		f(fmt.Sprintf("flip at %d", i), b, bad, "")
	}
	bad := append([]byte(nil), data...)
	bad[len(bad)/2] ^= 1
	f("checksum", b, bad, "")

	// Structural errors behind a valid checksum.
	hdr := func() []byte {
		h := append([]byte(ckptMagic), ckptVersion, 4)
		for _, r := range DefaultResolutions() {
			h = binary.AppendUvarint(h, uint64(r.Width.Milliseconds()))
			h = binary.AppendUvarint(h, uint64(r.Buckets))
		}
		return append(h, 1)
	}
	g := func(name string, body []byte, wantSubstr string) {
		t.Helper()
		in := withCRC(append(append(hdr(), body...), 0, 0, 0, 0))
		if wantSubstr == "" {
			if err := b.ReadCheckpoint(bytes.NewReader(in)); err != nil || b.Len() != 1 {
				t.Fatalf("%s: unexpected result; err=%v len=%d", name, err, b.Len())
			}
			return
		}
		f(name, b, in, wantSubstr)
	}
	rec := func(key string, newest int64, rings ...[]byte) []byte {
		r := binary.AppendUvarint(nil, uint64(len(key)))
		r = append(r, key...)
		r = binary.AppendVarint(r, newest)
		for _, x := range rings {
			r = append(r, x...)
		}
		return r
	}
	one := []byte{1, 1, 0, 1, 1} // head at the newest epoch, one bucket there, impressions 1
	none := []byte{0}
	ok := rec("k", t0, one, one, one, one)
	g("valid", append(ok, 0, 1), "") // the helpers build valid records
	g("duplicate key", append(append(ok, ok...), 0, 2), "appears twice")
	g("count", append(ok, 0, 2), "it counts 2 keys; 1 were read")
	g("mask", append(rec("k", t0, []byte{1, 1, 0, 0x20}, none, none, none), 0, 1), "counter mask")
	g("too many buckets", append(rec("k", t0, []byte{1, 13}, none, none, none), 0, 1), "13 buckets in ring 0 of 12")
	g("same slot", append(rec("k", t0, []byte{1, 2, 0, 1, 1, 0, 1, 1}, none, none, none), 0, 1), "two buckets in one slot")
	g("head before epoch", append(rec("k", 0, []byte{3, 0}, none, none, none), 0, 1), "head before the epoch")
	g("bucket before epoch", append(rec("k", 0, []byte{1, 1, 2, 0}, none, none, none), 0, 1), "bucket 2 before the head")
	g("bucket out of ring", append(rec("k", t0, []byte{1, 1, 12, 0}, none, none, none), 0, 1), "bucket 12 before the head")
	wide := binary.AppendUvarint([]byte{1, 1, 0, 1}, 1<<32)
	g("counter width", append(rec("k", t0, wide, none, none, none), 0, 1), "over its bucket width")
	money := binary.AppendUvarint([]byte{1, 1, 0, 8}, 1<<48)
	g("money width", append(rec("k", t0, money, none, none, none), 0, 1), "over its bucket width")
	dense := []byte{1, 5, 0, 1, 1, 1, 1, 1, 2, 1, 1, 3, 1, 1, 4, 1, 1}
	g("dense valid", append(rec("k", t0, dense, one, none, none), 0, 1), "")
	g("long key", binary.AppendUvarint(nil, maxCheckpointKeyLen+1), "bytes")
	g("bad varint", bytes.Repeat([]byte{0xff}, 11), "bad varint")
	rings := binary.AppendUvarint(append([]byte(ckptMagic), ckptVersion), 1<<20)
	f("ring count", b, withCRC(append(rings, 0, 0, 0, 0)), "corrupt header: 1048576 rings")
}

// A reader that returns one byte at a time exercises every refill path.
type byteReader struct{ r io.Reader }

func (br byteReader) Read(p []byte) (int, error) {
	if len(p) > 1 {
		p = p[:1]
	}
	return br.r.Read(p)
}

func TestCheckpointSmallReads(t *testing.T) {
	a := mustStore(t, Config{})
	keys, now := fillRandom(t, a, rand.New(rand.NewPCG(7, 8)), 100, 3000, t0)
	data := checkpointBytes(t, a)
	b := mustStore(t, Config{})
	if err := b.ReadCheckpoint(byteReader{bytes.NewReader(data)}); err != nil {
		t.Fatalf("unexpected error: %s", err)
	}
	sameContent(t, a, b, keys, []int64{now, now - hourMs})
	if err := b.ReadCheckpoint(byteReader{bytes.NewReader(data[:len(data)-2])}); err == nil || b.Len() != 0 {
		t.Fatalf("unexpected result of a truncated load; err=%v len=%d", err, b.Len())
	}
}
