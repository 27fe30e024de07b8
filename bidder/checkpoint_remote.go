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
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// CheckpointBucket is the JetStream Object Store bucket that keeps each
// instance's last checkpoint in NATS: <consumer name>.ckpt and its dedup set,
// <consumer name>.idset. An instance that starts without a local checkpoint
// (a new machine, a lost disk, a new replica) loads its own from there, else
// the newest one of the same stream, and replays the stream after it. The
// stream is trimmed only up to the oldest of these (see trimStream), so what
// that replay needs is still held.
const CheckpointBucket = "bidpulse_checkpoints"

const (
	seqHeader    = "Bidpulse-Seq"
	streamHeader = "Bidpulse-Stream"
)

func (s *Service) openCheckpointStore(ctx context.Context, js jetstream.JetStream) (jetstream.ObjectStore, error) {
	obs, err := js.CreateOrUpdateObjectStore(ctx, jetstream.ObjectStoreConfig{
		Bucket:      CheckpointBucket,
		Description: "bidpulse checkpoints, the last one of each instance",
		Storage:     jetstream.FileStorage,
	})
	if err != nil {
		return nil, fmt.Errorf("cannot create or open object store %s: %w", CheckpointBucket, err)
	}
	return obs, nil
}

// uploadCheckpoint keeps the local checkpoint of sequence seq in NATS, then
// records it in this instance's record and trims the stream.
func (s *Service) uploadCheckpoint(ctx context.Context, seq uint64) error {
	t0 := time.Now()
	base := ingest.ConsumerName(s.opts.Instance)
	put := func(name, path string) (uint64, error) {
		f, err := os.Open(path)
		if err != nil {
			return 0, err
		}
		defer f.Close()
		h := nats.Header{}
		h.Set(seqHeader, strconv.FormatUint(seq, 10))
		h.Set(streamHeader, s.opts.Stream)
		info, err := s.ckptStore.Put(ctx, jetstream.ObjectMeta{Name: name, Headers: h}, f)
		if err != nil {
			return 0, fmt.Errorf("cannot put %s: %w", name, err)
		}
		return info.Size, nil
	}
	// The dedup set first: a checkpoint is only ever found with its own.
	n1, err := put(base+".idset", filepath.Join(s.checkpointDir(), fmt.Sprintf("dedup-%d.idset", seq)))
	if err != nil {
		return err
	}
	n2, err := put(base+".ckpt", s.checkpointPath())
	if err != nil {
		return err
	}
	s.ckpt.remoteSeq.Store(seq)
	s.ckpt.remoteAtMs.Store(s.clock.NowMs())
	s.stats.remoteCkpt.Inc()
	s.log.Debug().Uint64("seq", seq).Uint64("bytes", n1+n2).Dur("took", time.Since(t0)).Msg("checkpoint kept in NATS")
	if err := s.lease.update(ctx, func(r *instanceRecord) { r.RemoteSeq, r.CheckpointSeq = seq, seq }); err != nil {
		return fmt.Errorf("cannot record the checkpoint in the instance record: %w", err)
	}
	return s.trimStream(ctx)
}

// trimStream purges the stream's messages up to the oldest checkpoint kept
// in NATS among the instances that share it: none of them needs those.
func (s *Service) trimStream(ctx context.Context) error {
	floor, ok, err := s.retentionFloor(ctx)
	if err != nil {
		return fmt.Errorf("cannot read the instances' records: %w", err)
	}
	if !ok {
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

// fetchRemoteCheckpoint writes a checkpoint kept in NATS to the local
// checkpoint path: this instance's own, else the newest of the same stream.
// It returns the instance whose checkpoint it took, or "" when there is none.
func (s *Service) fetchRemoteCheckpoint(ctx context.Context) (string, error) {
	infos, err := s.ckptStore.List(ctx)
	if errors.Is(err, jetstream.ErrNoObjectsFound) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("cannot list %s: %w", CheckpointBucket, err)
	}
	own := ingest.ConsumerName(s.opts.Instance) + ".ckpt"
	var best *jetstream.ObjectInfo
	var bestSeq uint64
	for _, oi := range infos {
		if !strings.HasSuffix(oi.Name, ".ckpt") || oi.Headers.Get(streamHeader) != s.opts.Stream {
			continue
		}
		seq, _ := strconv.ParseUint(oi.Headers.Get(seqHeader), 10, 64)
		if oi.Name == own {
			best, bestSeq = oi, seq
			break
		}
		if seq > bestSeq {
			best, bestSeq = oi, seq
		}
	}
	if best == nil {
		return "", nil
	}
	base := strings.TrimSuffix(best.Name, ".ckpt")
	dedup, err := s.ckptStore.Get(ctx, base+".idset")
	if err != nil {
		return "", fmt.Errorf("cannot get %s.idset: %w", base, err)
	}
	defer dedup.Close()
	dinfo, err := dedup.Info()
	if err != nil {
		return "", err
	}
	if dinfo.Headers.Get(seqHeader) != strconv.FormatUint(bestSeq, 10) {
		return "", fmt.Errorf("%s.idset is of sequence %s, its checkpoint of %d", base, dinfo.Headers.Get(seqHeader), bestSeq)
	}
	dir := s.checkpointDir()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("cannot create checkpoint dir: %w", err)
	}
	if err := writeFileAtomic(filepath.Join(dir, fmt.Sprintf("dedup-%d.idset", bestSeq)), func(w io.Writer) (int64, error) {
		return io.Copy(w, dedup)
	}); err != nil {
		return "", fmt.Errorf("cannot write the dedup set: %w", err)
	}
	ck, err := s.ckptStore.Get(ctx, best.Name)
	if err != nil {
		return "", fmt.Errorf("cannot get %s: %w", best.Name, err)
	}
	defer ck.Close()
	if err := writeFileAtomic(s.checkpointPath(), func(w io.Writer) (int64, error) { return io.Copy(w, ck) }); err != nil {
		return "", fmt.Errorf("cannot write the checkpoint: %w", err)
	}
	return base, nil
}

// keepCheckpoint keeps the last local checkpoint in NATS when
// RemoteCheckpointInterval has passed since the last one (always when
// final), and trims the stream after it. A failure is counted and logged:
// the stream then keeps more, nothing is lost.
func (s *Service) keepCheckpoint(final bool) {
	if s.ckptStore == nil || s.leaseLost.Load() {
		return
	}
	seq := s.ckpt.lastSeq.Load()
	if seq == 0 || seq == s.ckpt.remoteSeq.Load() {
		return
	}
	if !final && time.Since(s.lastKept) < s.opts.RemoteCheckpointInterval {
		return
	}
	s.lastKept = time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := s.uploadCheckpoint(ctx, seq); err != nil {
		s.stats.remoteCkptErrors.Inc()
		s.log.Error().Err(err).Uint64("seq", seq).Msg("cannot keep the checkpoint in NATS (the stream keeps what recovery needs until one is kept)")
	}
}
