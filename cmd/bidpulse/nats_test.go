package main

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/bidpulse/bidpulse/bidder"
)

func TestNATSClientFlagsFromEnv(t *testing.T) {
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	c := natsClientFlags(fs)
	t.Setenv("BIDPULSE_NATS_USER", "producer")
	t.Setenv("BIDPULSE_NATS_PASSWORD_FILE", "/run/secrets/nats")
	t.Setenv("BIDPULSE_NATS_TLS_CA", "ca.pem")
	if err := parseFlags(fs, []string{"--nats-tls-ca", "flag-ca.pem"}); err != nil {
		t.Fatal(err)
	}
	if c.User != "producer" || c.PasswordFile != "/run/secrets/nats" || c.TLSCA != "flag-ca.pem" {
		t.Fatalf("unexpected config %+v", *c)
	}
}

func TestNATSSecretWarnings(t *testing.T) {
	f := func(args []string, url string, n int, want ...string) {
		t.Helper()
		got := natsSecretWarnings(args, url)
		all := strings.Join(got, "\n")
		if len(got) != n || strings.Contains(all, "s3cret") {
			t.Fatalf("unexpected warnings of %q, %q; got %q; want %d, naming no secret", args, url, got, n)
		}
		for _, w := range want {
			if !strings.Contains(all, w) {
				t.Fatalf("unexpected warnings %q; want one with %q", got, w)
			}
		}
	}
	f(nil, "nats://127.0.0.1:4222", 0)
	f(nil, "nats://u:s3cret@h:4222", 1, "carries a password", "BIDPULSE_NATS_PASSWORD or --nats-password-file", "nats://u:xxxxx@h:4222")
	f(nil, "tls://s3cret@h:4222", 1, "carries a token", "BIDPULSE_NATS_TOKEN")
	f([]string{"--nats-password", "s3cret"}, "", 1, "--nats-password on the command line")
	f([]string{"-nats-token=s3cret"}, "", 1, "BIDPULSE_NATS_TOKEN or --nats-token-file")
	f([]string{"--nats-password-file", "p"}, "", 0)
	f([]string{"--", "--nats-password"}, "", 0)
}

// Listening beyond loopback without authentication is refused before
// anything listens.
func TestServeRefusesOpenNATS(t *testing.T) {
	err := runServe([]string{"--nats-addr", "0.0.0.0:4222", "--nats-auth", "off", "--http-addr", "127.0.0.1:0",
		"--data-dir", t.TempDir(), "--log-level", "error"})
	if err == nil || !strings.Contains(err.Error(), "--nats-insecure") {
		t.Fatalf("unexpected error; got %v; want a refusal naming --nats-insecure", err)
	}
	err = runServe([]string{"--nats-token", "t", "--http-addr", "127.0.0.1:0", "--data-dir", t.TempDir(), "--log-level", "error"})
	if err == nil || !strings.Contains(err.Error(), "are for an external server") {
		t.Fatalf("unexpected error; got %v; want client credentials refused with the embedded server", err)
	}
}

// serve --nats-auth on, then publish with the producer's seed from the
// environment: counted; without it: refused.
func TestServeAuthPublish(t *testing.T) {
	dir := t.TempDir()
	c := startChild(t, "--nats-addr", "127.0.0.1:-1", "--nats-auth", "on", "--data-dir", dir)
	natsAddr := c.natsAddr(t)
	events := filepath.Join(t.TempDir(), "events.ndjson")
	if err := os.WriteFile(events, []byte(`{"id":"a1","type":"impression","campaign":"c1"}`+"\n"+
		`{"id":"a2","type":"impression","campaign":"c1"}`+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	args := []string{"--nats-url", "nats://" + natsAddr, "--file", events, "--jetstream", "true", "--retry-for", "2s"}
	if err := runPublish(args); err == nil || !strings.Contains(err.Error(), "Authorization Violation") {
		t.Fatalf("unexpected publish without credentials; got %v; want an authorization violation", err)
	}
	t.Setenv("BIDPULSE_NATS_NKEY", bidder.NATSSeedFile(dir, bidder.NATSUserProducer))
	if err := runPublish(args); err != nil {
		t.Fatalf("cannot publish with the producer's seed: %v", err)
	}
	waitCounted(t, c, 2)
	logs, _ := os.ReadFile(c.log.Name())
	if !strings.Contains(string(logs), "--nats-nkey "+bidder.NATSSeedFile(dir, bidder.NATSUserProducer)) {
		t.Fatalf("the first start does not say how to publish with the producer's seed; log:\n%s", logs)
	}
}

// bench --spawn with the spawned service's embedded server requiring
// authentication publishes as its producer user.
func TestBenchSpawnNATSAuth(t *testing.T) {
	t.Setenv(benchExecMainEnv, "1")
	jsonPath := filepath.Join(t.TempDir(), "r.json")
	err := runBench([]string{"--spawn", "--pin", "off", "--jetstream", "true", "--spawn-args", "--nats-auth=on",
		"--scenario", "steady", "--duration", "500ms", "--warmup", "0",
		"--bid-rate", "100", "--timeout", "100ms", "--conns", "8",
		"--event-rate", "500", "--event-batch", "50", "--preload", "100",
		"--campaigns", "3", "--creatives", "2", "--placements", "2", "--drain-timeout", "30s", "--json", jsonPath})
	if err != nil {
		t.Fatalf("unexpected error: %v", err)
	}
	rep := benchReport(t, jsonPath)
	if rep["publish"] != "jetstream" || rep["reconciliation"].(map[string]any)["ok"] != true {
		t.Fatalf("unexpected run: publish %v, reconciliation %v", rep["publish"], rep["reconciliation"])
	}
}

// bench --spawn --nats-url against a server that requires a password: the
// bench gives the password file to the spawned service in its environment,
// and the run reconciles (the service could connect). The URL in the
// report carries no secret.
func TestBenchSpawnExternalNATSAuth(t *testing.T) {
	t.Setenv(benchExecMainEnv, "1")
	srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(),
		NoSigs: true, NoLog: true, MaxPayload: 8 << 20, Users: []*server.User{{Username: "bench", Password: "s3cret"}}})
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	t.Cleanup(srv.Shutdown)
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("NATS server not ready")
	}
	passFile := filepath.Join(t.TempDir(), "pass")
	if err := os.WriteFile(passFile, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	jsonPath := filepath.Join(t.TempDir(), "r.json")
	err = runBench([]string{"--spawn", "--pin", "off", "--jetstream", "true",
		"--nats-url", srv.ClientURL(), "--nats-user", "bench", "--nats-password-file", passFile,
		"--scenario", "steady", "--duration", "500ms", "--warmup", "0",
		"--bid-rate", "100", "--timeout", "100ms", "--conns", "8",
		"--event-rate", "500", "--event-batch", "50", "--preload", "100",
		"--campaigns", "3", "--creatives", "2", "--placements", "2", "--drain-timeout", "30s", "--json", jsonPath})
	if err != nil {
		t.Fatalf("unexpected error: %v", err)
	}
	rep := benchReport(t, jsonPath)
	if rep["publish"] != "jetstream" || rep["reconciliation"].(map[string]any)["ok"] != true {
		t.Fatalf("unexpected run: publish %v, reconciliation %v", rep["publish"], rep["reconciliation"])
	}
}
