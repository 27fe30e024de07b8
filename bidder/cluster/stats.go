package cluster

import "sync/atomic"

// Stats are a Membership's counters since Join: what the service will export as metrics once it
// uses the package.
type Stats struct {
	// Renewals is the lease renewals written.
	Renewals uint64
	// RenewFailures is the renewals that failed (each retried after TTL/10). LastError is the
	// latest error of a renewal, of a fresh watch or of a refused record.
	RenewFailures uint64
	LastError     string
	// Reregistered is how often this member found its own lease gone while it ran (it paused
	// or lost NATS for longer than the lease: the others saw it leave) and wrote it again.
	Reregistered uint64
	// Joined, Left and Expired count view changes: records that appeared, deletes (a Leave)
	// and purges (a limit marker of an expired lease, or an operator's purge).
	Joined, Left, Expired uint64
	// BadRecords is the records the watch could not decode; their keys stay out of the view.
	BadRecords uint64
	// Resyncs is how often the view was rebuilt from a fresh watch (DefaultResync, or after the
	// watch closed).
	Resyncs uint64
}

type stats struct {
	renewals, renewFailures, reregistered atomic.Uint64
	joined, left, expired, bad, resyncs   atomic.Uint64
	lastError                             atomic.Pointer[string]
}

func (s *stats) setLastError(err error) {
	msg := err.Error()
	s.lastError.Store(&msg)
}

// Stats returns the counters.
func (m *Membership) Stats() Stats {
	s := Stats{
		Renewals:      m.stats.renewals.Load(),
		RenewFailures: m.stats.renewFailures.Load(),
		Reregistered:  m.stats.reregistered.Load(),
		Joined:        m.stats.joined.Load(),
		Left:          m.stats.left.Load(),
		Expired:       m.stats.expired.Load(),
		BadRecords:    m.stats.bad.Load(),
		Resyncs:       m.stats.resyncs.Load(),
	}
	if p := m.stats.lastError.Load(); p != nil {
		s.LastError = *p
	}
	return s
}
