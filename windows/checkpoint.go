package windows

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/bidpulse/bidpulse/internal/pace"
)

// A checkpoint is the whole content of a Store in a versioned,
// self-describing binary format that does not depend on the in-memory
// layout (shards, slots, sparse or dense blocks, hash seed): only the rings'
// resolutions must match. All integers are varints (encoding/binary), "zz"
// marks a zigzag (signed) varint:
//
//	magic "BPWINCKP"
//	uvarint format version (ckptVersion)
//	uvarint number of rings R, then R x (uvarint width in ms, uvarint buckets)
//	uvarint number of keys (a sizing hint; the trailer has the real count)
//	per live key:
//	  uvarint key length L (1..maxCheckpointKeyLen), L key bytes
//	  zz newest event time added to the key (Unix ms)
//	  per ring, in configured order:
//	    uvarint 0 when the ring never took an event, else 1 + zz(base - head)
//	    and then uvarint n, the non-zero buckets (at most the ring's buckets),
//	    n x (uvarint head-epoch (< buckets), mask byte, one uvarint per set mask bit)
//	uvarint 0 (end of the keys)
//	uvarint number of keys written
//	4 bytes CRC-32C (Castagnoli, little endian) of every byte before it
//
// epoch is the bucket number (event time / width), head the newest epoch the
// ring took, base = max(newest, 0) / width; so the current buckets take one
// byte. The mask says which counters are non-zero (bit 0 impressions, 1
// clicks, 2 conversions, 3 cost micros, 4 value micros; the other bits are
// zero), and each counter fits its bucket width. Zero buckets are not written,
// so a key that saw one event costs a few dozen bytes. A loaded key is sparse
// when every ring has at most 4 buckets, else dense.
//
// Version 1 (the layout before heads) is refused; a caller falls back to
// replaying events.
const (
	ckptMagic   = "BPWINCKP"
	ckptVersion = 2

	// maxCheckpointKeyLen bounds a key in a checkpoint, so corrupt input
	// cannot ask for a huge buffer; AppendKey keys are under 1 KiB.
	maxCheckpointKeyLen = 1 << 20

	ckptFlushAt = 64 << 10

	// ckptAhead is how many keys ahead WriteCheckpoint prefetches.
	ckptAhead = 8
)

var ckptCRC = crc32.MakeTable(crc32.Castagnoli)

// WriteCheckpoint writes every live key (key bytes, newest event time, and
// its buckets) to w in a versioned, self-describing binary format that
// records the resolutions it was written with (see the format above). It
// goes through the shards in turn as a reader: it takes no lock, and each
// key is encoded from one consistent state (re-encoded if a write overlapped
// it), so bid reads never wait for it. For a consistent snapshot of all keys
// the caller pauses Adds (bidder holds its applier lock); with Adds going
// on, every key is still whole but keys may be seen at different moments.
// Output is buffered: w gets writes of about 64 KiB. Returns bytes written.
func (s *Store) WriteCheckpoint(w io.Writer) (int64, error) {
	cw := ckptWriter{w: w, buf: make([]byte, 0, ckptFlushAt+4096)}
	cw.buf = s.appendCheckpointHeader(cw.buf, uint64(s.Len()))
	var keys uint64
	if err := s.walkKeys(&cw, nil, nil, &keys); err != nil {
		return cw.n, err
	}
	return cw.finish(keys)
}

// appendCheckpointHeader appends the magic, the version, the rings and the
// key-count hint.
func (s *Store) appendCheckpointHeader(b []byte, hint uint64) []byte {
	b = append(b, ckptMagic...)
	b = binary.AppendUvarint(b, ckptVersion)
	b = binary.AppendUvarint(b, uint64(len(s.rings)))
	for _, r := range s.rings {
		b = binary.AppendUvarint(b, uint64(r.width))
		b = binary.AppendUvarint(b, uint64(r.buckets))
	}
	return binary.AppendUvarint(b, hint)
}

