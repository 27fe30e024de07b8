package sim

import (
	"fmt"
	"math"
)

// Claim is one checked statement of a scenario: what it checks, the
// figure measured, the bound it must respect, and whether it does.
type Claim struct {
	What   string  `json:"what"`
	Figure float64 `json:"figure"`
	// Bound is the text of the bound ("≥ 0.9", "1 ± 0.1").
	Bound string `json:"bound"`
	Pass  bool   `json:"pass"`
}

// Line formats the claim as one line: "<kind> <what>: <figure> (want
// <bound>) PASS|FAIL"; an aim says "met" or "NOT MET" with the gap.
func (c Claim) Line(kind string) string {
	verdict := "PASS"
	if !c.Pass {
		verdict = "FAIL"
	}
	if kind == "aim" {
		verdict = "met"
		if !c.Pass {
			verdict = "NOT MET"
		}
	}
	return fmt.Sprintf("%s %s: %.4g (want %s) %s\n", kind, c.What, c.Figure, c.Bound, verdict)
}

func atLeast(what string, x, lo float64) Claim {
	return Claim{What: what, Figure: x, Bound: fmt.Sprintf(">= %.4g", lo), Pass: x >= lo}
}

func atMost(what string, x, hi float64) Claim {
	return Claim{What: what, Figure: x, Bound: fmt.Sprintf("<= %.4g", hi), Pass: x <= hi}
}

func within(what string, x, want, tol float64) Claim {
	return Claim{What: what, Figure: x, Bound: fmt.Sprintf("%.4g ± %.4g", want, tol), Pass: math.Abs(x-want) <= tol}
}

// Failed returns the claims that do not hold.
func Failed(claims []Claim) []Claim {
	var out []Claim
	for _, c := range claims {
		if !c.Pass {
			out = append(out, c)
		}
	}
	return out
}
