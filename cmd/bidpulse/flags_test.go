package main

import (
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestApplyEnv(t *testing.T) {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	addr := fs.String("http-addr", ":8080", "")
	keys := fs.Int("max-keys", 10, "")
	sub := fs.String("subject", "a", "")
	t.Setenv("BIDPULSE_HTTP_ADDR", "127.0.0.1:9999")
	t.Setenv("BIDPULSE_MAX_KEYS", "42")
	t.Setenv("BIDPULSE_SUBJECT", "from-env")
	if err := parseFlags(fs, []string{"--subject", "from-flag"}); err != nil {
		t.Fatalf("unexpected error: %v", err)
	}
	if *addr != "127.0.0.1:9999" || *keys != 42 {
		t.Fatalf("env not applied; got %q %d", *addr, *keys)
	}
	if *sub != "from-flag" {
		t.Fatalf("unexpected subject; got %q; want the flag to win over the env", *sub)
	}

	fs = flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.Int("max-keys", 10, "")
	t.Setenv("BIDPULSE_MAX_KEYS", "many")
	if err := parseFlags(fs, nil); err == nil {
		t.Fatalf("expected an error for an invalid env value")
	}
}

func TestEnvName(t *testing.T) {
	f := func(cmd, flagName, want string) {
		t.Helper()
		if got := cmdEnvName(cmd, flagName); got != want {
			t.Fatalf("unexpected env name of %s --%s; got %q; want %q", cmd, flagName, got, want)
		}
	}
	f("serve", "dedup-size", "BIDPULSE_DEDUP_SIZE")
	f("serve", "nats-url", "BIDPULSE_NATS_URL")
	f("bench", "duration", "BIDPULSE_BENCH_DURATION")
	f("simulate", "duration", "BIDPULSE_SIMULATE_DURATION")
	f("publish", "nats-url", "BIDPULSE_NATS_URL")
	f("publish", "partitioned", "BIDPULSE_PUBLISH_PARTITIONED")
	f("dlq", "nats-password-file", "BIDPULSE_NATS_PASSWORD_FILE")
	f("dlq", "from-seq", "BIDPULSE_DLQ_FROM_SEQ")
}

// An environment variable applies to the command it names: one set for
// bench does not change simulate, and simulate's own does.
func TestEnvScopedToCommand(t *testing.T) {
	t.Setenv("BIDPULSE_BENCH_DURATION", "not-a-duration")
	t.Setenv("BIDPULSE_DURATION", "not-a-duration")
	// An unknown scenario fails after the flags are read, before any work.
	err := runSimulate([]string{"--scenario", "no-such-scenario"})
	if err == nil || strings.Contains(err.Error(), "DURATION") {
		t.Fatalf("unexpected simulate error; got %v; want the unknown scenario, the bench's variable unread", err)
	}
	t.Setenv("BIDPULSE_SIMULATE_DURATION", "not-a-duration")
	err = runSimulate([]string{"--scenario", "no-such-scenario"})
	if err == nil || !strings.Contains(err.Error(), "BIDPULSE_SIMULATE_DURATION") {
		t.Fatalf("unexpected simulate error; got %v; want BIDPULSE_SIMULATE_DURATION refused", err)
	}
	err = runBench([]string{"--scenario", "no-such-scenario"})
	if err == nil || !strings.Contains(err.Error(), "BIDPULSE_BENCH_DURATION") {
		t.Fatalf("unexpected bench error; got %v; want BIDPULSE_BENCH_DURATION refused", err)
	}
}

// serve still reads its documented unscoped variables: BIDPULSE_HTTP_ADDR
// picks the address it answers on.
func TestServeEnvHTTPAddr(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary; skipped in -short mode")
	}
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	logf, err := os.CreateTemp(t.TempDir(), "serve-*.log")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bidpulseBinary(t), "serve")
	cmd.Env = append(os.Environ(), "BIDPULSE_HTTP_ADDR="+addr, "BIDPULSE_NATS_ADDR=127.0.0.1:-1",
		"BIDPULSE_DATA_DIR="+t.TempDir(), "BIDPULSE_LOG_LEVEL=warn")
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		if time.Now().After(deadline) {
			logs, _ := os.ReadFile(logf.Name())
			t.Fatalf("serve does not answer on BIDPULSE_HTTP_ADDR %s after 30s: %v; log:\n%s", addr, err, logs)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Every command's --help prints each flag's default at most once, and the
// environment variable of each; no variable of another command is one of
// serve's.
func TestHelpDefaultsOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary; skipped in -short mode")
	}
	serveEnv := map[string]bool{}
	for _, cmd := range []string{"serve", "publish", "bench", "simulate", "dlq"} {
		out, err := exec.Command(bidpulseBinary(t), cmd, "-h").CombinedOutput()
		if err != nil {
			t.Fatalf("bidpulse %s -h: %v\n%s", cmd, err, out)
		}
		_, flags, ok := strings.Cut(string(out), "\nFlags")
		if !ok {
			t.Fatalf("bidpulse %s -h lists no flags:\n%s", cmd, out)
		}
		entries := strings.Split(flags, "\n  -")[1:]
		if len(entries) < 3 {
			t.Fatalf("unexpected help of %s: %d flags:\n%s", cmd, len(entries), out)
		}
		for _, e := range entries {
			name := strings.Fields(e)[0]
			if strings.Count(e, "(default") > 1 {
				t.Fatalf("unexpected help of %s --%s: the default more than once:\n%s", cmd, name, e)
			}
			env := cmdEnvName(cmd, name)
			if !strings.Contains(e, "env "+env+")") {
				t.Fatalf("unexpected help of %s --%s: want its variable %s:\n%s", cmd, name, env, e)
			}
			if cmd == "serve" {
				serveEnv[env] = true
			} else if !sharedEnvFlags[name] && serveEnv[env] {
				t.Fatalf("%s --%s reads %s, a variable of serve", cmd, name, env)
			}
		}
	}
}

