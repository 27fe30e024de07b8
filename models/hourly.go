package models

import (
	"time"

	"github.com/bidpulse/bidpulse/windows"
)

// ReadBuckets fills dst with the counts of the last len(dst) buckets of
// widthMs each, dst[len-1] being the current (partial) one at nowMs, from
// read(t): the counts of the span those buckets serve, read as of time t
// (windows.Store.ReadSpan(key, windows.Span24h, t) for the 24h span of the
// default resolutions). It calls read len(dst)+1 times and returns false,
// leaving dst zeroed, when len(dst) == 0.
//
// It relies on how a ring answers a read as of a past time: the span as of
// bucket e sums the slots that still hold buckets e-n+1..e, and each slot
// holds one bucket number, so the difference between the reads as of
// buckets e and e-1 is bucket e when its slot holds it, else minus the old
// bucket e-n its slot still holds: counter by counter, the difference
// floored at 0 is exactly bucket e. That holds when the span covers the
// whole ring (n = len(dst) = the ring's buckets, as 24h does on the
// default 24 x 1h ring); check Store.SpanResolution before using it.
//
// It allocates nothing; it is meant for the control tick (pacing's spend
// and traffic profile), not the bid path.
func ReadBuckets(read func(atMs int64) windows.Counts, widthMs, nowMs int64, dst []windows.Counts) bool {
	for i := range dst {
		dst[i] = windows.Counts{}
	}
	n := len(dst)
	if n == 0 || widthMs <= 0 {
		return false
	}
	cur := nowMs / widthMs
	newer := read(nowMs)
	for k := 0; k < n; k++ {
		older := read((cur-int64(k))*widthMs - 1)
		dst[n-1-k] = subFloor(newer, older)
		newer = older
	}
	return true
}

// subFloor returns a - b counter by counter, 0 where b > a.
func subFloor(a, b windows.Counts) windows.Counts {
	f := func(x, y uint64) uint64 {
		if y > x {
			return 0
		}
		return x - y
	}
	return windows.Counts{
		Impressions: f(a.Impressions, b.Impressions),
		Clicks:      f(a.Clicks, b.Clicks),
		Conversions: f(a.Conversions, b.Conversions),
		CostMicros:  f(a.CostMicros, b.CostMicros),
		ValueMicros: f(a.ValueMicros, b.ValueMicros),
	}
}

// SpentSince returns the cost in micros of the buckets (as ReadBuckets
// fills them, the last one current at nowMs) from sinceMs on: whole
// buckets that start at or after it, and the share of the bucket that
// contains it proportional to the time after sinceMs (time zones off the
// hour split a bucket).
func SpentSince(buckets []windows.Counts, widthMs, nowMs, sinceMs int64) uint64 {
	n := int64(len(buckets))
	if n == 0 || widthMs <= 0 {
		return 0
	}
	cur := nowMs / widthMs
	var total uint64
	for i := int64(0); i < n; i++ {
		start := (cur - (n - 1 - i)) * widthMs
		end := start + widthMs
		c := buckets[i].CostMicros
		switch {
		case start >= sinceMs:
			total += c
		case end > sinceMs:
			total += uint64(float64(c) * float64(end-sinceMs) / float64(widthMs))
		}
	}
	return total
}

// TrafficProfile returns the impressions of the buckets (as ReadBuckets
// fills them, covering the last 24 hours, the last one current at nowMs)
// by local hour of day in loc: each bucket counts toward the hour of its
// middle. The current bucket is partial: it counts as itself plus the
// unelapsed share of the bucket before it, so an hour that has just begun
// is not mistaken for an hour without traffic.
func TrafficProfile(buckets []windows.Counts, widthMs, nowMs int64, loc *time.Location) [24]float64 {
	var p [24]float64
	n := int64(len(buckets))
	if n == 0 || widthMs <= 0 {
		return p
	}
	if loc == nil {
		loc = time.UTC
	}
	cur := nowMs / widthMs
	for i := int64(0); i < n; i++ {
		start := (cur - (n - 1 - i)) * widthMs
		v := float64(buckets[i].Impressions)
		if i == n-1 && n > 1 {
			done := float64(nowMs-start) / float64(widthMs)
			v += (1 - done) * float64(buckets[i-1].Impressions)
		}
		h := time.UnixMilli(start + widthMs/2).In(loc).Hour()
		p[h] += v
	}
	return p
}
