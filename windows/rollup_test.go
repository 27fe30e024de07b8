package windows

import (
	"reflect"
	"strings"
	"testing"
)

func TestParseDimSpan(t *testing.T) {
	for d := Dim(0); d < NumDims; d++ {
		got, ok := ParseDim(d.String())
		if !ok || got != d {
			t.Fatalf("unexpected ParseDim(%q); got %v, %v; want %v, true", d.String(), got, ok, d)
		}
	}
	if _, ok := ParseDim("Campaign"); ok {
		t.Fatalf("unexpected ParseDim(%q) success", "Campaign")
	}
	if s := NumDims.String(); s != "Dim(6)" {
		t.Fatalf("unexpected String of an invalid dim; got %q; want %q", s, "Dim(6)")
	}
	// The indexes are rollup masks and the order of values in stored keys
	// and checkpoints: a dimension is only ever appended.
	for i, name := range []string{"campaign", "creative", "placement", "device", "country", "site"} {
		if d, ok := ParseDim(name); !ok || int(d) != i {
			t.Fatalf("unexpected ParseDim(%q); got %d, %v; want %d, true", name, d, ok, i)
		}
	}
	for sp := Span(0); sp < NumSpans; sp++ {
		got, ok := ParseSpan(sp.String())
		if !ok || got != sp {
			t.Fatalf("unexpected ParseSpan(%q); got %v, %v; want %v, true", sp.String(), got, ok, sp)
		}
	}
	if _, ok := ParseSpan("2h"); ok {
		t.Fatalf("unexpected ParseSpan(%q) success", "2h")
	}
	if d := Span24h.Duration().Hours(); d != 24 {
		t.Fatalf("unexpected 24h duration; got %vh; want 24h", d)
	}
	if d := NumSpans.Duration(); d != 0 {
		t.Fatalf("unexpected duration of an invalid span; got %v; want 0", d)
	}
	var v Values
	v[DimCampaign] = []byte("c")
	v[DimCountry] = []byte("FR")
	v[DimDevice] = []byte{}
	if m := v.Mask(); m != 1<<DimCampaign|1<<DimCountry {
		t.Fatalf("unexpected mask; got %05b; want %05b", m, 1<<DimCampaign|1<<DimCountry)
	}
	v.Reset()
	if m := v.Mask(); m != 0 {
		t.Fatalf("unexpected mask after Reset; got %05b; want 0", m)
	}
}

func TestParseRollupsDefault(t *testing.T) {
	r, err := ParseRollups(DefaultRollupNames())
	if err != nil {
		t.Fatalf("unexpected error: %s", err)
	}
	if !reflect.DeepEqual(r.Names(), DefaultRollupNames()) {
		t.Fatalf("unexpected names; got %q; want %q", r.Names(), DefaultRollupNames())
	}
	if r.Campaign != 0 {
		t.Fatalf("unexpected campaign index; got %d; want 0", r.Campaign)
	}
	f := func(name string, dims []Dim, parent int, chain []int) {
		t.Helper()
		i, ok := r.ByName(name)
		if !ok {
			t.Fatalf("unexpected ByName(%q) miss", name)
		}
		lv := r.Levels[i]
		if !reflect.DeepEqual(lv.Dims, dims) {
			t.Fatalf("unexpected dims of %q; got %v; want %v", name, lv.Dims, dims)
		}
		var mask uint8
		for _, d := range dims {
			mask |= 1 << d
		}
		if lv.Mask != mask {
			t.Fatalf("unexpected mask of %q; got %05b; want %05b", name, lv.Mask, mask)
		}
		if j, ok := r.ByMask(mask); !ok || j != i {
			t.Fatalf("unexpected ByMask(%05b); got %d, %v; want %d, true", mask, j, ok, i)
		}
		if lv.Parent != parent {
			t.Fatalf("unexpected parent of %q; got %d; want %d", name, lv.Parent, parent)
		}
		got := r.Chain([]int{99}, i)
		if !reflect.DeepEqual(got, append([]int{99}, chain...)) {
			t.Fatalf("unexpected chain of %q; got %v; want %v", name, got, append([]int{99}, chain...))
		}
	}
	f("campaign", []Dim{DimCampaign}, -1, []int{0})
	f("campaign/creative", []Dim{DimCampaign, DimCreative}, 0, []int{0, 1})
	f("campaign/placement", []Dim{DimCampaign, DimPlacement}, 0, []int{0, 2})
	f("campaign/creative/placement", []Dim{DimCampaign, DimCreative, DimPlacement}, 1, []int{0, 1, 3})
	if _, ok := r.ByName("campaign/device"); ok {
		t.Fatalf("unexpected ByName hit for an unconfigured level")
	}
	if _, ok := r.ByMask(1<<DimCampaign | 1<<DimDevice); ok {
		t.Fatalf("unexpected ByMask hit for an unconfigured level")
	}
	if _, ok := r.ByMask(255); ok {
		t.Fatalf("unexpected ByMask hit for an invalid mask")
	}
}

