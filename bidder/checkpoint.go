package bidder

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/bidpulse/bidpulse/bidder/idset"
	"github.com/bidpulse/bidpulse/bidder/ingest"
	"github.com/bidpulse/bidpulse/internal/pace"
	"github.com/bidpulse/bidpulse/windows"
)

// A checkpoint holds, as of one stream sequence, everything that sequence
// produced: the windows, the dedup set, the stats counters and the newest
// event time. It is one file, written to a temporary name, fsynced and
// renamed, so a reader sees the old checkpoint or the new one, never half.
// The dedup set is an idset file beside it (dedup-<seq>.idset), named after
// the sequence and written before the file that names it.
//
// File layout (little endian):
//
//	magic "BIDPULSE-CKPT\n"
//	u32 format version
//	u32 header length, header (JSON, checkpointHeader)
//	windows (windows.Snapshot.WriteTo), up to the CRC
//	u32 CRC-32C of everything before it
//
// Version 1 (a windows length before the windows) is refused.
//
// Nothing in the format is sized by the number of dimensions: window keys
// and the controller states' keys are windows.AppendKey bytes (the level,
// then the values of that level's dimensions only), overrides live in KV
// by level name and dimension name, and the header names the rollups. A
// dimension appended to windows.Dim (site) leaves a checkpoint written
// before it loadable, as windows' TestCheckpointWrittenBeforeSite checks.
const (
	checkpointMagic   = "BIDPULSE-CKPT\n"
	checkpointVersion = 2
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

type checkpointHeader struct {
	Version     int               `json:"version"`
	Instance    string            `json:"instance"`
	Stream      string            `json:"stream"`
	Seq         uint64            `json:"seq"`
	WrittenAt   time.Time         `json:"written_at"`
	Resolutions []checkpointRes   `json:"resolutions"`
	Rollups     []string          `json:"rollups"`
	NewestTs    int64             `json:"newest_event_ms"`
	DedupFile   string            `json:"dedup_file"`
	DedupGen    uint64            `json:"dedup_gen"`
	Stats       map[string]uint64 `json:"stats"`
	Controllers json.RawMessage   `json:"controllers,omitempty"`
	// DeadLetters are the dead letters of messages up to Seq not yet
	// stored in the DLQ when the checkpoint began: a replay from Seq+1
	// would not make them again.
	DeadLetters []ingest.DeadLetter `json:"dead_letters,omitempty"`
}

type checkpointRes struct {
	WidthMs int64 `json:"width_ms"`
	Buckets int   `json:"buckets"`
}

// checkpointState is what /v1/stats reports about checkpoints.
type checkpointState struct {
	lastAtMs    atomic.Int64
	lastSeq     atomic.Uint64
	lastSize    atomic.Int64
	lastWriteMs atomic.Int64 // duration of the whole checkpoint
	lastPauseUs atomic.Int64 // how long ingest was paused for it
	maxPauseUs  atomic.Int64
	remoteSeq   atomic.Uint64 // of the last checkpoint kept in NATS
	loaded      atomic.Bool
	fromRemote  atomic.Value // string: the instance whose checkpoint in NATS was loaded
	loadErr     atomic.Value // string
}

func (s *Service) checkpointDir() string {
	return filepath.Join(s.opts.DataDir, "checkpoints")
}

func (s *Service) checkpointPath() string {
	return filepath.Join(s.checkpointDir(), ingest.ConsumerName(s.opts.Instance)+".ckpt")
}

// writeCheckpoint checkpoints the state as of the last applied sequence.
// Ingest is paused (ingest.Pause) only while the stats are copied and the
// windows and dedup snapshots begin; both are written out after, while
// ingest goes on, and the controller state is copied after the pause. Bid
// answers are never paused. Only one checkpoint is written at a time.
func (s *Service) writeCheckpoint() error {
	if s.ingest.JetStream() == nil {
		return nil
	}
	s.ckptMu.Lock()
	defer s.ckptMu.Unlock()
	t0 := time.Now()
	dir := s.checkpointDir()
	if err := ensureOwnDir(dir); err != nil {
		return s.checkpointFailed(fmt.Errorf("cannot create checkpoint dir: %w", err))
	}

	var (
		h         checkpointHeader
		dedupSnap *idset.Snapshot
		winSnap   *windows.Snapshot
		err       error
		same      bool
		pause     time.Duration
	)
	s.ingest.Pause(func() {
		tPause := time.Now()
		seq := s.ingest.Applied()
		if same = seq == s.ckpt.lastSeq.Load() && s.ckpt.lastAtMs.Load() != 0; same {
			return // nothing applied since the last checkpoint
		}
		h = checkpointHeader{
			Version:   checkpointVersion,
			Instance:  s.opts.Instance,
			Stream:    s.opts.Stream,
			Seq:       seq,
			WrittenAt: time.UnixMilli(s.clock.NowMs()).UTC(),
			Rollups:   s.rollups.Names(),
			NewestTs:  s.ingest.NewestTs(),
			DedupFile: fmt.Sprintf("dedup-%d.idset", seq),
			Stats:     map[string]uint64{},
		}
		for name, c := range s.ingest.Stats().Counters() {
			h.Stats[name] = c.Get()
		}
		h.DeadLetters = s.ingest.QueuedDeadLetters()
		dedupSnap, h.DedupGen = s.ingest.DedupSnapshot()
		winSnap, err = s.store.BeginSnapshot()
		pause = time.Since(tPause)
	})
	if same {
		return nil
	}
	seq := h.Seq
	defer dedupSnap.Discard() // no-op once written
	if err != nil {
		return s.checkpointFailed(fmt.Errorf("cannot snapshot the windows at seq %d: %w", seq, err))
	}
	defer winSnap.Abort() // no-op once written
	// The controller state is advanced by the control tick, not by ingest,
	// so it need not be consistent with seq: it is copied outside the
	// pause. The brain's Snapshot sees whole ticks (a stalled applier holds
	// up checkpoints, never ticks). It is kept in chunks and spliced into
	// the header as it is written (writeCheckpointTemp): never one buffer
	// of its whole size.
	ctl := &chunkBuf{}
	s.writeControllers(ctl)
	for _, r := range s.store.Resolutions() {
		h.Resolutions = append(h.Resolutions, checkpointRes{WidthMs: r.Width.Milliseconds(), Buckets: r.Buckets})
	}
	// Both snapshots are written while ingest goes on. The dedup set goes
	// first (a short write, and its rotation waits while it is open; entries
	// added after seq are marked dead when it is loaded), under its final
	// name. The windows snapshot is copy-on-write by key: it holds each key
	// as it was at seq. The checkpoint that names the dedup file is renamed
	// into place last.
	path := s.checkpointPath()
	tDedup := time.Now()
	err = writeFileAtomic(filepath.Join(dir, h.DedupFile), dedupSnap.WriteTo)
	dedupTook := time.Since(tDedup)
	if err != nil {
		return s.checkpointFailed(fmt.Errorf("cannot save the dedup set at seq %d: %w", seq, err))
	}
	tWin := time.Now()
	size, err := writeCheckpointTemp(path+".tmp", &h, ctl, winSnap)
	winTook := time.Since(tWin)
	if err != nil {
		return s.checkpointFailed(fmt.Errorf("cannot write the checkpoint at seq %d: %w", seq, err))
	}
	if err := renameReplacing(path+".tmp", path); err != nil {
		os.Remove(path + ".tmp")
		return s.checkpointFailed(fmt.Errorf("cannot rename the checkpoint: %w", err))
	}
	syncDir(dir)
	// Older dedup snapshots are no longer named by any checkpoint.
	if entries, err := os.ReadDir(dir); err == nil {
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), "dedup-") && e.Name() != h.DedupFile {
				removeGently(filepath.Join(dir, e.Name()))
			}
		}
	}
	took := time.Since(t0)
	c := &s.ckpt
	c.lastAtMs.Store(s.clock.NowMs())
	c.lastSeq.Store(seq)
	c.lastSize.Store(size)
	c.lastWriteMs.Store(took.Milliseconds())
	c.lastPauseUs.Store(pause.Microseconds())
	if pause.Microseconds() > c.maxPauseUs.Load() {
		c.maxPauseUs.Store(pause.Microseconds())
	}
	s.stats.ckptWritten.Inc()
	s.log.Debug().Uint64("seq", seq).Int64("bytes", size).Dur("took", took).Dur("pause", pause).
		Dur("windows", winTook).Dur("dedup", dedupTook).Int("keys", s.store.Len()).Msg("checkpoint written")
	return nil
}

