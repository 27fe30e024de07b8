package bidder

import (
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
)

// natsBidCase is one bid request, as HTTP and as NATS take it.
type natsBidCase struct {
	name          string
	method, path  string // HTTP
	body          string // HTTP body
	subject, data string // NATS
	query         string // NATS: the Bidpulse-Query header
}

// natsBidCases covers every endpoint, with answers and with errors.
func natsBidCases(t *testing.T) []natsBidCase {
	t.Helper()
	raw, err := os.ReadFile("testdata/openrtb/01-site-banner-tagid.json")
	if err != nil {
		t.Fatal(err)
	}
	var fixture struct{ Request json.RawMessage }
	if err := json.Unmarshal(raw, &fixture); err != nil || len(fixture.Request) == 0 {
		t.Fatalf("cannot read the fixture's request: %v", err)
	}
	ortb := ortbRequestOf(5, 3)
	batch := `[{"campaign":"c1","placement":"p1"},{"campaign":"c1","creative":"cr1","device":"Mobile"},{"campaign":"c2"}]`
	single := func(name, q string) natsBidCase {
		return natsBidCase{name: name, method: "GET", path: "/v1/multiplier?" + q, subject: NATSBidSubjectMultiplier, data: q}
	}
	post := func(name, path, subject, body, q string) natsBidCase {
		p := path
		if q != "" {
			p += "?" + q
		}
		return natsBidCase{name: name, method: "POST", path: p, body: body, subject: subject, data: body, query: q}
	}
	return []natsBidCase{
		single("single", "campaign=c1&placement=p1"),
		single("single-explain", "campaign=c1&creative=cr1&placement=p1&explain=true"),
		single("single-unknown", "campaign=c9"),
		single("single-no-campaign", "placement=p1"),
		single("single-bad-param", "campaign=c1&color=red"),
		single("single-duplicate", "campaign=c1&campaign=c2"),
		post("batch", "/v1/multipliers", NATSBidSubjectMultipliers, batch, ""),
		post("batch-malformed", "/v1/multipliers", NATSBidSubjectMultipliers, `[{"campaign":`, ""),
		post("batch-param", "/v1/multipliers", NATSBidSubjectMultipliers, batch, "explain=true"),
		post("openrtb", "/v1/openrtb/multipliers", NATSBidSubjectOpenRTB, ortb, ""),
		post("openrtb-fixture", "/v1/openrtb/multipliers", NATSBidSubjectOpenRTB, string(fixture.Request), ""),
		post("openrtb-prebid", "/v1/openrtb/multipliers", NATSBidSubjectOpenRTB, ortb, "format=prebid"),
		post("openrtb-explain", "/v1/openrtb/multipliers", NATSBidSubjectOpenRTB, ortb, "explain=true"),
		post("openrtb-malformed", "/v1/openrtb/multipliers", NATSBidSubjectOpenRTB, `{"id":`, ""),
		post("openrtb-too-many-imps", "/v1/openrtb/multipliers", NATSBidSubjectOpenRTB, ortbRequestOf(maxOpenRTBImps+1, 1), ""),
	}
}

// seedBidEvents gives the windows something to answer from.
func seedBidEvents(t *testing.T, e *testEnv) {
	t.Helper()
	ts := testNow - 60_000
	n := 0
	for i := range 40 {
		for _, pl := range []string{"p1", "p2"} {
			e.publish(t, ev(fmt.Sprintf("i%d%s", i, pl), "impression", ts, "c1", "cr1", pl))
			n++
		}
		if i%4 == 0 {
			e.publish(t, ev(fmt.Sprintf("c%d", i), "click", ts, "c1", "cr1", "p1"))
			n++
		}
	}
	e.waitReceived(t, uint64(n))
}

// requestBid sends c over NATS on nc and returns the status (200, or the
// error code header) and the body.
func requestBid(t *testing.T, nc *nats.Conn, c natsBidCase) (int, []byte, error) {
	m := &nats.Msg{Subject: c.subject, Data: []byte(c.data), Header: nats.Header{}}
	if c.query != "" {
		m.Header.Set(NATSBidQueryHeader, c.query)
	}
	r, err := nc.RequestMsg(m, 5*time.Second)
	if err != nil {
		return 0, nil, fmt.Errorf("cannot request %s: %w", c.name, err)
	}
	code := r.Header.Get(micro.ErrorCodeHeader)
	if code == "" {
		return 200, r.Data, nil
	}
	n, err := strconv.Atoi(code)
	if err != nil || r.Header.Get(micro.ErrorHeader) == "" {
		return 0, nil, fmt.Errorf("%s: unexpected error headers %v", c.name, r.Header)
	}
	return n, r.Data, nil
}

