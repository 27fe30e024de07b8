package models

import (
	"fmt"
	"time"

	"github.com/bidpulse/bidpulse/windows"
)

// The YAML forms below use the unmarshal-function form of the interface
// (see PerformanceConfig.UnmarshalYAML), so that this package needs no
// YAML import. Every block starts from its defaults: a field absent from
// the file keeps its default value. None of them Validates.

// UnmarshalYAML reads c over DefaultCampaignPolicy and loads its time zone:
//
//	policy: target_cpa
//	time_zone: Europe/Paris
//	min: 0.2
//	max: 5
//	performance: {elasticity: 0.8}
//	goal: {target: 20}
//	pacing: {daily_budget: 5000, plan: traffic}
//	modifiers:
//	  device: {mobile: 1.3}
//	  country: {FR: 1.2}
//	  hour: {0: 0.5, 1: 0.5}
//	  seasons: [{name: black-friday, start: 2025-11-28T00:00:00+01:00, end: 2025-12-01T00:00:00+01:00, factor: 1.5}]
//	guard: {max_step_per_minute: 0.2}
//	explore: {enabled: true}
//	delay: {min_samples: 1000}
func (c *CampaignPolicy) UnmarshalYAML(unmarshal func(any) error) error {
	type plain CampaignPolicy
	p := plain(DefaultCampaignPolicy())
	if err := unmarshal(&p); err != nil {
		return err
	}
	*c = CampaignPolicy(p)
	return c.SetTimeZone(c.TimeZone)
}

// goalYAML is GoalConfig with its windows as names.
type goalYAML struct {
	Target           float64       `yaml:"target"`
	Window           string        `yaml:"window"`
	CVRWindow        string        `yaml:"cvr_window"`
	Kp               float64       `yaml:"kp"`
	Ki               float64       `yaml:"ki"`
	MinFactor        float64       `yaml:"min_factor"`
	MaxFactor        float64       `yaml:"max_factor"`
	MinConversions   float64       `yaml:"min_conversions"`
	PriorConversions float64       `yaml:"prior_conversions"`
	MaxStepDt        time.Duration `yaml:"max_step_dt"`
}

// UnmarshalYAML reads c over DefaultGoal, the windows by name ("1h").
func (c *GoalConfig) UnmarshalYAML(unmarshal func(any) error) error {
	d := DefaultGoal()
	y, _ := d.MarshalYAML()
	g := y.(goalYAML)
	if err := unmarshal(&g); err != nil {
		return err
	}
	w, ok := windows.ParseSpan(g.Window)
	if !ok {
		return fmt.Errorf("invalid goal.window %q; want one of 1m, 5m, 15m, 1h, 24h", g.Window)
	}
	cw, ok := windows.ParseSpan(g.CVRWindow)
	if !ok {
		return fmt.Errorf("invalid goal.cvr_window %q; want one of 1m, 5m, 15m, 1h, 24h", g.CVRWindow)
	}
	*c = GoalConfig{
		Target: g.Target, Window: w, CVRWindow: cw, Kp: g.Kp, Ki: g.Ki,
		MinFactor: g.MinFactor, MaxFactor: g.MaxFactor,
		MinConversions: g.MinConversions, PriorConversions: g.PriorConversions,
		MaxStepDt: g.MaxStepDt,
	}
	return nil
}

// MarshalYAML writes c in the form UnmarshalYAML reads.
func (c GoalConfig) MarshalYAML() (any, error) {
	return goalYAML{
		Target: c.Target, Window: c.Window.String(), CVRWindow: c.CVRWindow.String(),
		Kp: c.Kp, Ki: c.Ki, MinFactor: c.MinFactor, MaxFactor: c.MaxFactor,
		MinConversions: c.MinConversions, PriorConversions: c.PriorConversions,
		MaxStepDt: c.MaxStepDt,
	}, nil
}

// UnmarshalYAML reads c over DefaultPacing.
func (c *PacingConfig) UnmarshalYAML(unmarshal func(any) error) error {
	type plain PacingConfig
	p := plain(DefaultPacing())
	if err := unmarshal(&p); err != nil {
		return err
	}
	*c = PacingConfig(p)
	return nil
}

// UnmarshalYAML reads c over DefaultGuard.
func (c *GuardConfig) UnmarshalYAML(unmarshal func(any) error) error {
	type plain GuardConfig
	p := plain(DefaultGuard())
	if err := unmarshal(&p); err != nil {
		return err
	}
	*c = GuardConfig(p)
	return nil
}

// UnmarshalYAML reads c over DefaultExplore.
func (c *ExploreConfig) UnmarshalYAML(unmarshal func(any) error) error {
	type plain ExploreConfig
	p := plain(DefaultExplore())
	if err := unmarshal(&p); err != nil {
		return err
	}
	*c = ExploreConfig(p)
	return nil
}

