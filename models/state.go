package models

import (
	"math"

	"github.com/bidpulse/bidpulse/windows"
)

// CampaignState is the controller state of one campaign: the goal and
// pacing controllers and the compiled delay model.
//
// It is plain data but for Delay's shared, immutable model (encoding/json
// round-trips it), owned by
// the caller: bidder keeps one per campaign, advances it with Tick on its
// control tick (not per request), checkpoints it with the windows, and
// passes it to Evaluate, which only reads it. Tick is deterministic: the
// same config, previous state and inputs give the same next state, so
// replicas that see the same events and tick at the same times converge.
// It is not safe for concurrent use: Tick a copy and publish it (an atomic
// pointer swap) while the bid path reads the previous one.
type CampaignState struct {
	Goal   GoalState   `json:"goal"`
	Pacing PacingState `json:"pacing"`
	Delay  DelayState  `json:"delay"`
	// Clicks is the campaign's click history in 24-hour blocks.
	Clicks ClickHistory `json:"clicks"`
	// HourClicks are the campaign's clicks per hourly bucket at the last
	// tick with hourly buckets (HourClicks[23] the bucket of HourNowMs),
	// for ClickWeight.
	HourClicks [24]uint64 `json:"hour_clicks"`
	HourNowMs  int64      `json:"hour_now_ms"`
	// FirstMs is a lower bound of the time of the campaign's first event,
	// set by the first Tick that sees data (firstSeen); 0: not yet.
	FirstMs int64 `json:"first_ms"`
	// LastTickMs is the time of the last Tick.
	LastTickMs int64 `json:"last_tick_ms"`
}

// TickInput is what a campaign's control tick observes.
type TickInput struct {
	// NowMs is the time of the tick, Unix ms.
	NowMs int64
	// Campaign holds the campaign key's counts in every span at NowMs
	// (windows.Store.Read).
	Campaign Spans
	// Hourly holds the campaign's 24 hourly buckets of the 24h window,
	// Hourly[23] the current one (ReadBuckets), when HourlyKnown. Tick then
	// computes the day's spend (SpentSince) and the traffic profile
	// (TrafficProfile) itself, ignoring SpentTodayMicros and Profile, and
	// the delay correction uses the exact age of the older clicks.
	Hourly      [24]windows.Counts
	HourlyKnown bool
	// SpentTodayMicros is the campaign's cost since the start of its
	// current local day (DayBounds with the policy's location), in micros
	// of account currency, when the hourly buckets are not known.
	SpentTodayMicros uint64
	// Profile is the campaign's traffic by local hour of day (any unit;
	// all zero: even plan), when the hourly buckets are not known.
	Profile [24]float64
	// Delays is the campaign's learned delay histogram; nil: none yet (the
	// fallback distribution applies).
	Delays *DelayHistogram
}

// Tick advances s to in.NowMs under cfg: it recompiles the delay model
// (when cfg.Delay is on), steps the goal controller (under a target
// policy) with the window's cost and delay-corrected expected conversions,
// and steps pacing (when cfg has a budget). It allocates nothing but a
// learned delay model (one per tick: the model of a published state is
// shared and never changed); a model from the fallback is shared.
func (s *CampaignState) Tick(cfg *CampaignPolicy, in *TickInput) {
	now := in.NowMs
	if s.FirstMs == 0 {
		s.FirstMs = firstSeen(&in.Campaign, now)
	}
	day := in.Campaign[windows.Span24h].Clicks
	if s.Clicks.N == 0 || now-s.Clicks.EndMs >= int64(dayMs) {
		s.Clicks.Push(now, day)
	}
	ageMs := int64(-1)
	if s.FirstMs > 0 {
		ageMs = max(now-s.FirstMs, 0)
	}
	var hourly *[24]windows.Counts
	if in.HourlyKnown {
		hourly = &in.Hourly
		for i := range hourly {
			s.HourClicks[i] = hourly[i].Clicks
		}
		s.HourNowMs = now
	}
	var d *DelayState
	if cfg.Delay.Enabled {
		dl := &s.Delay
		dl.refresh(&cfg.Delay, in.Delays, cfg.Performance.Window, now)
		dl.TailKnown = s.Clicks.N > 0
		dl.CampaignTail = dl.historyTail(&s.Clicks, dl.Window, dl.AtClick, now, dayMs)
		dl.TailPerClick = 0
		if day > 0 {
			dl.TailPerClick = dl.CampaignTail / float64(day)
		}
		dl.OldKnown = hourly != nil
		dl.CampaignOld = 0
		if hourly != nil {
			dl.CampaignOld = dl.oldEffective(hourly, &s.Clicks, dl.Window, dl.AtClick, ageMs, now, -1)
		}
		d = dl
	}
	switch cfg.Policy {
	case PolicyTargetCPA, PolicyTargetROAS:
		obs := goalObservation(&cfg.Goal, &in.Campaign, hourly, d, cfg.Delay.MaxCorrection, ageMs, &s.Clicks, now)
		s.Goal.Step(&cfg.Goal, cfg.Policy == PolicyTargetROAS, obs, now)
	}
	if cfg.Pacing.Enabled() {
		spent, profile := in.SpentTodayMicros, &in.Profile
		if hourly != nil {
			start, _ := DayBounds(now, cfg.loc())
			spent = SpentSince(hourly[:], 3600e3, now, start)
			p := TrafficProfile(hourly[:], 3600e3, now, cfg.loc())
			profile = &p
		}
		s.Pacing.Step(&cfg.Pacing, cfg.loc(), spent, profile, now)
	}
	if now > s.LastTickMs {
		s.LastTickMs = now
	}
}

