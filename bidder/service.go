package bidder

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"

	"github.com/bidpulse/bidpulse/bidder/brain"
	"github.com/bidpulse/bidpulse/bidder/control"
	"github.com/bidpulse/bidpulse/bidder/ingest"
	"github.com/bidpulse/bidpulse/bidder/logthrottle"
	"github.com/bidpulse/bidpulse/bidder/natsauth"
	"github.com/bidpulse/bidpulse/windows"
)

// Service is one bidpulse instance: NATS ingest into the windows, and the
// HTTP API over them. Build it with New, then Start and Stop it once each.
type Service struct {
	opts    Options
	log     zerolog.Logger
	clock   Clock
	rollups *windows.Rollups
	store   *windows.Store
	brain   *brain.Brain
	// levelJSON holds each rollup level's name as a JSON string.
	levelJSON []string
	// specific lists the level indexes most specific first.
	specific []int

	metrics      *metrics.Set
	stats        *stats
	http         *httpMetrics
	ortb         *ortbMetrics
	throttledLog *logthrottle.Log
	// control holds the overrides, the kill switch and the effective
	// policies (bidder/control).
	control     *control.Control
	adminTokens []adminToken
	readTokens  []adminToken
	conns       *connLimiter
	guard       *httpGuard
	scans       *scanCache
	// ingest consumes the events and applies them to the windows; it owns
	// the applier's lock.
	ingest *ingest.Ingester
	sse    *sseHub

	natsSrv *server.Server
	nc      *nats.Conn
	// natsBids answers bids over NATS (nil when Options.NATSBids is off).
	natsBids *natsBids
	// owner identifies this process in its consumer and its lease.
	owner string
	lease *lease
	// leaseLost is set when another instance took this one's name over:
	// ingest stops and /readyz says so.
	leaseLost    atomic.Bool
	leaseLostWhy atomic.Value // string
	// lastRenewed is the time of the last renewal of the lease (Unix ns).
	lastRenewed atomic.Int64
	// repl is a partition unit's replication (replica.go).
	repl replication
	// ckptStore keeps checkpoints in NATS (nil: RemoteCheckpointInterval < 0).
	ckptStore jetstream.ObjectStore
	// lastKept is when a checkpoint was last kept in NATS (by the
	// housekeeping goroutine, or by Stop after it ended).
	lastKept time.Time

	// ckptMu serialises checkpoints. Lock order: ckptMu, then the
	// applier's lock (ingest.Pause), then the windows' shard locks; the
	// brain's tick lock (taken by its Snapshot) is never held with the
	// applier's lock.
	ckptMu sync.Mutex
	ckpt   checkpointState

	httpSrv *fasthttp.Server
	httpLn  net.Listener

	ready    atomic.Bool
	stopping atomic.Bool
	// killed is set by Kill (tests): the stop leaves the lease as a crash
	// would.
	killed   bool
	stopOnce sync.Once
	// ingestOnce runs the ingest half of the stop once: by Stop, or
	// earlier by Release (a partition unit handing its partition over).
	ingestOnce sync.Once
	bg         sync.WaitGroup
	bgStop     chan struct{}
	httpDone   chan error
}

