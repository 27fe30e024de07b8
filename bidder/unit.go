package bidder

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/valyala/fasthttp"
)

// ServeHTTP answers one HTTP request with the service's router and
// handlers: the checks of the route table, then the route's handler. A
// cluster member (bidder/node) calls it for the partition units it owns,
// which have no listener of their own (Options.Unit).
func (s *Service) ServeHTTP(ctx *fasthttp.RequestCtx) { s.serveHTTP(ctx) }

// CheckRead answers 401 and returns false unless the request may read (the
// read token, or an admin token, when Options.ReadToken is set): a cluster
// member guards its own read routes (/v1/stats, /v1/cluster, /metrics) as
// the service does. It works on a Service that was never started.
func (s *Service) CheckRead(ctx *fasthttp.RequestCtx) bool { return s.checkRead(ctx) }

// UnitState is what a cluster member reports of one of its partition
// units.
type UnitState struct {
	// Ready: caught up with the partition and consuming.
	Ready bool `json:"ready"`
	// LeaseLost: another process took the unit's name (it stopped
	// consuming for good; the member replaces it).
	LeaseLost bool `json:"lease_lost,omitempty"`
	// AppliedSeq is the stream sequence of the partition's last applied
	// message; CheckpointSeq and RemoteSeq those of its last checkpoint,
	// local and kept in NATS.
	AppliedSeq    uint64 `json:"applied_seq"`
	CheckpointSeq uint64 `json:"checkpoint_seq"`
	RemoteSeq     uint64 `json:"remote_seq"`
	// Pending is the partition's messages not yet delivered to its
	// consumer (as of the last refresh, every second).
	Pending uint64 `json:"pending"`
	// LagSeconds is now minus the newest applied event's time.
	LagSeconds float64 `json:"lag_seconds"`
	Keys       int     `json:"keys"`
	Counted    uint64  `json:"counted"`
	Rejected   uint64  `json:"rejected"`
	Duplicates uint64  `json:"duplicates"`
	// CheckpointBytes and CheckpointWriteMs are the size and write time of
	// the last checkpoint (0: none yet).
	CheckpointBytes   int64 `json:"checkpoint_bytes"`
	CheckpointWriteMs int64 `json:"checkpoint_write_ms"`
	// FromCheckpoint names the checkpoint kept in NATS it started from
	// ("" when it started from a local one or none).
	FromCheckpoint string `json:"from_checkpoint,omitempty"`
	// Replication is the unit's role and its controller states' path
	// from primary to replicas (replica.go).
	Replication ReplicationState `json:"replication"`
}

// UnitState returns the unit's state (any Service in JetStream mode).
func (s *Service) UnitState() UnitState {
	st, _ := s.ingest.Stream()
	is := s.ingest.Stats()
	from, _ := s.ckpt.fromRemote.Load().(string)
	return UnitState{
		Ready: s.isReady(), LeaseLost: s.leaseLost.Load(), AppliedSeq: s.ingest.Applied(),
		CheckpointSeq: s.ckpt.lastSeq.Load(), RemoteSeq: s.ckpt.remoteSeq.Load(),
		Pending: st.ConsumerPending, LagSeconds: float64(s.ingestLagMs()) / 1e3,
		Keys: s.store.Len(), Counted: is.Counted.Get(), Rejected: is.RejectedTotal(),
		Duplicates: is.Duplicates.Get(), FromCheckpoint: from,
		CheckpointBytes: s.ckpt.lastSize.Load(), CheckpointWriteMs: s.ckpt.lastWriteMs.Load(),
		Replication: s.replicationState(),
	}
}

// ServeBids joins a partition unit's bid subjects (UnitBidSubject), a
// queue group of the partition's owners, and records in the unit's lease
// that it serves. A cluster member calls it once the unit is caught up
// (UnitState().Ready). Once only; any Service with Options.Unit.
func (s *Service) ServeBids(ctx context.Context) error {
	if !s.opts.Unit {
		return errors.New("ServeBids is for partition units (Options.Unit)")
	}
	if s.natsBids != nil {
		return nil
	}
	nb, err := s.startNATSBids(s.nc)
	if err != nil {
		return err
	}
	s.natsBids = nb
	if s.lease == nil {
		return nil
	}
	return s.lease.update(ctx, func(r *instanceRecord) { r.Serving = true })
}

// ServedElsewhere reports whether another process holds this unit's name
// and serves its bids (see ServeBids): the partition's new owner, after a
// Release.
func (s *Service) ServedElsewhere(ctx context.Context) (bool, error) {
	if s.lease == nil {
		return false, nil
	}
	e, err := s.lease.kv.Get(ctx, s.lease.key)
	if err != nil {
		return false, err
	}
	var r instanceRecord
	if err := json.Unmarshal(e.Value(), &r); err != nil {
		return false, err
	}
	return r.Owner != s.owner && !r.Stopped && r.Serving, nil
}

// Kill stops the service as a crash would, for tests of a member's loss:
// no final checkpoint, the lease is not released (it expires after
// LeaseTTL), and the state since the last checkpoint kept in NATS is
// replayed by whoever takes the name next.
func (s *Service) Kill() {
	s.opts.noFinalCheckpoint = true
	// As a dead process's: this process does not vouch that the name is
	// free (deadOnThisHost), so the next owner waits for the lease.
	s.killed = true
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = s.Stop(ctx)
}

// FrontServer returns an HTTP server with this service's limits and
// refusals (request line and header sizes, per-route body limits, read and
// idle timeouts, JSON answers to what fasthttp cannot read) around handler:
// a cluster member's own API, in front of its units. The refusals are
// counted in bidpulse_http_requests_refused_total (WriteFrontMetrics).
func (s *Service) FrontServer(handler fasthttp.RequestHandler) *fasthttp.Server {
	srv := s.newHTTPServer()
	srv.Handler = handler
	return srv
}

// LimitConns wraps ln with this service's connection caps
// (Options.HTTPMaxConns, HTTPMaxConnsPerIP), counted in set.
func (s *Service) LimitConns(ln net.Listener, set *metrics.Set) net.Listener {
	return newConnLimiter(ln, s.opts.HTTPMaxConns, s.opts.HTTPMaxConnsPerIP, set)
}

// WriteFrontMetrics writes the series of the refusals FrontServer counts.
func (s *Service) WriteFrontMetrics(w io.Writer) {
	var b bytes.Buffer
	s.metrics.WritePrometheus(&b)
	for line := range bytes.Lines(b.Bytes()) {
		if bytes.Contains(line, []byte("bidpulse_http_requests_refused_total")) {
			w.Write(line)
		}
	}
}