func (s *Service) checkpointFailed(err error) error {
	s.stats.ckptErrors.Inc()
	s.log.Error().Err(err).Msg("checkpoint failed")
	return err
}

// writeCheckpointTemp writes a checkpoint with header h, the controller
// state ctl (a JSON object, or empty: none) as the header's "controllers",
// and the windows of snap (which it ends, on success or not) to tmp,
// synced, and returns its size.
//
// The controller state (tens of MB) is written from its chunks, after the
// rest of the header: h is encoded without it, and json.Marshal never sees
// it. Marshalling a header that held it whole re-validated it (0.3 s of
// CPU) and copied it twice into fresh buffers, copies the scheduler cannot
// preempt (100-220 ms each at 200,000 key states): bids stood still.
func writeCheckpointTemp(tmp string, h *checkpointHeader, ctl *chunkBuf, snap *windows.Snapshot) (int64, error) {
	defer snap.Abort() // ends the snapshot on error; a no-op once written
	hh := *h
	hh.Controllers = nil
	hj, err := json.Marshal(&hh)
	if err != nil {
		return 0, fmt.Errorf("cannot encode checkpoint header: %w", err)
	}
	// hj ends with its closing brace: the controllers go in before it.
	const ctlName = `,"controllers":`
	hlen := len(hj)
	if ctl.Len() > 0 {
		hlen += len(ctlName) + ctl.Len()
	}
	if hlen > math.MaxUint32 {
		return 0, fmt.Errorf("checkpoint header of %d bytes: at most 4 GiB fit", hlen)
	}
	pre := make([]byte, 0, len(checkpointMagic)+8+len(hj)+len(ctlName))
	pre = append(pre, checkpointMagic...)
	pre = binary.LittleEndian.AppendUint32(pre, checkpointVersion)
	pre = binary.LittleEndian.AppendUint32(pre, uint32(hlen))
	pre = append(pre, hj[:len(hj)-1]...)
	if ctl.Len() > 0 {
		pre = append(pre, ctlName...)
	}
	var size int64
	err = writeFileSynced(tmp, func(w io.Writer) error {
		cw := &crcWriter{w: w}
		if _, err := cw.Write(pre); err != nil {
			return err
		}
		var pacer pace.Pacer
		for _, c := range ctl.chunks {
			for len(c) > 0 {
				pacer.Check()
				k := min(len(c), chunkSize)
				if _, err := cw.Write(c[:k]); err != nil {
					return err
				}
				c = c[k:]
			}
		}
		if _, err := cw.Write([]byte{'}'}); err != nil {
			return err
		}
		if _, err := snap.WriteTo(cw); err != nil {
			return err
		}
		var tail [4]byte
		binary.LittleEndian.PutUint32(tail[:], cw.crc)
		_, err := w.Write(tail[:])
		size = cw.n + 4
		return err
	})
	return size, err
}

