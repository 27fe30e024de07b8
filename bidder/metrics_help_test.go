package bidder

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/VictoriaMetrics/metrics"
)

// TestMetricsHelp scrapes GET /metrics of a JetStream-mode and a core-mode
// service and checks that the output is well-formed Prometheus text in which
// every family has a HELP line with its text from metricHelp and a TYPE
// line. It fails listing every family without an entry in metricHelp, and
// every bidpulse_ entry that neither service writes.
func TestMetricsHelp(t *testing.T) {
	seen := map[string]bool{}
	for _, mode := range []string{"jetstream", "core"} {
		e := startTestService(t, func(o *Options) {
			if mode == "core" {
				o.JetStream = JetStreamFalse
			}
		})
		if got := e.svc.Mode(); got != mode {
			t.Fatalf("unexpected mode; got %q; want %q", got, mode)
		}
		e.publish(t, ev("i1", "impression", testNow, "c1", "cr1", "p1"))
		e.waitReceived(t, 1)
		if code, _ := e.do(t, "GET", "/v1/multiplier?campaign=c1&creative=cr1&placement=p1", "", ""); code != 200 {
			t.Fatalf("unexpected status of GET /v1/multiplier; got %d; want 200", code)
		}

		resp, err := http.Get(e.base + "/metrics")
		if err != nil {
			t.Fatalf("cannot GET /metrics: %v", err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatalf("cannot read /metrics: %v", err)
		}
		if resp.StatusCode != 200 {
			t.Fatalf("unexpected status of GET /metrics; got %d; want 200", resp.StatusCode)
		}
		if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain; version=0.0.4") {
			t.Fatalf("unexpected Content-Type of /metrics; got %q; want text/plain; version=0.0.4", ct)
		}

		families, errs := parseExposition(body)
		if len(errs) > 0 {
			t.Fatalf("%s mode: /metrics is not valid Prometheus text:\n%s\n\n%s", mode, strings.Join(errs, "\n"), body)
		}
		var missing, wrong []string
		for name, f := range families {
			seen[name] = true
			text, ok := metricHelp[name]
			if !ok {
				missing = append(missing, fmt.Sprintf("%s (%s): %q", name, f.typ, f.help))
				continue
			}
			if want := string(appendHelpText(nil, text)); f.help != want {
				wrong = append(wrong, fmt.Sprintf("%s: got %q; want %q", name, f.help, want))
			}
		}
		sort.Strings(missing)
		sort.Strings(wrong)
		if len(missing) > 0 {
			t.Errorf("%s mode: families of /metrics without an entry in metricHelp (bidder/metrics_help.go):\n%s", mode, strings.Join(missing, "\n"))
		}
		if len(wrong) > 0 {
			t.Errorf("%s mode: unexpected HELP texts:\n%s", mode, strings.Join(wrong, "\n"))
		}
		for _, want := range []string{"bidpulse_keys", "bidpulse_bid_duration_seconds", "go_gc_duration_seconds", "process_cpu_seconds_total"} {
			if families[want] == nil {
				t.Errorf("%s mode: no family %s in /metrics", mode, want)
			}
		}
	}
	// Every registration is unconditional, so a bidpulse_ entry no service
	// writes is a metric renamed or gone.
	var stale []string
	for name := range metricHelp {
		if strings.HasPrefix(name, "bidpulse_") && !seen[name] {
			stale = append(stale, name)
		}
	}
	sort.Strings(stale)
	if len(stale) > 0 {
		t.Errorf("entries of metricHelp that no service writes:\n%s", strings.Join(stale, "\n"))
	}
}

func TestMetricHelpTexts(t *testing.T) {
	for name, text := range metricHelp {
		if !isMetricName(name) {
			t.Errorf("invalid family name %q in metricHelp", name)
		}
		if text == "" || strings.TrimSpace(text) != text || !strings.HasSuffix(text, ".") {
			t.Errorf("unexpected text of %s; got %q; want a sentence without surrounding spaces", name, text)
		}
	}
}

