package event

import (
	"encoding/json"
	"fmt"
	"testing"
)

var (
	benchSingle = []byte(`{"id":"8c1f2a9e","type":"click","ts":1764345600123,"campaign":"c42","creative":"cr7",` +
		`"placement":"news.example/top","device":"Mobile","country":"fr","cost":0.0021,"value":0}`)
	benchBatch = func() []byte {
		b := []byte{'['}
		for i := range 100 {
			if i > 0 {
				b = append(b, ',')
			}
			b = fmt.Appendf(b, `{"id":"r1-%x","type":"%s","ts":%d,"campaign":"c%d","creative":"cr%d",`+
				`"placement":"news.example/top","device":"mobile","country":"US","cost":0.00%d}`,
				1000+i, Type(1+i%3), 1764345600000+int64(i), i%3, i%5, 1+i%9)
		}
		return append(b, ']')
	}()
)

// BenchmarkParse measures Parser.Parse; events/s is the figure to compare with the ingest rate.
func BenchmarkParse(b *testing.B) {
	f := func(name string, payload []byte, perPayload int) {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(payload)))
			var p Parser
			valid := 0
			fn := func(ev *Event, reason Reason, raw []byte) {
				if reason == OK {
					valid++
				}
			}
			for b.Loop() {
				p.Parse(payload, fn)
			}
			if valid != b.N*perPayload {
				b.Fatalf("unexpected valid events; got %d; want %d", valid, b.N*perPayload)
			}
			b.ReportMetric(float64(b.N*perPayload)/b.Elapsed().Seconds(), "events/s")
		})
	}
	f("single", benchSingle, 1)
	f("batch100", benchBatch, 100)
}

// wireEvent is the encoding/json baseline: reflection, no validation beyond types.
type wireEvent struct {
	ID        string  `json:"id"`
	Type      string  `json:"type"`
	TS        int64   `json:"ts"`
	Campaign  string  `json:"campaign"`
	Creative  string  `json:"creative"`
	Placement string  `json:"placement"`
	Device    string  `json:"device"`
	Country   string  `json:"country"`
	Cost      float64 `json:"cost"`
	Value     float64 `json:"value"`
}

// BenchmarkParseEncodingJSON is the baseline to beat: encoding/json into a struct.
func BenchmarkParseEncodingJSON(b *testing.B) {
	f := func(name string, payload []byte, perPayload int) {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(payload)))
			for b.Loop() {
				if perPayload == 1 {
					var ev wireEvent
					if err := json.Unmarshal(payload, &ev); err != nil {
						b.Fatal(err)
					}
					continue
				}
				var evs []wireEvent
				if err := json.Unmarshal(payload, &evs); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*perPayload)/b.Elapsed().Seconds(), "events/s")
		})
	}
	f("single", benchSingle, 1)
	f("batch100", benchBatch, 100)
}

func BenchmarkAppendJSON(b *testing.B) {
	var p Parser
	var ev Event
	p.Parse(benchSingle, func(e *Event, _ Reason, _ []byte) { ev = *cloneEvent(e) })
	b.ReportAllocs()
	var buf []byte
	for b.Loop() {
		buf = AppendJSON(buf[:0], &ev)
	}
	b.SetBytes(int64(len(buf)))
}
