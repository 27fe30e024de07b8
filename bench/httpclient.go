package bench

import (
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/url"
	"os"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/bidpulse/bidpulse/bidder/client"
)

// Bid endpoints.
const (
	// EndpointSingle sends GET /v1/multiplier for one key.
	EndpointSingle = "single"
	// EndpointBatch sends POST /v1/multipliers with a batch of keys.
	EndpointBatch = "batch"
	// EndpointMix sends one batch request in five, single requests otherwise.
	EndpointMix = "mix"
	// EndpointOpenRTB sends POST /v1/openrtb/multipliers: an OpenRTB 2.6 BidRequest with
	// candidates per impression (see appendBidRequest).
	EndpointOpenRTB = "openrtb"
)

// bidShape is what each bid request asks.
type bidShape struct {
	endpoint string
	// batch is the keys of a POST /v1/multipliers (EndpointBatch, EndpointMix).
	batch int
	// imps and candidates are an OpenRTB request's impressions and candidates per impression
	// (EndpointOpenRTB).
	imps, candidates int
}

// check validates the shape against the service's limits.
func (s *bidShape) check() error {
	switch s.endpoint {
	case EndpointSingle, EndpointBatch, EndpointMix, EndpointOpenRTB:
	default:
		return fmt.Errorf("invalid endpoint %q: want single, batch, mix or openrtb", s.endpoint)
	}
	if s.batch < 1 || s.batch > 1000 {
		return fmt.Errorf("invalid batch size %d: must be in 1..1000", s.batch)
	}
	if s.endpoint == EndpointOpenRTB {
		if s.imps < 1 || s.imps > maxOpenRTBImps {
			return fmt.Errorf("invalid OpenRTB impressions %d: must be in 1..%d", s.imps, maxOpenRTBImps)
		}
		if s.candidates < 1 || s.candidates > maxOpenRTBCandidates {
			return fmt.Errorf("invalid OpenRTB candidates %d: must be in 1..%d", s.candidates, maxOpenRTBCandidates)
		}
	}
	return nil
}

// mixBatchEvery is the share of batch requests in EndpointMix: one in mixBatchEvery.
const mixBatchEvery = 5

// httpWorker is one worker's reusable request state; only its worker touches it.
type httpWorker struct {
	// ctx carries the deadline of the worker's current request to the client.
	ctx     deadlineCtx
	rng     *rand.Rand
	keys    []client.Key
	answers []client.Answer
	// body is the OpenRTB request being built, ans its answer (see doOpenRTB).
	body []byte
	ans  []byte
	n    uint64
	// items counts the multipliers answered in batch and OpenRTB requests, when
	// httpBids.countItems is set.
	items uint64
	// err is the last request's error (nil when it was answered), for tests and diagnostics.
	err error
}

// deadlineCtx is a context that holds only a deadline, which its worker moves before each
// request: the client takes a call's deadline from its context, and a context.WithDeadline
// per request would allocate. It is never cancelled (Done is nil, as the context package
// allows for a context that cannot be) and holds no values.
type deadlineCtx struct{ deadline time.Time }

func (c *deadlineCtx) Deadline() (time.Time, bool) { return c.deadline, true }
func (c *deadlineCtx) Done() <-chan struct{}       { return nil }
func (c *deadlineCtx) Err() error                  { return nil }
func (c *deadlineCtx) Value(any) any               { return nil }

// httpBids sends bid requests through bidpulse's Go client (bidder/client) over HTTP, one
// connection per worker at most: the bench measures the service as an ad server using that
// client sees it. Each worker draws keys from the key space with its own random source and
// reuses its buffers, and the client pools its own, so a request allocates nothing in steady
// state.
type httpBids struct {
	c       *client.Client
	keys    *keySpace
	shape   bidShape
	workers []httpWorker
	// countItems makes each worker count the multipliers answered in its batch and OpenRTB
	// requests (the capacity's modes); set before any request.
	countItems bool
}

// clientTimeout is the client's own bound on a call: far above any deadline the bench gives
// a request (hardDeadline, prime's 5 s), so the worker's context always decides.
const clientTimeout = time.Hour

// parseTarget splits a base URL such as http://127.0.0.1:8080 into a host:port and TLS flag.
func parseTarget(target string) (addr string, tls bool, err error) {
	u, err := url.Parse(target)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return "", false, fmt.Errorf("invalid target %q: want a base URL such as http://127.0.0.1:8080", target)
	}
	addr = u.Host
	if u.Port() == "" {
		if u.Scheme == "https" {
			addr += ":443"
		} else {
			addr += ":80"
		}
	}
	return addr, u.Scheme == "https", nil
}

