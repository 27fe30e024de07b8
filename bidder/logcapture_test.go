package bidder

import (
	"bytes"
	"strings"
	"sync"
	"testing"

	"github.com/rs/zerolog"
)

// logCapture keeps every line a service logs, for tests that check what the
// logs say (or must never say). Safe for concurrent use.
type logCapture struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// newLogCapture returns a capture and a logger of every level writing to it
// (and to the test's log, at warning and above).
func newLogCapture(t *testing.T) (*logCapture, zerolog.Logger) {
	c := &logCapture{}
	w := zerolog.MultiLevelWriter(c, &zerolog.FilteredLevelWriter{
		Writer: zerolog.LevelWriterAdapter{Writer: zerolog.NewTestWriter(t)}, Level: zerolog.WarnLevel})
	return c, zerolog.New(w).Level(zerolog.TraceLevel).With().Timestamp().Logger()
}

func (c *logCapture) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buf.Write(p)
}

// bytes returns a copy of everything logged so far.
func (c *logCapture) bytes() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return bytes.Clone(c.buf.Bytes())
}

// linesWith returns the lines that contain every one of subs.
func (c *logCapture) linesWith(subs ...string) []string {
	var out []string
	for _, l := range strings.Split(string(c.bytes()), "\n") {
		all := l != ""
		for _, s := range subs {
			all = all && strings.Contains(l, s)
		}
		if all {
			out = append(out, l)
		}
	}
	return out
}