func TestAppendMetricsHelp(t *testing.T) {
	f := func(src, want string) {
		t.Helper()
		if got := string(appendMetricsHelp(nil, []byte(src))); got != want {
			t.Fatalf("unexpected output for %q; got\n%s\nwant\n%s", src, got, want)
		}
	}
	keys := "Live keys in the windows, over all rollups."
	f("", "")
	f("x 1\n", "x 1\n")
	f("# HELP bidpulse_keys\n# TYPE bidpulse_keys gauge\nbidpulse_keys 3\n",
		"# HELP bidpulse_keys "+keys+"\n# TYPE bidpulse_keys gauge\nbidpulse_keys 3\n")
	// Not at the start, and without a final newline.
	f("a 1\n# HELP bidpulse_keys", "a 1\n# HELP bidpulse_keys "+keys)
	// A HELP line with a text is kept; "# HELP" not at the start of a line is no HELP line.
	f("# HELP bidpulse_keys own text\n", "# HELP bidpulse_keys own text\n")
	f(`a{l="x\n# HELP b"} 1`+"\n", `a{l="x\n# HELP b"} 1`+"\n")
	// A family without an entry gets a fallback naming its origin and type.
	f("# HELP bidpulse_nope_total\n# TYPE bidpulse_nope_total counter\nbidpulse_nope_total 1\n",
		"# HELP bidpulse_nope_total bidpulse counter (not described yet: no entry in bidder/metrics_help.go).\n"+
			"# TYPE bidpulse_nope_total counter\nbidpulse_nope_total 1\n")
	f("# HELP go_nope\n# TYPE go_nope gauge\n",
		"# HELP go_nope Go runtime gauge (not described yet: no entry in bidder/metrics_help.go).\n# TYPE go_nope gauge\n")
	f("# HELP process_nope\n", "# HELP process_nope Process series (not described yet: no entry in bidder/metrics_help.go).\n")
	f("# HELP other\n# TYPE otherx gauge\n", "# HELP other series (not described yet: no entry in bidder/metrics_help.go).\n# TYPE otherx gauge\n")
}

func TestAppendHelpText(t *testing.T) {
	f := func(in, want string) {
		t.Helper()
		if got := string(appendHelpText([]byte("> "), in)); got != "> "+want {
			t.Fatalf("unexpected escaping of %q; got %q; want %q", in, got, "> "+want)
		}
	}
	f("", "")
	f("plain text", "plain text")
	f(`a\b`, `a\\b`)
	f("a\nb\n", `a\nb\n`)
	f(`"quoted" \n`, `"quoted" \\n`)
}

func TestAppendMetricsHelpAllocations(t *testing.T) {
	s, _ := newTestService(t)
	sc := getMetricsScrape()
	defer putMetricsScrape(sc)
	s.metrics.WritePrometheus(sc)
	metrics.WriteProcessMetrics(sc)
	dst := appendMetricsHelp(nil, sc.raw.Bytes())
	allocs := testing.AllocsPerRun(100, func() {
		dst = appendMetricsHelp(dst[:0], sc.raw.Bytes())
	})
	if allocs != 0 {
		t.Fatalf("unexpected allocations per appendMetricsHelp; got %v; want 0", allocs)
	}
	if n := bytes.Count(dst, []byte("# HELP ")); n < 50 {
		t.Fatalf("unexpected number of HELP lines; got %d; want at least 50", n)
	}
}

