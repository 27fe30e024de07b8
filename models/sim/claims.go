package sim

import (
	"fmt"
	"math"
	"time"
)

// ScenarioClaims returns the claims of the built-in scenario that rep
// reports (by its name): what each scenario is there to prove, measured.
// A report of another name, or without its one campaign, gets a failing
// claim saying so.
func ScenarioClaims(rep *Report) []Claim {
	if len(rep.Campaigns) != 1 {
		return []Claim{{What: fmt.Sprintf("%s: one campaign", rep.Name), Figure: float64(len(rep.Campaigns)), Bound: "= 1"}}
	}
	c := &rep.Campaigns[0]
	switch rep.Name {
	case "ranking":
		return rankingClaims(c)
	case "pacing":
		return pacingClaims(c)
	case "cpa":
		return cpaClaims(c)
	case "delay":
		return delayClaims(c)
	case "fraud":
		return fraudClaims(c)
	}
	return []Claim{{What: fmt.Sprintf("%s: a known scenario", rep.Name), Bound: "one of ranking, pacing, cpa, delay, fraud"}}
}

func rankingClaims(c *CampaignReport) []Claim {
	out := []Claim{atLeast("ranking: Spearman(true value, mean multiplier) after warm-up", c.Spearman, 0.9)}
	worst, sparse := 0.0, 0
	for _, p := range c.Placements {
		if p.Sparse {
			sparse++
			worst = math.Max(worst, math.Abs(p.MeanMultiplier-1))
		}
	}
	return append(out,
		within("ranking: sparse placements", float64(sparse), 3, 0),
		atMost("ranking: largest |mean multiplier - 1| of a sparse placement", worst, 0.15))
}

func pacingClaims(c *CampaignReport) []Claim {
	out := []Claim{within("pacing: full days simulated", float64(fullDays(c)), 2, 0)}
	for _, d := range c.Days {
		out = append(out,
			atMost(fmt.Sprintf("pacing: %s spend / budget", d.Date), d.Share, 1),
			atLeast(fmt.Sprintf("pacing: %s spend / budget", d.Date), d.Share, 0.95))
	}
	return append(out, atMost("pacing: spend from hourly buckets - counted spend (micros)", float64(c.SpendCheckMicros), 0))
}

func fullDays(c *CampaignReport) int {
	n := 0
	for _, d := range c.Days {
		if d.Full {
			n++
		}
	}
	return n
}

func cpaClaims(c *CampaignReport) []Claim {
	target := c.Target
	settled := -1
	worst := 0.0
	for i, h := range c.Hours {
		dev := math.Abs(h.TrueCPA/target - 1)
		if settled < 0 && dev <= 0.1 {
			settled = i
		}
		if settled >= 0 {
			worst = math.Max(worst, dev)
		}
	}
	settleAt := math.Inf(1)
	if settled >= 0 {
		settleAt = c.Hours[settled].At.Hours()
	}
	out := []Claim{
		atMost("cpa: hours until the true hourly CPA is within 10% of the target", settleAt, 4),
		atMost("cpa: largest |true CPA / target - 1| after settling", worst, 0.1),
	}
	if len(c.Hours) >= 16 {
		lo, hi, sum := math.Inf(1), math.Inf(-1), 0.0
		tail := c.Hours[len(c.Hours)-16:]
		for _, h := range tail {
			lo, hi, sum = math.Min(lo, h.GoalFactor), math.Max(hi, h.GoalFactor), sum+h.GoalFactor
		}
		out = append(out, atMost("cpa: goal factor swing over the last 16 hours / its mean", (hi-lo)/(sum/16), 0.2))
	}
	if len(c.Hours) > 0 {
		out = append(out, Claim{What: "cpa: final goal factor (the CPA at multiplier 1 is above the target)",
			Figure: c.Hours[len(c.Hours)-1].GoalFactor, Bound: "< 0.9", Pass: c.Hours[len(c.Hours)-1].GoalFactor < 0.9})
	}
	return out
}

func delayClaims(c *CampaignReport) []Claim {
	var out []Claim
	worse := 0
	for _, p := range c.Probes {
		if p.Placement != "launch" {
			continue
		}
		if math.Abs(p.Corrected/p.Truth-1) >= math.Abs(p.Naive/p.Truth-1) {
			worse++
		}
		if p.At == 3*time.Hour {
			out = append(out,
				atMost("delay: naive 1h CVR / truth an hour after launch", p.Naive/p.Truth, 0.5),
				within("delay: corrected 1h CVR / truth an hour after launch", p.Corrected/p.Truth, 1, 0.1))
		}
	}
	if len(out) == 0 {
		out = append(out, Claim{What: "delay: a probe an hour after launch", Bound: "present"})
	}
	return append(out, atMost("delay: probes where the corrected CVR is no closer to the truth than the naive one", float64(worse), 0))
}

func fraudClaims(c *CampaignReport) []Claim {
	out := []Claim{within("fraud: anomaly holds", float64(len(c.Holds)), 1, 0)}
	if len(c.Holds) != 1 {
		return out
	}
	h := c.Holds[0]
	return append(out,
		Claim{What: "fraud: the hold is on the burst's placement p3 (1: yes)", Figure: b2f(h.Placement == "p3"), Bound: "= 1", Pass: h.Placement == "p3"},
		within("fraud: minutes from the burst to the hold", (h.From-4*time.Hour).Minutes(), 1.5, 1.5),
		atMost("fraud: largest multiplier served during the hold / before it", h.MaxHeld/h.Before, 1.001),
		atLeast("fraud: largest unguarded multiplier during the hold / before it", h.MaxUnguarded/h.Before, 1.3))
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
