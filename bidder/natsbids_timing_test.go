package bidder

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	"github.com/valyala/fasthttp"
)

// BenchmarkNATSBids measures one bid (the query campaign=c1&placement=p1)
// over loopback, from many goroutines at once (RunParallel, 8 per core),
// against a real embedded nats-server and the real fasthttp server:
//
// and the same for an OpenRTB request of 5 impressions with 3 candidates
// each (openrtb-5x3), whose answer takes longer:
//
//   - http: GET /v1/multiplier (POST /v1/openrtb/multipliers), the baseline;
//   - nats: bidpulse.v1.multiplier (bidpulse.v1.openrtb), the service as it
//     runs (worker pool);
//   - nats-inline: the same handler answering on micro's own goroutine,
//     one per subscription, as a plain micro endpoint would: this is what
//     the pool is for.
//
// Each reports req/s and its p99 latency in µs (from each request's own
// timing, all goroutines merged).
func BenchmarkNATSBids(b *testing.B) {
	svc := startBenchService(b, nil).svc
	events := []byte{'['}
	for i := range 200 {
		if i > 0 {
			events = append(events, ',')
		}
		events = append(events, ev(fmt.Sprintf("e%d", i), "impression", testNow, "c1", "cr1", "p1")...)
	}
	svc.ingest.Apply(append(events, ']'), testNow)
	const query = "campaign=c1&placement=p1"
	url := "nats://" + svc.natsSrv.Addr().String()

	// The inline variant: the handler runs on micro's goroutine.
	inc, err := nats.Connect(url)
	if err != nil {
		b.Fatal(err)
	}
	defer inc.Close()
	var mu sync.Mutex // one inline answer at a time per endpoint anyway: micro's goroutine
	var ictx fasthttp.RequestCtx
	var iuri []byte
	nb := svc.natsBids
	inline := func(ep *natsBidEndpoint) micro.Handler {
		return micro.HandlerFunc(func(r micro.Request) {
			mu.Lock()
			defer mu.Unlock()
			j := natsBidJob{ep: ep, data: r.Data(), reply: r.Reply()}
			iuri = svc.serveNATSBid(&ictx, iuri, &j)
			nb.respond(&ictx, &j)
		})
	}
	ms, err := micro.AddService(inc, micro.Config{Name: "bench_inline", Version: "1.0.0"})
	if err != nil {
		b.Fatal(err)
	}
	for _, i := range []int{0, 2} {
		ep := &natsBidEndpoints[i]
		if err := ms.AddEndpoint(ep.name, inline(ep), micro.WithEndpointSubject("bench.inline."+ep.name)); err != nil {
			b.Fatal(err)
		}
	}
	defer ms.Stop()

	run := func(b *testing.B, newCaller func() func() error) {
		var mu sync.Mutex
		var all []time.Duration
		b.SetParallelism(8)
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			call := newCaller()
			lat := make([]time.Duration, 0, 1024)
			for pb.Next() {
				t0 := time.Now()
				if err := call(); err != nil {
					b.Error(err)
					return
				}
				lat = append(lat, time.Since(t0))
			}
			mu.Lock()
			all = append(all, lat...)
			mu.Unlock()
		})
		b.StopTimer()
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
		if len(all) > 0 {
			slices.Sort(all)
			b.ReportMetric(float64(all[len(all)*99/100].Microseconds()), "p99-µs")
		}
	}
	natsCaller := func(subject string, body []byte) func() func() error {
		return func() func() error {
			nc, err := nats.Connect(url)
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(nc.Close)
			return func() error {
				m, err := nc.Request(subject, body, 5*time.Second)
				if err == nil && m.Header.Get(micro.ErrorCodeHeader) != "" {
					err = fmt.Errorf("unexpected error answer %s", m.Data)
				}
				return err
			}
		}
	}
	ortb := []byte(ortbRequestOf(5, 3))
	for _, c := range []struct {
		name, uri, subject string
		body               []byte
	}{
		{"multiplier", "/v1/multiplier?" + query, "multiplier", []byte(query)},
		{"openrtb-5x3", "/v1/openrtb/multipliers", "openrtb", ortb},
	} {
		b.Run(c.name+"/http", func(b *testing.B) {
			hc := &fasthttp.HostClient{Addr: svc.HTTPAddr(), MaxConns: 512}
			run(b, func() func() error {
				var req fasthttp.Request
				var resp fasthttp.Response
				req.SetRequestURI("http://" + svc.HTTPAddr() + c.uri)
				if c.subject == "openrtb" {
					req.Header.SetMethod("POST")
					req.SetBody(c.body)
				}
				return func() error {
					if err := hc.Do(&req, &resp); err != nil {
						return err
					}
					if resp.StatusCode() != 200 {
						return fmt.Errorf("unexpected status %d: %s", resp.StatusCode(), resp.Body())
					}
					return nil
				}
			})
		})
		b.Run(c.name+"/nats", func(b *testing.B) { run(b, natsCaller("bidpulse.v1."+c.subject, c.body)) })
		b.Run(c.name+"/nats-inline", func(b *testing.B) { run(b, natsCaller("bench.inline."+c.subject, c.body)) })
	}
}
