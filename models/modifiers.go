package models

import (
	"fmt"
	"math"
	"strings"
	"time"
)

// Factor and input names of the manual modifiers.
const (
	FactorDevice  = "device"
	FactorCountry = "country"
	FactorHour    = "hour"
	FactorSeason  = "season"

	InputLocalHour = "local_hour"
	InputSeasons   = "seasons"
	InputStartMs   = "start_ms"
	InputEndMs     = "end_ms"
)

// MinModifier and MaxModifier bound a manual factor, as in the ad
// platforms that allow -90%..+900%: a modifier is 0 (opt out) or in
// [MinModifier, MaxModifier].
const (
	MinModifier = 0.1
	MaxModifier = 10
)

// ModifierConfig holds the manual factors of a campaign, multiplied with
// the live factors in the Google Ads / DSP style. A factor of exactly 0
// opts the matching traffic out (multiplier 0, no clamp).
//
// The maps are read on the bid path (map lookups with a []byte key
// converted in place allocate nothing) and must not be modified once the
// policy is in use: replace the whole CampaignPolicy to change them.
type ModifierConfig struct {
	// Device by device type, lower-case ("mobile": 1.3).
	Device map[string]float64 `yaml:"device"`
	// Country by ISO 3166-1 alpha-2 code, upper-case ("FR": 1.2).
	Country map[string]float64 `yaml:"country"`
	// Hour by local hour of day 0..23 in the campaign's time zone.
	Hour map[int]float64 `yaml:"hour"`
	// Seasons are time-boxed factors; overlapping ones multiply.
	Seasons []Season `yaml:"seasons"`
}

// Season is a time-boxed factor: Factor applies from Start (inclusive) to
// End (exclusive).
type Season struct {
	Name   string    `yaml:"name"`
	Start  time.Time `yaml:"start"`
	End    time.Time `yaml:"end"`
	Factor float64   `yaml:"factor"`
}

// Validate reports the first invalid entry of c, named as in YAML.
func (c *ModifierConfig) Validate() error {
	for k, v := range c.Device {
		if k == "" || k != strings.ToLower(k) {
			return fmt.Errorf("invalid modifiers.device key %q; want a non-empty lower-case device", k)
		}
		if err := checkModifier(v); err != nil {
			return fmt.Errorf("invalid modifiers.device.%s: %w", k, err)
		}
	}
	for k, v := range c.Country {
		if k == "" || k != strings.ToUpper(k) {
			return fmt.Errorf("invalid modifiers.country key %q; want a non-empty upper-case country code", k)
		}
		if err := checkModifier(v); err != nil {
			return fmt.Errorf("invalid modifiers.country.%s: %w", k, err)
		}
	}
	for k, v := range c.Hour {
		if k < 0 || k > 23 {
			return fmt.Errorf("invalid modifiers.hour key %d; want an hour 0..23", k)
		}
		if err := checkModifier(v); err != nil {
			return fmt.Errorf("invalid modifiers.hour.%d: %w", k, err)
		}
	}
	for i := range c.Seasons {
		s := &c.Seasons[i]
		if !s.End.After(s.Start) {
			return fmt.Errorf("invalid modifiers.seasons[%d] (%s): end %s is not after start %s", i, s.Name, s.End.Format(time.RFC3339), s.Start.Format(time.RFC3339))
		}
		if err := checkModifier(s.Factor); err != nil {
			return fmt.Errorf("invalid modifiers.seasons[%d].factor (%s): %w", i, s.Name, err)
		}
	}
	return nil
}

func checkModifier(v float64) error {
	if v == 0 || (v >= MinModifier && v <= MaxModifier) {
		return nil
	}
	return fmt.Errorf("factor %v; want 0 (opt out) or a number in [%v, %v]", v, MinModifier, MaxModifier)
}

// addModifiers adds the modifier factors that match in to res: device,
// country, hour of day in loc, and the product of the active seasons.
func addModifiers(c *ModifierConfig, loc *time.Location, in *Input, res *Result) {
	if len(c.Device) > 0 && len(in.Device) > 0 {
		if v, ok := c.Device[string(in.Device)]; ok {
			res.AddFactor(FactorDevice, v)
		}
	}
	if len(c.Country) > 0 && len(in.Country) > 0 {
		if v, ok := c.Country[string(in.Country)]; ok {
			res.AddFactor(FactorCountry, v)
		}
	}
	if len(c.Hour) > 0 && loc != nil {
		h := time.UnixMilli(in.NowMs).In(loc).Hour()
		if v, ok := c.Hour[h]; ok {
			f := res.AddFactor(FactorHour, v)
			f.AddInput(InputLocalHour, float64(h))
		}
	}
	if len(c.Seasons) > 0 {
		v, n := 1.0, 0
		var first *Season
		for i := range c.Seasons {
			s := &c.Seasons[i]
			if in.NowMs >= s.Start.UnixMilli() && in.NowMs < s.End.UnixMilli() {
				v *= s.Factor
				n++
				if first == nil {
					first = s
				}
			}
		}
		if n > 0 {
			if v != 0 && !(v >= math.SmallestNonzeroFloat64) {
				v = math.SmallestNonzeroFloat64 // never an opt-out by underflow
			}
			f := res.AddFactor(FactorSeason, v)
			f.AddInput(InputSeasons, float64(n))
			f.AddInput(InputStartMs, float64(first.Start.UnixMilli()))
			f.AddInput(InputEndMs, float64(first.End.UnixMilli()))
		}
	}
}
