package main

import (
	"flag"
	"os"
	"path/filepath"
	"testing"
)

func TestApplyEnv(t *testing.T) {
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
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

	fs = flag.NewFlagSet("t", flag.ContinueOnError)
	fs.Int("max-keys", 10, "")
	t.Setenv("BIDPULSE_MAX_KEYS", "many")
	if err := parseFlags(fs, nil); err == nil {
		t.Fatalf("expected an error for an invalid env value")
	}
}

func TestEnvName(t *testing.T) {
	if got := envName("dedup-size"); got != "BIDPULSE_DEDUP_SIZE" {
		t.Fatalf("unexpected env name; got %q", got)
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
