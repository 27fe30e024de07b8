package models

import (
	"fmt"
	"time"
)

// CampaignPolicy is the whole bidding configuration of one campaign: the
// goal policy, pacing, manual modifiers, guardrails, exploration, delay
// correction and the final clamp. Get one from DefaultCampaignPolicy (or
// from YAML, which starts from the defaults), change what differs, and
// check it with Validate once, at load time: Evaluate and Tick trust it.
//
// A CampaignPolicy is read concurrently by the bid path and must not be
// modified once in use (its maps included): build a new one and swap the
// pointer to change it (a SIGHUP reload, a policy change from the KV).
type CampaignPolicy struct {
	// Policy is the goal: "performance" (default), "target_cpa" or
	// "target_roas".
	Policy string `yaml:"policy"`
	// TimeZone is the IANA name of the campaign's time zone (pacing day,
	// hour modifiers); Location is it loaded (nil: UTC). Set both with
	// SetTimeZone; YAML does.
	TimeZone string         `yaml:"time_zone"`
	Location *time.Location `yaml:"-"`
	// Min and Max are the final clamp of the multiplier.
	Min float64 `yaml:"min"`
	Max float64 `yaml:"max"`
	// HardMax is the global hard cap over every campaign's Max, set from
	// the global configuration (Policies.HardMax); 0: none.
	HardMax float64 `yaml:"-"`

	Performance PerformanceConfig `yaml:"performance"`
	Goal        GoalConfig        `yaml:"goal"`
	Pacing      PacingConfig      `yaml:"pacing"`
	Modifiers   ModifierConfig    `yaml:"modifiers"`
	Guard       GuardConfig       `yaml:"guard"`
	Explore     ExploreConfig     `yaml:"explore"`
	Delay       DelayConfig       `yaml:"delay"`
}

// DefaultCampaignPolicy returns the default policy: performance, UTC, the
// final clamp [0.1, 10], and each block's defaults (no goal target, no
// budget, no modifiers, guardrails and delay correction on, exploration
// off).
func DefaultCampaignPolicy() CampaignPolicy {
	return CampaignPolicy{
		Policy:      PolicyPerformance,
		TimeZone:    "UTC",
		Location:    time.UTC,
		Min:         0.1,
		Max:         10,
		Performance: DefaultPerformance(),
		Goal:        DefaultGoal(),
		Pacing:      DefaultPacing(),
		Guard:       DefaultGuard(),
		Explore:     DefaultExplore(),
		Delay:       DefaultDelay(),
	}
}

// SetTimeZone loads the IANA time zone name into c (time.LoadLocation:
// the system's zoneinfo, or time/tzdata when the binary embeds it).
func (c *CampaignPolicy) SetTimeZone(name string) error {
	if name == "" {
		name = "UTC"
	}
	loc, err := time.LoadLocation(name)
	if err != nil {
		return fmt.Errorf("invalid time_zone %q: %w", name, err)
	}
	c.TimeZone, c.Location = name, loc
	return nil
}

// loc returns the campaign's location, UTC when unset.
func (c *CampaignPolicy) loc() *time.Location {
	if c.Location == nil {
		return time.UTC
	}
	return c.Location
}

// Validate reports the first invalid field of c, named as in YAML. The
// goal block is checked only under a target policy.
func (c *CampaignPolicy) Validate() error {
	switch c.Policy {
	case PolicyPerformance, PolicyTargetCPA, PolicyTargetROAS:
	default:
		return fmt.Errorf("invalid policy %q; want performance, target_cpa or target_roas", c.Policy)
	}
	if c.Location == nil && c.TimeZone != "" && c.TimeZone != "UTC" {
		return fmt.Errorf("invalid time_zone %q: not loaded (use SetTimeZone)", c.TimeZone)
	}
	if !(c.Min > 0 && c.Min <= 1) {
		return fmt.Errorf("invalid min %v; want a number in (0, 1]", c.Min)
	}
	if !(c.Max >= 1 && c.Max <= 100) {
		return fmt.Errorf("invalid max %v; want a number in [1, 100]", c.Max)
	}
	if !(c.HardMax == 0 || (c.HardMax >= 1 && c.HardMax <= 100)) {
		return fmt.Errorf("invalid hard_max %v; want 0 (none) or a number in [1, 100]", c.HardMax)
	}
	if err := c.Performance.Validate(); err != nil {
		return err
	}
	if c.Policy != PolicyPerformance {
		if err := c.Goal.Validate(); err != nil {
			return err
		}
	}
	if err := c.Pacing.Validate(); err != nil {
		return err
	}
	if err := c.Modifiers.Validate(); err != nil {
		return err
	}
	if err := c.Guard.Validate(); err != nil {
		return err
	}
	if err := c.Explore.Validate(); err != nil {
		return err
	}
	if c.Delay.Enabled {
		if err := c.Delay.Validate(); err != nil {
			return err
		}
	}
	return nil
}

// clamp returns the final clamp: [Min, min(Max, HardMax)], Min lowered to
// the cap when the cap is below it.
func (c *CampaignPolicy) clamp() (lo, hi float64) {
	lo, hi = c.Min, c.Max
	if c.HardMax > 0 && c.HardMax < hi {
		hi = c.HardMax
	}
	if lo > hi {
		lo = hi
	}
	return lo, hi
}

// Policies is the policy configuration of a service: a global hard cap,
// the default policy and per-campaign policies. Lookups with For allocate
// nothing. Like CampaignPolicy, it must not be modified once in use.
type Policies struct {
	// HardMax caps every campaign's Max; 0: none.
	HardMax float64 `yaml:"hard_max"`
	// Default applies to campaigns without an entry.
	Default CampaignPolicy `yaml:"default"`
	// Campaigns by campaign id.
	Campaigns map[string]*CampaignPolicy `yaml:"campaigns"`
}

// DefaultHardMax is the default global hard cap.
const DefaultHardMax = 10

// DefaultPolicies returns the hard cap 10, the default policy for every
// campaign, and no campaign entries.
func DefaultPolicies() Policies {
	p := Policies{HardMax: DefaultHardMax, Default: DefaultCampaignPolicy()}
	p.Default.HardMax = p.HardMax
	return p
}

// For returns the policy of campaign: its entry, else the default.
func (p *Policies) For(campaign []byte) *CampaignPolicy {
	if c, ok := p.Campaigns[string(campaign)]; ok && c != nil {
		return c
	}
	return &p.Default
}

// Validate checks the hard cap, the default and every campaign entry; the
// error names the entry ("campaigns.c42: invalid pacing.plan ...").
func (p *Policies) Validate() error {
	if !(p.HardMax == 0 || (p.HardMax >= 1 && p.HardMax <= 100)) {
		return fmt.Errorf("invalid hard_max %v; want 0 (none) or a number in [1, 100]", p.HardMax)
	}
	if err := p.Default.Validate(); err != nil {
		return fmt.Errorf("default: %w", err)
	}
	for name, c := range p.Campaigns {
		if c == nil {
			return fmt.Errorf("campaigns.%s: empty entry", name)
		}
		if err := c.Validate(); err != nil {
			return fmt.Errorf("campaigns.%s: %w", name, err)
		}
	}
	return nil
}