// walkKeys appends the record of every live key to cw as a reader, adding
// to *keys. want (when set) is asked before a key of shard i and local id
// is read; keep (when set) after it was read whole: false drops the record.
func (s *Store) walkKeys(cw *ckptWriter, want, keep func(i int, local uint32) bool, keys *uint64) error {
	var pacer pace.Pacer
	for i := range s.shards {
		sh := &s.shards[i]
		for id := 0; ; id++ {
			if id%256 == 255 {
				pacer.Check()
			}
			end, wrote, long := false, false, 0
			// Blocks are in slot order, not metas order: keep a few loads ahead.
			if mb := sh.metas.Load(); id+ckptAhead < len(mb.m) {
				if m := &mb.m[id+ckptAhead]; atomic.LoadUint64(&m.hash) != 0 {
					prefetch(s.blockOf(ref(atomic.LoadUint64(&m.ref))))
				}
			}
			if want != nil && id < len(sh.metas.Load().m) && !want(i, uint32(id)) {
				continue
			}
			for {
				mark := len(cw.buf)
				seq := sh.readBegin()
				ar := sh.arena.Load()
				mb := sh.metas.Load()
				end, wrote, long = id >= len(mb.m), false, 0
				if !end {
					m := &mb.m[id]
					if atomic.LoadUint64(&m.hash) != 0 {
						r := ref(atomic.LoadUint64(&m.ref))
						key, ok := recKey(ar.b, r.off())
						p := s.blockOf(r)
						switch {
						case !ok || p == nil || len(key) == 0:
						case len(key) > maxCheckpointKeyLen:
							long = len(key)
						default:
							cw.buf = s.appendKeyRecord(cw.buf, key, p, r.dense())
							wrote = true
						}
					}
				}
				if sh.readValid(seq) {
					if wrote && keep != nil && !keep(i, uint32(id)) {
						cw.buf, wrote = cw.buf[:mark], false
					}
					break
				}
				cw.buf = cw.buf[:mark]
			}
			if end {
				break
			}
			if long > 0 {
				return fmt.Errorf("cannot checkpoint a key of %d bytes: at most %d fit", long, maxCheckpointKeyLen)
			}
			if wrote {
				*keys++
				if len(cw.buf) >= ckptFlushAt {
					if err := cw.flush(); err != nil {
						return err
					}
				}
			}
		}
	}
	return nil
}

// appendKeyRecord appends the record of a key whose block is p. A reader
// calls it between readBegin and readValid: with a block a writer is
// changing it writes garbage (bounded), which the caller discards.
func (s *Store) appendKeyRecord(b []byte, key []byte, p unsafe.Pointer, dense bool) []byte {
	b = binary.AppendUvarint(b, uint64(len(key)))
	b = append(b, key...)
	newest := *blockNewest(p)
	b = binary.AppendVarint(b, newest)
	for ri := range s.rings {
		rg := &s.rings[ri]
		h := *blockHead(p, ri)
		if h < 0 {
			b = append(b, 0)
			continue
		}
		base := uint64(rg.wdiv.div(max(newest, 0)))
		// Wrapping arithmetic: any head round-trips exactly.
		b = binary.AppendUvarint(b, zigzag(int64(base-uint64(h)))+1)
		var c Counts
		if dense {
			// Slots below the floor are stale.
			rb := rg.dense(p)
			f := *blockFloor(p, len(s.rings), ri)
			n := 0
			for j := range rb {
				if rb[j] != (bucket{}) && rg.epochOf(h, int64(j)) >= f {
					n++
				}
			}
			b = binary.AppendUvarint(b, uint64(n))
			for j := range rb {
				if rb[j] != (bucket{}) && rg.epochOf(h, int64(j)) >= f {
					b = binary.AppendUvarint(b, uint64(h-rg.epochOf(h, int64(j))))
					c = (&sums{}).plus(&rb[j])
					b = appendCounts(b, &c)
				}
			}
			continue
		}
		es := rg.sparse(p)
		n := 0
		for j := range es {
			if es[j].tag != 0 && es[j].b != (bucket{}) {
				n++
			}
		}
		b = binary.AppendUvarint(b, uint64(n))
		for j := range es {
			if es[j].tag != 0 && es[j].b != (bucket{}) {
				b = binary.AppendUvarint(b, uint64(h-rg.epochOf(h, int64(es[j].tag-1))))
				c = (&sums{}).plus(&es[j].b)
				b = appendCounts(b, &c)
			}
		}
	}
	return b
}

func zigzag(v int64) uint64 { return uint64(v<<1) ^ uint64(v>>63) }

