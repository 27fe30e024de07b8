package bidder

import (
	"errors"
	"fmt"
	"time"

	"github.com/rs/zerolog"
)

// DLQSubject is where rejected payloads are republished, each with a
// Bidpulse-Reject-Reason header.
const DLQSubject = "bidpulse.dlq"

// Options configure one Service. The zero value of a field means its
// default (see Defaults); Clock is required.
type Options struct {
	// HTTPAddr is the API listen address (default ":8080"; "127.0.0.1:0"
	// picks a free port, see Service.HTTPAddr).
	HTTPAddr string
	// NATSURL, when set, is the comma-separated URL list of an existing NATS
	// server or cluster. When empty, an embedded nats-server is started.
	NATSURL string
	// NATSAddr is the embedded server's client listen address (default
	// 127.0.0.1:4222; port -1 picks a free port).
	NATSAddr string
	// DataDir holds the embedded server's JetStream store (default ./data).
	DataDir string
	// Subject is the event subject the service subscribes to (default
	// bidpulse.events.>). It must not match DLQSubject.
	Subject string
	// Instance names this replica (default: the host name).
	Instance string
	// AdminToken enables the admin API (overrides) when set.
	AdminToken string
	// MaxKeys caps the live keys over all rollups (default 1,000,000).
	MaxKeys int
	// DedupSize is the memory, in bytes, of the (type, id) dedup cache
	// (default 64 MiB, at least 32 MiB).
	DedupSize int
	// PendingMsgs and PendingBytes are the core subscription's buffer
	// limits; past them the NATS client drops messages and counts them
	// (default 1,000,000 messages and 1 GiB).
	PendingMsgs  int
	PendingBytes int
	// Config is what is aggregated and how multipliers are computed.
	Config Config
	// Logger receives the service's logs.
	Logger zerolog.Logger
	// Clock gives the time to the windows, the policy and the stats.
	Clock Clock
	// EvictInterval is how often idle keys and expired overrides are
	// removed (default 1m).
	EvictInterval time.Duration
	// ShutdownTimeout bounds the wait for in-flight HTTP requests and the
	// subscription drain on Stop (default 10s).
	ShutdownTimeout time.Duration
}

const (
	defaultHTTPAddr  = ":8080"
	defaultNATSAddr  = "127.0.0.1:4222"
	defaultDataDir   = "./data"
	defaultSubject   = "bidpulse.events.>"
	defaultMaxKeys   = 1_000_000
	defaultDedupSize = 64 << 20
	minDedupSize     = 32 << 20
)

// withDefaults returns o with every zero field set to its default, or an
// error naming the first invalid field.
func (o Options) withDefaults() (Options, error) {
	if o.HTTPAddr == "" {
		o.HTTPAddr = defaultHTTPAddr
	}
	if o.NATSAddr == "" {
		o.NATSAddr = defaultNATSAddr
	}
	if o.DataDir == "" {
		o.DataDir = defaultDataDir
	}
	if o.Subject == "" {
		o.Subject = defaultSubject
	}
	if err := checkSubject(o.Subject); err != nil {
		return o, err
	}
	if o.MaxKeys == 0 {
		o.MaxKeys = defaultMaxKeys
	}
	if o.MaxKeys < 0 {
		return o, fmt.Errorf("invalid max-keys %d: must be positive", o.MaxKeys)
	}
	if o.DedupSize == 0 {
		o.DedupSize = defaultDedupSize
	}
	if o.DedupSize < minDedupSize {
		return o, fmt.Errorf("invalid dedup-size %d: must be at least %d bytes (32 MiB)", o.DedupSize, minDedupSize)
	}
	if o.PendingMsgs == 0 {
		o.PendingMsgs = 1_000_000
	}
	if o.PendingBytes == 0 {
		o.PendingBytes = 1 << 30
	}
	if o.EvictInterval <= 0 {
		o.EvictInterval = time.Minute
	}
	if o.ShutdownTimeout <= 0 {
		o.ShutdownTimeout = 10 * time.Second
	}
	if o.Config.Rollups == nil && o.Config.Policy.Name == "" {
		o.Config = DefaultConfig()
	}
	if o.Clock == nil {
		return o, errors.New("Options.Clock is required")
	}
	return o, nil
}

// checkSubject refuses an event subject that is not a valid NATS subject or
// that would also receive the dead letters (and so consume its own output).
func checkSubject(subject string) error {
	if !validSubject(subject) {
		return fmt.Errorf("invalid subject %q: not a valid NATS subject", subject)
	}
	if subjectMatches(subject, DLQSubject) {
		return fmt.Errorf("invalid subject %q: it matches the dead-letter subject %s", subject, DLQSubject)
	}
	return nil
}

func validSubject(s string) bool {
	if s == "" {
		return false
	}
	toks := splitTokens(s)
	for i, t := range toks {
		if t == "" {
			return false
		}
		for j := 0; j < len(t); j++ {
			if c := t[j]; c == ' ' || c == '\t' || c == '\r' || c == '\n' {
				return false
			}
		}
		if t == ">" && i != len(toks)-1 {
			return false
		}
	}
	return true
}

// subjectMatches reports whether the subscription filter matches subject.
func subjectMatches(filter, subject string) bool {
	f, s := splitTokens(filter), splitTokens(subject)
	for i, ft := range f {
		if ft == ">" {
			return len(s) > i
		}
		if i >= len(s) {
			return false
		}
		if ft != "*" && ft != s[i] {
			return false
		}
	}
	return len(f) == len(s)
}

func splitTokens(s string) []string {
	var toks []string
	start := 0
	for i := 0; i < len(s); i++ {
		if s[i] == '.' {
			toks = append(toks, s[start:i])
			start = i + 1
		}
	}
	return append(toks, s[start:])
}