// New validates opts and builds a Service; nothing is started.
func New(opts Options) (*Service, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	if opts.Instance == "" {
		opts.Instance, _ = os.Hostname()
		if opts.Instance == "" {
			opts.Instance = "bidpulse"
		}
	}
	tokens, err := parseAdminTokens(opts.AdminToken, opts.AdminTokens)
	if err != nil {
		return nil, err
	}
	readTokens, err := parseReadTokens(opts.ReadToken)
	if err != nil {
		return nil, err
	}
	rollups, res, policy, err := opts.Config.build()
	if err != nil {
		return nil, err
	}
	store, err := windows.NewStore(windows.Config{Resolutions: res, MaxKeys: opts.MaxKeys})
	if err != nil {
		return nil, fmt.Errorf("invalid resolutions: %w", err)
	}
	s := &Service{
		opts:     opts,
		log:      opts.Logger,
		clock:    opts.Clock,
		rollups:  rollups,
		store:    store,
		specific: bySpecificity(rollups),
		levelJSON: func() []string {
			out := make([]string, len(rollups.Levels))
			for i, l := range rollups.Levels {
				out[i] = string(appendStr(nil, l.Name))
			}
			return out
		}(),
		metrics: metrics.NewSet(),
		bgStop:  make(chan struct{}),

		adminTokens: tokens,
		readTokens:  readTokens,
	}
	s.control = control.New(control.Options{
		Rollups: rollups, Policies: policy, DataDir: opts.DataDir, Key: controlKey(opts.ControlKey),
		Now: s.clock.NowMs, Log: s.log, Metrics: s.metrics, Replicas: opts.Replicas,
		OpenExisting: opts.Unit,
	})
	s.brain = s.newBrain()
	s.stats = newStats(s.metrics, time.UnixMilli(s.clock.NowMs()).UTC())
	s.http = newHTTPMetrics(s.metrics)
	s.ortb = newORTBMetrics(s.metrics)
	s.throttledLog = logthrottle.New(s.log, 10*time.Second)
	s.guard = newHTTPGuard(opts.HTTPMaxHeaderBytes, s.metrics)
	s.scans = newScanCache(opts.SnapshotScanRate, s.metrics)
	s.owner = newOwnerID()
	s.ingest = s.newIngester(store)
	s.sse = newSSEHub(s)
	s.registerGauges()
	return s, nil
}

func (s *Service) registerGauges() {
	s.metrics.NewGauge(`bidpulse_keys`, func() float64 { return float64(s.store.Len()) })
	s.metrics.NewGauge(`bidpulse_windows_saturated_adds`, func() float64 { return float64(s.store.Saturated()) })
	s.metrics.NewGauge(`bidpulse_keys_max`, func() float64 { return float64(s.store.MaxKeys()) })
	s.metrics.NewGauge(`bidpulse_ready`, func() float64 { return b2f(s.isReady()) })
	s.metrics.NewGauge(`bidpulse_ingest_lag_seconds`, func() float64 { return float64(s.ingestLagMs()) / 1e3 })
	s.metrics.NewGauge(`bidpulse_buffer_fill_ratio`, func() float64 { return s.bufferFill() })
	s.metrics.NewGauge(`bidpulse_jetstream_applied_seq`, func() float64 { return float64(s.ingest.Applied()) })
	s.metrics.NewGauge(`bidpulse_jetstream_consumer_pending`, func() float64 { st, _ := s.ingest.Stream(); return float64(st.ConsumerPending) })
	s.metrics.NewGauge(`bidpulse_jetstream_stream_bytes`, func() float64 { st, _ := s.ingest.Stream(); return float64(st.Bytes) })
	s.metrics.NewGauge(`bidpulse_jetstream_stream_max_bytes`, func() float64 { return float64(s.opts.StreamMaxBytes) })
	s.metrics.NewGauge(`bidpulse_replay_progress_ratio`, func() float64 {
		if st, ok := s.ingest.Stream(); ok {
			return st.Progress
		}
		return 1
	})
	s.metrics.NewGauge(`bidpulse_dlq_pending`, func() float64 { return float64(s.ingest.DLQ().Pending) })
	s.metrics.NewGauge(`bidpulse_checkpoint_age_seconds`, func() float64 { return s.checkpointAgeSeconds() })
	s.metrics.NewGauge(`bidpulse_checkpoint_size_bytes`, func() float64 { return float64(s.ckpt.lastSize.Load()) })
	s.metrics.NewGauge(`bidpulse_checkpoint_pause_seconds`, func() float64 { return float64(s.ckpt.lastPauseUs.Load()) / 1e6 })
	s.metrics.NewGauge(`bidpulse_checkpoint_duration_seconds`, func() float64 { return float64(s.ckpt.lastWriteMs.Load()) / 1e3 })
	s.metrics.NewGauge(`bidpulse_nats_connected`, func() float64 {
		return b2f(s.nc != nil && s.nc.IsConnected())
	})
	s.metrics.NewGauge(`bidpulse_nats_pending_messages`, func() float64 {
		n, _ := s.ingest.Pending()
		return float64(n)
	})
	s.metrics.NewGauge(`bidpulse_nats_pending_bytes`, func() float64 {
		_, b := s.ingest.Pending()
		return float64(b)
	})
	s.metrics.NewGauge(`bidpulse_nats_dropped_messages`, func() float64 { return float64(s.ingest.Dropped()) })
}