// Tick advances the key's guardrail state to in.NowMs: it computes the
// key's live value as Evaluate does (performance factors with delay
// correction, within the performance clamp), starts or extends an anomaly
// hold when the key's last minute is anomalous (HoldUntilMs = now +
// HoldFor), and records the served value (stale: 1, held: the last good
// value, bounded by the maximum step from the previous one) as Value, and
// as Good when neither held nor stale. cs may be nil. It allocates
// nothing.
func (k *KeyState) Tick(cfg *CampaignPolicy, in *Input, cs *CampaignState) {
	if n := len(in.Chain); k.FirstMs == 0 && n > 0 && len(in.Spans) == n {
		k.FirstMs = firstSeen(&in.Spans[n-1], in.NowMs)
	}
	if in.Hourly != nil && cs != nil && cs.Delay.Ready {
		age := int64(-1)
		if k.FirstMs > 0 {
			age = max(in.NowMs-k.FirstMs, 0)
		}
		k.Old = cs.Delay.OldEffectiveClicks(in.Hourly, age, in.NowMs)
		k.OldKnown = true
	}
	var res Result
	res.Reset()
	var p perfOut
	live := keyLive(cfg, in, cs, k, &res, &p)
	var g guardView
	guardrails(&cfg.Guard, k, in, live, &g)
	now := in.NowMs
	if g.anomalous {
		k.Anomalies++
		k.HoldUntilMs = now + cfg.Guard.HoldFor.Milliseconds()
		if k.HeldSinceMs == 0 {
			k.HeldSinceMs = now
		}
	} else if now >= k.HoldUntilMs {
		k.HeldSinceMs = 0
	}
	k.Value, k.AtMs = g.served, now
	if !g.held && !g.stale {
		k.Good = g.served
	}
}

// firstSeen returns a lower bound of the time of the first event of a key
// with the spans sp at nowMs: now minus the upper bound of its oldest
// non-empty age interval (its events can be no older); 0 when sp is empty.
func firstSeen(sp *Spans, nowMs int64) int64 {
	for l := windows.NumSpans - 1; ; l-- {
		c := &sp[l]
		if c.Impressions|c.Clicks|c.Conversions != 0 && (l == 0 || sp[l-1] != *c) {
			return max(nowMs-l.Duration().Milliseconds(), 1)
		}
		if l == 0 {
			return 0
		}
	}
}

// ClickRate returns the campaign's clicks per hour around clickMs, from
// the hourly buckets of its last tick (the current bucket extrapolated to
// the hour) and, further back, its click history; 0 when unknown.
func (s *CampaignState) ClickRate(clickMs int64) float64 {
	const hour = int64(3600e3)
	if s.HourNowMs > 0 && clickMs <= s.HourNowMs {
		cur := s.HourNowMs / hour
		if k := cur - clickMs/hour; k >= 0 && k < int64(len(s.HourClicks)) {
			c := float64(s.HourClicks[len(s.HourClicks)-1-int(k)])
			if k == 0 {
				done := float64(s.HourNowMs-cur*hour) / float64(hour)
				return c / math.Max(done, 1.0/60)
			}
			return c
		}
	}
	h := &s.Clicks
	if h.N == 0 {
		return 0
	}
	k := int64(0)
	if clickMs < h.EndMs {
		k = (h.EndMs - clickMs) / int64(dayMs)
	}
	if k >= int64(h.N) {
		k = int64(h.N) - 1
	}
	return float64(h.block(int(k))) / 24
}

// ClickWeight returns the weight with which to record, in the campaign's
// DelayHistogram, a conversion whose click was at clickMs: 1 / its
// ClickRate, or 1 / the mean rate of the last day when that is 0 (no
// clicks recorded there), or 1 when nothing is known. Reads s only; it
// allocates nothing.
func (s *CampaignState) ClickWeight(clickMs int64) float64 {
	if r := s.ClickRate(clickMs); r > 0 {
		return 1 / r
	}
	var n uint64
	for _, c := range s.HourClicks {
		n += c
	}
	if n > 0 {
		return 24 / float64(n)
	}
	if s.Clicks.N > 0 && s.Clicks.block(0) > 0 {
		return 24 / float64(s.Clicks.block(0))
	}
	return 1
}
