package client_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/bidpulse/bidpulse/bidder"
	"github.com/bidpulse/bidpulse/bidder/client"
)

// startService starts bidpulse in this process: embedded NATS (JetStream)
// and HTTP on random loopback ports.
func startService(t testing.TB, opts ...func(*bidder.Options)) *bidder.Service {
	t.Helper()
	clock := bidder.NewCachedClock(time.Millisecond)
	t.Cleanup(clock.Stop)
	o := bidder.Options{
		HTTPAddr: "127.0.0.1:0",
		NATSAddr: "127.0.0.1:-1",
		DataDir:  privateDir(t),
		Instance: "client-test",
		Logger:   zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel),
		Clock:    clock,
	}
	for _, f := range opts {
		f(&o)
	}
	svc, err := bidder.New(o)
	if err != nil {
		t.Fatalf("cannot create the service: %v", err)
	}
	if err := svc.Start(); err != nil {
		t.Fatalf("cannot start the service: %v", err)
	}
	t.Cleanup(func() {
		if err := svc.Stop(context.Background()); err != nil {
			t.Errorf("unexpected error on stop: %v", err)
		}
	})
	return svc
}

func connect(t testing.TB, svc *bidder.Service) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(svc.NATSURL(), nats.Name("client-test"))
	if err != nil {
		t.Fatalf("cannot connect to NATS: %v", err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// httpGet returns the status and body of GET path (with its query).
func httpGet(t testing.TB, svc *bidder.Service, path string) (int, []byte) {
	t.Helper()
	resp, err := http.Get("http://" + svc.HTTPAddr() + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	return resp.StatusCode, b
}

// counted returns the events the service has counted.
func counted(t testing.TB, svc *bidder.Service) uint64 {
	t.Helper()
	_, b := httpGet(t, svc, "/v1/stats")
	var st struct {
		Counted uint64 `json:"counted"`
	}
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatalf("cannot read /v1/stats: %v: %.300s", err, b)
	}
	return st.Counted
}

// waitCounted polls until the service has counted n events.
func waitCounted(t testing.TB, svc *bidder.Service, n uint64) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		got := counted(t, svc)
		if got == n {
			return
		}
		if got > n || time.Now().After(deadline) {
			t.Fatalf("unexpected counted events; got %d; want %d", got, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// query is k as GET /v1/multiplier's query, built with net/url (not the
// client's own encoding).
func query(k client.Key) string {
	v := url.Values{}
	for _, f := range [...][2]string{{"campaign", k.Campaign}, {"creative", k.Creative}, {"placement", k.Placement}, {"device", k.Device}, {"country", k.Country}, {"site", k.Site}} {
		if f[1] != "" {
			v.Set(f[0], f[1])
		}
	}
	return v.Encode()
}

// seed publishes events with the client's Publisher and waits until the
// service counted them: placements of distinct click rates, keys with
// mixed case and characters that need escaping.
func seed(t testing.TB, svc *bidder.Service, nc *nats.Conn) uint64 {
	t.Helper()
	p, err := client.NewPublisher(nc, client.PublisherOptions{Subject: "bidpulse.events.test", Mode: client.ModeJetStream, MaxEvents: 64})
	if err != nil {
		t.Fatalf("cannot create the publisher: %v", err)
	}
	ts := time.Now().UnixMilli()
	n := uint64(0)
	places := []string{"news.example/top", "blog.example/foot er", "a&b=c?d%e", "ünï/çødé"}
	for i, pl := range places {
		for j := range 200 {
			id := fmt.Sprintf("e%d-%d", i, j)
			ev := client.Event{ID: id, Type: client.Impression, TS: ts, Campaign: "c1", Creative: "cr1",
				Placement: pl, Device: "Mobile", Country: "fr", Site: []string{"news.example", "Blog.Example"}[i%2], Cost: 0.0021}
			if err := p.Publish(&ev); err != nil {
				t.Fatalf("cannot publish: %v", err)
			}
			n++
			if j%(5*(i+1)) == 0 {
				ev.Type = client.Click
				if err := p.Publish(&ev); err != nil {
					t.Fatalf("cannot publish: %v", err)
				}
				n++
			}
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := p.Close(ctx); err != nil {
		t.Fatalf("unexpected error on close: %v", err)
	}
	if st := p.Stats(); st.AckedEvents != n || st.FailedEvents != 0 {
		t.Fatalf("unexpected publisher stats %+v; want %d acknowledged events", st, n)
	}
	waitCounted(t, svc, n)
	return n
}

var testKeys = []client.Key{
	{Campaign: "c1"},
	{Campaign: "c1", Placement: "news.example/top"},
	{Campaign: "c1", Placement: "blog.example/foot er", Device: "MOBILE", Country: "Fr"},
	{Campaign: "c1", Creative: "cr1", Placement: "a&b=c?d%e", Device: "mobile", Country: "FR"},
	{Campaign: "c1", Placement: "ünï/çødé", Country: "fr"},
	{Campaign: "c2", Placement: "news.example/top"},
	{Campaign: "c1", Site: "Blog.Example"},
	{Campaign: "c1", Site: "news.example", Device: "MOBILE"},
}

// privateDir returns a temporary directory that only its owner may read,
// as bidpulse asks of its data dir.
func privateDir(t testing.TB) string {
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	return dir
}

// streamServer starts an embedded nats-server with JetStream on a random
// loopback port (no bidpulse service) and creates the stream cfg.
func streamServer(t *testing.T, cfg jetstream.StreamConfig) (*nats.Conn, jetstream.JetStream, jetstream.Stream) {
	t.Helper()
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(5 * time.Second) {
		t.Fatal("NATS server not ready")
	}
	t.Cleanup(s.Shutdown)
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	st, err := js.CreateStream(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return nc, js, st
}
