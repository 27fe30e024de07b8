package bidder

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The soak's HTTP clients (see TestSoak): bids, dashboard reads and admin
// calls over real HTTP to the service's fasthttp server. Every answer must
// have the status the API documents for the request; the only 5xx allowed is
// the 503 of an admin write (or an audit read) while NATS is down, where
// overrides and the kill switch are stored (docs/OPERATIONS.md).

// Rates of the HTTP loops: a few hundred requests a second in all.
const (
	soakBidEvery   = 10 * time.Millisecond // per bid client (two of them)
	soakDashEvery  = 100 * time.Millisecond
	soakAdminEvery = 100 * time.Millisecond
	// soakMaxConns bounds the soak's connections to the service (a per-IP
	// connection cap must not refuse it).
	soakMaxConns = 12
)

// soakOutage is when NATS was down, as the service saw it: from the server's
// shutdown to the service's reconnection.
type soakOutage struct {
	mu       sync.Mutex
	down, up time.Time
}

func (o *soakOutage) begin() { o.mu.Lock(); o.down = time.Now(); o.mu.Unlock() }
func (o *soakOutage) end()   { o.mu.Lock(); o.up = time.Now(); o.mu.Unlock() }

// overlaps reports whether a request made from start to end overlapped the
// outage.
func (o *soakOutage) overlaps(start, end time.Time) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.down.IsZero() || end.Before(o.down) {
		return false
	}
	return o.up.IsZero() || !start.After(o.up)
}

// soakHTTP sends the soak's requests and checks their statuses.
type soakHTTP struct {
	ctx         context.Context // done: the test ended early
	base, token string
	client      *http.Client
	errs        *soakErrs
	outage      *soakOutage
	mu          sync.Mutex
	statuses    map[string]int // "METHOD route status" -> answers
	outage503   int            // 503s answered during the outage
}

func newSoakHTTP(ctx context.Context, base, token string, errs *soakErrs, outage *soakOutage) *soakHTTP {
	tr := &http.Transport{MaxConnsPerHost: soakMaxConns, MaxIdleConnsPerHost: soakMaxConns, IdleConnTimeout: 30 * time.Second}
	return &soakHTTP{ctx: ctx, base: base, token: token, errs: errs, outage: outage, statuses: map[string]int{},
		client: &http.Client{Transport: tr, Timeout: 15 * time.Second}}
}

// soakNATSWrite marks a request whose answer may be a 503 while NATS is down.
const soakNATSWrite = -503

// do sends a request and checks that its status is one of want; with
// soakNATSWrite among them, a 503 is also accepted from a request that
// overlapped the outage. It returns the status (0 on a transport error) and
// the body.
func (h *soakHTTP) do(method, path, token, body string, want ...int) (int, []byte) {
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(h.ctx, method, h.base+path, r)
	if err != nil {
		panic("BUG: " + err.Error())
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	route, _, _ := strings.Cut(path, "?")
	start := time.Now()
	resp, err := h.client.Do(req)
	if err != nil {
		h.errs.add("%s %s: %v", method, route, err)
		return 0, nil
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		h.errs.add("%s %s: cannot read the body: %v", method, route, err)
		return 0, nil
	}
	code := resp.StatusCode
	h.mu.Lock()
	h.statuses[method+" "+route+" "+strconv.Itoa(code)]++
	h.mu.Unlock()
	ok, natsWrite := false, false
	for _, w := range want {
		ok = ok || w == code
		natsWrite = natsWrite || w == soakNATSWrite
	}
	if !ok && natsWrite && code == http.StatusServiceUnavailable && h.outage.overlaps(start, time.Now()) {
		ok = true
		h.mu.Lock()
		h.outage503++
		h.mu.Unlock()
	}
	if !ok {
		h.errs.add("%s %s: unexpected status %d; want %v; body %.300s", method, path, code, want, b)
		return code, b
	}
	if ct := resp.Header.Get("Content-Type"); route != "/metrics" && !strings.HasPrefix(ct, "application/json") {
		h.errs.add("%s %s: unexpected Content-Type %q", method, route, ct)
	}
	return code, b
}

func (h *soakHTTP) outage503s() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.outage503
}

// report lists the answers by request and status, for the test log.
func (h *soakHTTP) report() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	lines := make([]string, 0, len(h.statuses))
	for k, n := range h.statuses {
		lines = append(lines, fmt.Sprintf("%s: %d", k, n))
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n  ")
}

