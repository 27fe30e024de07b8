// Command binaries fails when the repository tracks a compiled binary (an ELF, Mach-O or PE
// executable or object) or a file over -max-size bytes: a build output committed by mistake
// (a stale bidpulse binary, a *.test) bloats every clone and can be run in place of the source
// it no longer matches. It reads the NUL-separated paths of `git ls-files -z` on stdin. The
// fuzz corpora (testdata/fuzz/) are skipped: their files are generated inputs.
//
// Usage: git ls-files -z | go run ./internal/tools/binaries [-max-size 1048576]
package main

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
)

func main() {
	maxSize := flag.Int64("max-size", 1<<20, "largest tracked file, in bytes")
	flag.Parse()
	bad, n, err := check(os.Stdin, *maxSize, os.Open)
	if err != nil {
		fmt.Fprintln(os.Stderr, "binaries:", err)
		os.Exit(2)
	}
	for _, b := range bad {
		fmt.Println(b)
	}
	if len(bad) > 0 {
		fmt.Printf("%d tracked files are binaries or larger than %d bytes: remove them (git rm --cached) and ignore them\n", len(bad), *maxSize)
		os.Exit(1)
	}
	fmt.Printf("tracked files: %d checked, no binaries\n", n)
}

// check reads NUL-separated paths from list and returns a line for each that is a binary or
// larger than maxSize, and the number of paths checked.
func check(list io.Reader, maxSize int64, open func(string) (*os.File, error)) ([]string, int, error) {
	sc := bufio.NewScanner(list)
	sc.Split(func(data []byte, atEOF bool) (int, []byte, error) {
		if i := bytes.IndexByte(data, 0); i >= 0 {
			return i + 1, data[:i], nil
		}
		if atEOF && len(data) > 0 {
			return len(data), data, nil
		}
		return 0, nil, nil
	})
	var bad []string
	n := 0
	for sc.Scan() {
		path := sc.Text()
		if strings.HasPrefix(path, "testdata/fuzz/") || strings.Contains(path, "/testdata/fuzz/") {
			continue
		}
		n++
		f, err := open(path)
		if os.IsNotExist(err) {
			continue // deleted in the work tree, not yet in the index
		}
		if err != nil {
			return nil, n, err
		}
		var head [512]byte
		k, _ := io.ReadFull(f, head[:])
		st, err := f.Stat()
		f.Close()
		if err != nil {
			return nil, n, err
		}
		if kind := executableKind(head[:k]); kind != "" {
			bad = append(bad, fmt.Sprintf("%s: %s binary", path, kind))
		} else if st.Size() > maxSize {
			bad = append(bad, fmt.Sprintf("%s: %d bytes", path, st.Size()))
		}
	}
	return bad, n, sc.Err()
}

// executableKind names the executable format whose magic number starts head, or "".
func executableKind(head []byte) string {
	switch {
	case bytes.HasPrefix(head, []byte("\x7fELF")):
		return "ELF"
	case len(head) >= 4 && isMachO(binary.BigEndian.Uint32(head)):
		return "Mach-O"
	case bytes.HasPrefix(head, []byte("MZ")) && len(head) >= 0x40:
		// A PE file: the DOS header's e_lfanew points at "PE\0\0".
		if off := binary.LittleEndian.Uint32(head[0x3c:]); int(off)+4 <= len(head) && string(head[off:off+4]) == "PE\x00\x00" {
			return "PE"
		}
	}
	return ""
}

func isMachO(m uint32) bool {
	switch m {
	case 0xfeedface, 0xfeedfacf, 0xcefaedfe, 0xcffaedfe, // 32 and 64 bit, both byte orders
		0xcafebabe: // universal (also a Java class file, as unwelcome here)
		return true
	}
	return false
}
