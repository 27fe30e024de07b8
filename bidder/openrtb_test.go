package bidder

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/prebid/openrtb/v20/openrtb2"
	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"
)

var updateOpenRTB = flag.Bool("update-openrtb", false, "rewrite the golden answers under testdata/openrtb/golden")

// ortbPlacements, ortbDevices, ortbCountries and ortbSites are the dimension values the test
// service has data for: the keys the fixtures' impressions map to.
var (
	ortbPlacements = []string{"home-top", "/1234/home#top", "/1234/sports#mid", "slot-7"}
	ortbDevices    = []string{"desktop", "mobile", "tablet", "ctv"}
	ortbCountries  = []string{"FR", "US", "DE", "GB"}
	ortbSites      = []string{"news.example", "com.example.game", "sports.example", "tv.example.app", "news/example"}
)

// ortbSiteRollups are rollups that name the site, listed first so that among equally specific
// levels the site's answers: a candidate whose impression has a placement and a site with
// data is answered at campaign/placement/site, one with a site and no placement at
// campaign/site.
var ortbSiteRollups = []string{"campaign", "campaign/site", "campaign/placement/site",
	"campaign/creative", "campaign/placement", "campaign/creative/placement"}

// newORTBService returns a service with data for campaigns c1 and c2 over every placement,
// device, country and site above, with click rates that differ by placement and by site, and
// rollups that use device and country (not site), so that an answer shows which dimensions an
// impression gave.
func newORTBService(t testing.TB) *Service {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Rollups = append(cfg.Rollups, "campaign/device", "campaign/country", "campaign/placement/country")
	return newORTBServiceWith(t, cfg.Rollups)
}

