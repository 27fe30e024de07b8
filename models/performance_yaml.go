package models

import (
	"fmt"

	"github.com/bidpulse/bidpulse/windows"
)

// performanceYAML is PerformanceConfig as written in the config file: the
// window as its name ("1h").
type performanceYAML struct {
	Window     string   `yaml:"window"`
	Elasticity float64  `yaml:"elasticity"`
	CTRPrior   float64  `yaml:"ctr_prior"`
	CVRPrior   float64  `yaml:"cvr_prior"`
	Min        float64  `yaml:"min"`
	Max        float64  `yaml:"max"`
	EB         EBConfig `yaml:"empirical_bayes"`
}

// UnmarshalYAML reads c from a YAML mapping such as
//
//	window: 1h
//	elasticity: 0.8
//	ctr_prior: 1000
//	cvr_prior: 50
//	min: 0.5
//	max: 2
//	empirical_bayes: {enabled: true, min_siblings: 3, min_ctr_prior: 100, ...}
//
// Fields absent from the mapping take their DefaultPerformance values. It
// implements the unmarshal-function form of the interface, which
// go.yaml.in/yaml/v3 still honours (strict field checking included), so
// that this package needs no YAML import. It does not Validate c.
func (c *PerformanceConfig) UnmarshalYAML(unmarshal func(any) error) error {
	d := DefaultPerformance()
	y := performanceYAML{
		Window:     d.Window.String(),
		Elasticity: d.Elasticity,
		CTRPrior:   d.CTRPrior,
		CVRPrior:   d.CVRPrior,
		Min:        d.Min,
		Max:        d.Max,
		EB:         d.EmpiricalBayes,
	}
	if err := unmarshal(&y); err != nil {
		return err
	}
	w, ok := windows.ParseSpan(y.Window)
	if !ok {
		return fmt.Errorf("invalid performance window %q; want one of 1m, 5m, 15m, 1h, 24h", y.Window)
	}
	*c = PerformanceConfig{
		Window:     w,
		Elasticity: y.Elasticity,
		CTRPrior:   y.CTRPrior,
		CVRPrior:   y.CVRPrior,
		Min:        y.Min,
		Max:        y.Max,

		EmpiricalBayes: y.EB,
	}
	return nil
}

// MarshalYAML writes c in the form UnmarshalYAML reads.
func (c PerformanceConfig) MarshalYAML() (any, error) {
	return performanceYAML{
		Window:     c.Window.String(),
		Elasticity: c.Elasticity,
		CTRPrior:   c.CTRPrior,
		CVRPrior:   c.CVRPrior,
		Min:        c.Min,
		Max:        c.Max,
		EB:         c.EmpiricalBayes,
	}, nil
}