// checkMultiplier checks an answer of /v1/multiplier or an item of
// /v1/multipliers: a multiplier in [0, 10] (overrides go up to 10).
func (h *soakHTTP) checkMultiplier(what string, m map[string]any) {
	f, ok := m["multiplier"].(float64)
	if !ok || math.IsNaN(f) || f < 0 || f > 10 {
		h.errs.add("%s: bad answer %v", what, m)
	}
}

// bids sends bid requests: single and batch, valid and invalid.
func (h *soakHTTP) bids(end time.Time, w int) {
	tooMany := "[" + strings.TrimSuffix(strings.Repeat(`{"campaign":"c0"},`, maxBatchItems+1), ",") + "]"
	soakLoop(h.ctx, end, soakBidEvery, func(i int) {
		i = i*2 + w
		c := soakCampaigns[i%len(soakCampaigns)]
		p := url.QueryEscape(soakPlacements[(i/4)%len(soakPlacements)])
		switch i % 10 {
		case 0, 1, 2, 3:
			code, b := h.do("GET", "/v1/multiplier?campaign="+c+"&placement="+p, "", "", 200)
			var m map[string]any
			if code == 200 && json.Unmarshal(b, &m) == nil {
				h.checkMultiplier("GET /v1/multiplier", m)
			}
		case 4:
			h.do("GET", "/v1/multiplier?campaign="+c+"&creative=cr1&placement="+p+"&device=mobile&country=FR&explain=1", "", "", 200)
		case 5:
			var sb strings.Builder
			sb.WriteByte('[')
			n := 1 + i%40
			for j := 0; j < n; j++ {
				if j > 0 {
					sb.WriteByte(',')
				}
				fmt.Fprintf(&sb, `{"campaign":%q,"placement":%q}`, soakCampaigns[j%4], soakPlacements[j%4])
			}
			sb.WriteByte(']')
			code, b := h.do("POST", "/v1/multipliers", "", sb.String(), 200)
			var answers []map[string]any
			if code == 200 {
				if err := json.Unmarshal(b, &answers); err != nil || len(answers) != n {
					h.errs.add("POST /v1/multipliers: %d answers for %d requests (%v)", len(answers), n, err)
				}
				for _, a := range answers {
					h.checkMultiplier("POST /v1/multipliers", a)
				}
			}
		case 6:
			// Invalid items get an error in their slot; the request is fine.
			code, b := h.do("POST", "/v1/multipliers", "", `[{"campaign":"c1"},{"placement":"x"},7,{"campaign":""}]`, 200)
			var answers []map[string]any
			if code == 200 && (json.Unmarshal(b, &answers) != nil || len(answers) != 4 || answers[1]["error"] == nil ||
				answers[2]["error"] == nil || answers[3]["error"] == nil) {
				h.errs.add("POST /v1/multipliers with invalid items: unexpected answer %s", b)
			}
		case 7:
			switch (i / 10) % 4 {
			case 0:
				h.do("POST", "/v1/multipliers", "", `{"campaign":"c0"}`, 400)
			case 1:
				h.do("POST", "/v1/multipliers", "", `[{`, 400)
			case 2:
				h.do("POST", "/v1/multipliers", "", tooMany, 413)
			case 3:
				h.do("POST", "/v1/multipliers", "", ``, 400)
			}
		case 8:
			switch (i / 10) % 3 {
			case 0:
				h.do("GET", "/v1/multiplier", "", "", 400)
			case 1:
				h.do("GET", "/v1/multiplier?campaign=", "", "", 400)
			case 2:
				h.do("GET", "/v1/multiplier?campaign=c0&explain=maybe", "", "", 400)
			}
		case 9:
			h.do("GET", "/v1/rates?campaign="+c+"&placement="+p, "", "", 200)
		}
	})
}

