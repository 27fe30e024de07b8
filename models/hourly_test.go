package models

import (
	"testing"
	"time"

	"github.com/bidpulse/bidpulse/windows"
)

// TestReadBuckets reads the hourly buckets of a real Store against a
// reference, with hours left empty (whose ring slots still hold buckets
// from a day earlier) and a partial current hour.
func TestReadBuckets(t *testing.T) {
	s, err := windows.NewStore(windows.Config{MaxKeys: 16})
	if err != nil {
		t.Fatalf("cannot create the store: %s", err)
	}
	key := []byte("\x00\x03c42")
	const hour = int64(3600e3)
	start := time.Date(2025, 3, 3, 0, 0, 0, 0, time.UTC).UnixMilli()
	ref := map[int64]windows.Counts{} // by hour number
	r := NewRand(2)
	now := start
	for h := int64(0); h < 60; h++ {
		if h%7 == 3 || h%11 == 5 {
			continue // an hour without events
		}
		for k := 0; k < 4; k++ {
			now = start + h*hour + int64(k)*900e3 + int64(r.Float64()*800e3)
			c := windows.Counts{Impressions: uint64(1 + r.Float64()*100), Clicks: uint64(r.Float64() * 10), CostMicros: uint64(r.Float64() * 1e6)}
			s.Add(key, now, now, c)
			a := ref[now/hour]
			a.Add(c)
			ref[now/hour] = a
		}
	}
	var got [24]windows.Counts
	read := func(at int64) windows.Counts {
		c, _ := s.ReadSpan(key, windows.Span24h, at)
		return c
	}
	if !ReadBuckets(read, hour, now, got[:]) {
		t.Fatalf("unexpected failure")
	}
	cur := now / hour
	for i := range got {
		want := ref[cur-int64(23-i)]
		if got[i] != want {
			t.Fatalf("unexpected bucket %d (hour %d); got %+v; want %+v", i, cur-int64(23-i), got[i], want)
		}
	}
	if ReadBuckets(read, hour, now, nil) {
		t.Fatalf("unexpected success with no buckets")
	}
	if n := testing.AllocsPerRun(10, func() { ReadBuckets(read, hour, now, got[:]) }); n != 0 {
		t.Fatalf("unexpected allocations; got %v; want 0", n)
	}
}

func TestSpentSinceAndProfile(t *testing.T) {
	const hour = int64(3600e3)
	day := time.Date(2025, 3, 3, 0, 0, 0, 0, time.UTC).UnixMilli()
	now := day + 10*hour + 30*60e3 // 10:30 UTC
	var b [24]windows.Counts
	for i := range b {
		b[i] = windows.Counts{Impressions: 100 * uint64(i+1), CostMicros: 1000}
	}
	// Since midnight: the buckets of 00:00..10:00, 11 of them.
	if got := SpentSince(b[:], hour, now, day); got != 11000 {
		t.Fatalf("unexpected spend since midnight; got %d; want 11000", got)
	}
	// Since 09:30 (a zone off the hour): half of 09:00, all of 10:00.
	if got := SpentSince(b[:], hour, now, day+9*hour+30*60e3); got != 1500 {
		t.Fatalf("unexpected spend since 09:30; got %d; want 1500", got)
	}
	p := TrafficProfile(b[:], hour, now, time.UTC)
	// Bucket 23 is 10:00 (current, half elapsed: itself + half of 09:00's),
	// bucket 22 is 09:00, bucket 0 is 11:00 yesterday.
	if p[10] != 2400+0.5*2300 || p[9] != 2300 || p[11] != 100 {
		t.Fatalf("unexpected profile: 09h %v, 10h %v, 11h %v", p[9], p[10], p[11])
	}
	ny, err := time.LoadLocation("America/New_York")
	if err != nil {
		t.Fatalf("cannot load: %s", err)
	}
	// In New York (UTC-5) the same buckets are 5 hours earlier.
	if q := TrafficProfile(b[:], hour, now, ny); q[4] != p[9] {
		t.Fatalf("unexpected New York profile at 04h; got %v; want %v", q[4], p[9])
	}
}