// chunkBuf is an io.Writer that keeps what it is given in chunks of
// chunkSize, so a large content (the controller state of a checkpoint) is
// never one slice that grows: growing one copies and zeroes it in calls
// the scheduler cannot preempt. It paces its writer (internal/pace, at
// each new chunk), so a one-core service answers bids meanwhile.
type chunkBuf struct {
	chunks [][]byte
	n      int
	pacer  pace.Pacer
}

const chunkSize = 64 << 10

func (b *chunkBuf) Write(p []byte) (int, error) {
	b.n += len(p)
	n := len(p)
	for len(p) > 0 {
		if len(b.chunks) == 0 || len(b.chunks[len(b.chunks)-1]) == chunkSize {
			b.pacer.Check()
			b.chunks = append(b.chunks, make([]byte, 0, chunkSize))
		}
		last := &b.chunks[len(b.chunks)-1]
		k := min(len(p), chunkSize-len(*last))
		*last = append(*last, p[:k]...)
		p = p[k:]
	}
	return n, nil
}

// Len returns the bytes written.
func (b *chunkBuf) Len() int { return b.n }

// crcWriter passes writes on and keeps their CRC-32C and size.
type crcWriter struct {
	w   io.Writer
	crc uint32
	n   int64
}

func (c *crcWriter) Write(p []byte) (int, error) {
	c.crc = crc32.Update(c.crc, crcTable, p)
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// writeFileAtomic writes path through write into a temporary file, syncs
// it and renames it over path, then syncs the directory: a reader sees the
// old file or the new one, never part of one.
func writeFileAtomic(path string, write func(w io.Writer) (int64, error)) error {
	tmp := path + ".tmp"
	err := writeFileSynced(tmp, func(w io.Writer) error {
		_, err := write(w)
		return err
	})
	if err == nil {
		err = renameReplacing(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	syncDir(filepath.Dir(path))
	return nil
}

// renameReplacing renames tmp to path, and frees the file it replaces a
// step at a time (releaseGently) rather than in the rename: the rename
// over a checkpoint of 100+ MB freed its blocks in one blocking call of
// 35-130 ms, which on a one-core service holds the only P until the
// runtime's monitor hands it over (10-20 ms without bid answers).
func renameReplacing(tmp, path string) error {
	old, _ := os.OpenFile(path, os.O_WRONLY, 0) // nil when there is none
	if err := os.Rename(tmp, path); err != nil {
		if old != nil {
			old.Close() // still the file at path: left whole
		}
		return err
	}
	releaseGently(old)
	return nil
}

// removeGently removes path, freeing a file's blocks a step at a time.
func removeGently(path string) {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		os.RemoveAll(path) // not a file, or gone
		return
	}
	if os.Remove(path) != nil {
		f.Close()
		return
	}
	releaseGently(f)
}

// releaseGently truncates f, a file whose last name was just removed, by
// releaseStep bytes at a time (each a short blocking call), stepping aside
// between them, and closes it. A file still linked elsewhere (a hard link
// someone made) is left whole, as is any file where the link count is not
// known. A nil f is nothing to do.
func releaseGently(f *os.File) {
	if f == nil {
		return
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || !unlinked(fi) {
		return
	}
	var pacer pace.Pacer
	for size := fi.Size(); size > 0; {
		size = max(0, size-releaseStep)
		if f.Truncate(size) != nil {
			return
		}
		pacer.Check()
	}
}

const releaseStep = 8 << 20

// writeFileSynced writes path (mode 0600: see fileMode) through a buffer
// and syncs it; on error the file is removed. A file left at path by an
// earlier run (a temporary one a crash left behind) is removed first, so
// the file written has this mode, not the old one's.
func writeFileSynced(path string, write func(w io.Writer) error) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, fileMode)
	if err != nil {
		return err
	}
	// Writes of 256 KiB: each is a blocking call that, on a one-core
	// service, holds the only P until it returns (writes of 1 MiB took
	// 3-15 ms into the page cache of a small VM).
	bw := bufio.NewWriterSize(&writebackFile{f: f}, 256<<10)
	err = write(bw)
	if err == nil {
		err = bw.Flush()
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
	}
	return err
}

// writebackFile passes writes to f and has the kernel write them to disk
// as they come, every writebackEvery bytes, waiting for the range before
// the last one: the final fsync then has little left to write. One fsync of
// a whole checkpoint (100+ MB, 60-130 ms) is a blocking call that, on a
// one-core service, holds the only P until the runtime's monitor hands it
// over, 10-20 ms without bid answers; each wait here is a few ms.
type writebackFile struct {
	f                 *os.File
	off, start, waitd int64 // written; writeback started up to; waited up to
}

const writebackEvery = 4 << 20

func (w *writebackFile) Write(p []byte) (int, error) {
	n, err := w.f.Write(p)
	w.off += int64(n)
	if w.off-w.start >= writebackEvery {
		if w.start > w.waitd {
			writeback(w.f, w.waitd, w.start-w.waitd, true)
			w.waitd = w.start
		}
		writeback(w.f, w.start, w.off-w.start, false)
		w.start = w.off
	}
	return n, err
}

// syncDir syncs a directory, so a rename in it is durable.
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}

