// Command bidpulse is the real-time bid adjustment service and its tools.
//
//	bidpulse serve     run the service (embedded NATS by default)
//	bidpulse publish   publish events (from a file, stdin, or synthetic traffic)
//	bidpulse bench     load-test a running or spawned bidpulse
//	bidpulse simulate  run the policy simulator
//	bidpulse dlq       read and replay the dead letters
//	bidpulse version   print the version and the VCS revision
package main

import (
	"fmt"
	"os"
)

const usage = `bidpulse: real-time bid multipliers from live click-through and conversion rates.

Usage:
  bidpulse serve   [flags]   run the service (embedded NATS unless --nats-url)
  bidpulse publish [flags]   publish events to NATS (file, stdin or --synthetic)
  bidpulse bench   [flags]   load-test bidpulse: bids, events, scenarios, reports
  bidpulse simulate [flags]  run the policy simulator and print its report
  bidpulse dlq <action>      dead letters: count, tail, show SEQ, replay
  bidpulse version           print the version and the VCS revision

Run "bidpulse <command> -h" for the flags of a command. A flag of serve, or
one of the NATS connection flags, reads BIDPULSE_<NAME> from the environment;
any other flag of a command reads BIDPULSE_<COMMAND>_<NAME>.
`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "serve":
		err = runServe(os.Args[2:])
	case "publish":
		err = runPublish(os.Args[2:])
	case "bench":
		err = runBench(os.Args[2:])
	case "simulate":
		err = runSimulate(os.Args[2:])
	case "dlq":
		err = runDLQ(os.Args[2:])
	case "version", "--version", "-version":
		printVersion(os.Stdout)
	case "help", "-h", "--help":
		fmt.Print(usage)
	default:
		fmt.Fprintf(os.Stderr, "bidpulse: unknown command %q\n\n%s", os.Args[1], usage)
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "bidpulse %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}
