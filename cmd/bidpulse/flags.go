package main

import (
	"flag"
	"fmt"
	"os"
	"strings"
)

// envName returns the environment variable that backs a flag:
// BIDPULSE_ and the flag name in capitals with underscores.
func envName(flagName string) string {
	return "BIDPULSE_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// applyEnv sets every flag of fs that was not given on the command line from
// its BIDPULSE_<NAME> environment variable, if set. Command-line flags win.
func applyEnv(fs *flag.FlagSet) error {
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if err != nil || given[f.Name] {
			return
		}
		v, ok := os.LookupEnv(envName(f.Name))
		if !ok {
			return
		}
		if e := fs.Set(f.Name, v); e != nil {
			err = fmt.Errorf("invalid %s=%q: %w", envName(f.Name), v, e)
		}
	})
	return err
}

// parseFlags parses args into fs, then fills the rest from the environment.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	return applyEnv(fs)
}

// usageWithEnv prints the flags and says that each reads an env variable.
func usageWithEnv(fs *flag.FlagSet, synopsis string) func() {
	return func() {
		out := fs.Output()
		fmt.Fprintf(out, "%s\n\nFlags (each also read from BIDPULSE_<NAME>, e.g. --http-addr from BIDPULSE_HTTP_ADDR):\n", synopsis)
		fs.PrintDefaults()
	}
}
