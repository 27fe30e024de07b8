package models

import "math"

// Factor and input names of Evaluate's own factors.
const (
	FactorPerformanceClamp = "performance_clamp"

	InputBefore = "before"
	InputMin    = "min"
	InputMax    = "max"
)

// Evaluate computes the multiplier of in's key under the campaign policy
// cfg into res (res is Reset first), stacking, in this order:
//
//  1. the performance factors "ctr" and "cvr" (conversion rates corrected
//     for conversion delays when cfg.Delay is on and cs has a delay model),
//     then "performance_clamp" when their product leaves
//     [Performance.Min, Performance.Max];
//  2. "guard" when a guardrail acts on that live value: neutral 1 on
//     stale data, the last good value during an anomaly hold, and the
//     maximum step from ks's previous value;
//  3. "explore", a Thompson draw for keys with little evidence (cfg.Explore
//     on, rng not nil, the key neither held nor stale);
//  4. "target_cpa" or "target_roas", the goal controller's factor from cs;
//  5. "pacing", the pacing controller's factor from cs: exactly 0 once the
//     day's budget is spent (or in.SpentTodayMicros reaches it);
//  6. the manual modifiers "device", "country", "hour" (local hour in
//     cfg's time zone) and "season" that match the request;
//
// then the final clamp [cfg.Min, min(cfg.Max, cfg.HardMax)]; a factor of
// exactly 0 gives 0 and skips the clamp (Result.Finish).
//
// cs and ks are the controller states the caller keeps per campaign and
// per key, advanced by CampaignState.Tick and KeyState.Tick; Evaluate only
// reads them. Either may be nil: no goal, pacing or delay state means
// neutral factors, no key state means no maximum step and, during an
// anomaly, a hold at the neutral 1 (there is no last good value).
// rng is only used by exploration. An empty in.Chain (no data) still gets
// the goal, pacing and modifier factors.
//
// It allocates nothing and is safe for concurrent use with distinct res
// and rng. cfg must have passed Validate.
func Evaluate(cfg *CampaignPolicy, in *Input, cs *CampaignState, ks *KeyState, rng *Rand, res *Result) {
	res.Reset()
	res.Policy = cfg.Policy
	res.Min, res.Max = cfg.clamp()
	res.CampaignMax, res.HardMax = cfg.Max, cfg.HardMax

	var p perfOut
	live := keyLive(cfg, in, cs, ks, res, &p)
	if len(in.Chain) > 0 {
		var g guardView
		guardrails(&cfg.Guard, ks, in, live, &g)
		addGuardFactor(&cfg.Guard, ks, &g, live, res)
		if !g.held && !g.stale {
			explore(&cfg.Explore, cfg.Performance.Elasticity, &p, rng, res)
		}
	}
	addGoalFactor(cfg, cs, res)
	addPacingFactor(cfg, cs, in, res)
	addModifiers(&cfg.Modifiers, cfg.loc(), in, res)
	res.Finish()
}

// keyLive adds the performance factors of in's key to res and returns
// their product within the performance clamp (the key's live value),
// adding "performance_clamp" when the clamp changed it.
func keyLive(cfg *CampaignPolicy, in *Input, cs *CampaignState, ks *KeyState, res *Result, p *perfOut) float64 {
	var dv *delayView
	var view delayView
	if cfg.Delay.Enabled && cs != nil && cs.Delay.Ready && cs.Delay.Window == cfg.Performance.Window {
		view = delayView{d: &cs.Delay, maxCorr: cfg.Delay.MaxCorrection, campAge: -1, keyAge: -1, campOld: -1, keyOld: -1, campTail: -1}
		if cs.FirstMs > 0 {
			view.campAge = max(in.NowMs-cs.FirstMs, 0)
		}
		if cs.Delay.TailKnown {
			view.campTail = cs.Delay.CampaignTail
		}
		if cs.Delay.OldKnown {
			view.campOld = cs.Delay.CampaignOld
		}
		if ks != nil {
			if ks.FirstMs > 0 {
				view.keyAge = max(in.NowMs-ks.FirstMs, 0)
			}
			if ks.OldKnown {
				view.keyOld = ks.Old
			}
		}
		dv = &view
	}
	performance(&cfg.Performance, in, dv, res, p)
	live := p.live
	if len(in.Chain) == 0 {
		return live
	}
	c := math.Min(math.Max(live, cfg.Performance.Min), cfg.Performance.Max)
	if c != live {
		f := res.AddFactor(FactorPerformanceClamp, c/live)
		f.AddInput(InputBefore, live)
		f.AddInput(InputMin, cfg.Performance.Min)
		f.AddInput(InputMax, cfg.Performance.Max)
	}
	return c
}

// addGoalFactor adds the goal controller's factor under a target policy.
func addGoalFactor(cfg *CampaignPolicy, cs *CampaignState, res *Result) {
	name := ""
	switch cfg.Policy {
	case PolicyTargetCPA:
		name = FactorTargetCPA
	case PolicyTargetROAS:
		name = FactorTargetROAS
	default:
		return
	}
	var gs GoalState
	if cs != nil {
		gs = cs.Goal
	}
	f := res.AddFactor(name, gs.Factor())
	f.AddInput(InputTarget, cfg.Goal.Target)
	f.AddInput(InputObserved, gs.Observed)
	f.AddInput(InputError, gs.Error)
	f.AddInput(InputIntegral, gs.Integral)
	f.AddInput(InputExpectedConv, gs.ExpectedConversions)
	f.AddInput(InputCost, gs.Cost)
	f.AddInput(InputActive, b2f(gs.Active))
	f.AddInput(InputMin, cfg.Goal.MinFactor)
	f.AddInput(InputMax, cfg.Goal.MaxFactor)
}

// addPacingFactor adds the pacing factor when the campaign has a budget.
func addPacingFactor(cfg *CampaignPolicy, cs *CampaignState, in *Input, res *Result) {
	if !cfg.Pacing.Enabled() {
		return
	}
	var ps PacingState
	if cs != nil {
		ps = cs.Pacing
	}
	budget := cfg.Pacing.DailyBudget * 1e6
	v := ps.Factor(in.NowMs)
	spent := ps.SpentMicros
	if in.SpendKnown {
		spent = in.SpentTodayMicros
		if float64(spent) >= budget {
			v = 0
		}
	}
	f := res.AddFactor(FactorPacing, v)
	f.AddInput(InputBudget, cfg.Pacing.DailyBudget)
	f.AddInput(InputSpent, float64(spent)/1e6)
	f.AddInput(InputPlanned, ps.PlannedMicros/1e6)
	f.AddInput(InputPlanShare, ps.PlanShare)
	f.AddInput(InputError, ps.Error)
	f.AddInput(InputRate, ps.Rate)
	f.AddInput(InputExhausted, b2f(v == 0))
	f.AddInput(InputDayEndMs, float64(ps.DayEndMs))
	f.AddInput(InputMin, cfg.Pacing.MinFactor)
	f.AddInput(InputMax, cfg.Pacing.MaxFactor)
}