func TestParseExposition(t *testing.T) {
	f := func(in string, wantErrs int) {
		t.Helper()
		_, errs := parseExposition([]byte(in))
		if len(errs) != wantErrs {
			t.Fatalf("unexpected problems in %q; got %d %q; want %d", in, len(errs), errs, wantErrs)
		}
	}
	ok := "# HELP a_total A.\n# TYPE a_total counter\na_total 1\n" +
		"# HELP h H \\\\ x\\n.\n# TYPE h histogram\nh_bucket{r=\"x\",le=\"+Inf\"} 2\nh_sum 3.5\nh_count 2\n" +
		"# HELP s S.\n# TYPE s summary\ns{quantile=\"0.5\"} NaN\ns_sum 0\ns_count 0\n" +
		"# HELP i I.\n# TYPE i gauge\ni{a=\"q\\\"\", b=\"2\"} 1 1700000000000\n"
	f(ok, 0)
	f("a 1", 2)                                     // no final newline, no HELP
	f("# HELP a\n# TYPE a gauge\na 1\n", 3)         // no text: its TYPE and sample are outside a family
	f("# HELP a A.\na 1\n", 2)                      // no TYPE
	f("# HELP a A.\n# TYPE a gauge\n", 1)           // no sample
	f("# HELP a A.\n# TYPE a gauge\nb 1\n", 2)      // another family's sample
	f("# HELP a A.\n# TYPE a gauge\na{l=x} 1\n", 2) // unquoted label value
	f("# HELP a A.\n# TYPE a gauge\na one\n", 2)    // invalid value
	f("# HELP a A \\q.\n# TYPE a gauge\na 1\n", 3)  // invalid escape
	f(ok+"# HELP a_total A.\n# TYPE a_total counter\na_total 1\n", 3)
}

// expoFamily is a metric family as parseExposition reads it.
type expoFamily struct {
	help, typ string
	samples   int
}

// parseExposition checks that b is Prometheus text (format 0.0.4) as
// /metrics must write it: every family opens with "# HELP family text",
// then "# TYPE family type", then its samples, each family once. It returns
// the families and every problem found, with its line number.
func parseExposition(b []byte) (map[string]*expoFamily, []string) {
	families := map[string]*expoFamily{}
	var errs []string
	fail := func(n int, line, format string, args ...any) {
		errs = append(errs, fmt.Sprintf("line %d %q: %s", n, line, fmt.Sprintf(format, args...)))
	}
	if len(b) == 0 || b[len(b)-1] != '\n' {
		errs = append(errs, "the output does not end with a newline")
	}
	var cur string
	var f *expoFamily
	closeFamily := func(n int) {
		if f != nil && (f.typ == "" || f.samples == 0) {
			fail(n, "", "family %s has no TYPE line or no sample", cur)
		}
	}
	lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	for i, line := range lines {
		n := i + 1
		switch {
		case line == "":
			fail(n, line, "empty line")
		case strings.HasPrefix(line, "# HELP "):
			name, text, _ := strings.Cut(line[len("# HELP "):], " ")
			closeFamily(n)
			cur, f = name, nil
			switch {
			case !isMetricName(name):
				fail(n, line, "invalid family name")
			case families[name] != nil:
				fail(n, line, "second HELP line of %s", name)
			case text == "":
				fail(n, line, "HELP without a text")
			case !validHelpEscapes(text):
				fail(n, line, "invalid escape in the HELP text")
			default:
				f = &expoFamily{help: text}
				families[name] = f
			}
		case strings.HasPrefix(line, "# TYPE "):
			name, typ, _ := strings.Cut(line[len("# TYPE "):], " ")
			switch {
			case f == nil || name != cur:
				fail(n, line, "TYPE line not right after the HELP line of its family")
			case f.typ != "":
				fail(n, line, "second TYPE line of %s", name)
			case typ != "counter" && typ != "gauge" && typ != "histogram" && typ != "summary" && typ != "untyped":
				fail(n, line, "unknown type %q", typ)
			default:
				f.typ = typ
			}
		case strings.HasPrefix(line, "#"):
			fail(n, line, "unexpected comment")
		default:
			name, labels, err := parseSample(line)
			if err != nil {
				fail(n, line, "%v", err)
				continue
			}
			if f == nil || f.typ == "" || !sampleOf(name, labels, cur, f.typ) {
				fail(n, line, "sample outside the HELP and TYPE lines of its family (current family %q)", cur)
				continue
			}
			f.samples++
		}
	}
	closeFamily(len(lines))
	return families, errs
}

