package bench

import (
	"bytes"
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
)

// Bid endpoints.
const (
	// EndpointSingle sends GET /v1/multiplier for one key.
	EndpointSingle = "single"
	// EndpointBatch sends POST /v1/multipliers with a batch of keys.
	EndpointBatch = "batch"
	// EndpointMix sends one batch request in five, single requests otherwise.
	EndpointMix = "mix"
)

// mixBatchEvery is the share of batch requests in EndpointMix: one in mixBatchEvery.
const mixBatchEvery = 5

var (
	singlePrefix = []byte(`{"multiplier":`)
	batchPrefix  = []byte(`[{`)
	// batchItemPrefix starts each answered item of a batch answer.
	batchItemPrefix = []byte(`{"multiplier":`)
	strPOST         = []byte("POST")
	strJSON         = []byte("application/json")
)

// httpWorker is one worker's reusable request state; only its worker touches it. GET and
// POST keep a request each: a request reused across methods would keep the POST's
// Content-Length on the next GET, and the server would wait for a body that never comes.
type httpWorker struct {
	get  *fasthttp.Request
	post *fasthttp.Request
	resp *fasthttp.Response
	rng  *rand.Rand
	uri  []byte
	body []byte
	n    uint64
	// items counts the multipliers answered in batches, when httpBids.countItems is set.
	items uint64
}

// httpBids sends bid requests with fasthttp's HostClient, one connection per worker at most.
// Each worker draws keys from the key space with its own random source and reuses its
// request, response and buffers, so a request allocates nothing in steady state.
type httpBids struct {
	hc       *fasthttp.HostClient
	host     string
	keys     *keySpace
	endpoint string
	batch    int
	workers  []httpWorker
	// countItems makes each worker count the items of its batch answers that are
	// multipliers (the capacity's batch mode); set before any request.
	countItems bool
}

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

func newHTTPBids(target string, conns int, keys *keySpace, endpoint string, batch int, seed int64) (*httpBids, error) {
	addr, tls, err := parseTarget(target)
	if err != nil {
		return nil, err
	}
	switch endpoint {
	case EndpointSingle, EndpointBatch, EndpointMix:
	default:
		return nil, fmt.Errorf("invalid endpoint %q: want single, batch or mix", endpoint)
	}
	if batch < 1 || batch > 1000 {
		return nil, fmt.Errorf("invalid batch size %d: must be in 1..1000", batch)
	}
	h := &httpBids{
		hc: &fasthttp.HostClient{
			Addr:                     addr,
			IsTLS:                    tls,
			Name:                     "bidpulse-bench",
			MaxConns:                 conns,
			MaxIdleConnDuration:      30 * time.Second,
			ReadBufferSize:           16 << 10,
			DisablePathNormalizing:   true,
			NoDefaultUserAgentHeader: false,
		},
		host:     addr,
		keys:     keys,
		endpoint: endpoint,
		batch:    batch,
		workers:  make([]httpWorker, conns),
	}
	for i := range h.workers {
		w := &h.workers[i]
		w.get, w.post = fasthttp.AcquireRequest(), fasthttp.AcquireRequest()
		w.resp = fasthttp.AcquireResponse()
		w.get.Header.SetHost(addr)
		w.post.Header.SetHost(addr)
		w.post.Header.SetMethodBytes(strPOST)
		w.post.Header.SetContentTypeBytes(strJSON)
		w.post.SetRequestURI("/v1/multipliers")
		w.rng = rand.New(rand.NewPCG(uint64(seed), uint64(i)+1))
	}
	return h, nil
}

// close releases the connections.
func (h *httpBids) close() {
	h.hc.CloseIdleConnections()
}

func (h *httpBids) do(wi int, deadline time.Time) Outcome {
	w := &h.workers[wi]
	w.n++
	batch := h.endpoint == EndpointBatch || (h.endpoint == EndpointMix && w.n%mixBatchEvery == 0)
	req := w.get
	if batch {
		req = w.post
		w.body = append(w.body[:0], '[')
		for i := range h.batch {
			if i > 0 {
				w.body = append(w.body, ',')
			}
			w.body = h.keys.appendJSON(w.body, h.keys.pick(w.rng.Float64()))
		}
		w.body = append(w.body, ']')
		req.SetBodyRaw(w.body)
	} else {
		w.uri = append(w.uri[:0], "/v1/multiplier?"...)
		w.uri = h.keys.appendQuery(w.uri, h.keys.pick(w.rng.Float64()))
		req.SetRequestURIBytes(w.uri)
	}
	err := h.hc.DoDeadline(req, w.resp, deadline)
	if err != nil {
		return classifyError(err)
	}
	code := w.resp.StatusCode()
	switch {
	case code >= 500:
		return HTTP5xx
	case code >= 400:
		return HTTP4xx
	case code < 200 || code > 299:
		return OtherError
	}
	prefix := singlePrefix
	if batch {
		prefix = batchPrefix
	}
	if !bytes.HasPrefix(w.resp.Body(), prefix) {
		return BadBody
	}
	if batch && h.countItems {
		// An answered item starts as a single answer does; an item in error is {"error":..}.
		w.items += uint64(bytes.Count(w.resp.Body(), batchItemPrefix))
	}
	return OK
}

// items returns the multipliers answered in batches so far (see countItems). Call it when no
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
