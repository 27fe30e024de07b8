package bidder

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/bidpulse/bidpulse/bidder/ingest"
)

// dlqKeyFile is the name, in the data dir, of the key of the dead letters'
// payload hashes (see ingest.SetDLQKey): hex, one line, mode 0600.
const dlqKeyFile = "dlq-hash.key"

// loadDLQKey returns the key of the dead letters' payload hashes, kept in
// dataDir, and makes it (random) at the first start. Kept, so that a
// payload's hash stays the same across restarts; secret, so that the hash
// of a small payload cannot be reversed by hashing guesses of the personal
// data in it. Instances that are to compare hashes share the file.
func loadDLQKey(dataDir string) ([]byte, error) {
	path := filepath.Join(dataDir, dlqKeyFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		key := make([]byte, ingest.DLQKeySize)
		if _, err := rand.Read(key); err != nil {
			return nil, fmt.Errorf("cannot make the DLQ hash key: %w", err)
		}
		err := writeFileAtomic(path, func(w io.Writer) (int64, error) {
			n, err := fmt.Fprintf(w, "%x\n", key)
			return int64(n), err
		})
		if err != nil {
			return nil, fmt.Errorf("cannot write the DLQ hash key %s: %w", path, err)
		}
		return key, nil
	}
	if err != nil {
		return nil, fmt.Errorf("cannot read the DLQ hash key: %w", err)
	}
	key, err := hex.DecodeString(string(bytes.TrimSpace(b)))
	if err != nil || len(key) != ingest.DLQKeySize {
		return nil, fmt.Errorf("invalid DLQ hash key %s: want %d bytes in hex (remove the file to make a new key)", path, ingest.DLQKeySize)
	}
	return key, nil
}
