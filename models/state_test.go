package models

import (
	"encoding/json"
	"math"
	"reflect"
	"testing"
	"time"

	"github.com/bidpulse/bidpulse/windows"
)

// TestStateJSON: the states are plain data that encoding/json round-trips,
// so bidder can checkpoint them.
func TestStateJSON(t *testing.T) {
	cfg := DefaultCampaignPolicy()
	cfg.Policy = PolicyTargetCPA
	cfg.Goal.Target = 1
	cfg.Pacing.DailyBudget = 100
	now := time.Date(2025, 3, 3, 10, 0, 0, 0, time.UTC).UnixMilli()
	camp := keySpans(10000, 200)
	for s := range camp {
		camp[s].Conversions = camp[s].Clicks / 20
		camp[s].CostMicros = camp[s].Impressions * 1000
	}
	var hist DelayHistogram
	for i := 0; i < 600; i++ {
		hist.Add(now-int64(i)*60e3, now, 1)
	}
	var cs CampaignState
	for m := int64(0); m < 10; m++ {
		cs.Tick(&cfg, &TickInput{NowMs: now + m*60e3, Campaign: camp, Delays: &hist, SpentTodayMicros: 1e6})
	}
	var ks KeyState
	key := keySpans(1000, 30)
	ks.Tick(&cfg, &Input{Chain: []windows.Counts{camp[windows.Span1h], key[windows.Span1h]}, Spans: []Spans{camp, key}, NowMs: now}, &cs)
	f := func(v, into any) {
		t.Helper()
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatalf("cannot marshal %T: %s", v, err)
		}
		if err := json.Unmarshal(b, into); err != nil {
			t.Fatalf("cannot unmarshal %T: %s", v, err)
		}
		if !reflect.DeepEqual(reflect.ValueOf(v).Elem().Interface(), reflect.ValueOf(into).Elem().Interface()) {
			t.Fatalf("unexpected round trip of %T", v)
		}
	}
	var cs2 CampaignState
	f(&cs, &cs2)
	var ks2 KeyState
	f(&ks, &ks2)
	if !cs.Delay.Ready || !cs.Goal.Active || cs.Pacing.DayStartMs == 0 || cs.FirstMs == 0 || cs.Clicks.N != 1 {
		t.Fatalf("unexpected state after ticks: %+v", cs)
	}
	// Deterministic: the same ticks from the same state, the same state.
	a, b := cs, cs
	in := &TickInput{NowMs: now + time.Hour.Milliseconds(), Campaign: camp, Delays: &hist}
	a.Tick(&cfg, in)
	b.Tick(&cfg, in)
	if !reflect.DeepEqual(a, b) {
		t.Fatalf("unexpected difference between two identical ticks")
	}
}

func TestClickHistoryAndRate(t *testing.T) {
	var h ClickHistory
	const day = int64(24 * 3600e3)
	for k := 0; k < HistoryBlocks+3; k++ {
		h.Push(int64(k+1)*day, uint64(k+1)*24)
	}
	if h.N != HistoryBlocks || h.block(0) != uint64(HistoryBlocks+3)*24 || h.block(1) != uint64(HistoryBlocks+2)*24 {
		t.Fatalf("unexpected history: n %d, newest %d", h.N, h.block(0))
	}
	cs := CampaignState{Clicks: h}
	end := h.EndMs
	if got := cs.ClickRate(end - day/2); got != float64(HistoryBlocks+3) {
		t.Fatalf("unexpected rate in the newest block; got %v", got)
	}
	if got := cs.ClickRate(end - 100*day); got != float64(4) {
		t.Fatalf("unexpected rate past the oldest block; got %v; want the oldest's 4", got)
	}
	// The hourly buckets take precedence within the last day.
	cs.HourNowMs = end + 30*60e3
	cs.HourClicks[23] = 50 // half an hour: 100 an hour
	cs.HourClicks[22] = 80
	if got := cs.ClickRate(end + 60e3); got != 100 {
		t.Fatalf("unexpected rate in the current hour; got %v; want 100", got)
	}
	if got := cs.ClickWeight(end - 30*60e3); got != 1.0/80 {
		t.Fatalf("unexpected weight in the previous hour; got %v; want 1/80", got)
	}
	// An hour without clicks: the mean rate of the day.
	if got := cs.ClickWeight(end - 5*3600e3); math.Abs(got-24.0/130) > 1e-12 {
		t.Fatalf("unexpected weight of an hour without clicks; got %v; want 24/130", got)
	}
	var empty CampaignState
	if empty.ClickWeight(1) != 1 {
		t.Fatalf("unexpected weight without any knowledge")
	}
}

func TestFirstSeen(t *testing.T) {
	now := int64(1e12)
	var sp Spans
	if firstSeen(&sp, now) != 0 {
		t.Fatalf("unexpected first seen of no data")
	}
	sp[windows.Span1m].Clicks = 1
	for s := windows.Span5m; s < windows.NumSpans; s++ {
		sp[s] = sp[windows.Span1m]
	}
	if got := firstSeen(&sp, now); got != now-60e3 {
		t.Fatalf("unexpected first seen of a key with a minute of data; got %d", now-got)
	}
	sp[windows.Span24h].Impressions = 5
	if got := firstSeen(&sp, now); got != now-24*3600e3 {
		t.Fatalf("unexpected first seen of a key with older data; got %d", now-got)
	}
}