// TestNATSBidsSameAsHTTP checks that every endpoint answers byte for byte
// what HTTP answers for the same request, errors included (a micro error
// with the HTTP status as its code).
func TestNATSBidsSameAsHTTP(t *testing.T) {
	e := startTestService(t, nil)
	seedBidEvents(t, e)
	sawError, sawOK := false, false
	for _, c := range natsBidCases(t) {
		wantCode, want := e.do(t, c.method, c.path, "", c.body)
		code, got, err := requestBid(t, e.nc, c)
		if err != nil {
			t.Fatal(err)
		}
		if code != wantCode || string(got) != string(want) {
			t.Fatalf("%s: unexpected NATS answer; got %d %.400s; want (HTTP) %d %.400s", c.name, code, got, wantCode, want)
		}
		sawError = sawError || code >= 400
		if code == 200 && !strings.Contains(string(got), `"multiplier"`) {
			t.Fatalf("%s: an answer without a multiplier: %.300s", c.name, got)
		}
		sawOK = sawOK || code == 200
	}
	if !sawError || !sawOK {
		t.Fatalf("the cases do not cover answers and errors: ok %v, error %v", sawOK, sawError)
	}
}

// TestNATSBidsDiscovery checks $SRV.INFO and $SRV.STATS of the service.
func TestNATSBidsDiscovery(t *testing.T) {
	e := startTestService(t, nil)
	r, err := e.nc.Request("$SRV.INFO."+NATSBidServiceName, nil, 5*time.Second)
	if err != nil {
		t.Fatalf("cannot request $SRV.INFO: %v", err)
	}
	var info micro.Info
	if err := json.Unmarshal(r.Data, &info); err != nil {
		t.Fatalf("$SRV.INFO: %v: %s", err, r.Data)
	}
	got := map[string]string{}
	for _, ep := range info.Endpoints {
		if ep.QueueGroup != micro.DefaultQueueGroup {
			t.Fatalf("unexpected queue group of %s; got %q; want %q", ep.Name, ep.QueueGroup, micro.DefaultQueueGroup)
		}
		got[ep.Name] = ep.Subject + " " + ep.Metadata["http"]
	}
	want := map[string]string{
		"multiplier":  NATSBidSubjectMultiplier + " GET /v1/multiplier",
		"multipliers": NATSBidSubjectMultipliers + " POST /v1/multipliers",
		"openrtb":     NATSBidSubjectOpenRTB + " POST /v1/openrtb/multipliers",
	}
	if info.Name != NATSBidServiceName || fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("unexpected $SRV.INFO; got %s %v; want %s %v", info.Name, got, NATSBidServiceName, want)
	}

	for _, q := range []string{"campaign=c1", "campaign=c1", "color=red"} {
		if _, _, err := requestBid(t, e.nc, natsBidCase{name: q, subject: NATSBidSubjectMultiplier, data: q}); err != nil {
			t.Fatal(err)
		}
	}
	r, err = e.nc.Request("$SRV.STATS."+NATSBidServiceName, nil, 5*time.Second)
	if err != nil {
		t.Fatalf("cannot request $SRV.STATS: %v", err)
	}
	var stats struct {
		Endpoints []struct {
			Name        string `json:"name"`
			NumRequests int    `json:"num_requests"`
			Data        struct {
				Answered, Errors int
			} `json:"data"`
		} `json:"endpoints"`
	}
	if err := json.Unmarshal(r.Data, &stats); err != nil {
		t.Fatalf("$SRV.STATS: %v: %s", err, r.Data)
	}
	for _, ep := range stats.Endpoints {
		if ep.Name != "multiplier" {
			continue
		}
		if ep.NumRequests != 3 || ep.Data.Answered != 3 || ep.Data.Errors != 1 {
			t.Fatalf("unexpected stats of multiplier; got %+v; want 3 requests, 3 answered, 1 error", ep)
		}
		return
	}
	t.Fatalf("no multiplier endpoint in $SRV.STATS: %s", r.Data)
}

