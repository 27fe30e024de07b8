package sim

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"html/template"
	"io"
)

//go:embed market.html
var marketHTML string

var marketTemplate = template.Must(template.New("market").Parse(marketHTML))

// WriteHTML writes the report as one self-contained page, as the bench
// report does: the report's JSON inlined, and inline JavaScript that draws
// the conversions by budget (mean and 95% interval per strategy) as SVG
// and fills the tables. It loads nothing from anywhere.
func (r *MarketReport) WriteHTML(w io.Writer) error {
	// encoding/json escapes <, > and & in strings, so the data cannot
	// close its script element.
	data, err := json.Marshal(struct {
		Fractions []int        `json:"fractions"`
		Seeds     []uint64     `json:"seeds"`
		Rows      []MarketRow  `json:"rows"`
		Lifts     []MarketLift `json:"lifts"`
		Aims      []Claim      `json:"aims"`
		Stats     []MarketStats
	}{r.Fractions, r.Seeds, r.Rows, r.Lifts, r.Aims, r.LogStats})
	if err != nil {
		return fmt.Errorf("cannot encode the report: %w", err)
	}
	if err := marketTemplate.Execute(w, struct{ Data template.JS }{template.JS(data)}); err != nil {
		return fmt.Errorf("cannot write the HTML page: %w", err)
	}
	return nil
}
