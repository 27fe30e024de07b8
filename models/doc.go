// Package models holds the bid multiplier policies of bidpulse: window
// counts in, a multiplier and its explanation out.
//
// Policies are plain functions on the bid path. They allocate nothing: the
// caller passes a *Result to fill (fixed arrays of factors and inputs, no
// maps, no slices), reads Result.Multiplier, and may encode the explanation
// with Result.AppendJSON or Result.AppendFactorsJSON. They keep no state and
// read no clock, so they are safe for concurrent use with distinct Results.
// models imports only windows, for its Counts and Span types.
//
// # Result and factors
//
// A multiplier is a product of named factors, each with the inputs it was
// computed from. Result.Finish multiplies them into BeforeClamp and clamps
// that to [Min, Max]; a factor of exactly 0 (opt-out, spent budget,
// override 0) makes the multiplier 0 and skips the clamp. Callers may add
// their own factors to a policy's Result and call Finish again.
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
// clamped to [0, 1]); for each next level i, with Pc = CTRPrior
// (pseudo-impressions) and Pv = CVRPrior (pseudo-clicks):
//
//	ctr_i = (clicks_i      + Pc*ctr_{i-1}) / (impressions_i + Pc)
//	cvr_i = (conversions_i + Pv*cvr_{i-1}) / (clicks_i      + Pv)
//
// each clamped to [0, 1]. A key with few impressions stays close to its
// parent; one with many more impressions than Pc is judged on its own
// clicks. The prior strengths are > 0, so the denominators never are 0.
//
// The value of an impression is ctr x cvr, or ctr alone when the campaign
// has no conversions in the window (there is then no conversion rate to
// compare with). With e = Elasticity:
//
//	multiplier = clamp(((ctr_key x cvr_key) / (ctr_campaign x cvr_campaign))^e, Min, Max)
//	           = clamp((ctr_key/ctr_campaign)^e x (cvr_key/cvr_campaign)^e, Min, Max)
//
// and the two terms are the factors "ctr" and "cvr" of the Result, with the
// raw counts, raw rate, prior (the parent's smoothed rate), smoothed rate
// and campaign rate as inputs. The "cvr" factor is 1, with the single input
// campaign_conversions=0, when the campaign has no conversions.
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
package models