func newHTTPBids(target string, conns int, keys *keySpace, shape bidShape, seed int64) (*httpBids, error) {
	if _, _, err := parseTarget(target); err != nil {
		return nil, err
	}
	if err := shape.check(); err != nil {
		return nil, err
	}
	c, err := client.NewHTTP(target, client.Options{Timeout: clientTimeout, MaxConns: conns, Name: "bidpulse-bench"})
	if err != nil {
		return nil, err
	}
	h := &httpBids{c: c, keys: keys, shape: shape, workers: make([]httpWorker, conns)}
	for i := range h.workers {
		h.workers[i].rng = rand.New(rand.NewPCG(uint64(seed), uint64(i)+1))
	}
	return h, nil
}

// close releases the connections.
func (h *httpBids) close() {
	h.c.Close()
}

func (h *httpBids) do(wi int, deadline time.Time) Outcome {
	w := &h.workers[wi]
	w.n++
	w.ctx.deadline = deadline
	switch h.shape.endpoint {
	case EndpointOpenRTB:
		return h.doOpenRTB(w)
	case EndpointBatch:
		return h.doBatch(w)
	case EndpointMix:
		if w.n%mixBatchEvery == 0 {
			return h.doBatch(w)
		}
	}
	a, err := h.c.Multiplier(&w.ctx, h.keys.keys[h.keys.pick(w.rng.Float64())])
	w.err = err
	return outcomeOf(a.FailOpen, err)
}

// doBatch sends one POST /v1/multipliers of h.shape.batch keys.
func (h *httpBids) doBatch(w *httpWorker) Outcome {
	w.keys = w.keys[:0]
	for range h.shape.batch {
		w.keys = append(w.keys, h.keys.keys[h.keys.pick(w.rng.Float64())])
	}
	var err error
	w.answers, err = h.c.Multipliers(&w.ctx, w.keys, w.answers[:0])
	w.err = err
	// A failed call fails every key open for the same reason; keys refused one by one leave
	// the request answered (outcomeOf).
	o := outcomeOf(w.answers[0].FailOpen, err)
	if o == OK && h.countItems {
		w.items += answered(w.answers)
	}
	return o
}

// answered counts the answers bidpulse gave (not failed open).
func answered(as []client.Answer) uint64 {
	n := uint64(0)
	for i := range as {
		if as[i].FailOpen == client.Answered {
			n++
		}
	}
	return n
}

// outcomeOf maps a client call's result to an Outcome. The client wraps a non-200 answer in
// a client.StatusError and a connection's error as it came (classifyError reads it); a
// refusal without a status is a batch's key refused alone, in an answered request.
func outcomeOf(r client.FailReason, err error) Outcome {
	switch r {
	case client.Answered:
		return OK
	case client.FailDeadline:
		return Timeout
	case client.FailUnavailable:
		return classifyError(err)
	case client.FailRejected:
		if statusOf(err) == 0 {
			return OK
		}
		return HTTP4xx
	case client.FailServer:
		switch code := statusOf(err); {
		case code == 0:
			return BadBody // a 200 whose body is not an answer
		case code >= 500:
			return HTTP5xx
		}
	}
	return OtherError
}

// statusOf returns the status of the answer err wraps (0: none). Apart from outcomeOf, so the
// errors.As target escapes only on this error path.
func statusOf(err error) int {
	var se *client.StatusError
	if errors.As(err, &se) {
		return se.Code
	}
	return 0
}

// items returns the multipliers answered in batch and OpenRTB requests so far (see
// countItems). Call it when no
// request is in flight.
func (h *httpBids) items() uint64 {
	var n uint64
	for i := range h.workers {
		n += h.workers[i].items
	}
	return n
}

// classifyError maps a client error to an Outcome.
func classifyError(err error) Outcome {
	var ne net.Error
	switch {
	case errors.Is(err, fasthttp.ErrTimeout), errors.Is(err, fasthttp.ErrDialTimeout),
		errors.Is(err, os.ErrDeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return Timeout
	case errors.Is(err, syscall.ECONNREFUSED):
		return ConnRefused
	case errors.Is(err, fasthttp.ErrConnectionClosed), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE), errors.Is(err, net.ErrClosed):
		return ConnClosed
	}
	return OtherError
}

// getBody GETs a path of the target with the given timeout and returns the status and a copy
// of the body; for the runner's occasional requests (/readyz, /v1/stats, a sample answer).
func getBody(hc *fasthttp.HostClient, path string, timeout time.Duration) (int, []byte, error) {
	req := fasthttp.AcquireRequest()
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.Header.SetHost(hc.Addr)
	req.SetRequestURI(path)
	if err := hc.DoTimeout(req, resp, timeout); err != nil {
		return 0, nil, err
	}
	return resp.StatusCode(), append([]byte(nil), resp.Body()...), nil
}
