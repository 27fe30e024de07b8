package bidder

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/bidpulse/bidpulse/bidder/ingest"
	"github.com/bidpulse/bidpulse/bidder/internal/jsensure"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// CheckpointBucket is the JetStream Object Store bucket that keeps each
// instance's last checkpoint in NATS, as one object <consumer name>.ckpt: the
// checkpoint file followed by its dedup set (a put replaces an object whole,
// so a reader never pairs a checkpoint with another's dedup set). An instance
// that starts without a usable local checkpoint (a new machine, a lost disk,
// a new replica), or whose local one is older, loads the newest of the same
// stream from there and replays the stream after it. The stream is trimmed
// only up to the oldest of these (see trimStream), so what that replay needs
// is still held.
const CheckpointBucket = "bidpulse_checkpoints"

const (
	seqHeader     = "Bidpulse-Seq"
	streamHeader  = "Bidpulse-Stream"
	ckptLenHeader = "Bidpulse-Checkpoint-Bytes"
)

func (s *Service) openCheckpointStore(ctx context.Context, js jetstream.JetStream) (jetstream.ObjectStore, error) {
	cfg := jetstream.ObjectStoreConfig{
		Bucket:      CheckpointBucket,
		Description: "bidpulse checkpoints, the last one of each instance",
		Storage:     jetstream.FileStorage,
		Replicas:    s.opts.Replicas,
	}
	var obs jetstream.ObjectStore
	var err error
	if s.opts.Unit {
		// Bound, not updated: see control.Options.OpenExisting.
		obs, err = jsensure.Bind(ctx,
			func(ctx context.Context) (jetstream.ObjectStore, error) { return js.ObjectStore(ctx, CheckpointBucket) },
			func(ctx context.Context) (jetstream.ObjectStore, error) { return js.CreateObjectStore(ctx, cfg) },
			func(err error) bool { return errors.Is(err, jetstream.ErrBucketNotFound) })
	} else {
		obs, err = js.CreateOrUpdateObjectStore(ctx, cfg)
	}
	if err != nil {
		return nil, fmt.Errorf("cannot create or open object store %s: %w", CheckpointBucket, err)
	}
	return obs, nil
}

// uploadCheckpoint keeps the local checkpoint of sequence seq in NATS, then
// records it in this instance's record and trims the stream.
func (s *Service) uploadCheckpoint(ctx context.Context, seq uint64) error {
	t0 := time.Now()
	name := ingest.ConsumerName(s.opts.Instance) + ".ckpt"
	ck, err := os.Open(s.checkpointPath())
	if err != nil {
		return err
	}
	defer ck.Close()
	fi, err := ck.Stat()
	if err != nil {
		return err
	}
	dd, err := os.Open(filepath.Join(s.checkpointDir(), fmt.Sprintf("dedup-%d.idset", seq)))
	if err != nil {
		return err
	}
	defer dd.Close()
	if s.opts.Unit {
		// The object is the partition's, shared by its owners over time:
		// a unit that lost its name must not replace the new owner's.
		if err := s.lease.update(ctx, nil); err != nil {
			return fmt.Errorf("not keeping the checkpoint: %w", err)
		}
	}
	h := nats.Header{}
	h.Set(seqHeader, strconv.FormatUint(seq, 10))
	h.Set(streamHeader, s.opts.Stream)
	h.Set(ckptLenHeader, strconv.FormatInt(fi.Size(), 10))
	info, err := s.ckptStore.Put(ctx, jetstream.ObjectMeta{Name: name, Headers: h}, io.MultiReader(ck, dd))
	if err != nil {
		return fmt.Errorf("cannot put %s: %w", name, err)
	}
	s.ckpt.remoteSeq.Store(seq)
	s.stats.remoteCkpt.Inc()
	s.log.Debug().Uint64("seq", seq).Uint64("bytes", info.Size).Dur("took", time.Since(t0)).Msg("checkpoint kept in NATS")
	if err := s.lease.update(ctx, func(r *instanceRecord) { r.RemoteSeq, r.CheckpointSeq = seq, seq }); err != nil {
		return fmt.Errorf("cannot record the checkpoint in the instance record: %w", err)
	}
	return s.trimStream(ctx)
}

// trimStream purges the stream's messages up to the oldest checkpoint kept
// in NATS among the instances that share it: none of them needs those.
func (s *Service) trimStream(ctx context.Context) error {
	if s.opts.Unit {
		// Its partition only, to its own checkpoint kept in NATS (the
		// partition's previous owners wrote theirs under the same name),
		// and no further than its replicas applied.
		floor, ok, err := s.unitFloor(ctx)
		if err != nil {
			return fmt.Errorf("cannot read the replicas' records: %w", err)
		}
		if !ok {
			return nil
		}
		return s.trimTo(ctx, floor)
	}
	floor, ok, err := s.retentionFloor(ctx)
	if err != nil {
		return fmt.Errorf("cannot read the instances' records: %w", err)
	}
	if !ok {
		return nil
	}
	return s.trimTo(ctx, floor)
}

