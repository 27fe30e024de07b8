package windows

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"time"
)

// A checkpoint is the whole content of a Store in a versioned,
// self-describing binary format that does not depend on the in-memory
// layout (shards, slots, counter widths, hash seed): only the rings'
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
//	    uvarint n, the buckets that ever held data (at most the ring's buckets)
//	    n x (zz base-epoch, mask byte, one uvarint per set mask bit)
//	uvarint 0 (end of the keys)
//	uvarint number of keys written
//	4 bytes CRC-32C (Castagnoli, little endian) of every byte before it
//
// epoch is the bucket number (event time / width) and base is
// max(newest, 0) / width, so the current buckets take one byte. The mask
// says which counters are non-zero (bit 0 impressions, 1 clicks, 2
// conversions, 3 cost micros, 4 value micros); the other bits are zero. A
// bucket that never held data is not written, so a key that saw one event
// costs a few dozen bytes.
const (
	ckptMagic   = "BPWINCKP"
	ckptVersion = 1

	// maxCheckpointKeyLen bounds a key in a checkpoint, so corrupt input
	// cannot ask for a huge buffer; AppendKey keys are under 1 KiB.
	maxCheckpointKeyLen = 1 << 20

	ckptFlushAt = 64 << 10
)

var ckptCRC = crc32.MakeTable(crc32.Castagnoli)

// WriteCheckpoint writes every live key (key bytes, newest event time, and
// its buckets) to w in a versioned, self-describing binary format that
// records the resolutions it was written with (see the format above). It
// takes each shard's lock in turn: for a consistent snapshot the caller
// pauses Adds (bidder holds its applier lock). Reads go on meanwhile, each
// waiting at most for one shard's encoding of a 64 KiB chunk. Output is
// buffered: w gets writes of about 64 KiB. Returns bytes written.
func (s *Store) WriteCheckpoint(w io.Writer) (int64, error) {
	cw := ckptWriter{w: w, buf: make([]byte, 0, ckptFlushAt+4096)}
	b := append(cw.buf, ckptMagic...)
	b = binary.AppendUvarint(b, ckptVersion)
	b = binary.AppendUvarint(b, uint64(len(s.rings)))
	for _, r := range s.rings {
		b = binary.AppendUvarint(b, uint64(r.width))
		b = binary.AppendUvarint(b, uint64(r.buckets))
	}
	b = binary.AppendUvarint(b, uint64(s.Len()))
	cw.buf = b
	var keys uint64
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		for slot := range sh.metas {
			if sh.metas[slot].klen == 0 {
				continue
			}
			key := sh.key(uint32(slot))
			if len(key) > maxCheckpointKeyLen {
				sh.mu.Unlock()
				return cw.n, fmt.Errorf("cannot checkpoint a key of %d bytes: at most %d fit", len(key), maxCheckpointKeyLen)
			}
			cw.buf = s.appendKeyRecord(cw.buf, sh, uint32(slot))
			keys++
			if len(cw.buf) >= ckptFlushAt {
				if err := cw.flush(); err != nil {
					sh.mu.Unlock()
					return cw.n, err
				}
			}
		}
		sh.mu.Unlock()
	}
	cw.buf = binary.AppendUvarint(cw.buf, 0)
	cw.buf = binary.AppendUvarint(cw.buf, keys)
	if err := cw.flush(); err != nil {
		return cw.n, err
	}
	cw.buf = binary.LittleEndian.AppendUint32(cw.buf[:0], cw.crc)
	if err := cw.flush(); err != nil {
		return cw.n, err
	}
	return cw.n, nil
}

// appendKeyRecord appends the record of a live slot. The caller holds mu.
func (s *Store) appendKeyRecord(b []byte, sh *shard, slot uint32) []byte {
	key := sh.key(slot)
	b = binary.AppendUvarint(b, uint64(len(key)))
	b = append(b, key...)
	newest := sh.newest(sh.metas[slot].off)
	b = binary.AppendVarint(b, newest)
	block := sh.block(slot, s)
	for i := range s.rings {
		r := &s.rings[i]
		rb := block[r.off : r.off+int(r.buckets)]
		n := 0
		for j := range rb {
			if rb[j].tag != 0 {
				n++
			}
		}
		b = binary.AppendUvarint(b, uint64(n))
		if n == 0 {
			continue
		}
		base := uint64(max(newest, 0) / r.width)
		for j := range rb {
			bk := &rb[j]
			if bk.tag == 0 {
				continue
			}
			// Wrapping arithmetic: any epoch round-trips exactly.
			b = binary.AppendVarint(b, int64(base-(bk.tag-1)))
			b = appendCounts(b, &bk.c)
		}
	}
	return b
}

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

// ckptBucket is one decoded bucket: its index in the key's block.
type ckptBucket struct {
	idx int
	b   bucket
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
	bks := make([]ckptBucket, 0, s.stride)
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
		for i := range s.rings {
			rg := &s.rings[i]
			n := cr.uvarint()
			if cr.err != nil {
				return cr.err
			}
			if n > uint64(rg.buckets) {
				return fmt.Errorf("corrupt key %.64q: %d buckets in ring %d of %d", key, n, i, rg.buckets)
			}
			base := uint64(max(newest, 0) / rg.width)
			for j := uint64(0); j < n; j++ {
				e := int64(base - uint64(cr.varint()))
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
				if e < 0 {
					return fmt.Errorf("corrupt key %.64q: bucket before the epoch in ring %d", key, i)
				}
				bks = append(bks, ckptBucket{idx: rg.off + int(e%rg.buckets), b: bucket{tag: uint64(e) + 1, c: c}})
			}
		}
		if err := s.loadKey(key, newest, bks); err != nil {
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
func (s *Store) loadKey(key []byte, newest int64, bks []ckptBucket) error {
	sh, h := s.shardOf(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if _, ok := sh.find(h, key); ok {
		return fmt.Errorf("corrupt data: key %.64q appears twice", key)
	}
	if !s.reserveKey() {
		return fmt.Errorf("it holds more than MaxKeys (%d) keys", s.maxKeys)
	}
	r := sh.insert(h, key, s)
	binary.LittleEndian.PutUint64(sh.arena[r.off()+recNewest:], uint64(newest))
	block := sh.block(r.slot(), s)
	for _, b := range bks {
		if block[b.idx].tag != 0 {
			return fmt.Errorf("corrupt key %.64q: two buckets in one ring slot", key)
		}
		block[b.idx] = b.b
	}
	return nil
}

// reset empties the store, one shard at a time.
func (s *Store) reset() {
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		live := len(sh.index) + len(sh.coll)
		sh.index, sh.coll = make(map[uint64]ref), nil
		sh.metas, sh.chunks, sh.free = nil, nil, nil
		sh.arena, sh.arenaDead = nil, 0
		s.keys.Add(int64(-live))
		sh.mu.Unlock()
	}
}

// presize sizes the shards' indexes and slot tables of an empty store for n
// keys.
func (s *Store) presize(n int) {
	per := n/numShards + n/numShards/8 + 1
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		if len(sh.metas) == 0 {
			sh.index = make(map[uint64]ref, per)
			sh.metas = make([]slotMeta, 0, per)
		}
		sh.mu.Unlock()
	}
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
	u := cr.uvarint()
	return int64(u>>1) ^ -int64(u&1)
}

func (cr *ckptReader) byte() byte {
	if !cr.need(1) {
		return 0
	}
	c := cr.buf[cr.pos]
	cr.pos++
	return c
}
