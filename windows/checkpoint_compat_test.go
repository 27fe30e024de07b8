package windows

import (
	"bytes"
	"encoding/hex"
	"os"
	"strings"
	"testing"
)

// Checkpoints do not depend on NumDims: a key is written as its encoded
// bytes (AppendKey: the level index, then the values of that level's
// dimensions only), and nothing in the format is sized by the number of
// dimensions. A dimension appended at the end of the canonical order (site,
// index 5) therefore leaves every key of the levels configured before it
// byte for byte the same, and a checkpoint written before it restores
// unchanged (bidder's checkpoint header checks the rollup names, which do
// not change either). TestCheckpointWrittenBeforeSite holds that to a file
// written by the build before site existed.

// preSiteRollups are the levels of testdata/checkpoint-before-site.hex.
var preSiteRollups = []string{"campaign", "campaign/creative", "campaign/placement",
	"campaign/creative/placement", "campaign/device/country"}

// preSiteNow is a minute after the last event of that file.
const preSiteNow = t0 + 2*hourMs

// addPreSiteEvents adds to s, with the keys of rollups r, the events of
// testdata/checkpoint-before-site.hex, and returns the keys it used.
func addPreSiteEvents(t testing.TB, s *Store, r *Rollups) [][]byte {
	t.Helper()
	var keys [][]byte
	for i := range 120 {
		var v Values
		v[DimCampaign] = []byte{'c', byte('0' + i%3)}
		v[DimCreative] = []byte{'c', 'r', byte('0' + i%4)}
		v[DimPlacement] = []byte("news.example/top" + string(rune('a'+i%5)))
		v[DimDevice] = []byte([]string{"mobile", "pc", "tv"}[i%3])
		v[DimCountry] = []byte([]string{"FR", "DE"}[i%2])
		ts := t0 + int64(i)*minuteMs
		c := Counts{Impressions: uint64(1 + i%7), Clicks: uint64(i % 2), Conversions: uint64(i % 5 / 4),
			CostMicros: uint64(2100 * (i % 9)), ValueMicros: uint64(150_000 * (i % 5 / 4))}
		for l := range r.Levels {
			k := AppendKey(nil, l, r, &v)
			if !s.Add(k, ts, ts, c) {
				t.Fatalf("unexpected Add failure of %q", k)
			}
			keys = append(keys, k)
		}
	}
	return keys
}

// TestCheckpointWrittenBeforeSite restores a checkpoint written at commit
// 88ce228, when NumDims was 5, and requires it to answer for the keys this
// build encodes from the same values exactly what a store fed the same
// events answers.
func TestCheckpointWrittenBeforeSite(t *testing.T) {
	// Kept as hex text: the repository tracks no binary files.
	text, err := os.ReadFile("testdata/checkpoint-before-site.hex")
	if err != nil {
		t.Fatalf("cannot read the checkpoint: %s", err)
	}
	data, err := hex.DecodeString(strings.Join(strings.Fields(string(text)), ""))
	if err != nil {
		t.Fatalf("cannot decode the checkpoint's hex: %s", err)
	}
	r, err := ParseRollups(preSiteRollups)
	if err != nil {
		t.Fatalf("unexpected error: %s", err)
	}
	want := mustStore(t, Config{})
	keys := addPreSiteEvents(t, want, r)
	got := mustStore(t, Config{})
	if err := got.ReadCheckpoint(bytes.NewReader(data)); err != nil {
		t.Fatalf("cannot restore the checkpoint written before site: %s", err)
	}
	sameContent(t, want, got, keys, []int64{preSiteNow, preSiteNow + 30*minuteMs, preSiteNow + 20*hourMs})
	var v Values
	for _, k := range keys {
		if _, err := DecodeKey(k, r, &v); err != nil {
			t.Fatalf("cannot decode %q: %s", k, err)
		}
		if len(v[DimSite]) != 0 {
			t.Fatalf("key %q of a level without site decodes a site %q", k, v[DimSite])
		}
	}
}