func TestParseBytes(t *testing.T) {
	f := func(s string, want int, ok bool) {
		t.Helper()
		got, err := parseBytes(s)
		if (err == nil) != ok || got != want {
			t.Fatalf("unexpected parseBytes(%q); got %d, %v; want %d, ok=%v", s, got, err, want, ok)
		}
	}
	f("64MiB", 64<<20, true)
	f("1GiB", 1<<30, true)
	f("500MB", 500e6, true)
	f("1048576", 1<<20, true)
	f("12B", 12, true)
	f("", 0, false)
	f("MiB", 0, false)
	f("-1MiB", 0, false)
	f("1.5GiB", 0, false)
	f("ten", 0, false)
	f("99999999999999999999GiB", 0, false)
}

func TestSecretFromFile(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	f := func(value, path, sep, want string, ok bool) {
		t.Helper()
		got := value
		err := secretFromFile(&got, path, "x", "x-file", sep)
		if (err == nil) != ok || (ok && got != want) {
			t.Fatalf("unexpected secretFromFile(%q, %q): %q, %v; want %q", value, path, got, err, want)
		}
	}
	f("kept", "", "", "kept", true)
	f("", write("one", "s3cr:et,x\n"), "", "s3cr:et,x", true)
	f("", write("crlf", "abc\r\n\n"), "", "abc", true)
	f("", write("two", "a\nb\n"), "", "", false)
	f("", write("pairs", "alice:1\n\nbob:2\n"), ",", "alice:1,bob:2", true)
	f("", write("empty", "\n \n"), "", "", false)
	f("both", write("both", "x"), "", "", false)
	f("", filepath.Join(dir, "missing"), "", "", false)
}

// --partitions, from the flag or BIDPULSE_PARTITIONS, reaches the service,
// which refuses it without JetStream before starting anything; a value the
// server cannot take is refused by the flag.
func TestServePartitionsFlag(t *testing.T) {
	base := []string{"--http-addr", "127.0.0.1:0", "--nats-addr", "127.0.0.1:-1", "--data-dir", t.TempDir(), "--log-level", "error"}
	f := func(args []string, want string) {
		t.Helper()
		err := runServe(append(append([]string(nil), base...), args...))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("unexpected error of serve %v; got %v; want one saying %q", args, err, want)
		}
	}
	f([]string{"--partitions", "4", "--jetstream", "false"}, "invalid partitions 4 with jetstream false")
	f([]string{"--partitions", "2147483648"}, "invalid --partitions 2147483648")
	t.Setenv("BIDPULSE_PARTITIONS", "6")
	f([]string{"--jetstream", "false"}, "invalid partitions 6 with jetstream false")
}