func TestParseRollupsParents(t *testing.T) {
	// campaign/creative/placement/device: its longest configured prefix is
	// campaign/creative (campaign/creative/placement is missing, and
	// campaign/placement is not a prefix).
	r, err := ParseRollups([]string{"campaign/creative/placement/device", "campaign/placement", "campaign/creative", "campaign", "campaign/device/country"})
	if err != nil {
		t.Fatalf("unexpected error: %s", err)
	}
	want := []int{2, 3, 3, -1, 3}
	for i, lv := range r.Levels {
		if lv.Parent != want[i] {
			t.Fatalf("unexpected parent of %q; got %d; want %d", lv.Name, lv.Parent, want[i])
		}
	}
	if r.Campaign != 3 {
		t.Fatalf("unexpected campaign index; got %d; want 3", r.Campaign)
	}
	if got := r.Chain(nil, 0); !reflect.DeepEqual(got, []int{3, 2, 0}) {
		t.Fatalf("unexpected chain; got %v; want [3 2 0]", got)
	}
	var v Values
	v[DimCampaign] = []byte("c")
	v[DimCreative] = []byte("cr")
	v[DimPlacement] = []byte("p")
	f := func(level int, want bool) {
		t.Helper()
		if got := r.Covers(level, &v); got != want {
			t.Fatalf("unexpected Covers(%q); got %v; want %v", r.Levels[level].Name, got, want)
		}
	}
	f(0, false)
	f(1, true)
	f(2, true)
	f(3, true)
	f(4, false)
	v[DimCreative] = nil
	f(2, false)
	v[DimPlacement] = []byte{}
	f(1, false)
}

// TestParseRollupsSite: site is the last dimension, so a level names it
// last ("campaign/site", "campaign/placement/site"), and its parent is its
// longest configured prefix as for any other level.
func TestParseRollupsSite(t *testing.T) {
	r, err := ParseRollups(append(DefaultRollupNames(), "campaign/site", "campaign/placement/site", "campaign/creative/placement/device/country/site"))
	if err != nil {
		t.Fatalf("unexpected error: %s", err)
	}
	f := func(name string, dims []Dim, parent string) {
		t.Helper()
		i, ok := r.ByName(name)
		if !ok {
			t.Fatalf("unexpected ByName(%q) miss", name)
		}
		lv := r.Levels[i]
		if !reflect.DeepEqual(lv.Dims, dims) {
			t.Fatalf("unexpected dims of %q; got %v; want %v", name, lv.Dims, dims)
		}
		if j, ok := r.ByMask(lv.Mask); !ok || j != i {
			t.Fatalf("unexpected ByMask(%06b); got %d, %v; want %d, true", lv.Mask, j, ok, i)
		}
		if got := r.Levels[lv.Parent].Name; got != parent {
			t.Fatalf("unexpected parent of %q; got %q; want %q", name, got, parent)
		}
	}
	f("campaign/site", []Dim{DimCampaign, DimSite}, "campaign")
	f("campaign/placement/site", []Dim{DimCampaign, DimPlacement, DimSite}, "campaign/placement")
	f("campaign/creative/placement/device/country/site", []Dim{DimCampaign, DimCreative, DimPlacement, DimDevice, DimCountry, DimSite}, "campaign/creative/placement")
	if m := r.Levels[4].Mask; m != 0b100001 {
		t.Fatalf("unexpected mask of campaign/site; got %06b; want 100001", m)
	}

	var v Values
	v[DimCampaign] = []byte("c1")
	v[DimPlacement] = []byte("top")
	v[DimSite] = []byte("news.example")
	lvl, _ := r.ByName("campaign/placement/site")
	key := AppendKey(nil, lvl, r, &v)
	var got Values
	if l, err := DecodeKey(key, r, &got); err != nil || l != lvl || string(got[DimSite]) != "news.example" || string(got[DimPlacement]) != "top" {
		t.Fatalf("unexpected DecodeKey(%q); got %d, %q, %v", key, l, got, err)
	}
}

