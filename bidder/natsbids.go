package bidder

import (
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	"github.com/valyala/fasthttp"

	"github.com/bidpulse/bidpulse/bidder/client"
)

// Bids over NATS request-reply: a nats.go/micro service, "bidpulse", with
// one endpoint per bid route. A message is turned into the HTTP request it
// stands for (method, path, query, body) on a fasthttp.RequestCtx, and the
// HTTP router's own checks and handlers answer it (serveNATSBid), so an
// answer is byte for byte the HTTP one: there is no second implementation
// of a bid. A 4xx or 5xx answer goes back as a micro error: headers
// Nats-Service-Error-Code (the HTTP status) and Nats-Service-Error (its
// text), and the same JSON body as HTTP.
//
// Why a worker pool: nats.go delivers each subscription's messages on one
// goroutine, and micro calls an endpoint's handler on it, so the requests
// of an endpoint would be answered one after the other
// (natsbids_timing_test.go measures it). The micro handler only queues the
// message (a bounded queue: when it is full the handler waits, and the
// subscription's pending limits push back on the requesters); natsBidWorkers
// goroutines answer.
//
// The cost of answering from the pool: micro's own $SRV.STATS count the
// requests, but their processing time is the time to queue one, and its
// num_errors stays 0 (micro only sees errors answered on its goroutine).
// The real figures are in each endpoint's stats data ("answered",
// "errors") and in the bidpulse_natsbids_* metrics.

// The bid subjects, one per endpoint.
const (
	// NATSBidSubjectMultiplier answers one key: the body is the query
	// string of GET /v1/multiplier ("campaign=c1&placement=p1").
	NATSBidSubjectMultiplier = client.SubjectMultiplier
	// NATSBidSubjectMultipliers answers a batch: the body of POST
	// /v1/multipliers.
	NATSBidSubjectMultipliers = client.SubjectMultipliers
	// NATSBidSubjectOpenRTB answers an OpenRTB BidRequest: the body of POST
	// /v1/openrtb/multipliers.
	NATSBidSubjectOpenRTB = client.SubjectOpenRTB

	// NATSBidServiceName is the micro service's name ($SRV.*.bidpulse).
	NATSBidServiceName = "bidpulse"
	// NATSBidServiceVersion is the version of the service's contract.
	NATSBidServiceVersion = "1.0.0"

	// NATSBidQueryHeader carries the query string of the batch and OpenRTB
	// routes (explain=true, format=prebid): their body is the HTTP body.
	NATSBidQueryHeader = client.QueryHeader
	// NATSBidAuthHeader carries what HTTP's Authorization header would
	// (a read token for explain=true, when the service has one).
	NATSBidAuthHeader = client.AuthHeader
)

// natsBidEndpoint is one endpoint and the HTTP request it stands for.
type natsBidEndpoint struct {
	idx           int // its index in natsBidEndpoints
	name, subject string
	route         int
	method, path  string
}

var natsBidEndpoints = [...]natsBidEndpoint{
	{0, "multiplier", NATSBidSubjectMultiplier, routeMultiplier, "GET", "/v1/multiplier"},
	{1, "multipliers", NATSBidSubjectMultipliers, routeMultipliers, "POST", "/v1/multipliers"},
	{2, "openrtb", NATSBidSubjectOpenRTB, routeOpenRTB, "POST", "/v1/openrtb/multipliers"},
}

// natsBidSubjects returns the bid subjects (the NATS permissions of
// natsusers.go allow them).
func natsBidSubjects() []string {
	l := make([]string, len(natsBidEndpoints))
	for i := range natsBidEndpoints {
		l[i] = natsBidEndpoints[i].subject
	}
	return l
}

// UnitBidPrefix starts the subjects on which the owners of a partition
// answer the bids the other members forward to them (bidder/node).
const UnitBidPrefix = "bidpulse.bid."

// UnitBidSubject is the subject on which the owners of partition p answer
// the bid endpoint name ("multiplier", "multipliers" or "openrtb"), a queue
// group of them: bidpulse.bid.<p>.<name>. The body and answer are those of
// the service's own bid subjects (NATSBidSubjectMultiplier...).
func UnitBidSubject(p uint32, name string) string {
	return UnitBidPrefix + strconv.FormatUint(uint64(p), 10) + "." + name
}