// dashboard reads what a dashboard reads, and once a second opens the
// snapshot stream, reads its first frame and closes it.
func (h *soakHTTP) dashboard(end time.Time) {
	soakLoop(h.ctx, end, soakDashEvery, func(i int) {
		switch i % 10 {
		case 0, 5:
			code, b := h.do("GET", "/v1/stats", "", "", 200)
			var st map[string]any
			if code == 200 {
				if err := json.Unmarshal(b, &st); err != nil {
					h.errs.add("GET /v1/stats: %v", err)
					return
				}
				// Received is published after the outcomes and read
				// before them: it never exceeds their sum.
				sum := 0.0
				for _, k := range []string{"counted", "duplicates", "rejected_total", "late", "future", "overflow"} {
					sum += st[k].(float64)
				}
				if st["received"].(float64) > sum {
					h.errs.add("GET /v1/stats: received %v > the sum of the outcomes %v", st["received"], sum)
				}
			}
		case 1:
			h.do("GET", "/v1/snapshot?level=campaign/placement&window=1h&sort=impressions&limit=10", "", "", 200)
		case 2:
			h.do("GET", "/v1/snapshot?level=campaign&window=5m&sort=ctr&min_impressions=1&campaign=c1", "", "", 200)
		case 3:
			h.do("GET", "/metrics", "", "", 200)
		case 4:
			h.do("GET", "/v1/snapshot?limit=1001", "", "", 400)
		case 6:
			h.do("GET", "/readyz", "", "", 200)
		case 7:
			h.do("GET", "/healthz", "", "", 200)
		case 8:
			h.do("GET", "/v1/snapshot?level=campaign/creative/placement&window=24h&sort=multiplier", "", "", 200)
		case 9:
			h.stream()
		}
	})
}

// stream opens the snapshot stream, reads up to its first frame and closes it.
func (h *soakHTTP) stream() {
	ctx, cancel := context.WithTimeout(h.ctx, 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", h.base+"/v1/snapshot/stream?level=campaign&window=1m&limit=5", nil)
	resp, err := h.client.Do(req)
	if err != nil {
		h.errs.add("GET /v1/snapshot/stream: %v", err)
		return
	}
	defer resp.Body.Close()
	h.mu.Lock()
	h.statuses["GET /v1/snapshot/stream "+strconv.Itoa(resp.StatusCode)]++
	h.mu.Unlock()
	if resp.StatusCode != 200 {
		h.errs.add("GET /v1/snapshot/stream: unexpected status %d", resp.StatusCode)
		return
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "data: ") {
			return
		}
	}
	h.errs.add("GET /v1/snapshot/stream: no frame: %v", sc.Err())
}

// soakAdminState is what the admin client knows of an override or the kill
// switch: present (enabled) or not, with its multiplier, and whether that is
// certain. After a 503 it is not: the write timed out waiting for NATS, but
// the NATS client sends what it buffered when it reconnects, and the change
// then applies through the KV watch (docs/OPERATIONS.md).
type soakAdminState struct {
	present bool
	mult    float64
	// maybe lists the states a write answered with a 503 may have left,
	// since the last certain one.
	maybe []soakAdminState
}

func (s *soakAdminState) set(code int, next soakAdminState) {
	switch code {
	case 200:
		*s = next
	case 503:
		s.maybe = append(s.maybe, next)
	}
}

// allows reports whether present and mult are a state s may be in, and
// whether it is the one the last write answered 200 left (not one of a write
// answered 503, applied after all).
func (s *soakAdminState) allows(present bool, mult float64) (ok, certain bool) {
	for i, st := range append([]soakAdminState{{present: s.present, mult: s.mult}}, s.maybe...) {
		if st.present == present && (!present || st.mult == mult) {
			return true, i == 0
		}
	}
	return false, false
}

// soakAdmin is the admin client: the only writer of overrides and the kill
// switch, so it knows what they must be.
type soakAdmin struct {
	h         *soakHTTP
	overrides map[soakKey]*soakAdminState
	kill      soakAdminState
}

