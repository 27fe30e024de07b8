// Command vulngate reads govulncheck's JSON output (-format json) on stdin and fails when the
// code calls a known vulnerability that is not accepted. An accepted vulnerability is one
// listed, with the reason, in the file named by -accepted (lines "ID reason", # comments):
// for bidpulse, the standard library's own, whose fix is a newer Go than the machine's, which
// the project pins (GOTOOLCHAIN=local). Every finding is printed, accepted or not, so none is
// out of sight; an accepted ID no longer found is reported so the list can shrink.
//
// Findings of imported packages or required modules whose vulnerable code is not called are
// printed but do not fail: govulncheck's own rule, as its default text mode exits 0 on them.
//
// Usage: govulncheck -db file://... -format json ./... | go run ./internal/tools/vulngate -accepted govulncheck.accepted
package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
)

// message is the part of govulncheck's JSON stream (x/vuln internal/govulncheck.Message) that
// vulngate reads.
type message struct {
	Config *struct {
		DB             string `json:"db"`
		DBLastModified string `json:"db_last_modified"`
		GoVersion      string `json:"go_version"`
	} `json:"config"`
	OSV *struct {
		ID      string `json:"id"`
		Summary string `json:"summary"`
	} `json:"osv"`
	Finding *struct {
		OSV          string `json:"osv"`
		FixedVersion string `json:"fixed_version"`
		Trace        []struct {
			Module   string `json:"module"`
			Version  string `json:"version"`
			Package  string `json:"package"`
			Function string `json:"function"`
			Receiver string `json:"receiver"`
		} `json:"trace"`
	} `json:"finding"`
}

// Levels of a finding, from govulncheck's traces.
const (
	levelModule  = iota // a required module has the vulnerability
	levelPackage        // an imported package has it
	levelSymbol         // the code calls it
)

var levelNames = []string{"module required, not imported", "package imported, not called", "called"}

type vuln struct {
	id, summary, module, found, fixed string
	level                             int
}

func main() {
	accepted := flag.String("accepted", "", "file of accepted vulnerability IDs, one per line with the reason")
	flag.Parse()
	acc, err := readAccepted(*accepted)
	if err != nil {
		fmt.Fprintln(os.Stderr, "vulngate:", err)
		os.Exit(2)
	}
	failed, err := gate(os.Stdin, os.Stdout, acc)
	if err != nil {
		fmt.Fprintln(os.Stderr, "vulngate:", err)
		os.Exit(2)
	}
	if failed {
		os.Exit(1)
	}
}

// readAccepted reads the accepted IDs and their reasons.
func readAccepted(path string) (map[string]string, error) {
	acc := map[string]string{}
	if path == "" {
		return acc, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		id, reason, _ := strings.Cut(line, " ")
		if reason = strings.TrimSpace(reason); reason == "" {
			return nil, fmt.Errorf("%s:%d: %s is accepted without a reason", path, n, id)
		}
		acc[id] = reason
	}
	return acc, sc.Err()
}

// gate reads govulncheck's JSON stream from r, writes a report to w, and reports whether a
// called vulnerability is not accepted.
func gate(r io.Reader, w io.Writer, acc map[string]string) (bool, error) {
	dec := json.NewDecoder(r)
	vulns := map[string]*vuln{}
	summaries := map[string]string{}
	var cfgSeen bool
	for {
		var m message
		if err := dec.Decode(&m); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return false, fmt.Errorf("cannot read govulncheck's output: %w", err)
		}
		switch {
		case m.Config != nil:
			cfgSeen = true
			fmt.Fprintf(w, "govulncheck: database %s (modified %s), %s\n", m.Config.DB, m.Config.DBLastModified, m.Config.GoVersion)
		case m.OSV != nil:
			summaries[m.OSV.ID] = m.OSV.Summary
		case m.Finding != nil && len(m.Finding.Trace) > 0:
			f, top := m.Finding, m.Finding.Trace[0]
			level := levelModule
			switch {
			case top.Function != "":
				level = levelSymbol
			case top.Package != "":
				level = levelPackage
			}
			v := vulns[f.OSV]
			if v == nil {
				v = &vuln{id: f.OSV, module: top.Module, found: top.Version, fixed: f.FixedVersion, level: level}
				vulns[f.OSV] = v
			}
			v.level = max(v.level, level)
		}
	}
	if !cfgSeen {
		return false, errors.New("no govulncheck output (did it run with -format json?)")
	}
	list := make([]*vuln, 0, len(vulns))
	for _, v := range vulns {
		v.summary = summaries[v.id]
		list = append(list, v)
	}
	sort.Slice(list, func(i, j int) bool {
		if list[i].level != list[j].level {
			return list[i].level > list[j].level
		}
		return list[i].id < list[j].id
	})
	failed := false
	for _, v := range list {
		fixed := v.fixed
		if fixed == "" {
			fixed = "no fix"
		}
		verdict := ""
		switch reason, ok := acc[v.id]; {
		case ok:
			verdict = "accepted: " + reason
		case v.level == levelSymbol && v.module == "stdlib":
			verdict = "NOT ACCEPTED: upgrade Go to " + fixed + ", or accept it with the reason"
			failed = true
		case v.level == levelSymbol:
			verdict = "NOT ACCEPTED: upgrade " + v.module + " to " + fixed + ", or stop calling it"
			failed = true
		}
		fmt.Fprintf(w, "%s %s (%s@%s, fixed in %s): %s\n", v.id, levelNames[v.level], v.module, v.found, fixed, v.summary)
		if verdict != "" {
			fmt.Fprintf(w, "    %s\n", verdict)
		}
	}
	for id := range acc {
		if vulns[id] == nil {
			fmt.Fprintf(w, "%s is accepted but no longer found: remove it from the list\n", id)
		}
	}
	n := 0
	for _, v := range list {
		if v.level == levelSymbol {
			n++
		}
	}
	fmt.Fprintf(w, "govulncheck: %d vulnerabilities, %d of them called", len(list), n)
	if failed {
		fmt.Fprintln(w, ": some called and not accepted")
	} else {
		fmt.Fprintln(w, ": none called and not accepted")
	}
	return failed, nil
}
