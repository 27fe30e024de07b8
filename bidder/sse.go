package bidder

import (
	"bufio"
	"context"
	"errors"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fastjson"
)

// GET /v1/snapshot/stream pushes, as server-sent events, the snapshot of the
// query (the parameters of /v1/snapshot) together with the ingest stats,
// the event and bid rates of the last interval and the readiness, once per
// Options.SSEInterval:
//
//	event: snapshot
//	data: {"seq":..,"now_ms":..,"time":..,"interval_ms":..,"ready":..,"readyz":{..},
//	       "stats":{..},"streams":..,"rates":{..},"bid":{..},"snapshot":{..}}
//
// One hub computes each distinct query once per tick, whatever the number
// of streams that share it, and every stream writes the same bytes.

const (
	defaultSSEInterval   = time.Second
	defaultMaxSSEStreams = 64
	// sseWriteTimeout is how long one frame may take to reach a client; a
	// client that stops reading loses its stream after about that long.
	sseWriteTimeout = 10 * time.Second
	// sseShutdownGrace is how long Stop lets streams deliver their last
	// event before their connections' writes fail.
	sseShutdownGrace = time.Second
	// sseRetryMs is the reconnection delay an EventSource is told to use.
	sseRetryMs = 2000
)

var (
	errSSEStopping = errors.New("the service is shutting down")
	sseShutdownMsg = []byte("event: shutdown\ndata: {\"reason\":\"shutting down\"}\n\n")
)

// sseFrame is one event as written on the wire; immutable once published.
type sseFrame struct {
	data []byte
}

// sseGroup is the streams of one canonical query.
type sseGroup struct {
	q     snapshotQuery
	key   string
	subs  int       // guarded by sseHub.mu
	frame *sseFrame // latest; guarded by sseHub.mu
}

// sseStream is one open stream. conn is the client's connection, kept only
// while the stream writer runs (the request's RequestCtx is not kept), to
// push its write deadline forward and to cut it short on Stop.
type sseStream struct {
	hub   *sseHub
	group *sseGroup
	conn  net.Conn
}

// sseHub computes the frames of the snapshot streams and hands them to the
// streams.
//
// Lock order: tickMu, then mu. tickMu serialises the computations (ticks
// and the first frame of a new query) and guards the rate baseline; mu
// guards the groups, the streams, the wake channel and stopped, and is never
// held while computing.
type sseHub struct {
	s          *Service
	interval   time.Duration
	maxStreams int

	bidLatency   latencyRecorder
	batchLatency latencyRecorder

	tickMu sync.Mutex
	reqCtx fasthttp.RequestCtx // answers /v1/stats and /readyz in-process
	parser fastjson.Parser
	prev   sseSample
	rates  []byte // the rates part of the latest tick

	mu      sync.Mutex
	groups  map[string]*sseGroup
	streams map[*sseStream]struct{}
	wake    chan struct{} // closed and replaced on every tick
	seq     uint64
	stopped bool

	done     chan struct{} // closed by stop
	stopOnce sync.Once
	loopDone chan struct{} // nil until start
	wg       sync.WaitGroup

	ticks     *metrics.Counter // query-independent computations
	snapshots *metrics.Counter // snapshot computations
	refused   *metrics.Counter
}

func newSSEHub(s *Service) *sseHub {
	h := &sseHub{
		s:          s,
		interval:   s.opts.SSEInterval,
		maxStreams: s.opts.MaxSSEStreams,
		groups:     map[string]*sseGroup{},
		streams:    map[*sseStream]struct{}{},
		wake:       make(chan struct{}),
		done:       make(chan struct{}),
		ticks:      s.metrics.NewCounter(`bidpulse_sse_ticks_total`),
		snapshots:  s.metrics.NewCounter(`bidpulse_sse_snapshots_computed_total`),
		refused:    s.metrics.NewCounter(`bidpulse_sse_streams_refused_total`),
	}
	if h.interval <= 0 {
		h.interval = defaultSSEInterval
	}
	if h.maxStreams <= 0 {
		h.maxStreams = defaultMaxSSEStreams
	}
	s.metrics.NewGauge(`bidpulse_sse_streams`, func() float64 { return float64(h.openStreams()) })
	s.metrics.NewGauge(`bidpulse_sse_streams_max`, func() float64 { return float64(h.maxStreams) })
	return h
}