// run sets and removes overrides of the campaign/placement keys, turns the
// kill switch on and off, and sends bad bodies and bad tokens.
func (a *soakAdmin) run(end time.Time) {
	h, tok := a.h, a.h.token
	a.overrides = map[soakKey]*soakAdminState{}
	soakLoop(h.ctx, end, soakAdminEvery, func(i int) {
		k := soakKey{soakCampaigns[(i/10)%len(soakCampaigns)], soakPlacements[(i/40)%len(soakPlacements)]}
		st := a.overrides[k]
		if st == nil {
			st = &soakAdminState{}
			a.overrides[k] = st
		}
		switch i % 10 {
		case 0:
			mult := float64(1+i%19) / 10
			body := fmt.Sprintf(`{"campaign":%q,"placement":%q,"multiplier":%v,"ttl":"1h"}`, k.campaign, k.placement, mult)
			code, _ := h.do("PUT", "/v1/overrides", tok, body, 200, soakNATSWrite)
			st.set(code, soakAdminState{present: true, mult: mult})
		case 1:
			bad := []string{
				`{"campaign":"c0","multiplier":11}`,
				`{"campaign":"c0","multiplier":1,"color":"red"}`,
				`{"campaign":"c0","device":"mobile","multiplier":1}`,
				`{"campaign":"c0","multiplier":1,"ttl":"soon"}`,
				`not json`,
			}
			h.do("PUT", "/v1/overrides", tok, bad[(i/10)%len(bad)], 400)
		case 2:
			h.do("GET", "/v1/overrides", tok, "", 200)
		case 3:
			code, _ := h.do("PUT", "/v1/killswitch", tok, `{"enabled":true,"reason":"soak"}`, 200, soakNATSWrite)
			a.kill.set(code, soakAdminState{present: true})
		case 4:
			bad := []string{`{"enabled":"yes"}`, `{"reason":"no enabled"}`, `{"enabled":true,"color":1}`, `[]`}
			h.do("PUT", "/v1/killswitch", tok, bad[(i/10)%len(bad)], 400)
		case 5:
			code, _ := h.do("PUT", "/v1/killswitch", tok, `{"enabled":false}`, 200, soakNATSWrite)
			a.kill.set(code, soakAdminState{})
		case 6:
			// Removing it: 200 when it is there, 404 when not, either when
			// a write of it was answered 503.
			want := []int{404}
			if st.present {
				want = []int{200}
			}
			if len(st.maybe) > 0 {
				want = []int{200, 404}
			}
			q := "campaign=" + url.QueryEscape(k.campaign) + "&placement=" + url.QueryEscape(k.placement)
			code, _ := h.do("DELETE", "/v1/overrides?"+q, tok, "", append(want, soakNATSWrite)...)
			st.set(code, soakAdminState{})
			if code == 404 {
				// Not there now; a write answered 503 may still apply.
				st.present = false
			}
		case 7:
			h.do("GET", "/v1/overrides", "", "", 401)
		case 8:
			h.do("PUT", "/v1/killswitch", "wrong-token", `{"enabled":true}`, 401)
		case 9:
			h.do("GET", "/v1/audit?limit=10", tok, "", 200, soakNATSWrite)
		}
	})
	// Leave the kill switch off, retrying past an outage.
	for i := 0; i < 20 && h.ctx.Err() == nil; i++ {
		code, _ := h.do("PUT", "/v1/killswitch", tok, `{"enabled":false}`, 200, soakNATSWrite)
		if a.kill.set(code, soakAdminState{}); code == 200 {
			break
		}
	}
}

// check compares the service's overrides and kill switch with what the
// admin client knows they must be. It returns the keys left as a write
// answered 503 set them: written when NATS came back.
func (a *soakAdmin) check() (appliedAfter503 []string) {
	h := a.h
	code, b := h.do("GET", "/v1/overrides", h.token, "", 200)
	var list struct {
		Overrides []map[string]any `json:"overrides"`
	}
	if code != 200 || json.Unmarshal(b, &list) != nil {
		h.errs.add("GET /v1/overrides: unexpected answer %d %s", code, b)
		return nil
	}
	f := func(what string, st *soakAdminState, present bool, mult float64) {
		ok, certain := false, false
		if st != nil {
			ok, certain = st.allows(present, mult)
		}
		switch {
		case !ok:
			h.errs.add("%s: present %v (multiplier %v); the admin client left %+v", what, present, mult, st)
		case !certain:
			appliedAfter503 = append(appliedAfter503, what)
		}
	}
	seen := map[soakKey]bool{}
	for _, ov := range list.Overrides {
		k := soakKey{fmt.Sprint(ov["campaign"]), fmt.Sprint(ov["placement"])}
		seen[k] = true
		mult, _ := ov["multiplier"].(float64)
		f(fmt.Sprintf("override %v", k), a.overrides[k], true, mult)
	}
	for k, st := range a.overrides {
		if !seen[k] {
			f(fmt.Sprintf("override %v", k), st, false, 0)
		}
	}
	code, b = h.do("GET", "/v1/killswitch", h.token, "", 200)
	var ks struct{ Enabled bool }
	if code != 200 || json.Unmarshal(b, &ks) != nil {
		h.errs.add("GET /v1/killswitch: unexpected answer %d %s", code, b)
		return appliedAfter503
	}
	f("kill switch", &a.kill, ks.Enabled, 0)
	return appliedAfter503
}
