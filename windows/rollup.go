package windows

import (
	"errors"
	"fmt"
	"strings"
)

// MaxLevels is the largest number of rollup levels: a level index is one byte
// of an encoded key, and every event updates every level it covers, so the
// limit also bounds the work per event.
const MaxLevels = 32

// Rollup is one configured aggregation level.
type Rollup struct {
	Name   string // "campaign/creative"
	Dims   []Dim  // starts with DimCampaign, canonical order campaign, creative, placement, device, country, site
	Mask   uint8  // bit d set when Dims contains d
	Parent int    // index in Rollups.Levels of its longest configured prefix; -1 for the campaign level
}

// Rollups is the immutable set of configured levels. It is safe for
// concurrent use once ParseRollups returns; callers must not modify it.
type Rollups struct {
	Levels   []Rollup // in configured order
	Campaign int      // index of the "campaign" level (it must be configured)

	byMask [1 << NumDims]int8 // level index by mask, -1 when not configured
}

// DefaultRollupNames returns the default levels: campaign, campaign/creative,
// campaign/placement and campaign/creative/placement.
func DefaultRollupNames() []string {
	return []string{"campaign", "campaign/creative", "campaign/placement", "campaign/creative/placement"}
}

// ParseRollups parses level names such as "campaign/creative/placement".
// Each name lists dimensions joined by "/", starting with campaign and in the
// canonical order campaign, creative, placement, device, country, site
// ("campaign/site", "campaign/placement/site"). The list
// must contain the "campaign" level, no level twice and at most MaxLevels levels.
func ParseRollups(names []string) (*Rollups, error) {
	if len(names) == 0 {
		return nil, errors.New("cannot parse rollups: the list is empty; it must contain at least \"campaign\"")
	}
	if len(names) > MaxLevels {
		return nil, fmt.Errorf("cannot parse rollups: %d levels configured; at most %d are supported", len(names), MaxLevels)
	}
	r := &Rollups{Campaign: -1, Levels: make([]Rollup, 0, len(names))}
	for i := range r.byMask {
		r.byMask[i] = -1
	}
	for _, name := range names {
		lv, err := parseRollup(name)
		if err != nil {
			return nil, err
		}
		if r.byMask[lv.Mask] >= 0 {
			return nil, fmt.Errorf("cannot parse rollups: duplicate level %q", lv.Name)
		}
		r.byMask[lv.Mask] = int8(len(r.Levels))
		if lv.Mask == 1<<DimCampaign {
			r.Campaign = len(r.Levels)
		}
		r.Levels = append(r.Levels, lv)
	}
	if r.Campaign < 0 {
		return nil, fmt.Errorf("cannot parse rollups %q: the \"campaign\" level is missing; every other level needs it as its root", strings.Join(names, ","))
	}
	for i := range r.Levels {
		lv := &r.Levels[i]
		lv.Parent = -1
		var mask uint8
		for _, d := range lv.Dims[:len(lv.Dims)-1] {
			mask |= 1 << d
			if p := r.byMask[mask]; p >= 0 {
				lv.Parent = int(p)
			}
		}
	}
	return r, nil
}

func parseRollup(name string) (Rollup, error) {
	if name == "" {
		return Rollup{}, errors.New("cannot parse rollup \"\": empty name")
	}
	parts := strings.Split(name, "/")
	lv := Rollup{Name: name, Dims: make([]Dim, 0, len(parts))}
	for i, p := range parts {
		if p == "" {
			return Rollup{}, fmt.Errorf("cannot parse rollup %q: empty dimension at position %d", name, i+1)
		}
		d, ok := ParseDim(p)
		if !ok {
			return Rollup{}, fmt.Errorf("cannot parse rollup %q: unknown dimension %q; known: %s", name, p, strings.Join(DimNames[:], ", "))
		}
		if i == 0 && d != DimCampaign {
			return Rollup{}, fmt.Errorf("cannot parse rollup %q: it starts with %q; every rollup must start with \"campaign\"", name, p)
		}
		if lv.Mask&(1<<d) != 0 {
			return Rollup{}, fmt.Errorf("cannot parse rollup %q: duplicate dimension %q", name, p)
		}
		if i > 0 && d < lv.Dims[i-1] {
			return Rollup{}, fmt.Errorf("cannot parse rollup %q: %q comes after %q; dimensions must be in the order %s",
				name, p, lv.Dims[i-1], strings.Join(DimNames[:], "/"))
		}
		lv.Dims = append(lv.Dims, d)
		lv.Mask |= 1 << d
	}
	return lv, nil
}

// ByName returns the index of the level named name ("campaign/creative").
func (r *Rollups) ByName(name string) (int, bool) {
	for i := range r.Levels {
		if r.Levels[i].Name == name {
			return i, true
		}
	}
	return -1, false
}

// ByMask returns the index of the level whose dimension mask is mask.
func (r *Rollups) ByMask(mask uint8) (int, bool) {
	if int(mask) >= len(r.byMask) || r.byMask[mask] < 0 {
		return -1, false
	}
	return int(r.byMask[mask]), true
}

// Names returns the level names in configured order, in a new slice.
func (r *Rollups) Names() []string {
	names := make([]string, len(r.Levels))
	for i := range r.Levels {
		names[i] = r.Levels[i].Name
	}
	return names
}

// Chain appends to dst the level indexes from the campaign level down to level (inclusive), following Parent.
func (r *Rollups) Chain(dst []int, level int) []int {
	start := len(dst)
	for l := level; l >= 0; l = r.Levels[l].Parent {
		dst = append(dst, l)
	}
	tail := dst[start:]
	for i, j := 0, len(tail)-1; i < j; i, j = i+1, j-1 {
		tail[i], tail[j] = tail[j], tail[i]
	}
	return dst
}

// Covers reports whether v has every dimension of level (so an event/request with v names that level).
func (r *Rollups) Covers(level int, v *Values) bool {
	for _, d := range r.Levels[level].Dims {
		if len(v[d]) == 0 {
			return false
		}
	}
	return true
}
