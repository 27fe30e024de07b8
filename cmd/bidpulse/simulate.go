package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
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
daily budget, the CPA controller, delay-corrected CVR, the anomaly hold.`)
	var o simulateOptions
	fs.StringVar(&o.scenario, "scenario", "all", "scenario to run: all, ranking, pacing, cpa, delay or fraud")
	fs.Uint64Var(&o.seed, "seed", 1, "seed of every random draw (same seed: same report)")
	fs.DurationVar(&o.duration, "duration", 0, "simulated time of each scenario (0: the scenario's own)")
	fs.StringVar(&o.jsonPath, "json", "", "also write the reports as JSON to this file")
	if err := parseFlags(fs, args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if o.duration < 0 {
		return fmt.Errorf("invalid --duration %s: must be >= 0", o.duration)
	}
	names := sim.Scenarios()
	if o.scenario != "all" {
		names = []string{o.scenario}
	}
	var reports []sim.Report
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
	}
	if o.jsonPath != "" {
		b, err := json.MarshalIndent(reports, "", "  ")
		if err != nil {
			return fmt.Errorf("cannot encode the reports: %w", err)
		}
		if err := os.WriteFile(o.jsonPath, append(b, '\n'), 0o644); err != nil {
			return fmt.Errorf("cannot write the reports: %w", err)
		}
	}
	return nil
}