// natsBidMetadata is the micro service's metadata: the instance, and the
// partition of a partition unit.
func natsBidMetadata(o *Options) map[string]string {
	m := map[string]string{"instance": o.Instance}
	if o.Unit {
		m["partition"] = strconv.FormatUint(uint64(o.Partition), 10)
	}
	return m
}

// natsBidJob is one request, queued for a worker. data is the message's
// payload: nats.go gives each delivered message a payload of its own, never
// reused, so holding it until the worker answers is safe.
type natsBidJob struct {
	ep                *natsBidEndpoint
	data              []byte
	reply             string
	query, auth       string
	hasQuery, hasAuth bool
}

// natsBids is the running service: the micro service, its queue and
// workers.
type natsBids struct {
	svc  *Service
	nc   *nats.Conn
	ms   micro.Service
	jobs chan natsBidJob

	// mu guards closed against the sends on jobs: a handler sends while
	// holding it for reading, stop closes jobs once it holds it for
	// writing, so no send can follow the close.
	mu     sync.RWMutex
	closed bool
	wg     sync.WaitGroup

	requests [len(natsBidEndpoints)]*metrics.Counter
	errors   [len(natsBidEndpoints)]*metrics.Counter
	noReply  *metrics.Counter
	stopping *metrics.Counter
	failed   *metrics.Counter
}

// natsBidWorkers is the number of goroutines answering: two per core, so
// that one waiting on the connection's write lock does not idle a core.
func natsBidWorkers() int { return 2 * runtime.GOMAXPROCS(0) }

// startNATSBids adds the service to nc and starts its workers.
func (s *Service) startNATSBids(nc *nats.Conn) (*natsBids, error) {
	nb := &natsBids{
		svc:      s,
		nc:       nc,
		jobs:     make(chan natsBidJob, 8*natsBidWorkers()),
		noReply:  s.metrics.NewCounter(`bidpulse_natsbids_dropped_total{reason="no_reply"}`),
		stopping: s.metrics.NewCounter(`bidpulse_natsbids_dropped_total{reason="stopping"}`),
		failed:   s.metrics.NewCounter(`bidpulse_natsbids_dropped_total{reason="respond_failed"}`),
	}
	for i := range natsBidEndpoints {
		name := natsBidEndpoints[i].name
		nb.requests[i] = s.metrics.GetOrCreateCounter(`bidpulse_natsbids_requests_total{endpoint="` + name + `"}`)
		nb.errors[i] = s.metrics.GetOrCreateCounter(`bidpulse_natsbids_errors_total{endpoint="` + name + `"}`)
	}
	for range natsBidWorkers() {
		nb.wg.Add(1)
		go nb.work()
	}
	ms, err := micro.AddService(nc, micro.Config{
		Name:        NATSBidServiceName,
		Version:     NATSBidServiceVersion,
		Description: "bid multipliers over NATS request-reply: the answers of the HTTP bid routes",
		Metadata:    natsBidMetadata(&s.opts),
		StatsHandler: func(e *micro.Endpoint) any {
			for i := range natsBidEndpoints {
				if natsBidEndpoints[i].name == e.Name {
					return map[string]uint64{"answered": nb.requests[i].Get(), "errors": nb.errors[i].Get()}
				}
			}
			return nil
		},
	})
	if err != nil {
		nb.stop()
		return nil, fmt.Errorf("cannot start the NATS bid service: %w", err)
	}
	nb.ms = ms
	for i := range natsBidEndpoints {
		ep := &natsBidEndpoints[i]
		subject := ep.subject
		if s.opts.Unit {
			subject = UnitBidSubject(s.opts.Partition, ep.name)
		}
		err := ms.AddEndpoint(ep.name, micro.HandlerFunc(nb.enqueue(ep)),
			micro.WithEndpointSubject(subject),
			micro.WithEndpointMetadata(map[string]string{"http": ep.method + " " + ep.path}))
		if err != nil {
			nb.stop()
			return nil, fmt.Errorf("cannot add the NATS bid endpoint %s: %w", ep.subject, err)
		}
	}
	// The subscriptions are sent asynchronously: wait until the server has
	// them, so that a request sent once the service reports ready (from
	// this account or one importing the service) finds its responders.
	if err := nc.FlushTimeout(5 * time.Second); err != nil {
		nb.stop()
		return nil, fmt.Errorf("cannot register the NATS bid service at the server: %w", err)
	}
	return nb, nil
}