// trimTo purges what the stream holds up to seq (of this unit's partition,
// for a partition unit).
func (s *Service) trimTo(ctx context.Context, floor uint64) error {
	if floor == 0 {
		return nil
	}
	n, err := s.ingest.Trim(ctx, floor+1)
	if err != nil {
		return err
	}
	if n > 0 {
		s.stats.purges.Inc()
		s.stats.purgedMsgs.Add(int(n))
	}
	return nil
}

// newestRemote returns the newest checkpoint of this stream kept in NATS
// (this instance's own on a tie), nil when there is none.
func (s *Service) newestRemote(ctx context.Context) (*jetstream.ObjectInfo, uint64, error) {
	infos, err := s.ckptStore.List(ctx)
	if errors.Is(err, jetstream.ErrNoObjectsFound) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, fmt.Errorf("cannot list %s: %w", CheckpointBucket, err)
	}
	own := ingest.ConsumerName(s.primaryName()) + ".ckpt"
	var best *jetstream.ObjectInfo
	var bestSeq uint64
	for _, oi := range infos {
		if !strings.HasSuffix(oi.Name, ".ckpt") || oi.Headers.Get(streamHeader) != s.opts.Stream {
			continue
		}
		if s.opts.Unit && oi.Name != own {
			// Another partition's state: a unit loads its partition's only.
			continue
		}
		seq, err := strconv.ParseUint(oi.Headers.Get(seqHeader), 10, 64)
		if err != nil {
			continue
		}
		if best == nil || seq > bestSeq || seq == bestSeq && oi.Name == own {
			best, bestSeq = oi, seq
		}
	}
	return best, bestSeq, nil
}

// fetchRemoteCheckpoint writes the checkpoint kept in NATS as object name,
// of sequence seq, to the local checkpoint path and its dedup set beside it.
func (s *Service) fetchRemoteCheckpoint(ctx context.Context, name string, seq uint64) error {
	obj, err := s.ckptStore.Get(ctx, name)
	if err != nil {
		return fmt.Errorf("cannot get %s: %w", name, err)
	}
	defer obj.Close()
	info, err := obj.Info()
	if err != nil {
		return err
	}
	if info.Headers.Get(seqHeader) != strconv.FormatUint(seq, 10) {
		return fmt.Errorf("%s was replaced while it was read", name)
	}
	n, err := strconv.ParseInt(info.Headers.Get(ckptLenHeader), 10, 64)
	if err != nil || n <= 0 || uint64(n) > info.Size {
		return fmt.Errorf("%s has no valid %s header", name, ckptLenHeader)
	}
	dir := s.checkpointDir()
	if err := ensureOwnDir(dir); err != nil {
		return fmt.Errorf("cannot create checkpoint dir: %w", err)
	}
	// The dedup set goes second in the object, first to its file: the
	// checkpoint that names it is renamed into place last.
	tmp := s.checkpointPath() + ".fetch"
	defer os.Remove(tmp)
	if err := writeFileSynced(tmp, func(w io.Writer) error {
		_, err := io.CopyN(w, obj, n)
		return err
	}); err != nil {
		return fmt.Errorf("cannot write the checkpoint: %w", err)
	}
	if err := writeFileAtomic(filepath.Join(dir, fmt.Sprintf("dedup-%d.idset", seq)), func(w io.Writer) (int64, error) {
		return io.Copy(w, obj)
	}); err != nil {
		return fmt.Errorf("cannot write the dedup set: %w", err)
	}
	if err := os.Rename(tmp, s.checkpointPath()); err != nil {
		return err
	}
	syncDir(dir)
	return nil
}

// keepCheckpoint keeps the last local checkpoint in NATS when
// RemoteCheckpointInterval has passed since the last one (always when
// final), and trims the stream after it. A failure is counted and logged:
// the stream then keeps more, nothing is lost.
//
// Without checkpoints in NATS (RemoteCheckpointInterval < 0) the local one
// is all this instance can recover from: it is recorded as such after each
// checkpoint and the stream trimmed up to it (a new instance then starts
// from what the stream holds).
func (s *Service) keepCheckpoint(ctx context.Context, final bool) {
	if s.lease == nil || s.leaseLost.Load() || s.opts.Replica {
		return
	}
	seq := s.ckpt.lastSeq.Load()
	if seq == 0 || seq == s.ckpt.remoteSeq.Load() {
		return
	}
	if s.ckptStore == nil {
		err := s.lease.update(ctx, func(r *instanceRecord) { r.RemoteSeq, r.CheckpointSeq = seq, seq })
		if err == nil {
			s.ckpt.remoteSeq.Store(seq)
			err = s.trimStream(ctx)
		}
		if err != nil {
			s.log.Error().Err(err).Uint64("seq", seq).Msg("cannot trim the stream after the checkpoint")
		}
		return
	}
	if !final && time.Since(s.lastKept) < s.opts.RemoteCheckpointInterval {
		return
	}
	s.lastKept = time.Now()
	if err := s.uploadCheckpoint(ctx, seq); err != nil {
		s.stats.remoteCkptErrors.Inc()
		s.log.Error().Err(err).Uint64("seq", seq).Msg("cannot keep the checkpoint in NATS (the stream keeps what recovery needs until one is kept)")
	}
}
