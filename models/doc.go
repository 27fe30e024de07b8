// Package models holds the bid multiplier policies of bidpulse: window
// counts, controller state, the time and a campaign's policy in; a
// multiplier, its explanation and the next controller state out.
//
// Policies are plain functions. Those on the bid path (Performance,
// Evaluate) allocate nothing: the caller passes a *Result to fill (fixed
// arrays of factors and inputs, no maps, no slices), reads
// Result.Multiplier, and may encode the explanation with Result.AppendJSON
// or Result.AppendFactorsJSON. No function reads the process clock: the
// time is an argument (Input.NowMs, TickInput.NowMs). models imports only
// windows, for its count types. docs/MODELS.md gives every formula,
// parameter and default; this comment gives the shape.
//
// # Entry points
//
// Evaluate(cfg, in, cs, ks, rng, res) answers one bid request: the
// performance factors of the key, guarded, possibly explored, times the
// campaign's goal and pacing factors and the request's manual modifiers,
// clamped. CampaignPolicy is its configuration (YAML-friendly, with
// defaults and a Validate that names the field); Policies holds the
// default policy, the per-campaign ones and the global hard cap.
//
// Controllers keep state in plain data structs (no pointers, JSON
// round-trips them) that the caller owns:
//
//   - CampaignState, one per campaign: the target_cpa/target_roas PI
//     controller, the pacing PID controller, the compiled delay model, the
//     click history. Advance it with CampaignState.Tick on a control tick.
//   - KeyState, one per answering key: its last served value, last good
//     value and anomaly hold. Advance it with KeyState.Tick.
//   - DelayHistogram, one per campaign: the click-to-conversion delays
//     recorded at ingest (Add, with CampaignState.ClickWeight), read by
//     the tick.
//
// Evaluate only reads the states, so the bid path needs no lock beyond
// publishing a ticked copy. Ticks are deterministic functions of the
// config, the previous state and the inputs, so replicas fed the same
// events and ticked at the same times converge on the same state.
// FitPriors, also for the tick, fits the prior strengths of a level's keys
// from their siblings; ReadBuckets, SpentSince and TrafficProfile turn the
// 24h window's hourly buckets into the pacing inputs.
//
// # Result and factors
//
// A multiplier is a product of named factors, each with the inputs it was
// computed from. Result.Finish multiplies them into BeforeClamp and clamps
// that to [Min, Max]; a factor of exactly 0 (opt-out, spent budget,
// override 0) makes the multiplier 0 and skips the clamp. Evaluate's
// factors, in order: ctr, cvr, performance_clamp, guard, explore,
// target_cpa or target_roas, pacing, device, country, hour, season (each
// only when it applies). Callers may add their own factor (one slot is
// spare) and call Finish again.
//
// # The performance policy
//
// The default policy bids on the expected value of an impression of the key
// relative to its campaign: the ad server's base bid is set per campaign, so
// the multiplier is the lift of the key over its campaign.
//
// Its input is the chain of counts of the key, in the policy's window (1h by
// default): Chain[0] the campaign, then each ancestor, the key last; for the
// key campaign/creative/placement that is campaign, campaign/creative, then
// the key.
//
// Rates are smoothed down the chain, each level with a Beta prior centred
// on its parent's smoothed rate. The campaign's rates are its raw ones
// (clicks/impressions and conversions/clicks, 0 on a zero denominator,
// clamped to [0, 1]); for each next level i, with Pc the CTR prior strength
// (pseudo-impressions) and Pv the CVR prior strength (pseudo-clicks):
//
//	ctr_i = (clicks_i      + Pc*ctr_{i-1}) / (impressions_i + Pc)
//	cvr_i = (conversions_i + Pv*cvr_{i-1}) / (clicks_i      + Pv)
//
// each clamped to [0, 1]. Pc and Pv are CTRPrior and CVRPrior, or the
// strengths FitPriors fitted for the level (Input.Strengths): the method of
// moments on the beta-binomial model of the level's siblings, bounded by
// EmpiricalBayes. Under Evaluate with the delay correction on, clicks_i in
// the CVR are the level's effective clicks (see below).
//
// The value of an impression is ctr x cvr, or ctr alone when the campaign
// has no conversions in the window (there is then no conversion rate to
// compare with). With e = Elasticity:
//
//	multiplier = clamp(((ctr_key x cvr_key) / (ctr_campaign x cvr_campaign))^e, Min, Max)
//	           = clamp((ctr_key/ctr_campaign)^e x (cvr_key/cvr_campaign)^e, Min, Max)
//
// and the two terms are the factors "ctr" and "cvr" of the Result, with the
// raw counts, raw rate, prior (the parent's smoothed rate), prior strength,
// smoothed rate, its evidence (ci_low and ci_high, a 90% interval from the
// normal approximation of the Beta posterior: n is impressions for CTR,
// clicks or effective_clicks for CVR) and campaign rate as inputs. The
// "cvr" factor is 1, with the single input campaign_conversions=0, when the
// campaign has no conversions.
//
// Neutral cases: a campaign-level key is exactly 1 (it is its own
// campaign); a campaign with no clicks in the window, including one with
// impressions but no clicks, gives 1, both factors 1; an empty chain gives 1
// with no factors. Factor values are kept finite and > 0 (an underflow
// would otherwise read as an opt-out), so the performance multiplier is
// always in [Min, Max], whatever the counts, including children that count
// more than their parents.
//
// For example, with the defaults (Pc 1000, Pv 50, e 1, clamp [0.5, 2]), a
// campaign with 10000 impressions, 200 clicks and 10 conversions (ctr 0.02,
// cvr 0.05) and its placement with 2000, 80 and 6:
//
//	ctr = (80 + 1000*0.02) / (2000 + 1000) = 0.0333   factor 1.667
//	cvr = (6 + 50*0.05) / (80 + 50)        = 0.0654   factor 1.308
//	before clamp 2.179, multiplier 2
//
// Under Evaluate the same product is the key's live value, kept within
// [Performance.Min, Performance.Max] by the factor performance_clamp, and
// the final clamp is the campaign's [Min, min(Max, HardMax)].
//
// # Delay-corrected conversion rates
//
// The windows count a conversion at its own time, so a window holds the
// conversions that arrived in it, from clicks of any age. With F the
// click-to-conversion delay distribution (learned from the campaign's
// DelayHistogram once it has MinSamples delays, else the configured
// fallback) and W the window, a click of age a brings on average
// cvr x g(a) conversions into the window, g(a) = F(a) - F(a-W). The
// effective clicks of a level are the sum of g over its clicks' ages (the
// spans under an hour, hourly buckets or an even spread beyond, the
// campaign's click history beyond a day), and the corrected CVR is
// conversions / effective clicks: equal to the naive one for steady
// traffic, far closer to the truth for a key or campaign whose traffic
// just changed (a launch). See DelayState.
//
// # Controllers, modifiers, guardrails, exploration
//
// GoalState.Step is a PI controller in log space on the observed CPA or
// ROAS (cost over delay-corrected expected conversions), with anti-windup
// and a bounded factor. PacingState.Step is a PID controller on the share
// of the daily budget spent against an even or traffic-shaped plan over
// the campaign's local day; its factor is exactly 0 once the budget is
// spent, until the local day rolls over. ModifierConfig multiplies manual
// factors by device, country, local hour and season. GuardConfig bounds the
// move of a key's live value per minute, holds the last good value while
// its last minute's CTR is anomalous (and HoldFor after), and answers the
// neutral 1 on stale data. ExploreConfig replaces, for keys with little
// evidence, the posterior means by draws from the Beta posteriors (Thompson
// sampling) with a seeded Rand.
package models
