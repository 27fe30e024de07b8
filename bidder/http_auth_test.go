package bidder

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
)

// TestReadToken checks who may call what with a read token configured: the
// read endpoints need it or an admin token (401 as JSON otherwise, with
// WWW-Authenticate), the bid endpoints and the health checks stay open but
// explain needs the token, and the admin endpoints still need an admin
// token.
func TestReadToken(t *testing.T) {
	const read, admin = "r3ad-s3cret", "adm1n-s3cret"
	e := startTestService(t, func(o *Options) {
		o.ReadToken = read
		o.AdminTokens = "ops:" + admin
	})
	e.publish(t, ev("i1", "impression", testNow, "c1", "cr1", "p1"))
	e.waitReceived(t, 1)

	get := func(path, token string) (int, http.Header, string) {
		t.Helper()
		req, _ := http.NewRequest("GET", e.base+path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := sseHTTP.Do(req)
		if err != nil {
			t.Fatalf("cannot GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		if strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
			return resp.StatusCode, resp.Header, "" // a stream: its status is enough
		}
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header, string(b)
	}
	readPaths := []string{
		"/v1/rates?campaign=c1", "/v1/snapshot", "/v1/snapshot/stream", "/v1/stats",
		"/v1/policies?campaign=c1", "/metrics", "/debug/runtime", "/v1/multiplier?campaign=c1&explain=1",
	}
	for _, p := range readPaths {
		for _, bad := range []string{"", "wrong", read + "x", "ops:" + admin} {
			code, h, body := get(p, bad)
			var m map[string]string
			if code != 401 || json.Unmarshal([]byte(body), &m) != nil || !strings.Contains(m["error"], "read token") {
				t.Fatalf("unexpected answer of GET %s with token %q; got %d %s; want a JSON 401", p, bad, code, body)
			}
			if !strings.HasPrefix(h.Get("WWW-Authenticate"), "Bearer") {
				t.Fatalf("GET %s: a 401 without WWW-Authenticate: %v", p, h)
			}
		}
		for _, good := range []string{read, admin} {
			if code, _, body := get(p, good); code != 200 {
				t.Fatalf("unexpected status of GET %s with a good token; got %d; want 200: %s", p, code, body)
			}
		}
	}
	// Open whatever the token: bids (without explain), health, the page
	// and its files.
	for _, p := range []string{"/v1/multiplier?campaign=c1", "/v1/multiplier?campaign=c1&explain=0", "/healthz", "/readyz",
		"/", "/dashboard/app.js", "/dashboard/meta"} {
		if code, _, body := get(p, ""); code != 200 {
			t.Fatalf("unexpected status of GET %s without a token; got %d; want 200: %s", p, code, body)
		}
	}
	if _, _, body := get("/dashboard/meta", ""); !strings.Contains(body, `"read_token":true`) {
		t.Fatalf("dashboard/meta does not tell the page a token is needed: %s", body)
	}
	// A batch: open, but an item asking for explain needs the token.
	batch := `[{"campaign":"c1"},{"campaign":"c1","explain":true}]`
	for _, tok := range []string{"", read} {
		code, b := e.do(t, "POST", "/v1/multipliers", tok, batch)
		var items []map[string]any
		if code != 200 || json.Unmarshal(b, &items) != nil || len(items) != 2 || items[0]["multiplier"] == nil {
			t.Fatalf("unexpected batch answer with token %q; got %d %s", tok, code, b)
		}
		denied := items[1]["error"] == string(errExplainToken)
		if denied != (tok == "") || (tok != "" && items[1]["explain"] == nil) {
			t.Fatalf("unexpected explain item with token %q: %v", tok, items[1])
		}
	}
	// The admin endpoints take no read token.
	for _, p := range []string{"/v1/overrides", "/v1/killswitch", "/v1/audit"} {
		if code, _, _ := get(p, read); code != 401 {
			t.Fatalf("unexpected status of GET %s with the read token; got %d; want 401", p, code)
		}
		if code, _, body := get(p, admin); code != 200 {
			t.Fatalf("unexpected status of GET %s with the admin token; got %d; want 200: %s", p, code, body)
		}
	}
}

// TestReadTokenOff checks that without a read token the read endpoints and
// explain stay open, and that an invalid token is refused at New.
func TestReadTokenOff(t *testing.T) {
	e := startTestService(t, nil)
	for _, p := range []string{"/v1/stats", "/v1/snapshot", "/v1/policies?campaign=c1", "/v1/multiplier?campaign=c1&explain=1"} {
		if code, b := e.do(t, "GET", p, "", ""); code != 200 {
			t.Fatalf("unexpected status of GET %s without a read token configured; got %d: %s", p, code, b)
		}
	}
	if _, err := New(Options{Clock: NewManualClock(testNow), ReadToken: "a\nb"}); err == nil || !strings.Contains(err.Error(), "read-token") {
		t.Fatalf("unexpected error for an invalid read token: %v", err)
	}
}
