package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/bidpulse/bidpulse/bidder"
	"github.com/bidpulse/bidpulse/bidder/client"
	"github.com/bidpulse/bidpulse/windows"
)

// TestClientAgrees checks that the client over HTTP, the client over NATS,
// its batch call and a plain HTTP GET give the same multiplier and level
// for every key, keys with mixed case and escaped characters included.
func TestClientAgrees(t *testing.T) {
	svc := startService(t, func(o *bidder.Options) {
		o.Config = bidder.DefaultConfig()
		o.Config.Rollups = append(windows.DefaultRollupNames(), "campaign/site")
	})
	nc := connect(t, svc)
	seed(t, svc, nc)
	hc, err := client.NewHTTP("http://"+svc.HTTPAddr(), client.Options{Timeout: 5 * time.Second})
	if err != nil {
		t.Fatalf("cannot create the HTTP client: %v", err)
	}
	defer hc.Close()
	ncl, err := client.NewNATS(nc, client.Options{Timeout: 5 * time.Second})
	if err != nil {
		t.Fatalf("cannot create the NATS client: %v", err)
	}
	ctx := context.Background()
	batch, err := hc.Multipliers(ctx, testKeys, nil)
	if err != nil {
		t.Fatalf("unexpected batch error: %v", err)
	}
	nbatch, err := ncl.Multipliers(ctx, testKeys, nil)
	if err != nil {
		t.Fatalf("unexpected NATS batch error: %v", err)
	}
	above := 0
	for i, k := range testKeys {
		code, body := httpGet(t, svc, "/v1/multiplier?"+query(k))
		var want client.Answer
		if code != 200 || json.Unmarshal(body, &want) != nil {
			t.Fatalf("GET %s: %d %s", query(k), code, body)
		}
		if want.Multiplier != 1 {
			above++
		}
		for _, c := range []struct {
			name string
			cl   *client.Client
		}{{"http", hc}, {"nats", ncl}} {
			got, err := c.cl.Multiplier(ctx, k)
			if err != nil || got != want {
				t.Fatalf("%s: key %+v: unexpected answer %+v (%v); want %+v", c.name, k, got, err, want)
			}
		}
		if batch[i] != want || nbatch[i] != want {
			t.Fatalf("key %+v: unexpected batch answers http %+v nats %+v; want %+v", k, batch[i], nbatch[i], want)
		}
	}
	sites := 0
	for _, a := range batch {
		if a.Level == "campaign/site" {
			sites++
		}
	}
	if sites != 2 {
		t.Fatalf("unexpected answers at campaign/site; got %d; want 2 (the keys naming only a site)", sites)
	}
	if above < 3 {
		t.Fatalf("only %d keys answered other than 1: the seeded rates do not separate the keys", above)
	}
	for _, cl := range []*client.Client{hc, ncl} {
		if st := cl.Stats(); st.FailedOpen() != 0 || st.Calls != uint64(len(testKeys)+1) {
			t.Fatalf("unexpected stats %+v", st)
		}
	}
}