// newIngester builds the ingest core over store with the service's options.
func (s *Service) newIngester(store *windows.Store) *ingest.Ingester {
	o := &s.opts
	return ingest.New(ingest.Options{
		Store: store, Rollups: s.rollups, Clock: s.clock, Log: s.log, Warn: s.throttledLog, Metrics: s.metrics,
		DedupSize: o.DedupSize, OnConversionDelay: s.recordDelay,
		JetStream: o.JetStream, Subject: o.Subject, Partitions: o.Partitions, OnePartition: o.Unit, Partition: o.Partition,
		StreamReplicas: o.Replicas, Stream: o.Stream, StreamMaxBytes: o.StreamMaxBytes,
		StreamMaxAge: o.StreamMaxAge, StreamDuplicates: o.StreamDuplicates, DLQMaxBytes: o.DLQMaxBytes, DLQRaw: o.DLQRaw,
		Instance: o.Instance, Owner: s.owner, FetchBatch: o.FetchBatch, FetchBytes: o.FetchBytes,
		AckWait: o.AckWait, StallAfter: o.StallAfter, StillOwner: s.stillOwner, ConsumerInactive: replicaConsumerInactive(o),
		PendingMsgs: o.PendingMsgs, PendingBytes: o.PendingBytes, ApplyHook: o.applyHook,
	})
}

// ingestLagMs is now minus the event time of the newest applied event
// (0 before the first event).
func (s *Service) ingestLagMs() int64 {
	newest := s.ingest.NewestTs()
	if newest == 0 {
		return 0
	}
	return max(s.clock.NowMs()-newest, 0)
}

// bufferFill is how full the spike buffer is, in [0, 1]: the stream's bytes
// against its limit in JetStream mode, the subscription's pending messages
// or bytes against its limits in core mode.
func (s *Service) bufferFill() float64 {
	if st, ok := s.ingest.Stream(); ok {
		if s.opts.StreamMaxBytes <= 0 {
			return 0
		}
		return float64(st.Bytes) / float64(s.opts.StreamMaxBytes)
	}
	msgs, bytes := s.ingest.Pending()
	return max(float64(msgs)/float64(s.opts.PendingMsgs), float64(bytes)/float64(s.opts.PendingBytes))
}