// newORTBServiceWith is newORTBService with the given rollups.
func newORTBServiceWith(t testing.TB, rollups []string) *Service {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Rollups = rollups
	svc, err := New(Options{Clock: NewManualClock(testNow), Logger: zerolog.Nop(), DedupSize: 32 << 20, Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	b := []byte{'['}
	for i := range 4096 {
		if i > 0 {
			b = append(b, ',')
		}
		c := "c1"
		if i%3 == 2 {
			c = "c2"
		}
		// Sites by i%5 (prime to the other dimensions' periods): every placement, device and
		// country has data on every site, and news.example has about twice the others' CTR.
		p, d, co, cr, st := ortbPlacements[i%4], ortbDevices[i/4%4], ortbCountries[i/16%4], []string{"cr1", "cr2"}[i/64%2], ortbSites[i%5]
		e := fmt.Sprintf(`"campaign":%q,"creative":%q,"placement":%q,"device":%q,"country":%q,"site":%q,"ts":%d}`, c, cr, p, d, co, st, testNow)
		b = fmt.Appendf(b, `{"id":"o%d","type":"impression",%s`, i, e)
		if i%(3+2*(i%4)+i/16%4) == 0 {
			b = fmt.Appendf(b, `,{"id":"o%d","type":"click",%s`, i, e)
		}
	}
	b = append(b, ']')
	svc.ingest.Apply(b, testNow)
	return svc
}

// postORTB answers POST /v1/openrtb/multipliers?query with body through the router.
func postORTB(svc *Service, query string, body []byte) (int, []byte) {
	var ctx fasthttp.RequestCtx
	ctx.Request.Header.SetMethod("POST")
	uri := "/v1/openrtb/multipliers"
	if query != "" {
		uri += "?" + query
	}
	ctx.Request.SetRequestURI(uri)
	ctx.Request.SetBody(body)
	svc.serveHTTP(&ctx)
	return ctx.Response.StatusCode(), bytes.Clone(ctx.Response.Body())
}

// ortbFixture is a file of testdata/openrtb: a request (a JSON object, or raw bytes for a body
// that is not one), and what its answer must be, written by hand: the status, the key of each
// impression, or a part of the error.
type ortbFixture struct {
	Note    string              `json:"note"`
	Query   string              `json:"query"`
	Request json.RawMessage     `json:"request"`
	Raw     *string             `json:"raw"`
	Status  int                 `json:"status"`
	Keys    []map[string]string `json:"keys"`
	Error   string              `json:"error"`
}

func (f *ortbFixture) body() []byte {
	if f.Raw != nil {
		return []byte(*f.Raw)
	}
	return f.Request
}

func loadORTBFixtures(t testing.TB) (names []string, fixtures []ortbFixture) {
	t.Helper()
	paths, err := filepath.Glob("testdata/openrtb/*.json")
	if err != nil || len(paths) < 15 {
		t.Fatalf("unexpected fixtures; got %d (%v); want at least 15", len(paths), err)
	}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		var f ortbFixture
		if err := json.Unmarshal(b, &f); err != nil {
			t.Fatalf("cannot read fixture %s: %v", p, err)
		}
		names = append(names, strings.TrimSuffix(filepath.Base(p), ".json"))
		fixtures = append(fixtures, f)
	}
	return names, fixtures
}

// ortbAnswer is the answer of the OpenRTB endpoint, both formats.
type ortbAnswer struct {
	ID  string `json:"id"`
	Imp []struct {
		ID         string            `json:"id"`
		Key        map[string]string `json:"key"`
		Candidates []struct {
			Campaign   string            `json:"campaign"`
			Creative   string            `json:"creative"`
			Multiplier float64           `json:"multiplier"`
			Level      string            `json:"level"`
			Key        map[string]string `json:"key"`
			Neutral    string            `json:"neutral"`
			Explain    json.RawMessage   `json:"explain"`
		} `json:"candidates"`
		BidAdjustments *pbsAdjustments `json:"bidadjustments"`
	} `json:"imp"`
	Ext *struct {
		Prebid struct {
			BidAdjustments *pbsAdjustments `json:"bidadjustments"`
		} `json:"prebid"`
	} `json:"ext"`
	TmaxExpired bool `json:"tmax_expired"`
}

// pbsAdjustments is Prebid Server's ext.prebid.bidadjustments (openrtb_ext.ExtRequestPrebidBidAdjustments).
type pbsAdjustments struct {
	MediaType map[string]map[string]map[string][]struct {
		AdjType string  `json:"adjtype"`
		Value   float64 `json:"value"`
	} `json:"mediatype"`
}

// getAnswer is the answer of GET /v1/multiplier.
type getAnswer struct {
	Multiplier float64         `json:"multiplier"`
	Level      string          `json:"level"`
	Explain    json.RawMessage `json:"explain"`
}

// getMultiplier asks GET /v1/multiplier for a candidate on an impression's key.
func getMultiplier(t *testing.T, svc *Service, campaign, creative string, key map[string]string, explain bool) (getAnswer, map[string]string) {
	t.Helper()
	var args fasthttp.Args
	dims := map[string]string{"campaign": campaign}
	args.Add("campaign", campaign)
	if creative != "" {
		args.Add("creative", creative)
		dims["creative"] = creative
	}
	for _, d := range []string{"placement", "device", "country", "site"} {
		if v, ok := key[d]; ok {
			args.Add(d, v)
			dims[d] = v
		}
	}
	if explain {
		args.Add("explain", "1")
	}
	ctx := requestCtx("/v1/multiplier?" + args.String())
	svc.serveHTTP(ctx)
	if ctx.Response.StatusCode() != fasthttp.StatusOK {
		t.Fatalf("unexpected GET status %d: %s", ctx.Response.StatusCode(), ctx.Response.Body())
	}
	var a getAnswer
	if err := json.Unmarshal(ctx.Response.Body(), &a); err != nil {
		t.Fatal(err)
	}
	return a, dims
}

// levelKey returns the dimensions of level taken from dims: the key that answered.
func levelKey(level string, dims map[string]string) map[string]string {
	if level == "none" {
		return nil
	}
	k := map[string]string{}
	for _, d := range strings.Split(level, "/") {
		k[d] = dims[d]
	}
	return k
}

// TestOpenRTBFixtures answers every fixture of testdata/openrtb and checks, for each, the
// status (and the error), each impression's key against the one written in the fixture, each
// candidate against GET /v1/multiplier with the same dimensions (multiplier, level, the key
// that answered, explain), the Prebid rules against the same GET answers, and the whole answer
// against its golden file (-update-openrtb rewrites them). Every request answered 200 is also
// valid OpenRTB 2.6 for the prebid/openrtb types. The service's events carry sites but no
// rollup names the site: the golden answers, written before site was a dimension, hold.
func TestOpenRTBFixtures(t *testing.T) {
	_, nonNeutral := checkORTBFixtures(t, newORTBService(t), true)
	if nonNeutral < 10 {
		t.Errorf("unexpected answers: only %d candidates got a multiplier other than 1; the fixtures would not tell keys apart", nonNeutral)
	}
}

// TestOpenRTBFixturesSiteRollup answers every fixture with rollups that name the site
// (ortbSiteRollups): each candidate still gets exactly what GET /v1/multiplier answers for
// the same dimensions, its impression's site included, and the site levels answer the
// candidates whose impressions have a site with data.
func TestOpenRTBFixturesSiteRollup(t *testing.T) {
	answers, _ := checkORTBFixtures(t, newORTBServiceWith(t, ortbSiteRollups), false)
	levels := map[string]int{}
	for _, a := range answers {
		levels[a.level]++
		want := ""
		switch {
		case a.level == "none" || !slices.Contains(ortbSites, a.key["site"]):
		case slices.Contains(ortbPlacements, a.key["placement"]):
			want = "campaign/placement/site"
		default:
			want = "campaign/site"
		}
		if want != "" && a.level != want {
			t.Errorf("%s: unexpected level of a candidate on %v; got %s; want %s", a.fixture, a.key, a.level, want)
		}
	}
	if levels["campaign/site"] < 3 || levels["campaign/placement/site"] < 10 {
		t.Errorf("unexpected answering levels %v; want the site levels to answer the candidates with a site", levels)
	}
}

// ortbLevel is the level that answered a candidate of a fixture on an impression's key.
type ortbLevel struct {
	fixture string
	key     map[string]string
	level   string
}

// checkORTBFixtures is TestOpenRTBFixtures on svc, against the golden answers when golden is
// set. It returns the level that answered each candidate (expired ones left out) and how many
// candidates got a multiplier other than 1.
func checkORTBFixtures(t *testing.T, svc *Service, golden bool) (answers []ortbLevel, nonNeutral int) {
	t.Helper()
	names, fixtures := loadORTBFixtures(t)
	// A first pass tracks the keys; published, as the running service does every second,
	// their answers are stable.
	for _, f := range fixtures {
		postORTB(svc, f.Query, f.body())
	}
	svc.brain.Publish(testNow)
	for n, f := range fixtures {
		name := names[n]
		code, got := postORTB(svc, f.Query, f.body())
		if code != f.Status {
			t.Errorf("%s: unexpected status %d; want %d: %s", name, code, f.Status, got)
			continue
		}
		gold := filepath.Join("testdata", "openrtb", "golden", name+".json")
		switch {
		case !golden:
		case *updateOpenRTB:
			if err := os.MkdirAll(filepath.Dir(gold), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(gold, append(got, '\n'), 0o644); err != nil {
				t.Fatal(err)
			}
		default:
			if want, err := os.ReadFile(gold); err != nil || string(want) != string(got)+"\n" {
				t.Errorf("%s: unexpected answer; got %s; want %s (%v)", name, got, want, err)
			}
		}
		if code != fasthttp.StatusOK {
			if !strings.Contains(string(got), f.Error) || f.Error == "" {
				t.Errorf("%s: unexpected error %s; want one with %q", name, got, f.Error)
			}
			continue
		}
		var req openrtb2.BidRequest
		if err := json.Unmarshal(f.body(), &req); err != nil {
			t.Errorf("%s: the request is not valid OpenRTB: %v", name, err)
		}
		var a ortbAnswer
		if err := json.Unmarshal(got, &a); err != nil {
			t.Fatalf("%s: answer not JSON: %v: %s", name, err, got)
		}
		if a.ID != req.ID || len(a.Imp) != len(req.Imp) || len(a.Imp) != len(f.Keys) {
			t.Fatalf("%s: unexpected answer %s for %d impressions and %d keys", name, got, len(req.Imp), len(f.Keys))
		}
		prebid := strings.Contains(f.Query, "format=prebid")
		explain := strings.Contains(f.Query, "explain=1")
		for i, im := range a.Imp {
			if im.ID != req.Imp[i].ID {
				t.Errorf("%s: unexpected imp %d id %q; want %q", name, i, im.ID, req.Imp[i].ID)
			}
			if want := f.Keys[i]; !reflect.DeepEqual(im.Key, want) && (len(im.Key) > 0 || len(want) > 0) {
				t.Errorf("%s: unexpected key of imp %s; got %v; want %v", name, im.ID, im.Key, want)
			}
			cands := ortbCandidatesOf(t, f.body(), i)
			if prebid {
				checkPrebidRules(t, svc, name, im.BidAdjustments, cands, f.Keys[i], a.TmaxExpired)
				if got, want := a.Ext != nil, len(a.Imp) == 1; got != want {
					t.Errorf("%s: unexpected request-level rules %v; want %v", name, got, want)
				} else if got && !reflect.DeepEqual(a.Ext.Prebid.BidAdjustments, im.BidAdjustments) {
					t.Errorf("%s: unexpected request-level rules %+v; want the impression's %+v", name, a.Ext.Prebid.BidAdjustments, im.BidAdjustments)
				}
				continue
			}
			if len(im.Candidates) != len(cands) {
				t.Fatalf("%s: unexpected candidates of imp %s; got %d; want %d", name, im.ID, len(im.Candidates), len(cands))
			}
			for c, cd := range im.Candidates {
				if cd.Campaign != cands[c].Campaign || cd.Creative != cands[c].Creative {
					t.Errorf("%s: unexpected candidate %d of imp %s; got %s/%s; want %s/%s", name, c, im.ID, cd.Campaign, cd.Creative, cands[c].Campaign, cands[c].Creative)
				}
				if a.TmaxExpired {
					if cd.Multiplier != 1 || cd.Level != "none" || cd.Neutral != "tmax" {
						t.Errorf("%s: unexpected expired candidate %+v; want the neutral 1 marked tmax", name, cd)
					}
					continue
				}
				g, dims := getMultiplier(t, svc, cd.Campaign, cd.Creative, f.Keys[i], explain)
				if cd.Multiplier != g.Multiplier || cd.Level != g.Level || cd.Neutral != "" {
					t.Errorf("%s: unexpected candidate %s of imp %s; got %v at %s; want GET's %v at %s", name, cd.Campaign, im.ID, cd.Multiplier, cd.Level, g.Multiplier, g.Level)
				}
				if want := levelKey(g.Level, dims); !reflect.DeepEqual(cd.Key, want) {
					t.Errorf("%s: unexpected answering key %v; want %v", name, cd.Key, want)
				}
				if string(cd.Explain) != string(g.Explain) {
					t.Errorf("%s: unexpected explain %s; want GET's %s", name, cd.Explain, g.Explain)
				}
				answers = append(answers, ortbLevel{name, f.Keys[i], g.Level})
				if g.Level != "none" && g.Multiplier != 1 {
					nonNeutral++
				}
			}
		}
		if strings.Contains(name, "tmax-expired") != a.TmaxExpired {
			t.Errorf("%s: unexpected tmax_expired %v", name, a.TmaxExpired)
		}
	}
	return answers, nonNeutral
}

// ortbCandidate is a candidate as a fixture gives it.
type ortbCandidate struct {
	Campaign string `json:"campaign"`
	Creative string `json:"creative"`
	Bidder   string `json:"bidder"`
	Deal     string `json:"deal"`
}

// ortbCandidatesOf returns the candidates of impression i of body, read with the prebid/openrtb
// types: its own list, else the request's.
func ortbCandidatesOf(t *testing.T, body []byte, i int) []ortbCandidate {
	t.Helper()
	var req openrtb2.BidRequest
	if err := json.Unmarshal(body, &req); err != nil {
		t.Fatal(err)
	}
	var ext struct {
		Bidpulse *struct {
			Candidates []ortbCandidate `json:"candidates"`
		} `json:"bidpulse"`
	}
	if len(req.Imp[i].Ext) > 0 {
		if err := json.Unmarshal(req.Imp[i].Ext, &ext); err != nil {
			t.Fatal(err)
		}
		if ext.Bidpulse != nil && ext.Bidpulse.Candidates != nil {
			return ext.Bidpulse.Candidates
		}
	}
	ext.Bidpulse = nil
	if err := json.Unmarshal(req.Ext, &ext); err != nil || ext.Bidpulse == nil {
		t.Fatalf("no candidates for imp %d: %v", i, err)
	}
	return ext.Bidpulse.Candidates
}

// checkPrebidRules checks that every media type of rules holds, for each candidate, the
// multiplier GET /v1/multiplier gives it (1 when the request expired), under its bidder and
// deal ("*" without one), and nothing else.
func checkPrebidRules(t *testing.T, svc *Service, name string, rules *pbsAdjustments, cands []ortbCandidate, key map[string]string, expired bool) {
	t.Helper()
	if rules == nil || len(rules.MediaType) == 0 {
		t.Fatalf("%s: no rules", name)
	}
	for mt, bidders := range rules.MediaType {
		n := 0
		for _, deals := range bidders {
			n += len(deals)
		}
		if n != len(cands) {
			t.Errorf("%s: unexpected rules under %s; got %d; want %d", name, mt, n, len(cands))
		}
		for _, c := range cands {
			deal := c.Deal
			if deal == "" {
				deal = "*"
			}
			r := bidders[c.Bidder][deal]
			want := 1.0
			if !expired {
				g, _ := getMultiplier(t, svc, c.Campaign, c.Creative, key, false)
				want = g.Multiplier
			}
			if len(r) != 1 || r[0].AdjType != "multiplier" || r[0].Value != want {
				t.Errorf("%s: unexpected rule %s/%s/%s: %+v; want one multiplier %v", name, mt, c.Bidder, deal, r, want)
			}
		}
	}
}
