package bidder

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/bidpulse/bidpulse/models"
	"github.com/bidpulse/bidpulse/windows"
)

// Config is the content of the --config YAML file: what is aggregated and how
// multipliers are computed. Every field is optional; absent fields keep their
// defaults (DefaultConfig).
type Config struct {
	// Rollups are the aggregation levels, e.g. "campaign/placement". Each
	// starts with campaign and keeps the order campaign, creative, placement,
	// device, country, site ("campaign/site"). The campaign level is required.
	Rollups []string `yaml:"rollups"`
	// Resolutions are the rings of every key, finest first. Together they
	// must serve the spans 1m, 5m, 15m, 1h and 24h.
	Resolutions []ResolutionConfig `yaml:"resolutions"`
	// Policies configures the multiplier policies: a default and
	// per-campaign ones (see docs/MODELS.md).
	Policies models.Policies `yaml:"policies"`
}

// ResolutionConfig is one ring: Buckets buckets of Width each.
type ResolutionConfig struct {
	Width   time.Duration `yaml:"width"`
	Buckets int           `yaml:"buckets"`
}

// DefaultConfig returns the configuration used when no --config is given.
func DefaultConfig() Config {
	c := Config{
		Rollups:  windows.DefaultRollupNames(),
		Policies: models.DefaultPolicies(),
	}
	for _, r := range windows.DefaultResolutions() {
		c.Resolutions = append(c.Resolutions, ResolutionConfig{Width: r.Width, Buckets: r.Buckets})
	}
	return c
}

// LoadConfig reads a YAML config file over the defaults. Unknown fields are
// an error, so a typo does not silently fall back to a default.
func LoadConfig(path string) (Config, error) {
	c := DefaultConfig()
	if path == "" {
		return c, nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return c, fmt.Errorf("cannot read config: %w", err)
	}
	c, err = parseConfig(data)
	if err != nil {
		return c, fmt.Errorf("config %s: %w", path, err)
	}
	return c, nil
}

func parseConfig(data []byte) (Config, error) {
	c := DefaultConfig()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) {
		return c, fmt.Errorf("cannot parse config: %w", err)
	}
	_, res, _, err := c.build()
	if err != nil {
		return c, err
	}
	// The resolutions must serve every span: let the windows say so now,
	// at load time, rather than at start.
	if _, err := windows.NewStore(windows.Config{Resolutions: res, MaxKeys: 1}); err != nil {
		return c, fmt.Errorf("invalid resolutions: %w", err)
	}
	return c, nil
}

// build turns the config into the parts the service uses, validating it.
func (c *Config) build() (*windows.Rollups, []windows.Resolution, *models.Policies, error) {
	var pc *models.Policies
	rollups, err := windows.ParseRollups(c.Rollups)
	if err != nil {
		return nil, nil, pc, fmt.Errorf("invalid rollups: %w", err)
	}
	var res []windows.Resolution
	for i, r := range c.Resolutions {
		if r.Width <= 0 || r.Width%time.Millisecond != 0 {
			return nil, nil, pc, fmt.Errorf("invalid resolutions[%d]: width %s must be a positive whole number of milliseconds", i, r.Width)
		}
		if r.Buckets <= 0 || r.Buckets > 100000 {
			return nil, nil, pc, fmt.Errorf("invalid resolutions[%d]: buckets %d must be in 1..100000", i, r.Buckets)
		}
		res = append(res, windows.Resolution{Width: r.Width, Buckets: r.Buckets})
	}
	pol := c.Policies
	if err := pol.Validate(); err != nil {
		return nil, nil, pc, fmt.Errorf("invalid policies: %w", err)
	}
	pc = &pol
	return rollups, res, pc, nil
}