// start takes the rate baseline and starts the ticker.
func (h *sseHub) start() {
	h.tickMu.Lock()
	h.computeCommon(time.Now(), true)
	h.tickMu.Unlock()
	h.loopDone = make(chan struct{})
	go h.loop()
}

func (h *sseHub) loop() {
	defer close(h.loopDone)
	t := time.NewTicker(h.interval)
	defer t.Stop()
	for {
		select {
		case <-h.done:
			return
		case now := <-t.C:
			h.tick(now)
		}
	}
}

// stop ends every stream (each gets a last "shutdown" event) and the
// ticker, and waits for the stream writers until ctx is done. New streams are
// refused from then on. Safe to call more than once, and without start.
func (h *sseHub) stop(ctx context.Context) {
	h.stopOnce.Do(func() {
		t0 := time.Now()
		h.mu.Lock()
		h.stopped = true
		open := len(h.streams)
		close(h.done)
		// A writer blocked behind a client that does not read gives up
		// after the grace period instead of holding the HTTP shutdown.
		grace := time.Now().Add(sseShutdownGrace)
		for st := range h.streams {
			if st.conn != nil {
				_ = st.conn.SetWriteDeadline(grace)
			}
		}
		h.mu.Unlock()
		if h.loopDone != nil {
			<-h.loopDone
		}
		done := make(chan struct{})
		go func() {
			h.wg.Wait()
			close(done)
		}()
		select {
		case <-done:
			h.s.log.Info().Int("streams", open).Dur("took", time.Since(t0)).Msg("snapshot streams ended")
		case <-ctx.Done():
			h.s.log.Warn().Int("streams", h.openStreams()).Msg("snapshot streams still open at the shutdown deadline")
		}
	})
}

func (h *sseHub) openStreams() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.streams)
}

// subscribe registers a stream of q. A query no stream has asked for yet
// gets its first frame at once, so a client does not wait for the next
// tick.
func (h *sseHub) subscribe(q snapshotQuery, conn net.Conn) (*sseStream, error) {
	h.tickMu.Lock()
	defer h.tickMu.Unlock()
	h.mu.Lock()
	if h.stopped {
		h.mu.Unlock()
		return nil, errSSEStopping
	}
	if len(h.streams) >= h.maxStreams {
		h.mu.Unlock()
		h.refused.Inc()
		return nil, errors.New("too many snapshot streams: the limit is " + strconv.Itoa(h.maxStreams) + " (Options.MaxSSEStreams); close one or retry later")
	}
	key := q.key()
	g := h.groups[key]
	if g == nil {
		g = &sseGroup{q: q, key: key}
		h.groups[key] = g
	}
	g.subs++
	st := &sseStream{hub: h, group: g, conn: conn}
	h.streams[st] = struct{}{}
	h.wg.Add(1)
	needFrame, seq := g.frame == nil, h.seq
	h.mu.Unlock()
	if needFrame {
		f, err := h.buildFrame(seq, g, h.computeCommon(time.Now(), false))
		if f == nil {
			// No scan of this level and window, and the budget allows
			// none now: refuse the stream rather than hold it empty.
			h.release(st)
			return nil, err
		}
		h.mu.Lock()
		g.frame = f
		h.mu.Unlock()
	}
	return st, nil
}

// release unregisters st; the last stream of a query drops its group.
func (h *sseHub) release(st *sseStream) {
	h.mu.Lock()
	delete(h.streams, st)
	g := st.group
	g.subs--
	if g.subs == 0 && h.groups[g.key] == g {
		delete(h.groups, g.key)
	}
	h.mu.Unlock()
	h.wg.Done()
}

// tick computes the query-independent part once and the snapshot of every
// query with streams once, then wakes every stream. now is the ticker's
// time, which measures the interval of the rates.
func (h *sseHub) tick(now time.Time) {
	h.tickMu.Lock()
	defer h.tickMu.Unlock()
	common := h.computeCommon(now, true)
	h.mu.Lock()
	groups := make([]*sseGroup, 0, len(h.groups))
	for _, g := range h.groups {
		groups = append(groups, g)
	}
	seq := h.seq + 1
	h.mu.Unlock()
	frames := make([]*sseFrame, len(groups))
	for i, g := range groups {
		frames[i], _ = h.buildFrame(seq, g, common)
	}
	h.mu.Lock()
	for i, g := range groups {
		if frames[i] != nil {
			// nil: no scan could be had; the group keeps its last frame.
			g.frame = frames[i]
		}
	}
	h.seq = seq
	close(h.wake)
	h.wake = make(chan struct{})
	h.mu.Unlock()
}

