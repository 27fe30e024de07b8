package client

import (
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/valyala/fasthttp"
)

// errDeadline marks a call that ran out of time; errBadAnswer an answer
// that could not be read.
var (
	errDeadline  = errors.New("bidpulse client: deadline exceeded")
	errBadAnswer = errors.New("bidpulse client: unreadable answer")
)

// NewHTTP returns a Client that calls bidpulse's HTTP API at base
// ("http://127.0.0.1:8080"; https too). Connections are kept and reused.
func NewHTTP(base string, o Options) (*Client, error) {
	u, err := url.Parse(base)
	if err != nil {
		return nil, fmt.Errorf("bidpulse client: invalid base URL %q: %w", base, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("bidpulse client: invalid base URL %q: want http://host:port or https://host:port", base)
	}
	if u.Path != "" && u.Path != "/" || u.RawQuery != "" {
		return nil, fmt.Errorf("bidpulse client: invalid base URL %q: no path or query, the client adds them", base)
	}
	addr := u.Host
	if u.Port() == "" {
		addr += map[string]string{"http": ":80", "https": ":443"}[u.Scheme]
	}
	name := o.Name
	if name == "" {
		name = "bidpulse-client"
	}
	maxConns := o.MaxConns
	if maxConns <= 0 {
		maxConns = 512
	}
	t := &httpTransport{
		scheme: u.Scheme,
		host:   u.Host,
		hc: &fasthttp.HostClient{
			Addr:     addr,
			IsTLS:    u.Scheme == "https",
			Name:     name,
			MaxConns: maxConns,
			// Below the service's keep-alive limit (--http-idle-timeout,
			// 1 minute), so the client drops an idle connection before the
			// service does. A request that still finds its connection
			// closed is sent again on another (fasthttp's retry of
			// idempotent requests), within the same deadline.
			MaxIdleConnDuration:           30 * time.Second,
			DisableHeaderNamesNormalizing: true,
			DisablePathNormalizing:        true,
		},
	}
	return newClient(t, o), nil
}

type httpTransport struct {
	scheme, host string
	hc           *fasthttp.HostClient
}

func (t *httpTransport) do(deadline time.Time, ep endpoint, query, body []byte, auth string, dst []byte) (int, []byte, error) {
	req := fasthttp.AcquireRequest()
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	uri := req.URI()
	// The scheme matters: fasthttp refuses an http URI on a TLS HostClient.
	uri.SetScheme(t.scheme)
	uri.SetHost(t.host)
	uri.SetPath(ep.path)
	if len(query) > 0 {
		uri.SetQueryStringBytes(query)
	}
	req.Header.SetMethod(ep.method)
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	if body != nil {
		req.Header.SetContentType("application/json")
		req.SetBodyRaw(body)
	}
	if err := t.hc.DoDeadline(req, resp, deadline); err != nil {
		if errors.Is(err, fasthttp.ErrTimeout) || errors.Is(err, fasthttp.ErrDialTimeout) {
			return 0, dst, fmt.Errorf("%w: %s %s: %v", errDeadline, ep.method, ep.path, err)
		}
		return 0, dst, fmt.Errorf("bidpulse client: %s %s: %w", ep.method, ep.path, err)
	}
	return resp.StatusCode(), append(dst, resp.Body()...), nil
}

func (t *httpTransport) close() { t.hc.CloseIdleConnections() }