// checkpointAgeSeconds is the age of the last checkpoint (0 when none).
func (s *Service) checkpointAgeSeconds() float64 {
	at := s.ckpt.lastAtMs.Load()
	if at == 0 {
		return 0
	}
	return float64(s.clock.NowMs()-at) / 1e3
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// Start starts the embedded NATS server (without Options.NATSURL), connects,
// subscribes to the event subject and starts the HTTP API. On error,
// everything started is stopped again.
func (s *Service) Start() (err error) {
	defer func() {
		if err != nil {
			s.Stop(context.Background())
		}
	}()
	// First, so that whatever comes next (the embedded server's store,
	// audit.log, checkpoints) is made in a directory of mode 0700.
	if err := ensureDataDir(s.opts.DataDir, s.log); err != nil {
		return err
	}
	key, err := loadDLQKey(s.opts.DataDir)
	if err != nil {
		return err
	}
	s.ingest.SetDLQKey(key)
	url := s.opts.NATSURL
	var connOpts []nats.Option
	if url == "" {
		t0 := time.Now()
		var users *natsUsers
		if s.opts.natsAuth {
			if users, err = loadNATSUsers(s.opts.DataDir, s.log); err != nil {
				return err
			}
		}
		s.natsSrv, err = startEmbeddedNATS(embeddedNATS{
			addr: s.opts.NATSAddr, dataDir: s.opts.DataDir, name: s.opts.Instance,
			users: users, names: natsNames{subject: s.opts.Subject, stream: s.opts.Stream},
			tlsCert: s.opts.NATSServerTLSCert, tlsKey: s.opts.NATSServerTLSKey,
			log: s.log, refused: newNATSRefusals(s.metrics, s.throttledLog), edit: s.opts.natsServerHook,
		})
		if err != nil {
			return err
		}
		// In-process: a nats:// URL, so that the client does not ask for
		// the TLS the listener may require (the server does not, in-process).
		url = "nats://" + s.natsSrv.Addr().String()
		connOpts = append(connOpts, nats.InProcessServer(inProcessProvider{srv: s.natsSrv, wrap: s.opts.wrapNATSConn}))
		if users != nil {
			connOpts = append(connOpts, nats.Nkey(users.service.pub, users.service.kp.Sign))
		}
		s.ingest.WatchServer(s.natsSrv)
		s.log.Info().Str("addr", s.natsSrv.Addr().String()).Str("store", s.opts.DataDir).
			Bool("auth", users != nil).Bool("tls", s.opts.NATSServerTLSCert != "").
			Dur("took", time.Since(t0)).Msg("embedded NATS server started")
		if users != nil {
			users.logUsers(s.log, s.natsSrv.ClientURL(), natsNames{subject: s.opts.Subject, stream: s.opts.Stream})
		}
	} else {
		o, err := s.opts.NATSClient.Options()
		if err != nil {
			return err
		}
		connOpts = append(connOpts, o...)
	}
	connOpts = append(connOpts,
		nats.Name("bidpulse "+s.opts.Instance),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(500*time.Millisecond),
		nats.DisconnectErrHandler(func(nc *nats.Conn, err error) {
			s.ingest.Disconnected(nc)
			if s.stopping.Load() {
				return
			}
			s.log.Warn().Err(err).Msg("NATS disconnected; bid answers continue from the windows held")
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			s.ingest.Connected(nc)
			s.log.Info().Str("url", natsauth.Redact(nc.ConnectedUrl())).Msg("NATS reconnected")
		}),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			s.throttledLog.Warn("nats", "NATS error (a slow consumer drops messages: counted in dropped_messages in core mode; in JetStream mode they are delivered again)", err)
		}),
	)
	t0 := time.Now()
	s.nc, err = nats.Connect(url, connOpts...)
	if err != nil {
		return fmt.Errorf("cannot connect to NATS at %s: %w", natsauth.Redact(url), err)
	}
	s.ingest.Connected(s.nc)
	startTimeout := s.opts.StartTimeout
	if startTimeout <= 0 {
		startTimeout = 30 * time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	if err := s.control.Start(ctx, s.nc); err != nil {
		return err
	}
	if err := s.ingest.Open(ctx, s.nc); err != nil {
		return err
	}
	if js := s.ingest.JetStream(); js != nil {
		if s.lease, err = s.acquireLease(ctx, js); err != nil {
			return err
		}
		if err := s.ingest.EnsureStreams(ctx); err != nil {
			return err
		}
		if s.opts.RemoteCheckpointInterval > 0 {
			if s.ckptStore, err = s.openCheckpointStore(ctx, js); err != nil {
				return err
			}
		}
		from, err := s.loadCheckpoint(ctx)
		if err != nil {
			return err
		}
		if err := s.startUnitState(ctx, from); err != nil {
			return err
		}
		err = s.ingest.Consume(ctx, from)
		if errors.Is(err, ingest.ErrStreamReset) {
			s.checkpointLoadFailed(s.checkpointPath(), err)
			s.resetState()
			s.repl.baseSeq = 0
			// What this instance kept in NATS is of the old stream.
			if err := s.lease.update(ctx, func(r *instanceRecord) { r.RemoteSeq, r.CheckpointSeq = 0, 0 }); err != nil {
				return err
			}
			err = s.ingest.Consume(ctx, 0)
		}
		if err != nil {
			return err
		}
		st, _ := s.ingest.Stream()
		s.log.Info().Str("url", natsauth.Redact(s.nc.ConnectedUrl())).Str("stream", s.opts.Stream).Str("subject", s.opts.Subject).
			Str("consumer", st.Consumer).Uint64("from_seq", st.StartSeq).Uint64("to_seq", st.TargetSeq).
			Str("mode", "jetstream").Dur("took", time.Since(t0)).Msg("consuming events")
		if err := s.startReplication(); err != nil {
			return err
		}
	} else {
		if err := s.ingest.Consume(ctx, 0); err != nil {
			return err
		}
		s.log.Info().Str("url", natsauth.Redact(s.nc.ConnectedUrl())).Str("subject", s.opts.Subject).
			Str("mode", "core").Dur("took", time.Since(t0)).Msg("subscribed to events")
	}

	s.sse.start()
	if !s.opts.Unit {
		s.httpLn, err = net.Listen("tcp", s.opts.HTTPAddr)
		if err != nil {
			return fmt.Errorf("cannot listen on http-addr %s: %w", s.opts.HTTPAddr, err)
		}
		s.httpSrv = s.newHTTPServer()
		s.httpDone = make(chan error, 1)
		s.conns = newConnLimiter(s.httpLn, s.opts.HTTPMaxConns, s.opts.HTTPMaxConnsPerIP, s.metrics)
		go func() { s.httpDone <- s.httpSrv.Serve(s.conns) }()
		s.log.Info().Str("addr", s.httpLn.Addr().String()).Msg("HTTP API listening")
	}
	if s.opts.natsBids && !s.opts.Unit {
		if s.natsBids, err = s.startNATSBids(s.nc); err != nil {
			return err
		}
		s.log.Info().Strs("subjects", []string{NATSBidSubjectMultiplier, NATSBidSubjectMultipliers, NATSBidSubjectOpenRTB}).
			Msg("bids over NATS: service " + NATSBidServiceName)
	}

	s.bg.Add(1)
	go s.housekeeping()
	// Each on its own goroutine: a stalled applier holds up checkpoints and
	// eviction (housekeeping), never the stall check (Refresh) nor the
	// lease, and the control tick does not wait for either.
	s.every(time.Second, func() { withTimeout(2*time.Second, s.ingest.Refresh) })
	s.every(max(s.opts.LeaseTTL/3, 10*time.Millisecond), func() { withTimeout(s.opts.LeaseTTL/3, s.renewLease) })
	if !s.opts.Replica {
		// A replica's controller states are its primary's (replica.go).
		s.every(s.opts.ControlInterval, func() {
			if s.opts.Unit && !s.ingest.Ready() {
				// A partition unit replaying after a hand-over keeps the
				// states it started from until it is caught up: a tick on
				// a partial replay would see too little spend.
				return
			}
			s.brain.Tick(s.clock.NowMs())
		})
	}
	s.every(time.Second, func() { s.brain.Publish(s.clock.NowMs()) })
	// Ready once started; in JetStream mode /readyz also waits for the
	// catch-up (see isReady).
	s.ready.Store(true)
	return nil
}

