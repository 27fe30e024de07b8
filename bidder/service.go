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
	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"

	"github.com/bidpulse/bidpulse/models"
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
	policy  models.PerformanceConfig
	dedup   *dedup
	// specific lists the level indexes most specific first.
	specific []int

	metrics      *metrics.Set
	stats        *stats
	http         *httpMetrics
	throttledLog *throttledLog
	overrides    *overrides
	snapshots    *snapshotCache
	ingest       *ingester

	natsSrv *server.Server
	nc      *nats.Conn
	sub     *nats.Subscription

	httpSrv *fasthttp.Server
	httpLn  net.Listener

	lastDropped atomic.Int64

	ready    atomic.Bool
	stopping atomic.Bool
	stopOnce sync.Once
	bg       sync.WaitGroup
	bgStop   chan struct{}
	httpDone chan error
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
		policy:   policy,
		dedup:    newDedup(opts.DedupSize),
		specific: bySpecificity(rollups),
		metrics:  metrics.NewSet(),
		bgStop:   make(chan struct{}),
	}
	s.stats = newStats(s.metrics, time.UnixMilli(s.clock.NowMs()).UTC())
	s.http = newHTTPMetrics(s.metrics)
	s.throttledLog = newThrottledLog(s.log, 10*time.Second)
	s.overrides = newOverrides(rollups)
	s.snapshots = newSnapshotCache()
	s.ingest = newIngester(s)
	s.registerGauges()
	return s, nil
}

func (s *Service) registerGauges() {
	s.metrics.NewGauge(`bidpulse_keys`, func() float64 { return float64(s.store.Len()) })
	s.metrics.NewGauge(`bidpulse_keys_max`, func() float64 { return float64(s.store.MaxKeys()) })
	s.metrics.NewGauge(`bidpulse_overrides`, func() float64 { return float64(s.overrides.len()) })
	s.metrics.NewGauge(`bidpulse_ready`, func() float64 { return b2f(s.ready.Load()) })
	s.metrics.NewGauge(`bidpulse_nats_connected`, func() float64 {
		return b2f(s.nc != nil && s.nc.IsConnected())
	})
	s.metrics.NewGauge(`bidpulse_nats_pending_messages`, func() float64 {
		n, _ := s.pending()
		return float64(n)
	})
	s.metrics.NewGauge(`bidpulse_nats_pending_bytes`, func() float64 {
		_, b := s.pending()
		return float64(b)
	})
	s.metrics.NewGauge(`bidpulse_nats_dropped_messages`, func() float64 { return float64(s.dropped()) })
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
	url := s.opts.NATSURL
	var connOpts []nats.Option
	if url == "" {
		t0 := time.Now()
		s.natsSrv, err = startEmbeddedNATS(s.opts.NATSAddr, s.opts.DataDir, s.opts.Instance, s.log)
		if err != nil {
			return err
		}
		url = s.natsSrv.ClientURL()
		connOpts = append(connOpts, nats.InProcessServer(s.natsSrv))
		s.log.Info().Str("addr", s.natsSrv.Addr().String()).Str("store", s.opts.DataDir).
			Dur("took", time.Since(t0)).Msg("embedded NATS server started")
	}
	connOpts = append(connOpts,
		nats.Name("bidpulse "+s.opts.Instance),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(500*time.Millisecond),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if s.stopping.Load() {
				return
			}
			s.log.Warn().Err(err).Msg("NATS disconnected; bid answers continue from the windows held")
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			s.log.Info().Str("url", nc.ConnectedUrlRedacted()).Msg("NATS reconnected")
		}),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			s.throttledLog.warn("nats", "NATS error (a slow consumer drops messages: see dropped_messages)", err)
		}),
	)
	t0 := time.Now()
	s.nc, err = nats.Connect(url, connOpts...)
	if err != nil {
		return fmt.Errorf("cannot connect to NATS at %s: %w", url, err)
	}
	s.sub, err = s.nc.Subscribe(s.opts.Subject, s.ingest.handleMsg)
	if err != nil {
		return fmt.Errorf("cannot subscribe to %q: %w", s.opts.Subject, err)
	}
	if err := s.sub.SetPendingLimits(s.opts.PendingMsgs, s.opts.PendingBytes); err != nil {
		return fmt.Errorf("cannot set pending limits: %w", err)
	}
	if err := s.nc.Flush(); err != nil {
		return fmt.Errorf("cannot confirm subscription to %q: %w", s.opts.Subject, err)
	}
	s.log.Info().Str("url", s.nc.ConnectedUrlRedacted()).Str("subject", s.opts.Subject).
		Str("mode", "core").Dur("took", time.Since(t0)).Msg("subscribed to events")

	s.httpLn, err = net.Listen("tcp", s.opts.HTTPAddr)
	if err != nil {
		return fmt.Errorf("cannot listen on http-addr %s: %w", s.opts.HTTPAddr, err)
	}
	s.httpSrv = s.newHTTPServer()
	s.httpDone = make(chan error, 1)
	go func() { s.httpDone <- s.httpSrv.Serve(s.httpLn) }()
	s.log.Info().Str("addr", s.httpLn.Addr().String()).Msg("HTTP API listening")

	s.bg.Add(1)
	go s.housekeeping()
	// In core mode there is nothing to catch up on: ready at once.
	s.ready.Store(true)
	return nil
}

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