// errNoCheckpoint means there is no checkpoint to load.
var errNoCheckpoint = errors.New("no checkpoint")

// readCheckpointFile reads and verifies a checkpoint file.
func readCheckpointFile(path string) (*checkpointHeader, []byte, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil, errNoCheckpoint
	}
	if err != nil {
		return nil, nil, fmt.Errorf("cannot read checkpoint: %w", err)
	}
	if len(data) < len(checkpointMagic)+8+4 || string(data[:len(checkpointMagic)]) != checkpointMagic {
		return nil, nil, errors.New("not a bidpulse checkpoint (bad magic)")
	}
	body, tail := data[:len(data)-4], data[len(data)-4:]
	if crc32.Checksum(body, crcTable) != binary.LittleEndian.Uint32(tail) {
		return nil, nil, errors.New("checksum mismatch (truncated or corrupt)")
	}
	p := body[len(checkpointMagic):]
	if v := binary.LittleEndian.Uint32(p); v != checkpointVersion {
		return nil, nil, fmt.Errorf("format version %d; this bidpulse reads version %d", v, checkpointVersion)
	}
	hl := uint64(binary.LittleEndian.Uint32(p[4:]))
	p = p[8:]
	if hl > uint64(len(p)) {
		return nil, nil, errors.New("header length past the end")
	}
	var h checkpointHeader
	if err := json.Unmarshal(p[:hl], &h); err != nil {
		return nil, nil, fmt.Errorf("cannot parse header: %w", err)
	}
	return &h, p[hl:], nil
}

