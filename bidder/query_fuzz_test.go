package bidder

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/bidpulse/bidpulse/bidder/event"
	"github.com/bidpulse/bidpulse/windows"
)

// FuzzQuery checks the bid and rates queries (GET /v1/multiplier, GET /v1/rates) on any query
// string: the answer is a 200 with a finite multiplier or a 400 with an error, always JSON; and
// every dimension value is accepted and normalised exactly as ingest accepts and normalises it
// in an event (a bid must find the key its events were counted under).
func FuzzQuery(f *testing.F) {
	for _, s := range []string{
		``, `campaign=c1`, `campaign=c1&placement=p1&explain=1`, `campaign=c1&device=MoBiLe&country=fr`,
		`campaign=c1&creative=cr1&placement=p1&device=tv&country=US&explain=true`,
		`campaign=c1&campaign=c2`, `campaign=`, `campaign=%ff%fe`, `campaign=c%00&device=%C3%89`,
		`campaign=c1&explain=2`, `campaign=c1&x=1`, `placement=p1`, `campaign=a+b%2Fc&country=%C3%A9s`,
		`campaign=` + string(bytes.Repeat([]byte("x"), 129)), `campaign=c1&device=` + string(bytes.Repeat([]byte("%41"), 128)),
		`campaign=c1&site=News.Example`, `campaign=c1&placement=p1&site=com.example.app&site=x`, `campaign=c1&site=`,
	} {
		f.Add([]byte(s))
	}
	s := newIdleService(f)
	var vals windows.Values
	for _, dims := range [][]string{{"c1"}, {"c1", "cr1", "p1"}, {"c1", "", "p1"}, {"c1", "cr1"}} {
		vals.Reset()
		for d, v := range dims {
			vals[d] = []byte(v)
		}
		lvl, ok := s.rollups.ByMask(vals.Mask())
		if !ok {
			f.Fatalf("no rollup for %v", dims)
		}
		s.store.Add(windows.AppendKey(nil, lvl, s.rollups, &vals), testNow-1000, testNow, windows.Counts{Impressions: 500, Clicks: 20, Conversions: 2})
	}
	var p event.Parser
	f.Fuzz(func(t *testing.T, query []byte) {
		for _, path := range []string{"/v1/multiplier?", "/v1/rates?"} {
			var ctx fasthttp.RequestCtx
			ctx.Request.SetRequestURIBytes(append([]byte(path), query...))
			if path == "/v1/rates?" {
				s.handleRates(&ctx)
			} else {
				s.handleMultiplier(&ctx)
			}
			checkQueryAnswer(t, path, query, ctx.Response.StatusCode(), ctx.Response.Body())
		}
		// Each dimension value against ingest's validation and normalisation.
		var args fasthttp.Args
		args.ParseBytes(query)
		for k, v := range args.All() {
			d, ok := dimByName(k)
			if !ok {
				continue
			}
			sc := getScratch()
			qerr := sc.setDim(d, v)
			var got []byte
			reason := event.OK
			p.Parse(eventWith(d, v), func(ev *event.Event, r event.Reason, _ []byte) {
				reason = r
				if ev != nil {
					got = append([]byte(nil), ev.Dims[d]...)
				}
			})
			if (qerr == nil) != (reason == event.OK) {
				t.Fatalf("unexpected disagreement on %s=%q; the query says %v; ingest says %q", k, v, qerr, reason)
			}
			if qerr == nil && !bytes.Equal(sc.Vals[d], got) {
				t.Fatalf("unexpected normalisation of %s=%q; the query gives %q; ingest gives %q", k, v, sc.Vals[d], got)
			}
			putScratch(sc)
		}
	})
}

// checkQueryAnswer checks the status and JSON body of a bid or rates query.
func checkQueryAnswer(t *testing.T, path string, query []byte, code int, body []byte) {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatalf("unexpected body of %s%s: not a JSON object: %v: %s", path, query, err, body)
	}
	switch code {
	case fasthttp.StatusOK:
		if path != "/v1/multiplier?" {
			return
		}
		mult, ok := m["multiplier"].(float64)
		if !ok || math.IsNaN(mult) || mult < 0 || mult > 10 {
			t.Fatalf("unexpected multiplier of %s%s; got %s", path, query, body)
		}
	case fasthttp.StatusBadRequest:
		if msg, ok := m["error"].(string); !ok || msg == "" {
			t.Fatalf("unexpected 400 of %s%s without an error: %s", path, query, body)
		}
	default:
		t.Fatalf("unexpected status of %s%s; got %d: %s", path, query, code, body)
	}
}

// eventWith returns an impression of campaign "c" with dimension d set to v, its bytes as they
// are (JSON strings may hold any byte but '"', '\\' and control characters, which are escaped).
func eventWith(d windows.Dim, v []byte) []byte {
	b := []byte(`{"id":"q","type":"impression"`)
	if d != windows.DimCampaign {
		b = append(b, `,"campaign":"c"`...)
	}
	b = fmt.Appendf(b, `,%q:"`, windows.DimNames[d])
	for _, c := range v {
		switch {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
		case c < 0x20:
			b = fmt.Appendf(b, `\u%04x`, c)
		default:
			b = append(b, c)
		}
	}
	return append(b, `"}`...)
}
