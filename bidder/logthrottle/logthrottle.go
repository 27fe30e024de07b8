package bidder

import (
	"sync"
	"time"

	"github.com/rs/zerolog"
)

// throttledLog logs a repeated error at most once per interval per topic and
// says how many were suppressed, so a flood of bad input cannot flood the log.
type throttledLog struct {
	log      zerolog.Logger
	interval time.Duration
	mu       sync.Mutex
	topics   map[string]*throttleState
}

type throttleState struct {
	last       time.Time
	suppressed int
}

func newThrottledLog(log zerolog.Logger, interval time.Duration) *throttledLog {
	return &throttledLog{log: log, interval: interval, topics: map[string]*throttleState{}}
}

func (t *throttledLog) warn(topic, msg string, err error) {
	t.mu.Lock()
	st := t.topics[topic]
	if st == nil {
		st = &throttleState{}
		t.topics[topic] = st
	}
	now := time.Now()
	if now.Sub(st.last) < t.interval {
		st.suppressed++
		t.mu.Unlock()
		return
	}
	suppressed := st.suppressed
	st.last, st.suppressed = now, 0
	t.mu.Unlock()
	t.log.Warn().Err(err).Int("suppressed", suppressed).Msg(msg)
}