// isReady reports whether the service should take bid traffic: started,
// not stopping, and (JetStream) caught up with the stream.
func (s *Service) isReady() bool {
	return s.ready.Load() && s.ingest.Ready()
}

// Mode returns "jetstream" or "core".
func (s *Service) Mode() string { return s.ingest.Mode() }

// HTTPAddr returns the address the API listens on (after Start).
func (s *Service) HTTPAddr() string {
	if s.httpLn == nil {
		return ""
	}
	return s.httpLn.Addr().String()
}

// NATSURL returns the client URL of the embedded server, or "" when the
// service uses an external one.
func (s *Service) NATSURL() string {
	if s.natsSrv == nil {
		return ""
	}
	return s.natsSrv.ClientURL()
}

// housekeeping evicts idle keys and expired overrides every EvictInterval
// and writes a checkpoint every CheckpointInterval.
func (s *Service) housekeeping() {
	defer s.bg.Done()
	evict := time.NewTicker(s.opts.EvictInterval)
	defer evict.Stop()
	ckpt := time.NewTicker(s.opts.CheckpointInterval)
	defer ckpt.Stop()
	for {
		select {
		case <-s.bgStop:
			return
		case <-evict.C:
			s.evict()
		case <-ckpt.C:
			if s.opts.Replica {
				continue // it starts from its primary's checkpoints
			}
			if s.writeCheckpoint() == nil {
				// Ended by the stop too: a JetStream request that finds no
				// leader gets no reply and would hold the stop for minutes
				// (the stop keeps a final checkpoint of its own).
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
				go func() {
					select {
					case <-s.bgStop:
						cancel()
					case <-ctx.Done():
					}
				}()
				s.keepCheckpoint(ctx, false)
				cancel()
			}
		}
	}
}

