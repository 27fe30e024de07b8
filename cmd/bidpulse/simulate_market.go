package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/bidpulse/bidpulse/models/sim"
)

// runMarket runs the auction-market benchmark of o and prints its table;
// it fails when a strategy spent more than its budget (the one claim a
// replay must never break). The aims are printed, not enforced.
func runMarket(o *simulateOptions) error {
	if o.seeds < 1 {
		return fmt.Errorf("invalid --seeds %d: must be >= 1", o.seeds)
	}
	var fractions []int
	for _, f := range strings.Split(o.fractions, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return fmt.Errorf("invalid --fractions %q: want integers >= 1, comma-separated", o.fractions)
		}
		fractions = append(fractions, n)
	}
	if o.campaigns < 1 || o.campaigns > 100 {
		return fmt.Errorf("invalid --campaigns %d: want 1..100", o.campaigns)
	}
	if o.creatives < 1 || o.creatives > 255 {
		return fmt.Errorf("invalid --creatives %d: want 1..255", o.creatives)
	}
	market := func(seed uint64) sim.MarketConfig {
		m := sim.DefaultMarket(seed)
		m.Campaigns, m.Creatives = o.campaigns, o.creatives
		return m
	}
	seeds := make([]uint64, o.seeds)
	for i := range seeds {
		seeds[i] = uint64(i + 1)
	}
	start := time.Now()
	rep, err := sim.RunMarket(sim.MarketOptions{Seeds: seeds, Fractions: fractions, Workers: o.workers, Market: market})
	if err != nil {
		return err
	}
	fmt.Print(rep.Text())
	claims := rep.BudgetClaims()
	for _, c := range claims {
		fmt.Print(c.Line("claim"))
	}
	fmt.Printf("(%d seeds x %d budgets run in %s)\n", len(seeds), len(fractions), time.Since(start).Round(time.Millisecond))
	if o.jsonPath != "" {
		if err := writeJSON(o.jsonPath, rep); err != nil {
			return err
		}
	}
	if o.htmlPath != "" {
		f, err := os.Create(o.htmlPath)
		if err != nil {
			return fmt.Errorf("cannot write the HTML page: %w", err)
		}
		if err := rep.WriteHTML(f); err != nil {
			f.Close()
			return err
		}
		if err := f.Close(); err != nil {
			return fmt.Errorf("cannot write the HTML page: %w", err)
		}
	}
	if n := len(sim.Failed(claims)); n > 0 {
		return fmt.Errorf("%d claims failed", n)
	}
	return nil
}
