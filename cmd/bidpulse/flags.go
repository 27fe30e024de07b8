package main

import (
	"flag"
	"fmt"
	"os"
	"strings"
)

// The environment of a command's flags. One name per flag, so that a
// setting meant for one command never changes another:
//
//   - serve's flags, and the NATS connection flags that every command
//     shares (--nats-url and those of natsClientFlags), read
//     BIDPULSE_<NAME>: BIDPULSE_HTTP_ADDR, BIDPULSE_NATS_URL,
//     BIDPULSE_NATS_PASSWORD. These are the service's documented
//     variables, and one NATS setting serves every tool on the host.
//   - any other flag of a command reads BIDPULSE_<COMMAND>_<NAME>:
//     BIDPULSE_BENCH_DURATION, BIDPULSE_PUBLISH_SUBJECT,
//     BIDPULSE_DLQ_REASON. BIDPULSE_DURATION set for a bench run is no
//     longer read by simulate.
//
// The command is the flag set's name. A command's flag must not be named
// so that its scoped name is one of serve's (dlq's "raw" would read
// BIDPULSE_DLQ_RAW, serve's --dlq-raw): TestEnvNamesDistinct checks.

// serveCommand is the command whose flags keep their unscoped names.
const serveCommand = "serve"

// sharedEnvFlags are the flags read from BIDPULSE_<NAME> by every command:
// the NATS connection, registered by natsClientFlags (and --nats-url).
var sharedEnvFlags = func() map[string]bool {
	fs := flag.NewFlagSet("", flag.ContinueOnError)
	natsClientFlags(fs)
	m := map[string]bool{"nats-url": true}
	fs.VisitAll(func(f *flag.Flag) { m[f.Name] = true })
	return m
}()

// envName returns the unscoped environment variable of a flag:
// BIDPULSE_ and the flag name in capitals with underscores.
func envName(flagName string) string {
	return "BIDPULSE_" + envUpper(flagName)
}

// cmdEnvName returns the environment variable that backs the flag
// flagName of command cmd (see the rule above).
func cmdEnvName(cmd, flagName string) string {
	if cmd == serveCommand || cmd == "" || sharedEnvFlags[flagName] {
		return envName(flagName)
	}
	return "BIDPULSE_" + envUpper(cmd) + "_" + envUpper(flagName)
}

func envUpper(s string) string {
	return strings.ToUpper(strings.ReplaceAll(s, "-", "_"))
}

// applyEnv sets every flag of fs that was not given on the command line from
// its environment variable (cmdEnvName, the command being fs.Name()), if
// set. Command-line flags win.
func applyEnv(fs *flag.FlagSet) error {
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if err != nil || given[f.Name] {
			return
		}
		name := cmdEnvName(fs.Name(), f.Name)
		v, ok := os.LookupEnv(name)
		if !ok {
			return
		}
		if e := fs.Set(f.Name, v); e != nil {
			err = fmt.Errorf("invalid %s=%q: %w", name, v, e)
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

// usageWithEnv prints the synopsis and the flags, each with its default
// (once) and its environment variable.
func usageWithEnv(fs *flag.FlagSet, synopsis string) func() {
	return func() {
		out := fs.Output()
		fmt.Fprintf(out, "%s\n\nFlags (each also read from the environment variable shown; the command line wins):\n", synopsis)
		printFlags(fs)
	}
}

// printFlags prints fs's flags as flag.PrintDefaults does, but with the
// environment variable of each, and its default only when the usage text
// does not already say what the default is (flag.PrintDefaults adds its
// own "(default ...)" after a usage text that has one).
func printFlags(fs *flag.FlagSet) {
	out := fs.Output()
	fs.VisitAll(func(f *flag.Flag) {
		var b strings.Builder
		fmt.Fprintf(&b, "  -%s", f.Name)
		name, usage := flag.UnquoteUsage(f)
		if name != "" {
			b.WriteString(" " + name)
		}
		b.WriteString("\n    \t")
		b.WriteString(strings.ReplaceAll(usage, "\n", "\n    \t"))
		var extra []string
		if !strings.Contains(usage, "(default") && !isZeroDefault(f) {
			if name == "string" {
				extra = append(extra, fmt.Sprintf("default %q", f.DefValue))
			} else {
				extra = append(extra, "default "+f.DefValue)
			}
		}
		extra = append(extra, "env "+cmdEnvName(fs.Name(), f.Name))
		fmt.Fprintf(&b, " (%s)\n", strings.Join(extra, "; "))
		fmt.Fprint(out, b.String())
	})
}

// isZeroDefault reports whether f's default is its type's zero value,
// which is not printed (as flag.PrintDefaults does).
func isZeroDefault(f *flag.Flag) bool {
	switch f.DefValue {
	case "", "0", "false", "0s":
		return true
	}
	return false
}