// evict removes idle keys and expired overrides. The pass over the keys
// holds the applier's lock one chunk (up to 256 keys of a shard) at a time,
// never for the whole pass (up to a million keys, during which no event
// would be applied). Per chunk is enough: the key-cap check of ingest relies
// on nobody else changing the key set between its check and its writes, and
// each chunk first applies the writes held back for the next message (they
// may re-create a key the chunk evicts, which the check did not leave room
// for). Between chunks the store steps aside, so a waiting applier takes
// the lock before the next chunk (see windows.Store.EvictIdleChunked).
func (s *Service) evict() {
	now := s.clock.NowMs()
	n := s.store.EvictIdleChunked(now, s.ingest.Pause)
	if n > 0 {
		s.stats.evicted.Add(n)
		s.log.Info().Int("keys", n).Int("live", s.store.Len()).Msg("evicted idle keys")
	}
	s.control.ExpireOverrides(now)
}

// Stop stops the service gracefully: /readyz turns 503, in-flight HTTP
// requests finish, the subscription drains (messages already received are
// applied), the NATS connection and the embedded server close. It waits at
// most Options.ShutdownTimeout for each phase, or until ctx is done.
func (s *Service) Stop(ctx context.Context) error {
	var errs []error
	s.stopOnce.Do(func() {
		s.stopping.Store(true)
		s.ready.Store(false)
		ctx, cancel := context.WithTimeout(ctx, s.opts.ShutdownTimeout)
		defer cancel()
		// Snapshot streams never go idle: end them first, or the HTTP
		// shutdown would wait out its deadline.
		s.sse.stop(ctx)
		if s.httpSrv != nil {
			t0 := time.Now()
			if err := s.httpSrv.ShutdownWithContext(ctx); err != nil {
				errs = append(errs, fmt.Errorf("HTTP shutdown: %w", err))
			}
			// fasthttp closes the listeners Serve has registered: a Stop
			// right after Start can come before Serve's goroutine
			// registers it, and Serve would then wait in Accept forever.
			// Closing the listener here ends that Accept (Serve returns
			// its error, a closed listener, which is no failure).
			_ = s.httpLn.Close()
			if err := <-s.httpDone; err != nil && !errors.Is(err, net.ErrClosed) {
				errs = append(errs, fmt.Errorf("HTTP server: %w", err))
			}
			s.log.Info().Dur("took", time.Since(t0)).Msg("HTTP API stopped")
		} else if s.httpLn != nil {
			s.httpLn.Close()
		}
		// Bids over NATS stop with HTTP, before the connection drains:
		// the requests queued are answered first.
		if s.natsBids != nil {
			t0 := time.Now()
			if err := s.natsBids.stop(); err != nil {
				errs = append(errs, err)
			}
			s.log.Info().Dur("took", time.Since(t0)).Msg("bids over NATS stopped")
		}
		errs = append(errs, s.stopIngest(ctx)...)
		s.control.Stop()
		if s.nc != nil {
			t0 := time.Now()
			if err := s.drain(ctx); err != nil {
				errs = append(errs, err)
			}
			s.log.Info().Dur("took", time.Since(t0)).Msg("NATS connection drained")
		}
		if s.natsSrv != nil {
			t0 := time.Now()
			s.natsSrv.Shutdown()
			s.natsSrv.WaitForShutdown()
			s.log.Info().Dur("took", time.Since(t0)).Msg("embedded NATS server stopped")
		}
		s.ingest.Release()
	})
	return errors.Join(errs...)
}

// Release ends this service's ingest as Stop does (the consumer stops, a
// final checkpoint is written and kept in NATS, the lease is released, so
// another process can take the name at once) but keeps answering: the
// bids over NATS and ServeHTTP go on from the windows as they are, no
// longer updated. A partition unit handing its partition over calls it,
// then Stop once the new owner serves (ServedElsewhere).
func (s *Service) Release(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, s.opts.ShutdownTimeout)
	defer cancel()
	return errors.Join(s.stopIngest(ctx)...)
}

