package client_test

import (
	"context"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/bidpulse/bidpulse/bidder/client"
)

// TestClientMultiplierAllocs checks that a call over HTTP allocates
// nothing in steady state: reused connections, pooled requests, answers
// and parsers, interned levels.
func TestClientMultiplierAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts mean nothing under -race (sync.Pool drops items on purpose); make test runs this test again without it")
	}
	svc := startService(t)
	seed(t, svc, connect(t, svc))
	c, err := client.NewHTTP("http://"+svc.HTTPAddr(), client.Options{Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	k := client.Key{Campaign: "c1", Creative: "cr1", Placement: "blog.example/foot er", Device: "Mobile", Country: "fr"}
	var a client.Answer
	allocs := testing.AllocsPerRun(500, func() {
		a, err = c.Multiplier(ctx, k)
	})
	if err != nil || a.Level == "none" {
		t.Fatalf("unexpected answer %+v (%v)", a, err)
	}
	if allocs != 0 {
		t.Fatalf("unexpected allocations per call; got %v; want 0", allocs)
	}
}

// BenchmarkMultiplier measures a call over HTTP against a service in the
// same process (loopback): through the client, and as a bare fasthttp
// request with a prepared URI (the floor of what a client can cost), in
// the same run.
func BenchmarkMultiplier(b *testing.B) {
	svc := startService(b)
	seed(b, svc, connect(b, svc))
	k := client.Key{Campaign: "c1", Creative: "cr1", Placement: "news.example/top", Device: "Mobile", Country: "fr"}
	b.Run("client", func(b *testing.B) {
		c, err := client.NewHTTP("http://"+svc.HTTPAddr(), client.Options{Timeout: time.Second})
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		ctx := context.Background()
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := c.Multiplier(ctx, k); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
	b.Run("fasthttp", func(b *testing.B) {
		hc := &fasthttp.HostClient{Addr: svc.HTTPAddr(), MaxConns: 512}
		defer hc.CloseIdleConnections()
		uri := "http://" + svc.HTTPAddr() + "/v1/multiplier?" + query(k)
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
			defer fasthttp.ReleaseRequest(req)
			defer fasthttp.ReleaseResponse(resp)
			req.SetRequestURI(uri)
			for pb.Next() {
				if err := hc.DoTimeout(req, resp, time.Second); err != nil || resp.StatusCode() != 200 {
					b.Errorf("%v %d", err, resp.StatusCode())
					return
				}
			}
		})
	})
}