// loadCheckpoint restores the state of the last checkpoint and returns the
// sequence to consume from (0: no usable checkpoint). A missing checkpoint
// is normal; a corrupt or incompatible one is reported and ignored.
func (s *Service) loadCheckpoint(ctx context.Context) (uint64, error) {
	path := s.checkpointPath()
	h, win, err := readCheckpointFile(path)
	if err == nil {
		err = s.checkCompatible(h)
	}
	if err != nil && !errors.Is(err, errNoCheckpoint) {
		// Kept aside for a look; the one kept in NATS may do instead.
		s.checkpointLoadFailed(path, err)
		os.Rename(path, path+".bad")
	}
	if s.ckptStore != nil {
		var local uint64
		if err == nil {
			local = h.Seq
		}
		best, seq, lerr := s.newestRemote(ctx)
		for try := 1; lerr == nil && best != nil && seq > local; try++ {
			// Its own deadline, and again on failure: an object replaced
			// while it is read (its owner keeping a newer checkpoint)
			// loses the chunks being read, and the read waits for them.
			fctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			lerr = s.fetchRemoteCheckpoint(fctx, best.Name, seq)
			cancel()
			if lerr != nil && try < 3 && ctx.Err() == nil {
				s.log.Warn().Err(lerr).Str("object", best.Name).Msg("cannot read the checkpoint kept in NATS: reading the newest again")
				best, seq, lerr = s.newestRemote(ctx)
				continue
			}
			if lerr == nil {
				from := strings.TrimSuffix(best.Name, ".ckpt")
				s.ckpt.fromRemote.Store(from)
				s.log.Info().Str("from", from).Uint64("seq", seq).Uint64("local_seq", local).Str("bucket", CheckpointBucket).
					Msg("the newest checkpoint is the one kept in NATS: loaded it")
				if h, win, err = readCheckpointFile(path); err == nil {
					err = s.checkCompatible(h)
				}
			}
			break
		}
		if lerr != nil {
			if local == 0 {
				// Starting empty would trim, at the first checkpoint, what
				// a later start could still recover.
				return 0, fmt.Errorf("no usable local checkpoint, and cannot read the checkpoints kept in NATS (%s): %w", CheckpointBucket, lerr)
			}
			s.log.Warn().Err(lerr).Msg("cannot read the checkpoints kept in NATS: loading the local one")
		}
	}
	if errors.Is(err, errNoCheckpoint) {
		s.log.Info().Str("path", path).Msg("no checkpoint, local or in NATS: consuming what the stream holds, windows start empty")
		return 0, nil
	}
	if err == nil {
		if err = s.store.ReadCheckpoint(bytes.NewReader(win)); err != nil {
			err = fmt.Errorf("cannot load windows: %w", err)
		}
	}
	if err != nil {
		s.checkpointLoadFailed(path, err)
		// ReadCheckpoint may have loaded part of the windows.
		s.resetState()
		return 0, nil
	}
	for name, c := range s.ingest.Stats().Counters() {
		c.Set(h.Stats[name])
	}
	if err := s.brain.Restore(h.Controllers, s.clock.NowMs()); err != nil {
		s.checkpointLoadFailed(path, fmt.Errorf("cannot load the controller state (the states left out start afresh): %w", err))
	}
	// The header names a file beside it; a name with a directory in it (a
	// corrupt or edited header) would read a file from elsewhere.
	dedupPath := filepath.Join(s.checkpointDir(), h.DedupFile)
	var set *idset.Set
	if filepath.Base(h.DedupFile) != h.DedupFile {
		err = fmt.Errorf("dedup file %q is not a name in the checkpoint directory", h.DedupFile)
	} else {
		set, err = s.ingest.ReadDedup(dedupPath, h.DedupGen, h.Seq)
	}
	if err != nil {
		s.checkpointLoadFailed(dedupPath, fmt.Errorf("cannot load the dedup set (duplicates of events counted before the checkpoint will not be recognised): %w", err))
	}
	s.ingest.Restore(h.DeadLetters, h.NewestTs, set, h.DedupGen)
	s.ckpt.loaded.Store(true)
	s.ckpt.lastSeq.Store(h.Seq)
	s.ckpt.lastAtMs.Store(h.WrittenAt.UnixMilli())
	s.log.Info().Str("path", path).Uint64("seq", h.Seq).Int("keys", s.store.Len()).
		Uint64("counted", s.ingest.Stats().Counted.Get()).Time("written_at", h.WrittenAt).Msg("checkpoint loaded")
	return h.Seq + 1, nil
}