// housekeeping evicts idle keys and expired overrides every EvictInterval.
func (s *Service) housekeeping() {
	defer s.bg.Done()
	t := time.NewTicker(s.opts.EvictInterval)
	defer t.Stop()
	for {
		select {
		case <-s.bgStop:
			return
		case <-t.C:
			s.evict()
		}
	}
}

func (s *Service) evict() {
	now := s.clock.NowMs()
	if n := s.store.EvictIdle(now); n > 0 {
		s.stats.evicted.Add(n)
		s.log.Info().Int("keys", n).Int("live", s.store.Len()).Msg("evicted idle keys")
	}
	s.overrides.expire(now)
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
		if s.httpSrv != nil {
			t0 := time.Now()
			if err := s.httpSrv.ShutdownWithContext(ctx); err != nil {
				errs = append(errs, fmt.Errorf("HTTP shutdown: %w", err))
			}
			if err := <-s.httpDone; err != nil {
				errs = append(errs, fmt.Errorf("HTTP server: %w", err))
			}
			s.log.Info().Dur("took", time.Since(t0)).Msg("HTTP API stopped")
		} else if s.httpLn != nil {
			s.httpLn.Close()
		}
		close(s.bgStop)
		s.bg.Wait()
		if s.nc != nil {
			t0 := time.Now()
			if err := s.drain(ctx); err != nil {
				errs = append(errs, err)
			}
			s.log.Info().Dur("took", time.Since(t0)).Uint64("counted", s.stats.counted.Get()).Msg("NATS subscription drained")
		}
		if s.natsSrv != nil {
			t0 := time.Now()
			s.natsSrv.Shutdown()
			s.natsSrv.WaitForShutdown()
			s.log.Info().Dur("took", time.Since(t0)).Msg("embedded NATS server stopped")
		}
		s.dedup.reset()
	})
	return errors.Join(errs...)
}

// drain drains the subscription (its pending messages are applied) and
// closes the connection.
func (s *Service) drain(ctx context.Context) error {
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

// pending returns the messages and bytes received but not yet applied.
func (s *Service) pending() (int, int) {
	if s.sub == nil {
		return 0, 0
	}
	n, b, err := s.sub.Pending()
	if err != nil {
		return 0, 0
	}
	return n, b
}

// dropped returns the messages the NATS client dropped because the
// subscription's pending limits were reached (a slow consumer).
func (s *Service) dropped() int {
	if s.sub == nil {
		return 0
	}
	// A closed subscription no longer reports: keep the last figure.
	n, err := s.sub.Dropped()
	if err != nil {
		return int(s.lastDropped.Load())
	}
	s.lastDropped.Store(int64(n))
	return n
}
