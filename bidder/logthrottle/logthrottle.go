// Package logthrottle logs a repeated error at most once per interval per
// topic, so a flood of bad input or a failing dependency cannot flood the log.
package logthrottle

import (
	"sync"
	"time"

	"github.com/rs/zerolog"
)

// Log logs a repeated warning at most once per interval per topic and says
// how many were suppressed. It is safe for concurrent use.
type Log struct {
	log      zerolog.Logger
	interval time.Duration
	mu       sync.Mutex
	topics   map[string]*throttleState
}

type throttleState struct {
	last       time.Time
	suppressed int
}

// New returns a Log writing to log.
func New(log zerolog.Logger, interval time.Duration) *Log {
	return &Log{log: log, interval: interval, topics: map[string]*throttleState{}}
}

// Warn logs msg with err unless a warning of the same topic was logged less
// than the interval ago.
func (t *Log) Warn(topic, msg string, err error) {
	if suppressed, ok := t.Allow(topic); ok {
		t.log.Warn().Err(err).Int("suppressed", suppressed).Msg(msg)
	}
}

// Allow reports whether a line of topic may be logged now (none was
// allowed less than the interval ago) and, when it may, how many were
// suppressed since the last one. The caller then logs the line itself, with
// the fields it needs and the suppressed count.
func (t *Log) Allow(topic string) (suppressed int, ok bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	st := t.topics[topic]
	if st == nil {
		st = &throttleState{}
		t.topics[topic] = st
	}
	now := time.Now()
	if !st.last.IsZero() && now.Sub(st.last) < t.interval {
		st.suppressed++
		return 0, false
	}
	suppressed = st.suppressed
	st.last, st.suppressed = now, 0
	return suppressed, true
}