// TestNATSBidsConcurrent sends requests from several goroutines at once:
// every one gets its own answer.
func TestNATSBidsConcurrent(t *testing.T) {
	e := startTestService(t, nil)
	seedBidEvents(t, e)
	cases := natsBidCases(t)
	want := make([][]byte, len(cases))
	for i, c := range cases {
		_, want[i] = e.do(t, c.method, c.path, "", c.body)
	}
	const goroutines, each = 8, 40
	var wg sync.WaitGroup
	errs := make(chan error, goroutines)
	for g := range goroutines {
		wg.Go(func() {
			for k := range each {
				i := (g + k) % len(cases)
				_, got, err := requestBid(t, e.nc, cases[i])
				if err == nil && string(got) != string(want[i]) {
					err = fmt.Errorf("%s: unexpected answer; got %.200s; want %.200s", cases[i].name, got, want[i])
				}
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	total := uint64(0)
	for i := range natsBidEndpoints {
		total += e.svc.natsBids.requests[i].Get()
	}
	if total != goroutines*each {
		t.Fatalf("unexpected count of NATS bid requests; got %d; want %d", total, goroutines*each)
	}
}

// TestNATSBidsAuth checks the permissions with authentication on: the
// producer user requests bids (imported from the service's account), the
// monitor user cannot, and the bidpulse user discovers the service.
func TestNATSBidsAuth(t *testing.T) {
	e := startAuthService(t, nil)
	c := natsBidCase{name: "single", subject: NATSBidSubjectMultiplier, data: "campaign=c1&placement=p1"}
	_, want := e.do(t, "GET", "/v1/multiplier?"+c.data, "", "")
	code, got, err := requestBid(t, e.nc, c)
	if err != nil || code != 200 || string(got) != string(want) {
		t.Fatalf("unexpected answer to the producer; got %d %s %v; want 200 %s", code, got, err, want)
	}
	mon := connectAs(t, e, NATSUserMonitor)
	if _, err := mon.nc.Request(NATSBidSubjectMultiplier, []byte(c.data), 500*time.Millisecond); err == nil {
		t.Fatal("unexpected answer to the monitor's bid request")
	}
	mon.expectRefused(t, "Publish to", NATSBidSubjectMultiplier)
	admin := connectAs(t, e, NATSUserService)
	if _, err := admin.nc.Request("$SRV.INFO."+NATSBidServiceName, nil, 5*time.Second); err != nil {
		t.Fatalf("cannot discover the service as %s: %v", NATSUserService, err)
	}
}

// TestNATSBidsOption checks the option's decision and that off means no
// service.
func TestNATSBidsOption(t *testing.T) {
	e := startTestService(t, func(o *Options) { o.NATSBids = NATSBidsOff })
	if e.svc.natsBids != nil {
		t.Fatal("unexpected NATS bid service with NATSBids off")
	}
	if _, err := e.nc.Request(NATSBidSubjectMultiplier, []byte("campaign=c1"), 500*time.Millisecond); err == nil {
		t.Fatal("unexpected answer with NATSBids off")
	}
	f := func(url, v string, want bool, wantErr bool) {
		t.Helper()
		o := Options{NATSURL: url, NATSBids: v}
		err := o.decideNATSBids()
		if (err != nil) != wantErr || (err == nil && o.natsBids != want) {
			t.Fatalf("unexpected decision for %q %q; got %v %v; want %v (error %v)", url, v, o.natsBids, err, want, wantErr)
		}
	}
	f("", "", true, false)
	f("nats://h:4222", "", false, false)
	f("nats://h:4222", NATSBidsOn, true, false)
	f("", NATSBidsOff, false, false)
	f("", "yes", false, true)

	// An event subject that would read the bid requests as events.
	for _, subject := range []string{"bidpulse.v1.>", "bidpulse.v1.*", "*.v1.openrtb"} {
		if _, err := (Options{Subject: subject, Clock: NewManualClock(testNow)}).withDefaults(); err == nil || !strings.Contains(err.Error(), "bid subject") {
			t.Fatalf("unexpected answer to the event subject %q with NATS bids; got %v; want a bid subject error", subject, err)
		}
		if _, err := (Options{Subject: subject, NATSBids: NATSBidsOff, Clock: NewManualClock(testNow)}).withDefaults(); err != nil && strings.Contains(err.Error(), "bid subject") {
			t.Fatalf("unexpected error for the event subject %q without NATS bids: %v", subject, err)
		}
	}
}
