package bidder

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// rawAnswers sends raw on a new connection to addr and reads every answer
// until the server closes the connection, for at most 5 s. It returns the
// statuses and bodies, and whether the server closed the connection.
func rawAnswers(t *testing.T, addr, raw string) (statuses []int, bodies []string, closed bool) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("cannot dial: %v", err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatalf("cannot write: %v", err)
	}
	br := bufio.NewReader(c)
	for i := 0; i < 10; i++ {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return statuses, bodies, false
			}
			return statuses, bodies, true // EOF or reset: closed
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		statuses = append(statuses, resp.StatusCode)
		bodies = append(bodies, string(b))
	}
	return statuses, bodies, false
}

// TestRequestSmuggling sends ambiguous and malformed requests over raw TCP,
// each carrying a second request that would turn the kill switch on. Each
// is answered 400, 411, 413, 408 or 505 as JSON (or not at all) and its
// connection closed, and no handler runs: the router's hook sees no call,
// and the kill switch stays off.
func TestRequestSmuggling(t *testing.T) {
	const token = "adm1n"
	var handled atomic.Int64
	e := startTestService(t, func(o *Options) {
		o.AdminToken = token
		o.HTTPReadTimeout = time.Second
		o.routeHook = func(int) { handled.Add(1) }
	})
	addr := e.svc.HTTPAddr()
	smuggledBody := `{"enabled":true,"reason":"smuggled"}`
	smuggled := "PUT /v1/killswitch HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + token +
		"\r\nContent-Type: application/json\r\nContent-Length: " + fmt.Sprint(len(smuggledBody)) + "\r\n\r\n" + smuggledBody
	batch := `[{"campaign":"c"}]`
	chunked := fmt.Sprintf("%x\r\n%s\r\n0\r\n\r\n", len(batch), batch)

	// The control: a well-formed request reaches its handler.
	if st, _, _ := rawAnswers(t, addr, "GET /v1/multiplier?campaign=c HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"); len(st) != 1 || st[0] != 200 || handled.Load() != 1 {
		t.Fatalf("unexpected answer to a well-formed request; got %v, %d handler calls; want [200], 1", st, handled.Load())
	}
	handled.Store(0)

	probes := []struct {
		name, raw string
		want      int // the status of the one answer; 0: no answer
	}{
		{"CL.TE", "POST /v1/multipliers HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled, 400},
		{"TE.CL", "POST /v1/multipliers HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 40\r\n\r\n0\r\n\r\n" + smuggled, 400},
		{"TE lower case with CL", "POST /v1/multipliers HTTP/1.1\r\nHost: x\r\ntransfer-encoding: chunked\r\ncontent-length: 3\r\n\r\n0\r\n\r\n" + smuggled, 400},
		{"chunked", "POST /v1/multipliers HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked + smuggled, 411},
		{"chunk extension with NUL", "POST /v1/multipliers HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1;\x00x\r\n[\r\n0\r\n\r\n" + smuggled, 411},
		// fasthttp refuses these three itself, while reading the chunks.
		{"chunk extension quoted CRLF", "POST /v1/multipliers HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1;a=\"\r\n\"\r\n[\r\n0\r\n\r\n" + smuggled, 400},
		{"chunk extension bare LF", "POST /v1/multipliers HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1;a\nb\r\n[\r\n0\r\n\r\n" + smuggled, 400},
		{"chunk size bare LF", "POST /v1/multipliers HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1\n[\n0\n\n" + smuggled, 400},
		{"TE xchunked", "POST /v1/multipliers HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n" + smuggled, 400},
		{"TE space before colon", "POST /v1/multipliers HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n" + smuggled, 400},
		{"TE list", "POST /v1/multipliers HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: identity, chunked\r\n\r\n0\r\n\r\n" + smuggled, 400},
		{"TE twice", "POST /v1/multipliers HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n" + smuggled, 400},
		{"TE in HTTP/1.0", "POST /v1/multipliers HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled, 400},
		{"duplicate CL, same", "POST /v1/multipliers HTTP/1.1\r\nHost: x\r\nContent-Length: 18\r\nContent-Length: 18\r\n\r\n" + batch + smuggled, 400},
		{"duplicate CL, different", "POST /v1/multipliers HTTP/1.1\r\nHost: x\r\nContent-Length: 18\r\nContent-Length: 0\r\n\r\n" + batch + smuggled, 400},
		{"CL list", "POST /v1/multipliers HTTP/1.1\r\nHost: x\r\nContent-Length: 18, 18\r\n\r\n" + batch + smuggled, 400},
		{"CL with sign", "POST /v1/multipliers HTTP/1.1\r\nHost: x\r\nContent-Length: +18\r\n\r\n" + batch + smuggled, 400},
		{"CL space before colon", "POST /v1/multipliers HTTP/1.1\r\nHost: x\r\nContent-Length : 18\r\n\r\n" + batch + smuggled, 400},
		{"CL obs-fold", "POST /v1/multipliers HTTP/1.1\r\nHost: x\r\nContent-Length:\r\n 18\r\n\r\n" + batch + smuggled, 400},
		{"obs-fold", "GET /v1/multiplier?campaign=c HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n" + smuggled, 400},
		{"obs-fold with tab", "GET /v1/multiplier?campaign=c HTTP/1.1\r\nHost: x\r\nX-A: a\r\n\tTransfer-Encoding: chunked\r\n\r\n" + smuggled, 400},
		{"bare LF between headers", "GET /v1/multiplier?campaign=c HTTP/1.1\r\nHost: x\nX-A: a\r\n\r\n" + smuggled, 400},
		{"LF in a header value", "POST /v1/multipliers HTTP/1.1\r\nHost: x\r\nX-A: a\nContent-Length: 18\r\n\r\n" + batch + smuggled, 400},
		{"bare CR in a header value", "GET /v1/multiplier?campaign=c HTTP/1.1\r\nHost: x\r\nX-A: a\rb\r\n\r\n" + smuggled, 400},
		{"NUL in a header value", "GET /v1/multiplier?campaign=c HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n" + smuggled, 400},
		{"space in a header name", "GET /v1/multiplier?campaign=c HTTP/1.1\r\nHost: x\r\nX A: b\r\n\r\n" + smuggled, 400},
		{"header without colon", "GET /v1/multiplier?campaign=c HTTP/1.1\r\nHost: x\r\nXYZ\r\n\r\n" + smuggled, 400},
		{"duplicate Host", "GET /v1/multiplier?campaign=c HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n" + smuggled, 400},
		{"duplicate Authorization", "GET /v1/stats HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer a\r\nAuthorization: Bearer b\r\n\r\n" + smuggled, 400},
		{"HTTP/2.0 request line", "GET /v1/multiplier?campaign=c HTTP/2.0\r\nHost: x\r\n\r\n" + smuggled, 505},
		{"HTTP/1.2 request line", "GET /v1/multiplier?campaign=c HTTP/1.2\r\nHost: x\r\n\r\n" + smuggled, 505},
		{"HTTP/0.9 request line", "GET /v1/multiplier?campaign=c\r\n\r\n" + smuggled, 400},
		{"two spaces in request line", "GET  /v1/multiplier?campaign=c HTTP/1.1\r\nHost: x\r\n\r\n" + smuggled, 400},
		{"GET with a body", "GET /v1/multiplier?campaign=c HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nG" + smuggled, 400},
		{"GET with a body holding a request", "GET /v1/multiplier?campaign=c HTTP/1.1\r\nHost: x\r\nContent-Length: " + fmt.Sprint(len(smuggled)) + "\r\n\r\n" + smuggled, 413},
		{"DELETE with a body", "DELETE /v1/overrides?campaign=c HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + token + "\r\nContent-Length: 1\r\n\r\nx" + smuggled, 400},
		{"only bare LF: never complete", "GET /v1/multiplier?campaign=c HTTP/1.1\nHost: x\n\n" + strings.ReplaceAll(smuggled, "\r\n", "\n"), 408},
		{"trailer with Content-Length", "POST /v1/multipliers HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nContent-Length: 5\r\n\r\n" + smuggled, 400},
		{"Expect 100-continue, body over the limit", "PUT /v1/killswitch HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + token + "\r\nExpect: 100-continue\r\nContent-Length: 1000000\r\n\r\n", 413},
	}
	for _, p := range probes {
		statuses, bodies, closed := rawAnswers(t, addr, p.raw)
		if !closed {
			t.Errorf("%s: the connection stayed open (answers %v)", p.name, statuses)
		}
		switch {
		case p.want == 0 && len(statuses) != 0:
			t.Errorf("%s: unexpected answers %v; want none", p.name, statuses)
		case p.want != 0 && (len(statuses) != 1 || statuses[0] != p.want):
			t.Errorf("%s: unexpected answers %v %q; want one %d", p.name, statuses, bodies, p.want)
		case len(statuses) == 1:
			var m map[string]string
			if err := json.Unmarshal([]byte(bodies[0]), &m); err != nil || m["error"] == "" {
				t.Errorf("%s: the answer is not a JSON error: %q", p.name, bodies[0])
			}
		}
		if n := handled.Load(); n != 0 {
			t.Fatalf("%s: a handler ran %d times", p.name, n)
		}
	}
	if code, b := e.do(t, "GET", "/v1/killswitch", token, ""); code != 200 || !strings.Contains(string(b), `"enabled":false`) {
		t.Fatalf("the kill switch moved; got %d %s", code, b)
	}
	// Every refusal is counted with its reason.
	var refused uint64
	byReason := map[string]uint64{}
	for r, c := range e.svc.guard.refused {
		refused += c.Get()
		if c.Get() > 0 {
			byReason[refusalNames[r]] = c.Get()
		}
	}
	t.Logf("%d probes refused before any handler, by reason: %v", len(probes), byReason)
	if refused != uint64(len(probes)) {
		t.Fatalf("unexpected refusals counted; got %d; want %d", refused, len(probes))
	}
}