// buildFrame computes the snapshot of g and wraps it with common into an
// event. The snapshot comes from a scan of its level and window made within
// the last half interval (shared with the other groups of that level and
// window and with GET /v1/snapshot), or, when the scan budget allows no new
// one, from the latest; with neither, buildFrame returns nil and the error.
// Called with tickMu held.
func (h *sseHub) buildFrame(seq uint64, g *sseGroup, common []byte) (*sseFrame, error) {
	nowMs := h.s.clock.NowMs()
	snap, err := h.s.snapshotBody(&g.q, nowMs, min(h.interval/2, h.s.scans.ttl), true)
	if snap == nil {
		return nil, err
	}
	h.snapshots.Inc()
	b := make([]byte, 0, len(common)+len(snap)+128)
	b = append(b, "event: snapshot\ndata: {\"seq\":"...)
	b = strconv.AppendUint(b, seq, 10)
	b = append(b, `,"now_ms":`...)
	b = strconv.AppendInt(b, nowMs, 10)
	b = append(b, `,"time":`...)
	b = appendStr(b, time.UnixMilli(nowMs).UTC().Format("2006-01-02T15:04:05.000Z07:00"))
	b = append(b, ',')
	b = append(b, common...)
	b = append(b, `,"snapshot":`...)
	b = append(b, snap...)
	b = append(b, "}\n\n"...)
	return &sseFrame{data: b}, nil
}

// current returns the latest frame of st's query and the channel closed on
// the next tick.
func (st *sseStream) current() (*sseFrame, <-chan struct{}) {
	h := st.hub
	h.mu.Lock()
	defer h.mu.Unlock()
	return st.group.frame, h.wake
}

// extendDeadline gives the next write sseWriteTimeout, unless the hub is
// stopping (stop has set a short deadline that must stand).
func (st *sseStream) extendDeadline() {
	if st.conn == nil {
		return
	}
	h := st.hub
	h.mu.Lock()
	if !h.stopped {
		_ = st.conn.SetWriteDeadline(time.Now().Add(sseWriteTimeout + h.interval))
	}
	h.mu.Unlock()
}

// run is the stream's body writer (fasthttp runs it in its own goroutine).
// It writes the latest frame of its query after every tick, and returns
// when the client is gone or the hub stops.
func (st *sseStream) run(w *bufio.Writer) {
	defer st.hub.release(st)
	w.WriteString("retry: " + strconv.Itoa(sseRetryMs) + "\n\n")
	var last *sseFrame
	for {
		f, wake := st.current()
		if f != nil && f != last {
			st.extendDeadline()
			if _, err := w.Write(f.data); err != nil {
				return
			}
			if err := w.Flush(); err != nil {
				return
			}
			last = f
		}
		select {
		case <-wake:
		case <-st.hub.done:
			w.Write(sseShutdownMsg)
			w.Flush()
			return
		}
	}
}

// GET /v1/snapshot/stream?level=..&window=..&sort=..&limit=..[&campaign=..][&min_impressions=..]
func (s *Service) handleSnapshotStream(ctx *fasthttp.RequestCtx) {
	q, err := s.parseSnapshotQuery(ctx.QueryArgs())
	if err != nil {
		writeError(ctx, fasthttp.StatusBadRequest, err.Error())
		return
	}
	if ctx.IsHead() {
		ctx.SetStatusCode(fasthttp.StatusOK)
		ctx.SetContentType("text/event-stream; charset=utf-8")
		return
	}
	st, err := s.sse.subscribe(q, ctx.Conn())
	if err != nil {
		if _, ok := err.(errScanBudget); ok {
			writeScanError(ctx, err)
			return
		}
		ctx.Response.Header.Set("Retry-After", "5")
		writeError(ctx, fasthttp.StatusServiceUnavailable, err.Error())
		return
	}
	ctx.SetStatusCode(fasthttp.StatusOK)
	ctx.SetContentType("text/event-stream; charset=utf-8")
	ctx.Response.Header.Set("Cache-Control", "no-cache, no-store")
	ctx.Response.Header.Set("X-Accel-Buffering", "no")
	// A stream is never reused for another request; fasthttp's per-response
	// write timeout is replaced by one per frame (see extendDeadline).
	ctx.SetConnectionClose()
	_ = ctx.SetWriteDeadline(time.Now().Add(sseWriteTimeout + s.sse.interval))
	ctx.SetBodyStreamWriter(st.run)
}
