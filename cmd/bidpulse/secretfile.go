package main

import (
	"fmt"
	"strings"

	"github.com/bidpulse/bidpulse/internal/secretfile"
)

// readSecretFile reads the secret of flagName from path (internal/secretfile's
// rule): its one line, or with sep, its lines joined by sep (name:secret
// pairs, one per line).
func readSecretFile(path, flagName, sep string) (string, error) {
	if sep == "" {
		s, err := secretfile.Read(path)
		if err != nil {
			return "", fmt.Errorf("invalid --%s: %w", flagName, err)
		}
		return s, nil
	}
	lines, err := secretfile.ReadLines(path)
	if err != nil {
		return "", fmt.Errorf("invalid --%s: %w", flagName, err)
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