func (s *Service) checkpointLoadFailed(path string, err error) {
	s.stats.ckptLoadErr.Inc()
	s.ckpt.loadErr.Store(err.Error())
	s.log.Error().Err(err).Str("path", path).Msg("checkpoint ignored")
}

// checkCompatible refuses a checkpoint written with other resolutions or
// rollups, or for another stream.
func (s *Service) checkCompatible(h *checkpointHeader) error {
	if h.Stream != s.opts.Stream {
		return fmt.Errorf("checkpoint is of stream %q, not %q", h.Stream, s.opts.Stream)
	}
	res := s.store.Resolutions()
	same := len(res) == len(h.Resolutions)
	for i := 0; same && i < len(res); i++ {
		same = res[i].Width.Milliseconds() == h.Resolutions[i].WidthMs && res[i].Buckets == h.Resolutions[i].Buckets
	}
	if !same {
		return fmt.Errorf("checkpoint was written with resolutions %v, the config has %v", h.Resolutions, res)
	}
	if strings.Join(h.Rollups, ",") != strings.Join(s.rollups.Names(), ",") {
		return fmt.Errorf("checkpoint was written with rollups %v, the config has %v", h.Rollups, s.rollups.Names())
	}
	return nil
}

// resetState empties the windows, the dedup set and the counters.
func (s *Service) resetState() {
	store, err := windows.NewStore(windows.Config{Resolutions: s.store.Resolutions(), MaxKeys: s.store.MaxKeys()})
	if err != nil {
		panic("BUG: cannot rebuild the windows with validated resolutions: " + err.Error())
	}
	s.store = store
	s.ingest.Reset(store)
	// Everything a discarded checkpoint may have restored goes too.
	s.brain.Reset(store)
	s.ckpt.loaded.Store(false)
	s.ckpt.lastSeq.Store(0)
	s.ckpt.lastAtMs.Store(0)
}

// writeControllers writes the brain's controller states for a checkpoint
// to w (a chunkBuf: never one buffer of the whole snapshot). The states
// JSON cannot carry (NaN, infinities) are left out, counted in
// bidpulse_checkpoint_controller_errors_total and logged once per
// checkpoint with the first of them; they start afresh after a restart.
func (s *Service) writeControllers(w io.Writer) {
	res := s.brain.Snapshot(w)
	if res.LeftOut > 0 {
		s.stats.ckptCtlErrors.Add(res.LeftOut)
		s.log.Warn().Err(res.Err).Int("left_out", res.LeftOut).Str("first", res.First).
			Msg("checkpoint: controller states that cannot be encoded are left out (they start afresh after a restart)")
	}
}