func TestParseRollupsErrors(t *testing.T) {
	f := func(names []string, wantSubstr string) {
		t.Helper()
		r, err := ParseRollups(names)
		if err == nil {
			t.Fatalf("unexpected success for %q: %v", names, r.Names())
		}
		if !strings.Contains(err.Error(), wantSubstr) {
			t.Fatalf("unexpected error for %q; got %q; want it to contain %q", names, err, wantSubstr)
		}
	}
	f(nil, "empty")
	f([]string{}, "empty")
	f([]string{""}, "empty name")
	f([]string{"campaign/"}, "empty dimension")
	f([]string{"campaign//creative"}, "empty dimension")
	f([]string{"campaign", "campaign/colour"}, `unknown dimension "colour"`)
	f([]string{"campaign", "Campaign/creative"}, `unknown dimension "Campaign"`)
	f([]string{"campaign", "creative"}, `must start with "campaign"`)
	f([]string{"campaign", "creative/campaign"}, `must start with "campaign"`)
	f([]string{"campaign", "campaign/placement/creative"}, `"creative" comes after "placement"`)
	f([]string{"campaign", "campaign/creative/creative"}, `duplicate dimension "creative"`)
	f([]string{"campaign", "campaign/campaign"}, `duplicate dimension "campaign"`)
	f([]string{"campaign", "campaign/creative", "campaign/creative"}, `duplicate level "campaign/creative"`)
	f([]string{"campaign", "campaign"}, `duplicate level "campaign"`)
	f([]string{"campaign/creative"}, `"campaign" level is missing`)
	many := []string{"campaign"}
	for m := 1; len(many) < MaxLevels+1; m++ {
		many = append(many, "campaign/x"+string(rune('a'+m)))
	}
	f(many, "at most 32")

	f([]string{"campaign", "campaign/site/country"}, `"country" comes after "site"`)
	f([]string{"campaign", "campaign/site/placement"}, `"placement" comes after "site"`)

	// Every one of the 32 possible levels is fine (MaxLevels is 32).
	var all []string
	for m := 0; m < 1<<(NumDims-1); m++ {
		name := "campaign"
		for d := DimCreative; d < NumDims; d++ {
			if m&(1<<(d-1)) != 0 {
				name += "/" + d.String()
			}
		}
		all = append(all, name)
	}
	r, err := ParseRollups(all)
	if err != nil {
		t.Fatalf("unexpected error for all levels: %s", err)
	}
	for i, lv := range r.Levels {
		if i == r.Campaign {
			continue
		}
		if lv.Parent < 0 || len(r.Levels[lv.Parent].Dims) != len(lv.Dims)-1 {
			t.Fatalf("unexpected parent of %q: %d", lv.Name, lv.Parent)
		}
	}
}
