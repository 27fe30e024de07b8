package cluster

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// testTTL is the lease of the membership tests: short, so expiries happen within a test, but
// with renewals (every 667 ms) far enough apart that a loaded machine does not miss one.
const testTTL = 2 * time.Second

// startServer starts an embedded JetStream server on a random loopback port, its store in a
// temporary directory; it stops with the test.
func startServer(t *testing.T) *server.Server {
	t.Helper()
	srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoSigs: true, NoLog: true})
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	t.Cleanup(srv.Shutdown)
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("NATS server not ready")
	}
	return srv
}

// process is one instance's own NATS connection, as a separate process would have: closing it
// is what a crash does to the instance's lease and watch.
type process struct {
	nc *nats.Conn
	js jetstream.JetStream
	kv jetstream.KeyValue
}

// connect opens a connection to srv and binds the membership bucket (creating it with testTTL
// on first use). The connection closes with the test, or earlier through crash.
func connect(t *testing.T, srv *server.Server, bucket string) *process {
	t.Helper()
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	kv, err := Bucket(ctx, js, bucket, testTTL, 1)
	if err != nil {
		t.Fatal(err)
	}
	return &process{nc: nc, js: js, kv: kv}
}

// join joins name on its own connection, with the given resync period (0: DefaultResync); the
// membership is left when the test ends (a crashed one's Leave fails to delete, which is
// ignored there).
func join(t *testing.T, srv *server.Server, bucket, name string, resync time.Duration) (*Membership, *process) {
	t.Helper()
	p := connect(t, srv, bucket)
	if resync == 0 {
		resync = DefaultResync
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	m, err := joinWith(ctx, p.kv, Member{Instance: name, Addr: "127.0.0.1:80" + name}, resync)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Leave(context.Background()) })
	return m, p
}

// checkFor calls fn every step until it returns nil, failing the test with fn's last error
// after total.
func checkFor(t *testing.T, total, step time.Duration, fn func() error) {
	t.Helper()
	deadline := time.Now().Add(total)
	var err error
	for time.Now().Before(deadline) {
		if err = fn(); err == nil {
			return
		}
		time.Sleep(step)
	}
	t.Fatalf("condition not met after %s: %v", total, err)
}

// waitView waits until every one of ms sees exactly the members want, within total.
func waitView(t *testing.T, total time.Duration, want []string, ms ...*Membership) {
	t.Helper()
	checkFor(t, total, 10*time.Millisecond, func() error {
		for _, m := range ms {
			if got := m.Names(); !slices.Equal(got, want) {
				return fmt.Errorf("member %q sees %v; want %v", m.Self().Instance, got, want)
			}
		}
		return nil
	})
}