func appendCounts(b []byte, c *Counts) []byte {
	vals := [5]uint64{c.Impressions, c.Clicks, c.Conversions, c.CostMicros, c.ValueMicros}
	var mask byte
	for i, v := range vals {
		if v != 0 {
			mask |= 1 << i
		}
	}
	b = append(b, mask)
	for _, v := range vals {
		if v != 0 {
			b = binary.AppendUvarint(b, v)
		}
	}
	return b
}

// ckptWriter buffers a checkpoint and keeps its running CRC and size.
type ckptWriter struct {
	w   io.Writer
	buf []byte
	crc uint32
	n   int64
}

func (cw *ckptWriter) flush() error {
	if len(cw.buf) == 0 {
		return nil
	}
	cw.crc = crc32.Update(cw.crc, ckptCRC, cw.buf)
	n, err := cw.w.Write(cw.buf)
	cw.n += int64(n)
	if err == nil && n < len(cw.buf) {
		err = io.ErrShortWrite
	}
	cw.buf = cw.buf[:0]
	if err != nil {
		return fmt.Errorf("cannot write windows checkpoint: %w", err)
	}
	return nil
}

// ReadCheckpoint replaces the store's content with a checkpoint read from r,
// which must hold one checkpoint and nothing after it. It returns a clear
// error, and leaves the store empty, when the data is corrupt, truncated, or
// written with other resolutions (or another format version); it never panics
// on any input. More keys than MaxKeys is an error. The caller pauses Adds
// while it runs; reads meanwhile may see part of the checkpoint.
func (s *Store) ReadCheckpoint(r io.Reader) error {
	s.reset()
	if err := s.readCheckpoint(r); err != nil {
		s.reset()
		return fmt.Errorf("cannot read windows checkpoint: %w", err)
	}
	return nil
}

var errCkptTruncated = errors.New("truncated data")

// ckptBucket is one decoded bucket: its ring and slot.
type ckptBucket struct {
	ring int
	slot int64
	b    bucket
}