// UnmarshalYAML reads c over DefaultDelay; a fallback given in the file
// replaces the default one whole.
func (c *DelayConfig) UnmarshalYAML(unmarshal func(any) error) error {
	type plain DelayConfig
	p := plain(DefaultDelay())
	p.Fallback = nil
	if err := unmarshal(&p); err != nil {
		return err
	}
	if p.Fallback == nil {
		p.Fallback = DefaultDelay().Fallback
	}
	*c = DelayConfig(p)
	return nil
}

// UnmarshalYAML reads c over DefaultEB.
func (c *EBConfig) UnmarshalYAML(unmarshal func(any) error) error {
	type plain EBConfig
	p := plain(DefaultEB())
	if err := unmarshal(&p); err != nil {
		return err
	}
	*c = EBConfig(p)
	return nil
}

// campaignYAML is one entry of Policies.Campaigns as written: a block
// present replaces the default policy's block whole (its absent fields take
// the block's built-in defaults); a block absent keeps the default policy's.
type campaignYAML struct {
	Policy      *string            `yaml:"policy"`
	TimeZone    *string            `yaml:"time_zone"`
	Min         *float64           `yaml:"min"`
	Max         *float64           `yaml:"max"`
	Performance *PerformanceConfig `yaml:"performance"`
	Goal        *GoalConfig        `yaml:"goal"`
	Pacing      *PacingConfig      `yaml:"pacing"`
	Modifiers   *ModifierConfig    `yaml:"modifiers"`
	Guard       *GuardConfig       `yaml:"guard"`
	Explore     *ExploreConfig     `yaml:"explore"`
	Delay       *DelayConfig       `yaml:"delay"`
}

// skipYAML ignores whatever it is decoded from (the other pass reads it).
type skipYAML struct{}

func (*skipYAML) UnmarshalYAML(func(any) error) error { return nil }

// UnmarshalYAML reads p over DefaultPolicies:
//
//	hard_max: 5
//	default:
//	  guard: {max_step_per_minute: 0.1}
//	campaigns:
//	  c42:
//	    policy: target_cpa
//	    goal: {target: 20}
//	    pacing: {daily_budget: 5000}
//
// Each campaign inherits the default policy block by block (c42 above
// keeps the default's guard block), and every policy gets HardMax.
func (p *Policies) UnmarshalYAML(unmarshal func(any) error) error {
	first := struct {
		HardMax   float64             `yaml:"hard_max"`
		Default   CampaignPolicy      `yaml:"default"`
		Campaigns map[string]skipYAML `yaml:"campaigns"`
	}{HardMax: DefaultHardMax, Default: DefaultCampaignPolicy()}
	if err := unmarshal(&first); err != nil {
		return err
	}
	second := struct {
		HardMax   skipYAML                 `yaml:"hard_max"`
		Default   skipYAML                 `yaml:"default"`
		Campaigns map[string]*campaignYAML `yaml:"campaigns"`
	}{}
	if err := unmarshal(&second); err != nil {
		return err
	}
	out := Policies{HardMax: first.HardMax, Default: first.Default}
	out.Default.HardMax = out.HardMax
	if len(second.Campaigns) > 0 {
		out.Campaigns = make(map[string]*CampaignPolicy, len(second.Campaigns))
	}
	for name, o := range second.Campaigns {
		c := out.Default
		if o != nil {
			if err := o.apply(&c); err != nil {
				return fmt.Errorf("campaigns.%s: %w", name, err)
			}
		}
		out.Campaigns[name] = &c
	}
	*p = out
	return nil
}

// apply overlays o's blocks on c.
func (o *campaignYAML) apply(c *CampaignPolicy) error {
	if o.Policy != nil {
		c.Policy = *o.Policy
	}
	if o.TimeZone != nil {
		if err := c.SetTimeZone(*o.TimeZone); err != nil {
			return err
		}
	}
	if o.Min != nil {
		c.Min = *o.Min
	}
	if o.Max != nil {
		c.Max = *o.Max
	}
	if o.Performance != nil {
		c.Performance = *o.Performance
	}
	if o.Goal != nil {
		c.Goal = *o.Goal
	}
	if o.Pacing != nil {
		c.Pacing = *o.Pacing
	}
	if o.Modifiers != nil {
		c.Modifiers = *o.Modifiers
	}
	if o.Guard != nil {
		c.Guard = *o.Guard
	}
	if o.Explore != nil {
		c.Explore = *o.Explore
	}
	if o.Delay != nil {
		c.Delay = *o.Delay
	}
	return nil
}
