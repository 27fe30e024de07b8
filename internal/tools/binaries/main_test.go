package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCheck(t *testing.T) {
	dir := t.TempDir()
	pe := make([]byte, 0x90)
	copy(pe, "MZ")
	pe[0x3c] = 0x80
	copy(pe[0x80:], "PE\x00\x00")
	files := map[string][]byte{
		"main.go":                   []byte("package main\n"),
		"bidpulse":                  append([]byte("\x7fELF\x02\x01\x01"), make([]byte, 100)...),
		"tool":                      []byte("\xcf\xfa\xed\xfe\x07\x00\x00\x01"),
		"tool.exe":                  pe,
		"MZ.txt":                    []byte("MZ is a text file that starts like a DOS header"),
		"big.json":                  make([]byte, 2048),
		"x/testdata/fuzz/FuzzX/abc": append([]byte("\x7fELF"), make([]byte, 4096)...),
	}
	var list []string
	for name, b := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		list = append(list, name)
	}
	list = append(list, "deleted.go")
	bad, n, err := check(strings.NewReader(strings.Join(list, "\x00")), 1024, func(name string) (*os.File, error) {
		return os.Open(filepath.Join(dir, name))
	})
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Join(bad, "\n")
	for _, want := range []string{"bidpulse: ELF binary", "tool: Mach-O binary", "tool.exe: PE binary", "big.json: 2048 bytes"} {
		if !strings.Contains(got, want) {
			t.Errorf("unexpected report; got %q; want it to have %q", got, want)
		}
	}
	if len(bad) != 4 || n != 7 {
		t.Fatalf("unexpected report of %d files of %d checked; got %q; want 4 of 7 (the fuzz corpus skipped)", len(bad), n, got)
	}
}
