package bidder

import (
	"strings"
	"unicode/utf8"

	"github.com/bidpulse/bidpulse/bidder/event"
	"github.com/bidpulse/bidpulse/windows"
)

// queryError is a client error of a bid or rates request; its text is
// returned as {"error":...}.
type queryError string

func (e queryError) Error() string { return string(e) }

// knownDims lists the dimensions a request may name, for error texts:
// "campaign, creative, placement, device, country, site".
var knownDims = strings.Join(windows.DimNames[:], ", ")

// dimByName maps a query parameter or JSON field name to its dimension.
func dimByName(name []byte) (windows.Dim, bool) {
	for d, n := range windows.DimNames {
		if string(name) == n {
			return windows.Dim(d), true
		}
	}
	return 0, false
}

// setDim validates value and stores it, normalised (device lower-cased,
// country upper-cased, as at ingest), into sc.Vals[d]. value must stay
// unchanged while sc.Vals is used.
func (sc *bidScratch) setDim(d windows.Dim, value []byte) error {
	if len(sc.Vals[d]) > 0 {
		return queryError("duplicate parameter " + windows.DimNames[d])
	}
	if len(value) == 0 {
		return queryError("empty " + windows.DimNames[d])
	}
	if len(value) > event.MaxFieldLen {
		return queryError(windows.DimNames[d] + " longer than 128 bytes")
	}
	if !utf8.Valid(value) {
		return queryError(windows.DimNames[d] + " is not valid UTF-8")
	}
	norm := event.Normal(sc.norm[d], d, value)
	if &norm[0] != &value[0] {
		sc.norm[d] = norm // a copy: its buffer serves the next query
	}
	sc.Vals[d] = norm
	return nil
}

// parseBool reads a flag parameter such as explain=1.
func parseBool(v []byte) (bool, bool) {
	switch string(v) {
	case "", "1", "true", "yes":
		return true, true
	case "0", "false", "no":
		return false, true
	}
	return false, false
}