func (s *Store) readCheckpoint(r io.Reader) error {
	cr := ckptReader{r: r, buf: make([]byte, 0, 64<<10)}
	if !cr.fill(len(ckptMagic)) || string(cr.buf[:len(ckptMagic)]) != ckptMagic {
		if cr.rerr != nil && cr.rerr != errCkptTruncated {
			return cr.rerr
		}
		return errors.New("not a windows checkpoint (bad magic)")
	}
	cr.pos = len(ckptMagic)
	if v := cr.uvarint(); cr.err == nil && v != ckptVersion {
		return fmt.Errorf("format version %d is not supported (this build reads version %d)", v, ckptVersion)
	}
	nr := cr.uvarint()
	if cr.err != nil {
		return cr.err
	}
	if nr > maxRingBuckets {
		return fmt.Errorf("corrupt header: %d rings", nr)
	}
	res := make([]Resolution, 0, min(nr, 64))
	same := nr == uint64(len(s.rings))
	for i := uint64(0); i < nr && cr.err == nil; i++ {
		w, n := cr.uvarint(), cr.uvarint()
		if w > uint64(maxRingWindow.Milliseconds()) || n > maxRingBuckets {
			return fmt.Errorf("corrupt header: ring %d of %d x %d ms", i, n, w)
		}
		res = append(res, Resolution{Width: time.Duration(w) * time.Millisecond, Buckets: int(n)})
		if same && (int64(w) != s.rings[i].width || int64(n) != s.rings[i].buckets) {
			same = false
		}
	}
	hint := cr.uvarint()
	if cr.err != nil {
		return cr.err
	}
	if !same {
		return fmt.Errorf("it was written with resolutions %s; this store uses %s", formatResolutions(res), formatResolutions(s.res))
	}
	if hint <= uint64(s.maxKeys) {
		s.presize(int(hint))
	}

	var keys uint64
	var key []byte
	var heads [maxRings]int64
	bks := make([]ckptBucket, 0, 64)
	seen := make([]uint32, s.stride()) // generation stamps per ring slot
	for {
		klen := cr.uvarint()
		if cr.err != nil {
			return cr.err
		}
		if klen == 0 {
			break
		}
		if klen > maxCheckpointKeyLen {
			return fmt.Errorf("corrupt key %d: %d bytes", keys, klen)
		}
		if !cr.need(int(klen)) {
			return cr.err
		}
		key = append(key[:0], cr.buf[cr.pos:cr.pos+int(klen)]...)
		cr.pos += int(klen)
		newest := cr.varint()
		bks = bks[:0]
		dense := false
		gen := uint32(keys + 1)
		off := 0
		for i := range s.rings {
			rg := &s.rings[i]
			heads[i] = -1
			hc := cr.uvarint()
			if cr.err != nil {
				return cr.err
			}
			if hc == 0 {
				off += int(rg.buckets)
				continue
			}
			base := uint64(rg.wdiv.div(max(newest, 0)))
			h := int64(base - uint64(unzigzag(hc-1)))
			if h < 0 {
				return fmt.Errorf("corrupt key %.64q: ring %d head before the epoch", key, i)
			}
			heads[i] = h
			n := cr.uvarint()
			if cr.err != nil {
				return cr.err
			}
			if n > uint64(rg.buckets) {
				return fmt.Errorf("corrupt key %.64q: %d buckets in ring %d of %d", key, n, i, rg.buckets)
			}
			dense = dense || n > uint64(rg.sparseCap)
			for j := uint64(0); j < n; j++ {
				d := cr.uvarint()
				var c Counts
				mask := cr.byte()
				if mask >= 1<<5 {
					return fmt.Errorf("corrupt key %.64q: counter mask %#x", key, mask)
				}
				for bit, p := range [5]*uint64{&c.Impressions, &c.Clicks, &c.Conversions, &c.CostMicros, &c.ValueMicros} {
					if mask&(1<<bit) != 0 {
						*p = cr.uvarint()
					}
				}
				if cr.err != nil {
					return cr.err
				}
				if d >= uint64(rg.buckets) || int64(d) > h {
					return fmt.Errorf("corrupt key %.64q: bucket %d before the head of ring %d", key, d, i)
				}
				if c.Impressions > MaxBucketEvents || c.Clicks > MaxBucketEvents || c.Conversions > MaxBucketEvents ||
					c.CostMicros > MaxBucketMicros || c.ValueMicros > MaxBucketMicros {
					return fmt.Errorf("corrupt key %.64q: a counter over its bucket width", key)
				}
				slot := rg.bdiv.mod(h - int64(d))
				if seen[off+int(slot)] == gen {
					return fmt.Errorf("corrupt key %.64q: two buckets in one slot of ring %d", key, i)
				}
				seen[off+int(slot)] = gen
				var bk bucket
				var added sums
				bk.add(&c, &added)
				bks = append(bks, ckptBucket{ring: i, slot: slot, b: bk})
			}
			off += int(rg.buckets)
		}
		if err := s.loadKey(key, newest, heads[:len(s.rings)], bks, dense); err != nil {
			return err
		}
		keys++
	}
	n := cr.uvarint()
	if cr.err != nil {
		return cr.err
	}
	if n != keys {
		return fmt.Errorf("corrupt trailer: it counts %d keys; %d were read", n, keys)
	}
	crc := crc32.Update(cr.crc, ckptCRC, cr.buf[:cr.pos])
	if !cr.need(4) {
		return cr.err
	}
	if got := binary.LittleEndian.Uint32(cr.buf[cr.pos:]); got != crc {
		return fmt.Errorf("checksum mismatch: the data says %#08x; it hashes to %#08x", got, crc)
	}
	cr.pos += 4
	if cr.fill(1) {
		return errors.New("unexpected data after the checkpoint")
	}
	if cr.rerr != errCkptTruncated {
		return cr.rerr
	}
	return nil
}

// loadKey inserts a key read from a checkpoint with its buckets.
func (s *Store) loadKey(key []byte, newest int64, heads []int64, bks []ckptBucket, dense bool) error {
	sh, h := s.shardOf(key)
	sh.lock()
	defer sh.unlock()
	if _, _, ok := sh.find(h, key); ok {
		return fmt.Errorf("corrupt data: key %.64q appears twice", key)
	}
	_, p, ok := s.insert(sh, h, key, dense)
	if !ok {
		return fmt.Errorf("it holds more than MaxKeys (%d) keys", s.maxKeys)
	}
	*blockNewest(p) = newest
	for ri, hd := range heads {
		*blockHead(p, ri) = hd
	}
	if dense {
		for _, b := range bks {
			s.rings[b.ring].dense(p)[b.slot] = b.b
		}
		for ri := range s.rings {
			s.rings[ri].setTotals(p, ri)
		}
		return nil
	}
	for _, b := range bks {
		rg := &s.rings[b.ring]
		es := rg.sparse(p)
		for i := range es {
			if es[i].tag == 0 {
				es[i] = sparseEntry{tag: uint32(b.slot) + 1, b: b.b}
				break
			}
		}
	}
	return nil
}