// stopIngest is the ingest half of the stop, run once.
func (s *Service) stopIngest(ctx context.Context) []error {
	var errs []error
	s.ingestOnce.Do(func() {
		// An applier waiting for room in the dead-letter queue would hold
		// up the checkpoint loop, and so the stop.
		s.ingest.Unblock()
		close(s.bgStop)
		s.bg.Wait()
		s.stopReplication()
		t0 := time.Now()
		// The consumer stops (JetStream: the messages fetched are applied,
		// the last acknowledged; core: the subscription drains), then the
		// dead letters get a short wait to be stored: those left are kept
		// by the final checkpoint in JetStream mode, lost in core mode.
		dctx, dcancel := context.WithTimeout(ctx, min(2*time.Second, s.opts.ShutdownTimeout/2))
		n := s.ingest.Stop(dctx)
		dcancel()
		if s.ingest.JetStream() != nil {
			if n > 0 {
				s.log.Warn().Int("dead_letters", n).Msg("DLQ not answering at stop: the dead letters not yet stored are kept in the checkpoint")
			}
			// Without a lease the name was never ours (a Start refused):
			// nothing was consumed, and the checkpoint is the holder's.
			if !s.opts.noFinalCheckpoint && s.lease != nil && !s.opts.Replica {
				if err := s.writeCheckpoint(); err != nil {
					errs = append(errs, err)
				} else {
					// Within the stop's deadline: the lease is renewed
					// first, as its loop has ended.
					s.renewLease(ctx)
					s.keepCheckpoint(ctx, true)
				}
			}
			// Its own deadline: a slow HTTP shutdown may have used up
			// the stop's, and a name not released stays taken for the
			// lease TTL.
			withTimeout(5*time.Second, s.releaseLease)
			s.log.Info().Dur("took", time.Since(t0)).Uint64("seq", s.ingest.Applied()).
				Uint64("counted", s.ingest.Stats().Counted.Get()).Msg("consumer stopped, checkpoint written")
		} else if n > 0 {
			s.log.Error().Int("dead_letters", n).Msg("dead letters not published at stop (core mode keeps no checkpoint): lost")
		}
	})
	return errs
}

// drain drains the subscription (its pending messages are applied) and
// closes the connection.
func (s *Service) drain(ctx context.Context) error {
	if !s.nc.IsConnected() {
		// Nothing can be drained from a server that is not there; in
		// JetStream mode the unacknowledged messages are redelivered to
		// the next start and skipped by sequence where already applied.
		n, _ := s.ingest.Pending()
		s.log.Warn().Int("pending_messages", n).Msg("NATS not connected at stop: closing without drain")
		s.nc.Close()
		return nil
	}
	closed := make(chan struct{})
	s.nc.SetClosedHandler(func(*nats.Conn) { close(closed) })
	if err := s.nc.Drain(); err != nil {
		s.nc.Close()
		return fmt.Errorf("NATS drain: %w", err)
	}
	select {
	case <-closed:
		return nil
	case <-ctx.Done():
		s.nc.Close()
		return fmt.Errorf("NATS drain: %w", ctx.Err())
	}
}

// every calls fn every d on a goroutine of its own until the service stops.
func (s *Service) every(d time.Duration, fn func()) {
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		t := time.NewTicker(d)
		defer t.Stop()
		for {
			select {
			case <-s.bgStop:
				return
			case <-t.C:
				fn()
			}
		}
	}()
}

// withTimeout calls fn with a context that ends after d.
func withTimeout(d time.Duration, fn func(ctx context.Context)) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	fn(ctx)
}

// newBrain returns an empty brain over the service's store.
func (s *Service) newBrain() *brain.Brain {
	return brain.New(brain.Options{
		Store: s.store, Rollups: s.rollups,
		Policies: s.control.Policies, Now: s.clock.NowMs,
		MaxKeys: s.opts.MaxKeyStates, MaxCampaigns: s.opts.MaxCampaignStates,
		Metrics: s.metrics, Follower: s.opts.Replica,
	})
}

// recordDelay learns a conversion's click-to-conversion delay (ingest).
func (s *Service) recordDelay(campaign []byte, clickMs, convMs int64) {
	s.brain.RecordDelay(campaign, clickMs, convMs)
}

// controlKey is Options.ControlKey as the control plane takes it (nil: its
// own key file).
func controlKey(k string) []byte {
	if k == "" {
		return nil
	}
	return []byte(k)
}
