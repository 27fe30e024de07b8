package bidder

import (
	"fmt"
	"os"

	"github.com/rs/zerolog"
)

// Modes of what bidpulse creates under the data dir: owner only. A
// checkpoint holds the dead letters still queued (an event's known fields),
// the dedup set and the windows; the DLQ hash key is a secret; the embedded
// server's store (nats/, made by nats-server with the same modes) holds the
// event stream, whose payloads may carry personal data. Nobody else on the
// host has a reason to read them.
const (
	fileMode os.FileMode = 0o600
	dirMode  os.FileMode = 0o700
)

// ensureDataDir creates the data dir (mode 0700) when it does not exist,
// before anything is written in it. One that exists keeps its mode (it may
// be a mount point the operator set up), with a warning when others than
// its owner may read or enter it.
func ensureDataDir(dir string, log zerolog.Logger) error {
	if err := os.MkdirAll(dir, dirMode); err != nil {
		return fmt.Errorf("cannot create data dir: %w", err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("cannot read data dir: %w", err)
	}
	if m := fi.Mode().Perm(); m&0o077 != 0 {
		log.Warn().Str("dir", dir).Str("mode", fmt.Sprintf("%#o", m)).
			Msg("the data dir is open to other users: chmod 700 it (what bidpulse writes in it is 0600, its directories 0700)")
	}
	return nil
}

// ensureOwnDir creates dir, a directory of bidpulse's own under the data
// dir, with mode 0700, and brings one made by an earlier bidpulse (0755) to
// that mode.
func ensureOwnDir(dir string) error {
	if err := os.MkdirAll(dir, dirMode); err != nil {
		return err
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return err
	}
	if fi.Mode().Perm() != dirMode {
		return os.Chmod(dir, dirMode)
	}
	return nil
}
