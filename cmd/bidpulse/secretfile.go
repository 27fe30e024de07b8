package main

import (
	"fmt"
	"os"
	"strings"
)

// readSecretFile reads a secret from path for flagName: the file's lines
// without their line breaks, blank lines skipped, joined by sep (sep "": one
// line only). A secret in
// a file (or the environment) stays out of the process's argv, which any
// local user can read in /proc.
func readSecretFile(path, flagName, sep string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("cannot read --%s: %w", flagName, err)
	}
	var lines []string
	for _, l := range strings.Split(string(b), "\n") {
		if l = strings.TrimRight(l, "\r"); strings.TrimSpace(l) != "" {
			lines = append(lines, l)
		}
	}
	if len(lines) == 0 {
		return "", fmt.Errorf("invalid --%s: %s is empty", flagName, path)
	}
	if sep == "" && len(lines) > 1 {
		return "", fmt.Errorf("invalid --%s: %s holds %d lines; want one secret", flagName, path, len(lines))
	}
	return strings.Join(lines, sep), nil
}

// secretFromFile sets *dst from the file named by path, if any; giving both
// the value and the file is an error.
func secretFromFile(dst *string, path, valueFlag, fileFlag, sep string) error {
	if path == "" {
		return nil
	}
	if *dst != "" {
		return fmt.Errorf("give --%s or --%s, not both", valueFlag, fileFlag)
	}
	s, err := readSecretFile(path, fileFlag, sep)
	if err != nil {
		return err
	}
	*dst = s
	return nil
}
