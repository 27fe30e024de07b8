package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"runtime"
	"time"

	// Campaign time zones are IANA names: embed the database so that
	// they load on machines and images without /usr/share/zoneinfo.
	_ "time/tzdata"

	"github.com/bidpulse/bidpulse/models/sim"
)

type simulateOptions struct {
	scenario string
	seed     uint64
	duration time.Duration
	jsonPath string

	market    bool
	seeds     int
	fractions string
	htmlPath  string
	workers   int
	campaigns int
	creatives int
}

// runSimulate runs the built-in simulations of the bidding models (the
// real windows and models in simulated time, synthetic campaigns of known
// true rates) and prints their reports.
func runSimulate(args []string) error {
	fs := flag.NewFlagSet("simulate", flag.ContinueOnError)
	fs.Usage = usageWithEnv(fs, `Usage: bidpulse simulate [flags]

Simulates synthetic campaigns of known true CTR, CVR, conversion delays and
traffic curves against the real windows and bidding models, in simulated
time, and prints what the policies did: ranking of placements, pacing of a
daily budget, the CPA controller, delay-corrected CVR, the anomaly hold.
Each scenario ends with one line per claim (what, figure, bound, PASS or
FAIL); the exit status is 1 when a claim fails.

With --market: replays a generated auction market (calibrated on the
iPinYou benchmark, second price; campaigns with creatives and placements)
under budgets of 1/2 to 1/32 of each campaign's total cost, with constant,
linear, ORTB and bidpulse's policies tuned on a separate training log,
over --seeds seeds, and prints the headline table (docs/MODELS.md).`)
	var o simulateOptions
	fs.StringVar(&o.scenario, "scenario", "all", "scenario to run: all, ranking, pacing, cpa, delay or fraud")
	fs.Uint64Var(&o.seed, "seed", 1, "seed of every random draw (same seed: same report)")
	fs.DurationVar(&o.duration, "duration", 0, "simulated time of each scenario (0: the scenario's own)")
	fs.StringVar(&o.jsonPath, "json", "", "also write the reports as JSON to this file")
	fs.BoolVar(&o.market, "market", false, "run the auction-market benchmark instead of the scenarios")
	fs.IntVar(&o.seeds, "seeds", 10, "with --market: seeds 1..N")
	fs.StringVar(&o.fractions, "fractions", "2,4,8,16,32", "with --market: budgets as 1/N of each campaign's total cost")
	fs.StringVar(&o.htmlPath, "html", "", "with --market: also write an HTML page with the table and a chart")
	fs.IntVar(&o.workers, "workers", runtime.GOMAXPROCS(0), "with --market: seeds run in parallel (results do not depend on it)")
	def := sim.DefaultMarket(0)
	fs.IntVar(&o.campaigns, "campaigns", def.Campaigns, "with --market: campaigns in the market")
	fs.IntVar(&o.creatives, "creatives", def.Creatives, "with --market: creatives per campaign")
	if err := parseFlags(fs, args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if o.duration < 0 {
		return fmt.Errorf("invalid --duration %s: must be >= 0", o.duration)
	}
	if o.market {
		return runMarket(&o)
	}
	names := sim.Scenarios()
	if o.scenario != "all" {
		names = []string{o.scenario}
	}
	var reports []sim.Report
	failed := 0
	for _, name := range names {
		cfg, err := sim.Scenario(name, o.seed)
		if err != nil {
			return err
		}
		if o.duration > 0 {
			cfg.Duration = o.duration
		}
		start := time.Now()
		rep, err := sim.Run(cfg)
		if err != nil {
			return err
		}
		fmt.Print(rep.Text())
		fmt.Printf("(%s simulated in %s)\n\n", cfg.Duration, time.Since(start).Round(time.Millisecond))
		reports = append(reports, rep)
		failed += len(sim.Failed(rep.Claims))
	}
	if o.jsonPath != "" {
		if err := writeJSON(o.jsonPath, reports); err != nil {
			return err
		}
	}
	if failed > 0 {
		return fmt.Errorf("%d claims failed", failed)
	}
	return nil
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("cannot encode the reports: %w", err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("cannot write the reports: %w", err)
	}
	return nil
}
