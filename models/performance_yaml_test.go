package models

import (
	"bytes"
	"strings"
	"testing"

	"github.com/bidpulse/bidpulse/windows"
	"go.yaml.in/yaml/v3"
)

func TestPerformanceConfigYAML(t *testing.T) {
	f := func(doc string, want PerformanceConfig) {
		t.Helper()
		var got PerformanceConfig
		dec := yaml.NewDecoder(strings.NewReader(doc))
		dec.KnownFields(true)
		if err := dec.Decode(&got); err != nil {
			t.Fatalf("cannot decode %q: %s", doc, err)
		}
		if got != want {
			t.Fatalf("unexpected config from %q; got %+v; want %+v", doc, got, want)
		}
	}
	def := DefaultPerformance()
	f("{}", def)
	f("window: 24h\n", func() PerformanceConfig { c := def; c.Window = windows.Span24h; return c }())
	f("window: 5m\nelasticity: 0.8\nctr_prior: 200\ncvr_prior: 20\nmin: 0.25\nmax: 4\n",
		PerformanceConfig{Window: windows.Span5m, Elasticity: 0.8, CTRPrior: 200, CVRPrior: 20, Min: 0.25, Max: 4, EmpiricalBayes: DefaultEB()})
	f("empirical_bayes: {min_siblings: 5, max_ctr_prior: 5000}\n", func() PerformanceConfig {
		c := def
		c.EmpiricalBayes.MinSiblings, c.EmpiricalBayes.MaxCTRPrior = 5, 5000
		return c
	}())
	f("empirical_bayes: {enabled: false}\n", func() PerformanceConfig { c := def; c.EmpiricalBayes.Enabled = false; return c }())

	// Nested, as in the service's config file.
	var doc struct {
		Policies struct {
			Performance PerformanceConfig `yaml:"performance"`
		} `yaml:"policies"`
	}
	if err := yaml.Unmarshal([]byte("policies:\n  performance:\n    max: 3\n"), &doc); err != nil {
		t.Fatalf("cannot decode: %s", err)
	}
	want := def
	want.Max = 3
	if doc.Policies.Performance != want {
		t.Fatalf("unexpected nested config; got %+v; want %+v", doc.Policies.Performance, want)
	}

	g := func(doc, wantErr string) {
		t.Helper()
		var c PerformanceConfig
		dec := yaml.NewDecoder(strings.NewReader(doc))
		dec.KnownFields(true)
		err := dec.Decode(&c)
		if err == nil {
			t.Fatalf("expecting an error for %q", doc)
		}
		if !strings.Contains(err.Error(), wantErr) {
			t.Fatalf("unexpected error for %q; got %q; want it to contain %q", doc, err, wantErr)
		}
	}
	g("window: 2h\n", "window")
	g("window: 1h\nelasticty: 2\n", "elasticty")
	g("elasticity: high\n", "high")
}

func TestPerformanceConfigYAMLRoundTrip(t *testing.T) {
	c := PerformanceConfig{Window: windows.Span15m, Elasticity: 1.5, CTRPrior: 300, CVRPrior: 30, Min: 0.75, Max: 1.5}
	b, err := yaml.Marshal(c)
	if err != nil {
		t.Fatalf("cannot marshal: %s", err)
	}
	if !bytes.Contains(b, []byte("window: 15m\n")) {
		t.Fatalf("unexpected YAML; got %q; want the window as 15m", b)
	}
	var got PerformanceConfig
	if err := yaml.Unmarshal(b, &got); err != nil {
		t.Fatalf("cannot unmarshal %q: %s", b, err)
	}
	if got != c {
		t.Fatalf("unexpected round trip; got %+v; want %+v", got, c)
	}
}
