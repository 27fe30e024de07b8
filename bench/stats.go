package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/valyala/fasthttp"
)

// ServiceStats is the part of GET /v1/stats the bench reads: the ingest outcomes it
// reconciles, and the ingest progress it shows. Fields a service version does not have stay
// zero (the optional ones nil).
type ServiceStats struct {
	Received        uint64            `json:"received"`
	Counted         uint64            `json:"counted"`
	Duplicates      uint64            `json:"duplicates"`
	Rejected        map[string]uint64 `json:"rejected"`
	Late            uint64            `json:"late"`
	Future          uint64            `json:"future"`
	Overflow        uint64            `json:"overflow"`
	DroppedMessages uint64            `json:"dropped_messages"`
	Keys            uint64            `json:"keys"`
	MaxKeys         uint64            `json:"max_keys"`
	CountedByType   map[string]uint64 `json:"counted_by_type"`
	PendingMessages uint64            `json:"pending_messages"`
	// Mode is "core" or "jetstream" (empty before the service reported it).
	Mode string `json:"mode"`
	// IngestLagMs is now minus the event time of the newest applied event, when reported.
	IngestLagMs *float64 `json:"ingest_lag_ms"`
	Since       string   `json:"since"`
	// Buffer, Stream and Checkpoint are the JetStream retention figures (nil when the
	// service does not report them).
	Buffer     *BufferStats     `json:"buffer"`
	Stream     *StreamStats     `json:"stream"`
	Checkpoint *CheckpointStats `json:"checkpoint"`

	// pid is the spawned service's process when the stats were read (0: down or unknown;
	// externalPid: a service the bench did not spawn) and readAt when; set by the bench's
	// poller, not part of /v1/stats.
	pid    int
	readAt time.Time
}

// externalPid stands for the process of a service the bench did not spawn: taken as one
// process all along (its counters are followed as long as they do not go down).
const externalPid = -1

// BufferStats is the spike buffer of /v1/stats: the events stream in JetStream mode.
type BufferStats struct {
	Kind     string `json:"kind"`
	Messages uint64 `json:"messages"`
	Bytes    uint64 `json:"bytes"`
	MaxBytes int64  `json:"max_bytes"`
}

// StreamStats is the events stream of /v1/stats: its sequences and its trims (the purges up
// to the oldest checkpoint kept in NATS).
type StreamStats struct {
	FirstSeq        uint64 `json:"first_seq"`
	LastSeq         uint64 `json:"last_seq"`
	Trims           uint64 `json:"trims"`
	TrimmedMessages uint64 `json:"trimmed_messages"`
}

// CheckpointStats is the checkpoint part of /v1/stats. The counters and MaxPauseMs are the
// service process's own: they start again after a restart.
type CheckpointStats struct {
	Seq           uint64  `json:"seq"`
	AgeS          float64 `json:"age_s"`
	SizeBytes     int64   `json:"size_bytes"`
	DurationMs    int64   `json:"duration_ms"`
	PauseMs       float64 `json:"pause_ms"`
	MaxPauseMs    float64 `json:"max_pause_ms"`
	Written       uint64  `json:"written"`
	WriteErrors   uint64  `json:"write_errors"`
	Loaded        bool    `json:"loaded"`
	KeptInNATSSeq uint64  `json:"kept_in_nats_seq"`
	KeptInNATS    uint64  `json:"kept_in_nats"`
	KeepErrors    uint64  `json:"keep_errors"`
}

// parseStats decodes a /v1/stats body.
func parseStats(b []byte) (ServiceStats, error) {
	var s ServiceStats
	if err := json.Unmarshal(b, &s); err != nil {
		return s, fmt.Errorf("cannot parse /v1/stats: %w", err)
	}
	return s, nil
}

// statsClient reads /v1/stats of the target.
type statsClient struct {
	hc *fasthttp.HostClient
}

func newStatsClient(target string) (*statsClient, error) {
	addr, tls, err := parseTarget(target)
	if err != nil {
		return nil, err
	}
	return &statsClient{hc: &fasthttp.HostClient{Addr: addr, IsTLS: tls, Name: "bidpulse-bench", MaxConns: 4}}, nil
}

func (c *statsClient) get() (ServiceStats, error) {
	code, body, err := getBody(c.hc, "/v1/stats", 2*time.Second)
	if err != nil {
		return ServiceStats{}, fmt.Errorf("cannot GET /v1/stats: %w", err)
	}
	if code != fasthttp.StatusOK {
		return ServiceStats{}, fmt.Errorf("cannot GET /v1/stats: status %d: %.200s", code, body)
	}
	return parseStats(body)
}

// waitDrained polls /v1/stats until the service has received want events since base, then
// confirms the figure holds for a moment (so nothing beyond it is still arriving). It gives up
// after quiet without any progress (events were lost: the caller's checks say which) or when
// ctx ends, and returns the last stats read and whether want was reached.
func (c *statsClient) waitDrained(ctx context.Context, base ServiceStats, want uint64, quiet time.Duration) (ServiceStats, bool, error) {
	const step = 100 * time.Millisecond
	var last ServiceStats
	var lastErr error
	lastProgress := time.Now()
	for {
		st, err := c.get()
		switch {
		case err != nil:
			lastErr = err // the service may be restarting: keep polling until ctx ends
		default:
			lastErr = nil
			if st.Received != last.Received {
				lastProgress = time.Now()
			}
			last = st
			if int64(st.Received)-int64(base.Received) >= int64(want) {
				// Reached: one more read after a pause, so late extras show.
				select {
				case <-ctx.Done():
				case <-time.After(300 * time.Millisecond):
				}
				if st2, err := c.get(); err == nil {
					last = st2
				}
				return last, true, nil
			}
			if time.Since(lastProgress) > quiet && st.PendingMessages == 0 {
				return last, false, nil
			}
		}
		select {
		case <-ctx.Done():
			return last, false, lastErr
		case <-time.After(step):
		}
	}
}