// enqueue returns the micro handler of ep: it queues the request for a
// worker and returns.
func (nb *natsBids) enqueue(ep *natsBidEndpoint) func(micro.Request) {
	return func(r micro.Request) {
		j := natsBidJob{ep: ep, data: r.Data(), reply: r.Reply()}
		if h := r.Headers(); h != nil {
			if v, ok := h[NATSBidQueryHeader]; ok && len(v) > 0 {
				j.query, j.hasQuery = v[0], true
			}
			if v, ok := h[NATSBidAuthHeader]; ok && len(v) > 0 {
				j.auth, j.hasAuth = v[0], true
			}
		}
		if j.reply == "" {
			// A publish, not a request: nobody to answer.
			nb.noReply.Inc()
			return
		}
		nb.mu.RLock()
		if nb.closed {
			nb.mu.RUnlock()
			nb.stopping.Inc()
			return
		}
		nb.jobs <- j
		nb.mu.RUnlock()
	}
}

// work answers queued requests until stop.
func (nb *natsBids) work() {
	defer nb.wg.Done()
	var ctx fasthttp.RequestCtx
	var uri []byte
	for j := range nb.jobs {
		uri = nb.svc.serveNATSBid(&ctx, uri, &j)
		nb.respond(&ctx, &j)
	}
}

// respond sends ctx's answer to j's requester.
func (nb *natsBids) respond(ctx *fasthttp.RequestCtx, j *natsBidJob) {
	i := j.ep.idx
	nb.requests[i].Inc()
	m := nats.Msg{Subject: j.reply, Data: ctx.Response.Body()}
	if code := ctx.Response.StatusCode(); code >= 400 {
		nb.errors[i].Inc()
		m.Header = nats.Header{
			micro.ErrorCodeHeader: []string{strconv.Itoa(code)},
			micro.ErrorHeader:     []string{fasthttp.StatusMessage(code)},
		}
	}
	// PublishMsg copies Data into the connection's buffer: ctx may be
	// reused once it returns.
	if err := nb.nc.PublishMsg(&m); err != nil {
		nb.failed.Inc()
		nb.svc.throttledLog.Warn("natsbids", "cannot answer a bid request over NATS", err)
	}
}

// stop stops the micro service (its subscriptions drain), lets the
// workers answer what was queued, and waits for them.
func (nb *natsBids) stop() error {
	var err error
	if nb.ms != nil {
		if e := nb.ms.Stop(); e != nil && !errors.Is(e, nats.ErrConnectionClosed) {
			err = fmt.Errorf("cannot stop the NATS bid service: %w", e)
		}
	}
	nb.mu.Lock()
	if !nb.closed {
		nb.closed = true
		close(nb.jobs)
	}
	nb.mu.Unlock()
	nb.wg.Wait()
	return err
}

// serveNATSBid fills ctx with the HTTP request j stands for and answers it
// with the HTTP router's checks and handlers. uri is a buffer for the
// request URI, returned for reuse.
func (s *Service) serveNATSBid(ctx *fasthttp.RequestCtx, uri []byte, j *natsBidJob) []byte {
	ep := j.ep
	ctx.Request.Reset()
	ctx.Response.Reset()
	ctx.Init(&emptyRequest, nil, nil)
	uri = append(uri[:0], ep.path...)
	query := j.query
	if ep.route == routeMultiplier {
		// The body is the query string; a leading "?" is forgiven.
		query = string(j.data)
		if len(query) > 0 && query[0] == '?' {
			query = query[1:]
		}
	}
	if query != "" {
		uri = append(uri, '?')
		uri = append(uri, query...)
	}
	ctx.Request.Header.SetMethod(ep.method)
	ctx.Request.SetRequestURIBytes(uri)
	if j.hasAuth {
		ctx.Request.Header.Set(NATSBidAuthHeader, j.auth)
	}
	path := ctx.Path()
	m := methodRuleOf(ep.route, path, ctx.Method())
	if ep.route != routeMultiplier {
		if len(j.data) > m.body {
			// What HTTP answers to a Content-Length over the limit.
			writeError(ctx, fasthttp.StatusRequestEntityTooLarge,
				"request body too large: the limit of "+ep.method+" "+ep.path+" is "+sizeName(m.body))
			return uri
		}
		ctx.Request.SetBodyRaw(j.data)
	}
	if s.routeAllowed(ctx, ep.route, m) {
		s.dispatch(ctx, ep.route, path)
	}
	return uri
}

// emptyRequest is what RequestCtx.Init copies into a context before a
// request is written into it.
var emptyRequest fasthttp.Request
