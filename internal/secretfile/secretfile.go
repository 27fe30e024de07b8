// Package secretfile reads secrets from files: one rule for every flag that
// takes a secret from a file (NATS passwords and tokens, admin and read
// tokens, the control key), so a file means the same secret wherever it is
// given. A secret in a file, or the environment, stays out of the process's
// argv, which any local user can read in /proc.
package secretfile

import (
	"fmt"
	"os"
	"strings"
)

// ReadLines returns the secrets of the file at path, one per line: the
// lines without their line breaks (LF or CRLF), blank lines skipped, the
// rest kept as written. A file without a secret is an error.
func ReadLines(path string) ([]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var lines []string
	for _, l := range strings.Split(string(b), "\n") {
		if l = strings.TrimSuffix(l, "\r"); strings.TrimSpace(l) != "" {
			lines = append(lines, l)
		}
	}
	if len(lines) == 0 {
		return nil, fmt.Errorf("%s holds no secret", path)
	}
	return lines, nil
}

// Read returns the one secret of the file at path (see ReadLines); a file
// of several is an error.
func Read(path string) (string, error) {
	lines, err := ReadLines(path)
	if err != nil {
		return "", err
	}
	if len(lines) > 1 {
		return "", fmt.Errorf("%s holds %d lines; want one secret", path, len(lines))
	}
	return lines[0], nil
}
