package models

import (
	"bytes"
	"encoding/json"
	"flag"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/bidpulse/bidpulse/windows"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/ from the current output")

// TestPerformanceGolden compares, for a few cases, the whole result of the
// performance policy as JSON (what /v1/multiplier?explain=1 shows) with
// testdata/performance_<name>.json. Run with -update to rewrite the files,
// then review the diff.
func TestPerformanceGolden(t *testing.T) {
	f := func(name string, cfg PerformanceConfig, chain []windows.Counts) {
		t.Helper()
		var res Result
		Performance(&cfg, &Input{Chain: chain}, &res)

		// The file holds the inputs too, so that it reads on its own.
		b := []byte(`{"config":{"window":`)
		b = strconv.AppendQuote(b, cfg.Window.String())
		b = append(b, `,"elasticity":`...)
		b = appendJSONFloat(b, cfg.Elasticity)
		b = append(b, `,"ctr_prior":`...)
		b = appendJSONFloat(b, cfg.CTRPrior)
		b = append(b, `,"cvr_prior":`...)
		b = appendJSONFloat(b, cfg.CVRPrior)
		b = append(b, `,"min":`...)
		b = appendJSONFloat(b, cfg.Min)
		b = append(b, `,"max":`...)
		b = appendJSONFloat(b, cfg.Max)
		b = append(b, `},"chain":[`...)
		for i, c := range chain {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"impressions":`...)
			b = strconv.AppendUint(b, c.Impressions, 10)
			b = append(b, `,"clicks":`...)
			b = strconv.AppendUint(b, c.Clicks, 10)
			b = append(b, `,"conversions":`...)
			b = strconv.AppendUint(b, c.Conversions, 10)
			b = append(b, '}')
		}
		b = append(b, `],"result":`...)
		b = res.AppendJSON(b)
		b = append(b, '}')

		var got bytes.Buffer
		if err := json.Indent(&got, b, "", "  "); err != nil {
			t.Fatalf("%s: invalid JSON %s: %s", name, b, err)
		}
		got.WriteByte('\n')

		path := filepath.Join("testdata", "performance_"+name+".json")
		if *update {
			if err := os.WriteFile(path, got.Bytes(), 0o644); err != nil {
				t.Fatalf("cannot update %s: %s", path, err)
			}
			return
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("cannot read golden file (run go test -run TestPerformanceGolden -update to create it): %s", err)
		}
		if !bytes.Equal(got.Bytes(), want) && !jsonClose(t, got.Bytes(), want) {
			t.Fatalf("unexpected output for %s (run with -update to accept it);\ngot\n%s\nwant\n%s", path, got.Bytes(), want)
		}
	}
	def := DefaultPerformance()
	half := def
	half.Elasticity = 0.5

	// Before clamp 85/39 = 2.179, clamped to 2.
	f("placement_a", def, []windows.Counts{campaign, counts(2000, 80, 6)})
	// Before clamp 5/12 = 0.4167, clamped to 0.5.
	f("placement_b", def, []windows.Counts{campaign, counts(2000, 10, 0)})
	// 10500/10302 = 1.0192.
	f("sparse", def, []windows.Counts{campaign, counts(10, 1, 0)})
	// 391/270 = 1.448.
	f("three_levels", def, []windows.Counts{campaign, counts(4000, 100, 6), counts(500, 10, 1)})
	// sqrt(85/39) = 1.476.
	f("elasticity_half", half, []windows.Counts{campaign, counts(2000, 80, 6)})
	// ctr alone: 5/3.
	f("no_campaign_conversions", def, []windows.Counts{counts(10000, 200, 0), counts(2000, 80, 0)})
	// Neutral 1.
	f("no_campaign_clicks", def, []windows.Counts{counts(10000, 0, 0), counts(2000, 0, 0)})
	f("campaign_level", def, []windows.Counts{campaign})
}

// jsonClose reports whether the JSON documents a and b have the same shape
// and values, numbers equal to a relative 1e-12: the last bit of math.Pow
// may differ between architectures.
func jsonClose(t *testing.T, a, b []byte) bool {
	t.Helper()
	var va, vb any
	if err := json.Unmarshal(a, &va); err != nil {
		t.Fatalf("cannot parse %s: %s", a, err)
	}
	if err := json.Unmarshal(b, &vb); err != nil {
		return false
	}
	var close func(x, y any) bool
	close = func(x, y any) bool {
		switch x := x.(type) {
		case map[string]any:
			y, ok := y.(map[string]any)
			if !ok || len(x) != len(y) {
				return false
			}
			for k, xv := range x {
				yv, ok := y[k]
				if !ok || !close(xv, yv) {
					return false
				}
			}
			return true
		case []any:
			y, ok := y.([]any)
			if !ok || len(x) != len(y) {
				return false
			}
			for i := range x {
				if !close(x[i], y[i]) {
					return false
				}
			}
			return true
		case float64:
			y, ok := y.(float64)
			return ok && math.Abs(x-y) <= 1e-12*math.Max(math.Abs(x), math.Abs(y))
		default:
			return x == y
		}
	}
	return close(va, vb)
}
