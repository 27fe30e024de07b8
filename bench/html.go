package bench

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"html/template"
	"io"
)

//go:embed report.html
var reportHTML string

var reportTemplate = template.Must(template.New("report").Parse(reportHTML))

// WriteHTML writes the report as one self-contained HTML page: the report's JSON inlined, and
// inline JavaScript that draws the charts (latency and throughput over time, the percentile
// distribution per phase) as SVG and fills the tables. It loads nothing from anywhere.
func (r *Report) WriteHTML(w io.Writer) error {
	// encoding/json escapes <, > and & in strings, so the data cannot close its script element.
	data, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("cannot encode the report: %w", err)
	}
	return reportTemplate.Execute(w, struct {
		Scenario, RunID string
		Data            template.JS
	}{r.Scenario, r.RunID, template.JS(data)})
}