// sampleOf reports whether a sample named name, with labels, belongs to
// family of type typ.
func sampleOf(name string, labels map[string]string, family, typ string) bool {
	switch typ {
	case "histogram":
		_, le := labels["le"]
		_, vmrange := labels["vmrange"]
		return name == family+"_bucket" && (le || vmrange) || name == family+"_sum" || name == family+"_count"
	case "summary":
		_, q := labels["quantile"]
		return name == family && q || name == family+"_sum" || name == family+"_count"
	}
	return name == family
}

// parseSample parses `name{label="value",...} value [timestamp]`.
func parseSample(line string) (string, map[string]string, error) {
	i := strings.IndexAny(line, "{ ")
	if i < 0 {
		return "", nil, fmt.Errorf("no value")
	}
	name, rest := line[:i], line[i:]
	if !isMetricName(name) {
		return "", nil, fmt.Errorf("invalid metric name %q", name)
	}
	labels := map[string]string{}
	if rest[0] == '{' {
		rest = rest[1:]
		for {
			rest = strings.TrimLeft(rest, " ")
			if strings.HasPrefix(rest, "}") {
				rest = rest[1:]
				break
			}
			eq := strings.Index(rest, `="`)
			if eq < 0 || !isLabelName(rest[:eq]) {
				return "", nil, fmt.Errorf("invalid label in %q", rest)
			}
			label := rest[:eq]
			rest = rest[eq+2:]
			var v strings.Builder
			for {
				if rest == "" {
					return "", nil, fmt.Errorf("unterminated value of label %s", label)
				}
				c := rest[0]
				if c == '"' {
					rest = rest[1:]
					break
				}
				if c == '\\' {
					if len(rest) < 2 || !strings.ContainsRune(`\"n`, rune(rest[1])) {
						return "", nil, fmt.Errorf("invalid escape in the value of label %s", label)
					}
					v.WriteByte(rest[1])
					rest = rest[2:]
					continue
				}
				if c == '\n' {
					return "", nil, fmt.Errorf("newline in the value of label %s", label)
				}
				v.WriteByte(c)
				rest = rest[1:]
			}
			if _, dup := labels[label]; dup {
				return "", nil, fmt.Errorf("label %s given twice", label)
			}
			labels[label] = v.String()
			if strings.HasPrefix(rest, ",") {
				rest = rest[1:]
			} else if !strings.HasPrefix(rest, "}") {
				return "", nil, fmt.Errorf("no comma or closing brace after label %s", label)
			}
		}
	}
	if !strings.HasPrefix(rest, " ") {
		return "", nil, fmt.Errorf("no space before the value")
	}
	fields := strings.Fields(rest)
	if len(fields) < 1 || len(fields) > 2 {
		return "", nil, fmt.Errorf("want a value and an optional timestamp; got %q", rest)
	}
	if _, err := strconv.ParseFloat(fields[0], 64); err != nil {
		return "", nil, fmt.Errorf("invalid value: %w", err)
	}
	if len(fields) == 2 {
		if _, err := strconv.ParseInt(fields[1], 10, 64); err != nil {
			return "", nil, fmt.Errorf("invalid timestamp: %w", err)
		}
	}
	return name, labels, nil
}

func isMetricName(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c == '_' || c == ':' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || i > 0 && '0' <= c && c <= '9') {
			return false
		}
	}
	return s != ""
}

func isLabelName(s string) bool {
	return isMetricName(s) && !strings.Contains(s, ":")
}

// validHelpEscapes reports whether every backslash of a HELP text starts
// \\ or \n.
func validHelpEscapes(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' {
			if i+1 == len(s) || s[i+1] != '\\' && s[i+1] != 'n' {
				return false
			}
			i++
		}
	}
	return true
}