// reset empties the store, one shard at a time.
func (s *Store) reset() {
	for i := range s.shards {
		sh := &s.shards[i]
		sh.lock()
		live := 0
		for _, m := range sh.metas.Load().m {
			if m.hash != 0 {
				s.slabOf(ref(m.ref)).release(ref(m.ref).slot())
				live++
			}
		}
		sh.init()
		sh.unlock()
		s.keys.Add(int64(-live))
	}
}

// presize sizes the indexes and metas of an empty store for n keys.
func (s *Store) presize(n int) {
	per := n/numShards + n/numShards/8 + 1
	size := minTableSize
	for size*3 < per*4 {
		size *= 2
	}
	for i := range s.shards {
		sh := &s.shards[i]
		sh.lock()
		if sh.nLocal == 0 {
			sh.index.Store(newTable(size))
			sh.metas.Store(&metaBuf{m: make([]meta, per)})
		}
		sh.unlock()
	}
}

// stride returns the buckets of a dense block.
func (s *Store) stride() int {
	n := 0
	for i := range s.rings {
		n += int(s.rings[i].buckets)
	}
	return n
}

// ckptReader reads a checkpoint through its own buffer (so it knows which
// bytes were consumed, for the CRC).
type ckptReader struct {
	r    io.Reader
	buf  []byte // buf[pos:] is unread
	pos  int
	crc  uint32 // of the consumed bytes dropped from buf
	err  error  // sticky: the first decoding error
	rerr error  // the reader's error, once it returned one
}

// fill makes at least n unread bytes available, keeping what it could read
// when it cannot: it returns false and sets rerr (errCkptTruncated at the end
// of the input). need is fill for a caller that cannot go on without the
// bytes: it also makes the failure the sticky err.
func (cr *ckptReader) fill(n int) bool {
	if len(cr.buf)-cr.pos >= n {
		return true
	}
	if cr.rerr != nil {
		return false
	}
	cr.crc = crc32.Update(cr.crc, ckptCRC, cr.buf[:cr.pos])
	rest := copy(cr.buf, cr.buf[cr.pos:])
	cr.buf, cr.pos = cr.buf[:rest], 0
	if n > cap(cr.buf) {
		grown := make([]byte, rest, n)
		copy(grown, cr.buf)
		cr.buf = grown
	}
	for len(cr.buf) < n {
		k, err := cr.r.Read(cr.buf[len(cr.buf):cap(cr.buf)])
		cr.buf = cr.buf[:len(cr.buf)+k]
		if err != nil {
			if err == io.EOF {
				err = errCkptTruncated
			}
			cr.rerr = err
			return len(cr.buf) >= n
		}
		if k == 0 {
			// A reader returning 0, nil repeatedly would spin forever.
			cr.rerr = io.ErrNoProgress
			return false
		}
	}
	return true
}

func (cr *ckptReader) need(n int) bool {
	if cr.err != nil {
		return false
	}
	if !cr.fill(n) {
		cr.err = cr.rerr
		return false
	}
	return true
}

func (cr *ckptReader) uvarint() uint64 {
	if cr.err != nil {
		return 0
	}
	if len(cr.buf)-cr.pos < binary.MaxVarintLen64 {
		cr.fill(binary.MaxVarintLen64)
	}
	v, n := binary.Uvarint(cr.buf[cr.pos:])
	if n <= 0 {
		cr.err = errors.New("corrupt data: bad varint")
		if n == 0 && cr.rerr != nil {
			cr.err = cr.rerr
		}
		return 0
	}
	cr.pos += n
	return v
}

func (cr *ckptReader) varint() int64 {
	return unzigzag(cr.uvarint())
}

func unzigzag(u uint64) int64 { return int64(u>>1) ^ -int64(u&1) }

func (cr *ckptReader) byte() byte {
	if !cr.need(1) {
		return 0
	}
	c := cr.buf[cr.pos]
	cr.pos++
	return c
}
