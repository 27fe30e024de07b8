package main

import (
	"fmt"
	"io"
	"runtime/debug"
	"strings"
)

// printVersion writes the module version and the VCS revision the binary
// was built from, as the Go toolchain recorded them (go build in a
// checkout stamps vcs.revision, vcs.time and vcs.modified; go run, go test
// and -buildvcs=false do not, and then it says so rather than print
// nothing).
func printVersion(w io.Writer) {
	bi, ok := debug.ReadBuildInfo()
	fmt.Fprint(w, versionText(bi, ok))
}

// versionText formats what bi records; ok false: no build information.
func versionText(bi *debug.BuildInfo, ok bool) string {
	if !ok || bi == nil {
		return "bidpulse: no build information recorded (not built with module support)\n"
	}
	var b strings.Builder
	v := bi.Main.Version
	if v == "" {
		v = "(unknown)"
	}
	fmt.Fprintf(&b, "bidpulse %s\n", v)
	fmt.Fprintf(&b, "module    %s\n", bi.Main.Path)
	s := map[string]string{}
	for _, kv := range bi.Settings {
		s[kv.Key] = kv.Value
	}
	if rev := s["vcs.revision"]; rev != "" {
		switch s["vcs.modified"] {
		case "true":
			rev += " (modified: built with uncommitted changes)"
		case "false":
			rev += " (clean)"
		}
		fmt.Fprintf(&b, "revision  %s\n", rev)
		if t := s["vcs.time"]; t != "" {
			fmt.Fprintf(&b, "committed %s\n", t)
		}
	} else {
		b.WriteString("revision  none recorded (built by go run or go test, with -buildvcs=false, or outside a checkout)\n")
	}
	fmt.Fprintf(&b, "go        %s\n", bi.GoVersion)
	return b.String()
}
