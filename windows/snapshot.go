package windows

import (
	"encoding/binary"
	"errors"
	"io"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/bidpulse/bidpulse/internal/pace"
)

// Snapshot is a checkpoint of a Store as of the moment BeginSnapshot
// returned, written out by WriteTo while Adds and evictions go on.
//
// It is copy-on-write by key: every key live at the start has a claim bit.
// WriteTo walks the keys as a reader (no lock, so bid reads never wait) and
// encodes each key whose bit it claims. A writer about to change a key
// (Add, AddBatch, eviction) claims the key's bit first and, when it wins,
// encodes the key's record before changing it; a key created after the
// start is claimed without a record. So every key live at the start is
// written exactly once, in the state it had then, and no later key is. A
// writer pays one bit test per change while a snapshot runs, and one record
// encoding the first time it changes each key.
type Snapshot struct {
	s      *Store
	hint   uint64
	claims [numShards][]uint64 // by local id; sized at the start
	done   bool

	// The writers' records, in chunks of about ckptFlushAt bytes: a
	// writer appends under its shard's lock, so the records must never be
	// one slice that grows (a copy of tens of MB there, not preemptible,
	// held the applier and every bid read of that shard for 100+ ms).
	mu       sync.Mutex
	side     [][]byte
	sideKeys uint64
}

// errSnapshotRunning is returned by BeginSnapshot while another runs.
var errSnapshotRunning = errors.New("windows: a snapshot is already being written")

// BeginSnapshot starts a snapshot of the store as it is now; WriteTo must
// be called once to write it out (and end it). The caller must make sure no
// Add, AddBatch or EvictIdle runs during BeginSnapshot itself (bidder holds
// its applier lock); they may run again as soon as it returns. One snapshot
// at a time; ReadCheckpoint must not run during one.
func (s *Store) BeginSnapshot() (*Snapshot, error) {
	sn := &Snapshot{s: s, hint: uint64(s.Len())}
	for i := range s.shards {
		sn.claims[i] = make([]uint64, (len(s.shards[i].metas.Load().m)+63)/64)
	}
	if !s.snap.CompareAndSwap(nil, sn) {
		return nil, errSnapshotRunning
	}
	return sn, nil
}

// claimBit returns the word and mask of local id local of shard i; nil for
// an id beyond those of the start (a key created since).
func (sn *Snapshot) claimBit(i int, local uint32) (*uint64, uint64) {
	c := sn.claims[i]
	if int(local/64) >= len(c) {
		return nil, 0
	}
	return &c[local/64], 1 << (local % 64)
}

// claim sets the bit; false when it was set already.
func claim(w *uint64, m uint64) bool {
	for {
		old := atomic.LoadUint64(w)
		if old&m != 0 {
			return false
		}
		if atomic.CompareAndSwapUint64(w, old, old|m) {
			return true
		}
	}
}

// beforeChange is called by a writer, with sh's lock held, before it
// changes the key of ref r (block p), or (record false) after it created
// one.
func (s *Store) beforeChange(sh *shard, r ref, p unsafe.Pointer, record bool) {
	sn := s.snap.Load()
	if sn == nil {
		return
	}
	w, m := sn.claimBit(s.shardIndex(sh), sh.local(r.off()))
	if w == nil || atomic.LoadUint64(w)&m != 0 {
		return
	}
	sn.mu.Lock()
	defer sn.mu.Unlock()
	if !claim(w, m) || !record {
		return
	}
	key, _ := recKey(sh.arena.Load().b, r.off())
	if n := len(sn.side); n == 0 || len(sn.side[n-1]) >= ckptFlushAt {
		sn.side = append(sn.side, make([]byte, 0, ckptFlushAt+4096))
	}
	last := &sn.side[len(sn.side)-1]
	*last = s.appendKeyRecord(*last, key, p, r.dense())
	sn.sideKeys++
}

// Abort ends a snapshot that will not be written (no-op once written).
func (sn *Snapshot) Abort() {
	if !sn.done {
		sn.done = true
		sn.s.snap.CompareAndSwap(sn, nil)
	}
}

// WriteTo writes the snapshot in the checkpoint format (see WriteCheckpoint)
// and ends it. Output is buffered: w gets writes of about 64 KiB.
func (sn *Snapshot) WriteTo(w io.Writer) (int64, error) {
	if sn.done {
		return 0, errors.New("windows: snapshot already written")
	}
	sn.done = true
	s := sn.s
	cw := ckptWriter{w: w, buf: make([]byte, 0, ckptFlushAt+4096)}
	cw.buf = s.appendCheckpointHeader(cw.buf, sn.hint)
	var keys uint64
	err := s.walkKeys(&cw, func(i int, local uint32) bool {
		w, m := sn.claimBit(i, local)
		return w != nil && atomic.LoadUint64(w)&m == 0
	}, func(i int, local uint32) bool {
		// A key created during the walk may have an id past the bits.
		w, m := sn.claimBit(i, local)
		return w != nil && claim(w, m)
	}, &keys)
	// Every key of the start is claimed now: a writer that won a claim
	// before holds sn.mu until its record is in side.
	s.snap.CompareAndSwap(sn, nil)
	sn.mu.Lock()
	side, sideKeys := sn.side, sn.sideKeys
	sn.side = nil
	sn.mu.Unlock()
	if err != nil {
		return cw.n, err
	}
	var pacer pace.Pacer
	for _, c := range side {
		pacer.Check()
		cw.buf = append(cw.buf, c...)
		if err := cw.flush(); err != nil {
			return cw.n, err
		}
	}
	return cw.finish(keys + sideKeys)
}

// finish writes the end of the keys, their count and the CRC.
func (cw *ckptWriter) finish(keys uint64) (int64, error) {
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

// shardIndex returns the index of sh in s.shards.
func (s *Store) shardIndex(sh *shard) int {
	return int((uintptr(unsafe.Pointer(sh)) - uintptr(unsafe.Pointer(&s.shards[0]))) / unsafe.Sizeof(shard{}))
}
