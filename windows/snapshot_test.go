package windows

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
)

// TestSnapshotUnderWrites begins a snapshot, then writes it out while a
// writer adds to existing keys (promoting sparse ones), creates keys and
// evicts idle ones; the snapshot must equal a checkpoint taken at its start.
func TestSnapshotUnderWrites(t *testing.T) {
	const hourMs = 3_600_000
	now := t0 + 30*hourMs
	s := mustStore(t, Config{MaxKeys: 100_000})
	rng := rand.New(rand.NewPCG(3, 4))
	live := make([][]byte, 0, 20_000)
	for i := range 20_000 {
		k := fmt.Appendf(nil, "\x01key-%d", i)
		for range 1 + rng.IntN(6) {
			ts := now - rng.Int64N(20*hourMs)
			s.Add(k, ts, now, Counts{Impressions: 1 + uint64(rng.IntN(3)), Clicks: uint64(rng.IntN(2)), CostMicros: uint64(rng.IntN(5000))})
		}
		live = append(live, k)
	}
	for i := range 3_000 { // idle: evicted at now
		s.Add(fmt.Appendf(nil, "\x02idle-%d", i), now-26*hourMs, now, Counts{Impressions: 1})
	}

	sn, err := s.BeginSnapshot()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.BeginSnapshot(); err == nil {
		t.Fatalf("unexpected second snapshot while one runs")
	}
	var want bytes.Buffer
	if _, err := s.WriteCheckpoint(&want); err != nil {
		t.Fatal(err)
	}

	var got bytes.Buffer
	var wg sync.WaitGroup
	wg.Go(func() {
		if _, err := sn.WriteTo(&got); err != nil {
			t.Error(err)
		}
	})
	wg.Go(func() {
		wr := rand.New(rand.NewPCG(5, 6))
		for i := range 60_000 {
			switch {
			case i%20_000 == 7:
				if n := s.EvictIdle(now); n == 0 && i < 20_000 {
					t.Errorf("unexpected: nothing evicted")
				}
			case i%5 == 0:
				s.Add(fmt.Appendf(nil, "\x03new-%d", i), now, now, Counts{Impressions: 1})
			default:
				batch := make([]Event, 8)
				for j := range batch {
					batch[j] = Event{Key: live[wr.IntN(len(live))], TsMs: now - wr.Int64N(20*hourMs), C: Counts{Clicks: 1, Impressions: 2}}
				}
				s.AddBatch(batch, now, nil)
			}
		}
	})
	wg.Wait()
	if _, err := sn.WriteTo(&got); err == nil {
		t.Fatalf("unexpected second WriteTo")
	}
	if _, err := s.BeginSnapshot(); err != nil {
		t.Fatalf("unexpected error after the snapshot ended: %s", err)
	}

	a, b := mustStore(t, Config{MaxKeys: 100_000}), mustStore(t, Config{MaxKeys: 100_000})
	if err := a.ReadCheckpoint(&want); err != nil {
		t.Fatal(err)
	}
	if err := b.ReadCheckpoint(&got); err != nil {
		t.Fatal(err)
	}
	if a.Len() != 23_000 || b.Len() != a.Len() {
		t.Fatalf("unexpected keys; got %d; want %d (23000)", b.Len(), a.Len())
	}
	n := 0
	a.Scan(-1, Span1m, now, func(key []byte, _ Counts) bool {
		var ca, cb [NumSpans]Counts
		a.Read(key, now, &ca)
		if !b.Read(key, now, &cb) || ca != cb {
			t.Fatalf("unexpected state of %q; got %+v; want %+v", key, cb, ca)
		}
		n++
		return true
	})
	if n != a.Len() {
		t.Fatalf("unexpected scan count %d", n)
	}
}

// TestSnapshotSideInChunks changes every key after the snapshot began and
// before it is written, so each key's record is the writer's (the side
// records, several chunks of ckptFlushAt); the snapshot must equal a
// checkpoint taken at its start.
func TestSnapshotSideInChunks(t *testing.T) {
	now := t0 + 3_600_000
	s := mustStore(t, Config{MaxKeys: 100_000})
	keys := make([][]byte, 20_000)
	for i := range keys {
		keys[i] = fmt.Appendf(nil, "\x01key-%d", i)
		s.Add(keys[i], now-int64(i%50)*60_000, now, Counts{Impressions: 3, Clicks: 1, CostMicros: uint64(1000 + i)})
	}
	sn, err := s.BeginSnapshot()
	if err != nil {
		t.Fatal(err)
	}
	var want bytes.Buffer
	if _, err := s.WriteCheckpoint(&want); err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		s.Add(k, now, now, Counts{Impressions: 1})
	}
	sn.mu.Lock()
	chunks := len(sn.side)
	sn.mu.Unlock()
	if chunks < 3 {
		t.Fatalf("unexpected side records in %d chunks; want several", chunks)
	}
	var got bytes.Buffer
	if _, err := sn.WriteTo(&got); err != nil {
		t.Fatal(err)
	}
	a, b := mustStore(t, Config{MaxKeys: 100_000}), mustStore(t, Config{MaxKeys: 100_000})
	if err := a.ReadCheckpoint(&want); err != nil {
		t.Fatal(err)
	}
	if err := b.ReadCheckpoint(&got); err != nil {
		t.Fatal(err)
	}
	if b.Len() != len(keys) || a.Len() != len(keys) {
		t.Fatalf("unexpected keys; got %d and %d; want %d", b.Len(), a.Len(), len(keys))
	}
	for _, k := range keys {
		var ca, cb [NumSpans]Counts
		a.Read(k, now, &ca)
		if !b.Read(k, now, &cb) || ca != cb {
			t.Fatalf("unexpected state of %q; got %+v; want %+v", k, cb, ca)
		}
	}
}
