package bench

import (
	"fmt"
	"net"
	"strings"

	"github.com/valyala/fasthttp"
)

// BaselineServer is the yardstick of the throughput ratio: a bare fasthttp server answering
// every request with the same fixed JSON body, as large as a real /v1/multiplier answer, with
// the same server settings that matter (a Server header and a Content-Type). Whatever the bid
// service does beyond that (parsing the query, finding the level, reading the windows, running
// the policy, encoding) is what the ratio measures.
type BaselineServer struct {
	srv  *fasthttp.Server
	ln   net.Listener
	done chan error
}

// baselineBody returns a JSON object of exactly size bytes (at least the 2 of "{}").
func baselineBody(size int) []byte {
	const head = `{"multiplier":1,"pad":"`
	const tail = `"}`
	if size < len(head)+len(tail) {
		return []byte(`{}` + strings.Repeat(" ", max(size-2, 0)))
	}
	return []byte(head + strings.Repeat("x", size-len(head)-len(tail)) + tail)
}

// StartBaseline starts a baseline server on addr (e.g. "127.0.0.1:0") whose answers have a
// body of size bytes.
func StartBaseline(addr string, size int) (*BaselineServer, error) {
	return startFixed(addr, baselineBody(size))
}

// startFixed starts a server on addr that answers every request with body.
func startFixed(addr string, body []byte) (*BaselineServer, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("cannot listen for the baseline server on %s: %w", addr, err)
	}
	b := &BaselineServer{
		ln:   ln,
		done: make(chan error, 1),
		srv: &fasthttp.Server{
			Name:                 "bidpulse",
			NoDefaultContentType: true,
			Handler: func(ctx *fasthttp.RequestCtx) {
				ctx.SetContentType("application/json")
				ctx.SetBody(body)
			},
		},
	}
	go func() { b.done <- b.srv.Serve(ln) }()
	return b, nil
}

// Addr returns the address the server listens on.
func (b *BaselineServer) Addr() string { return b.ln.Addr().String() }

// Close stops the server.
func (b *BaselineServer) Close() error {
	err := b.srv.Shutdown()
	<-b.done
	return err
}
