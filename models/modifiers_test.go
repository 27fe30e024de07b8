package models

import (
	"strings"
	"testing"
	"time"
)

func TestModifierConfigValidate(t *testing.T) {
	f := func(c ModifierConfig, want string) {
		t.Helper()
		err := c.Validate()
		if want == "" {
			if err != nil {
				t.Fatalf("unexpected error: %s", err)
			}
			return
		}
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("unexpected error; got %v; want one containing %q", err, want)
		}
	}
	t0 := time.Date(2025, 11, 28, 0, 0, 0, 0, time.UTC)
	f(ModifierConfig{}, "")
	f(ModifierConfig{Device: map[string]float64{"mobile": 1.3, "tv": 0}, Country: map[string]float64{"FR": 10}, Hour: map[int]float64{23: 0.1},
		Seasons: []Season{{Name: "bf", Start: t0, End: t0.Add(time.Hour), Factor: 1.5}}}, "")
	f(ModifierConfig{Device: map[string]float64{"Mobile": 1.3}}, "modifiers.device key")
	f(ModifierConfig{Device: map[string]float64{"mobile": 11}}, "modifiers.device.mobile")
	f(ModifierConfig{Country: map[string]float64{"fr": 1}}, "modifiers.country key")
	f(ModifierConfig{Country: map[string]float64{"FR": 0.05}}, "modifiers.country.FR")
	f(ModifierConfig{Hour: map[int]float64{24: 1}}, "modifiers.hour key")
	f(ModifierConfig{Hour: map[int]float64{3: -1}}, "modifiers.hour.3")
	f(ModifierConfig{Seasons: []Season{{Name: "x", Start: t0, End: t0, Factor: 1}}}, "modifiers.seasons[0]")
	f(ModifierConfig{Seasons: []Season{{Name: "x", Start: t0, End: t0.Add(time.Hour), Factor: 20}}}, "modifiers.seasons[0].factor")
}

func TestModifiers(t *testing.T) {
	paris, err := time.LoadLocation("Europe/Paris")
	if err != nil {
		t.Fatalf("cannot load Europe/Paris: %s", err)
	}
	t0 := time.Date(2025, 11, 28, 0, 0, 0, 0, paris)
	c := ModifierConfig{
		Device:  map[string]float64{"mobile": 1.3},
		Country: map[string]float64{"FR": 1.2, "DE": 0},
		Hour:    map[int]float64{9: 0.5},
		Seasons: []Season{
			{Name: "bf", Start: t0, End: t0.AddDate(0, 0, 4), Factor: 1.5},
			{Name: "bf-morning", Start: t0.Add(8 * time.Hour), End: t0.Add(12 * time.Hour), Factor: 2},
		},
	}
	f := func(device, country string, at time.Time, want map[string]float64) {
		t.Helper()
		var res Result
		res.Reset()
		addModifiers(&c, paris, &Input{Device: []byte(device), Country: []byte(country), NowMs: at.UnixMilli()}, &res)
		if res.NFactors != len(want) {
			t.Fatalf("unexpected factors for %s/%s at %s; got %d; want %v", device, country, at, res.NFactors, want)
		}
		for name, v := range want {
			fa, ok := res.Factor(name)
			if !ok || fa.Value != v {
				t.Fatalf("unexpected factor %s for %s/%s at %s; got %+v; want %v", name, device, country, at, fa, v)
			}
		}
	}
	// 09:30 in Paris is 08:30 UTC: the hour modifier reads the local hour.
	f("mobile", "FR", t0.Add(9*time.Hour+30*time.Minute), map[string]float64{"device": 1.3, "country": 1.2, "hour": 0.5, "season": 3})
	f("desktop", "US", t0.Add(-time.Hour), map[string]float64{})
	f("", "DE", t0.Add(13*time.Hour), map[string]float64{"country": 0, "season": 1.5})
	// Seasons end exclusively.
	f("", "", t0.AddDate(0, 0, 4), map[string]float64{})
}