// TestClientOpenRTB checks the OpenRTB call over HTTP and NATS against
// GET answers for the same dimensions.
func TestClientOpenRTB(t *testing.T) {
	svc := startService(t)
	nc := connect(t, svc)
	seed(t, svc, nc)
	req := []byte(`{"id":"a1","site":{"domain":"news.example"},"device":{"devicetype":4,"geo":{"country":"FRA"}},
		"imp":[{"id":"1","tagid":"news.example/top"},{"id":"2","ext":{"gpid":"blog.example/foot er"}}],
		"ext":{"bidpulse":{"candidates":[{"campaign":"c1","creative":"cr1"},{"campaign":"c1"}]}}}`)
	hc, err := client.NewHTTP("http://"+svc.HTTPAddr(), client.Options{Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer hc.Close()
	ncl, err := client.NewNATS(nc, client.Options{Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	for _, cl := range []*client.Client{hc, ncl} {
		a, err := cl.OpenRTB(context.Background(), req)
		if err != nil || a.ID != "a1" || len(a.Imp) != 2 {
			t.Fatalf("unexpected OpenRTB answer %+v (%v)", a, err)
		}
		for _, im := range a.Imp {
			if im.Key.Device != "mobile" || im.Key.Country != "FR" || im.Key.Site != "news.example" {
				t.Fatalf("unexpected key of imp %s: %+v", im.ID, im.Key)
			}
			for _, cd := range im.Candidates {
				k := client.Key{Campaign: cd.Campaign, Creative: cd.Creative, Placement: im.Key.Placement, Device: "mobile", Country: "FR"}
				var want client.Answer
				code, body := httpGet(t, svc, "/v1/multiplier?"+query(k))
				if code != 200 || json.Unmarshal(body, &want) != nil {
					t.Fatalf("GET %s: %d %s", query(k), code, body)
				}
				if cd.Multiplier != want.Multiplier || cd.Level != want.Level {
					t.Fatalf("imp %s candidate %+v: want %+v", im.ID, cd, want)
				}
				if got := a.Multiplier(im.ID, cd.Campaign, cd.Creative); got != want.Multiplier {
					t.Fatalf("unexpected Multiplier(%s, %s, %s); got %v; want %v", im.ID, cd.Campaign, cd.Creative, got, want.Multiplier)
				}
			}
		}
		if a.Multiplier("9", "c1", "") != 1 {
			t.Fatal("unexpected multiplier of an unknown impression: want 1")
		}
		raw, r, err := cl.OpenRTBRaw(context.Background(), req, []byte("x"))
		var b client.OpenRTBAnswer
		if err != nil || r != client.Answered || raw[0] != 'x' || json.Unmarshal(raw[1:], &b) != nil || !reflect.DeepEqual(a, &b) {
			t.Fatalf("unexpected raw OpenRTB answer %s (%s, %v); want the bytes of %+v after the given prefix", raw, r, err, a)
		}
	}
}

// TestClientRejected checks that a key bidpulse refuses fails open with
// the server's reason, alone in a batch.
func TestClientRejected(t *testing.T) {
	svc := startService(t)
	hc, err := client.NewHTTP("http://"+svc.HTTPAddr(), client.Options{Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer hc.Close()
	long := strings.Repeat("x", 200)
	a, err := hc.Multiplier(context.Background(), client.Key{Campaign: long})
	if err == nil || a.FailOpen != client.FailRejected || a.Multiplier != 1 || !strings.Contains(err.Error(), "longer than 128") {
		t.Fatalf("unexpected answer %+v (%v); want a neutral rejected one naming the length", a, err)
	}
	var se *client.StatusError
	if !errors.As(err, &se) || se.Code != 400 || !strings.Contains(se.Body, "longer than 128") {
		t.Fatalf("unexpected status error %+v in %v; want a 400 with the server's reason", se, err)
	}
	as, err := hc.Multipliers(context.Background(), []client.Key{{Campaign: "c1"}, {Campaign: long}}, nil)
	if err == nil || len(as) != 2 || as[0].FailOpen != client.Answered || as[1].FailOpen != client.FailRejected {
		t.Fatalf("unexpected batch answers %+v (%v)", as, err)
	}
	if st := hc.Stats(); st.FailOpen[client.FailRejected] != 2 {
		t.Fatalf("unexpected stats %+v; want the rejected call and the key refused in the batch", st)
	}
}

// TestClientStatusError checks that a non-200 answer is told apart from an
// answer that cannot be read: the first wraps a StatusError with the status
// and the start of the body, over every call; a 200 whose body is not an
// answer does not.
func TestClientStatusError(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	long := `{"error":"` + strings.Repeat("x", 400) + `"}`
	srv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		switch string(ctx.QueryArgs().Peek("campaign")) {
		case "unread":
			ctx.SetBodyString("not an answer")
		case "refused":
			ctx.SetStatusCode(429)
			ctx.SetBodyString(`{"error":"slow down"}`)
		default:
			ctx.SetStatusCode(503)
			ctx.SetBodyString(long)
		}
	}}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	defer func() {
		if err := srv.Shutdown(); err != nil {
			t.Error(err)
		}
		<-done
	}()
	c, err := client.NewHTTP("http://"+ln.Addr().String(), client.Options{Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	check := func(name string, r client.FailReason, err error, wantReason client.FailReason, wantCode int, wantBody string) {
		t.Helper()
		if r != wantReason || err == nil {
			t.Fatalf("%s: unexpected reason %s (%v); want %s", name, r, err, wantReason)
		}
		var se *client.StatusError
		switch {
		case wantCode == 0 && errors.As(err, &se):
			t.Fatalf("%s: unexpected status error %+v in %v", name, se, err)
		case wantCode != 0 && (!errors.As(err, &se) || se.Code != wantCode || se.Body != wantBody):
			t.Fatalf("%s: unexpected status error %+v in %v; want %d %q", name, se, err, wantCode, wantBody)
		}
	}
	a, err := c.Multiplier(ctx, client.Key{Campaign: "c1"})
	check("503", a.FailOpen, err, client.FailServer, 503, long[:300])
	a, err = c.Multiplier(ctx, client.Key{Campaign: "refused"})
	check("429", a.FailOpen, err, client.FailRejected, 429, `{"error":"slow down"}`)
	a, err = c.Multiplier(ctx, client.Key{Campaign: "unread"})
	check("unreadable 200", a.FailOpen, err, client.FailServer, 0, "")
	as, err := c.Multipliers(ctx, []client.Key{{Campaign: "c1"}, {Campaign: "c2"}}, nil)
	check("batch 503", as[1].FailOpen, err, client.FailServer, 503, long[:300])
	o, err := c.OpenRTB(ctx, []byte(`{"id":"x","imp":[{"id":"1"}]}`))
	check("OpenRTB 503", o.FailOpen, err, client.FailServer, 503, long[:300])
}

// TestClientFailOpen checks that calls fail open within their deadline,
// counted, when bidpulse does not answer: a server that accepts and never
// answers (deadline), a service that is stopped (unavailable), NATS
// without responders (unavailable).
func TestClientFailOpen(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { c.Close() }) // held open, never answered
		}
	}()
	const timeout = 50 * time.Millisecond
	silent, err := client.NewHTTP("http://"+ln.Addr().String(), client.Options{Timeout: timeout})
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	check := func(name string, want client.FailReason, call func() (client.Answer, error)) {
		t.Helper()
		start := time.Now()
		a, err := call()
		took := time.Since(start)
		if err == nil || a.FailOpen != want || a.Multiplier != 1 || a.Level != "none" {
			t.Fatalf("%s: unexpected answer %+v (%v); want a neutral %s one", name, a, err, want)
		}
		// The bound is loose on purpose (a shared machine): it separates
		// "at the deadline" from "after a TCP or NATS timeout of seconds".
		if took > timeout+time.Second {
			t.Fatalf("%s: failed open after %s; want about %s", name, took, timeout)
		}
	}
	check("silent HTTP server", client.FailDeadline, func() (client.Answer, error) {
		return silent.Multiplier(context.Background(), client.Key{Campaign: "c1"})
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Millisecond)
	check("context deadline", client.FailDeadline, func() (client.Answer, error) {
		return silent.Multiplier(ctx, client.Key{Campaign: "c1"})
	})
	cancel()
	if st := silent.Stats(); st.FailOpen[client.FailDeadline] != 2 {
		t.Fatalf("unexpected stats %+v; want 2 deadline failures", st)
	}

	// NATS with no bid service: no responders, at once.
	quiet := startService(t, func(o *bidder.Options) { o.NATSBids = bidder.NATSBidsOff })
	ncl, err := client.NewNATS(connect(t, quiet), client.Options{Timeout: timeout})
	if err != nil {
		t.Fatal(err)
	}
	check("NATS without responders", client.FailUnavailable, func() (client.Answer, error) {
		return ncl.Multiplier(context.Background(), client.Key{Campaign: "c1"})
	})

	svc := startService(t)
	hc, err := client.NewHTTP("http://"+svc.HTTPAddr(), client.Options{Timeout: timeout})
	if err != nil {
		t.Fatal(err)
	}
	defer hc.Close()
	if _, err := hc.Multiplier(context.Background(), client.Key{Campaign: "c1"}); err != nil {
		t.Fatalf("unexpected error before the stop: %v", err)
	}
	if err := svc.Stop(context.Background()); err != nil {
		t.Fatalf("cannot stop: %v", err)
	}
	check("stopped service over HTTP", client.FailUnavailable, func() (client.Answer, error) {
		return hc.Multiplier(context.Background(), client.Key{Campaign: "c1"})
	})
	as, err := hc.Multipliers(context.Background(), testKeys, nil)
	if err == nil || len(as) != len(testKeys) || as[0].FailOpen != client.FailUnavailable || as[0].Multiplier != 1 {
		t.Fatalf("unexpected batch answers of a stopped service %+v (%v)", as, err)
	}
	a, err := hc.OpenRTB(context.Background(), []byte(`{"id":"x","imp":[{"id":"1"}]}`))
	if err == nil || a.FailOpen != client.FailUnavailable || a.Multiplier("1", "c1", "") != 1 {
		t.Fatalf("unexpected OpenRTB answer of a stopped service %+v (%v)", a, err)
	}
	raw, r, err := hc.OpenRTBRaw(context.Background(), []byte(`{"id":"x","imp":[{"id":"1"}]}`), []byte("x"))
	if err == nil || r != client.FailUnavailable || string(raw) != "x" {
		t.Fatalf("unexpected raw OpenRTB answer of a stopped service %q (%s, %v); want the given bytes alone", raw, r, err)
	}
	hc.Close()
	a2, err := hc.Multiplier(context.Background(), client.Key{Campaign: "c1"})
	if !errors.Is(err, client.ErrClosed) || a2.FailOpen != client.FailUnavailable {
		t.Fatalf("unexpected answer of a closed client %+v (%v)", a2, err)
	}
	if st := hc.Stats(); st.FailOpen[client.FailUnavailable] != 5 || st.Calls != 6 {
		t.Fatalf("unexpected stats %+v; want 5 unavailable of 6 calls", st)
	}
}
