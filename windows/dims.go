package windows

import "strconv"

// Dim is one event dimension a rollup can group by. The numeric order is the
// canonical order of dimensions inside a rollup and inside an encoded key.
type Dim uint8

// The dimensions, in canonical order. A new dimension is appended at the
// end: the indexes are rollup masks and the order of values in encoded keys,
// so appending keeps every existing key, mask and checkpoint valid
// (checkpoint_compat_test.go).
const (
	DimCampaign Dim = iota
	DimCreative
	DimPlacement
	DimDevice
	DimCountry
	// DimSite is the site or app an impression is shown in: an event's
	// site field, OpenRTB's site.domain or app.bundle.
	DimSite
	NumDims
)

// DimNames holds the name of every dimension as written in rollup names,
// query strings and event fields.
var DimNames = [NumDims]string{"campaign", "creative", "placement", "device", "country", "site"}

// ParseDim returns the dimension named s (exact, lower-case match).
func ParseDim(s string) (Dim, bool) {
	for d, name := range DimNames {
		if s == name {
			return Dim(d), true
		}
	}
	return 0, false
}

// String returns the dimension's name.
func (d Dim) String() string {
	if d < NumDims {
		return DimNames[d]
	}
	return "Dim(" + strconv.Itoa(int(d)) + ")"
}

// Values holds dimension values indexed by Dim; a nil or empty slice means absent.
//
// Values only references bytes: whoever fills it keeps the backing memory alive
// and unchanged for as long as the Values is used.
type Values [NumDims][]byte

// Reset marks every dimension absent, dropping the references.
func (v *Values) Reset() {
	*v = Values{}
}

// Mask returns the set of present dimensions, bit d set when v[d] is not empty.
func (v *Values) Mask() uint8 {
	var m uint8
	for d := range v {
		if len(v[d]) > 0 {
			m |= 1 << d
		}
	}
	return m
}
