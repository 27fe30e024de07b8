package bidder

import (
	"bytes"
	"strconv"
	"strings"

	"github.com/VictoriaMetrics/metrics"
	"github.com/valyala/fasthttp"
)

// The guard refuses requests whose framing is ambiguous or whose size does
// not fit their route, before any handler runs. fasthttp already refuses
// most malformed requests (duplicate Content-Length, a Content-Length that
// is not a plain number, unknown transfer codings, a bare CR or a control
// byte in a header, a space before a header's colon, forbidden trailers,
// chunk sizes that overflow); checkFraming refuses what it accepts:
//
//   - Transfer-Encoding of any kind: every body bidpulse takes is small
//     and JSON, so it asks for a Content-Length (411), which removes the
//     chunked framing and its extensions from what a proxy in front and
//     bidpulse could read differently; with a Content-Length too, 400.
//   - a bare LF ending a header line (fasthttp splits the header there,
//     where a proxy may read one header), a continuation line (obs-fold),
//     a header name that is not a token, two Authorization headers;
//   - a protocol other than HTTP/1.0 and HTTP/1.1;
//   - a body on a method that takes none.
//
// Each refusal closes the connection after the answer, so whatever
// fasthttp read as the next request on it is never parsed. Limitation: a
// bare LF ending the request line itself is accepted, as fasthttp keeps no
// trace of how that line ended (the header lines after it are checked).

// Reasons a request is refused before its handler, in
// bidpulse_http_requests_refused_total{reason}.
const (
	refusedTransferEncoding = iota
	refusedLineEnding
	refusedObsFold
	refusedHeader
	refusedDuplicateHeader
	refusedProtocol
	refusedBody
	refusedBodyTooLarge
	refusedHeadersTooLarge
	refusedTimeout
	refusedUnparsable
	numRefusals
)

var refusalNames = [numRefusals]string{
	"transfer_encoding", "line_ending", "obs_fold", "bad_header", "duplicate_header", "protocol",
	"body_not_allowed", "body_too_large", "headers_too_large", "timeout", "unparsable",
}

// httpGuard holds the guard's counters and the server's header bound.
type httpGuard struct {
	maxHeaderBytes int
	refused        [numRefusals]*metrics.Counter
}

func newHTTPGuard(maxHeaderBytes int, set *metrics.Set) *httpGuard {
	g := &httpGuard{maxHeaderBytes: maxHeaderBytes}
	for r := range g.refused {
		g.refused[r] = set.NewCounter(`bidpulse_http_requests_refused_total{reason="` + refusalNames[r] + `"}`)
	}
	return g
}

// refuse answers status with msg, closes the connection after it, and
// counts the reason.
func (g *httpGuard) refuse(ctx *fasthttp.RequestCtx, reason, status int, msg string) {
	g.refused[reason].Inc()
	ctx.SetConnectionClose()
	writeError(ctx, status, msg)
}

// headerReceived gives each request the body limit of its route and
// method, before fasthttp reads the body: a body over it is refused from
// its Content-Length, unread (serveHTTPError answers the 413). A method
// that takes no body gets a limit of 1 byte (fasthttp's smallest), so an
// announced body is refused unread and checkRequest refuses the last byte.
// A chunked body is refused the same way (411 from serveHTTPError or
// checkFraming). It allocates nothing.
func (s *Service) headerReceived(h *fasthttp.RequestHeader) fasthttp.RequestConfig {
	return fasthttp.RequestConfig{MaxRequestBodySize: max(bodyLimitOf(h), 1)}
}

// bodyLimitOf returns the body limit of the request h heads: its route's
// for its method, 0 for a method or route that takes no body, or a chunked
// body.
func bodyLimitOf(h *fasthttp.RequestHeader) int {
	if h.ContentLength() == -1 {
		return 0
	}
	path := uriPath(h.RequestURI())
	if m := methodRuleOf(routeOf(path), path, h.Method()); m != nil {
		return m.body
	}
	return 0
}

// uriPath returns the path of a request target as sent: origin-form up to
// its query, or the path of an absolute-form target. It is not normalised:
// a path that is not exactly a route's (dot segments, doubled slashes,
// escapes) gets routeOther's limit, no body, even if the router would find
// the route once fasthttp has normalised it.
func uriPath(uri []byte) []byte {
	if len(uri) > 0 && uri[0] != '/' {
		// absolute-form: scheme://authority/path
		i := 0
		for i+2 < len(uri) && !(uri[i] == ':' && uri[i+1] == '/' && uri[i+2] == '/') {
			i++
		}
		if i+2 >= len(uri) {
			return nil
		}
		uri = uri[i+3:]
		j := 0
		for j < len(uri) && uri[j] != '/' {
			j++
		}
		uri = uri[j:]
	}
	for i, c := range uri {
		if c == '?' || c == '#' {
			return uri[:i]
		}
	}
	return uri
}

// expectContinue answers "Expect: 100-continue": 100 when the announced
// body fits the route, else a final 413 (or 411 for a chunked one), so the
// client does not send it. fasthttp closes the connection after a final
// answer, and calls no handler.
func (s *Service) expectContinue(ctx *fasthttp.RequestCtx) int {
	h := &ctx.Request.Header
	limit := bodyLimitOf(h)
	switch {
	case h.ContentLength() == -1:
		s.guard.refuse(ctx, refusedTransferEncoding, fasthttp.StatusLengthRequired, msgTransferEncoding)
	case h.ContentLength() > limit:
		s.guard.refuse(ctx, refusedBodyTooLarge, fasthttp.StatusRequestEntityTooLarge,
			"request body too large: the limit of "+string(h.Method())+" "+string(uriPath(h.RequestURI()))+" is "+sizeName(limit))
	default:
		return fasthttp.StatusContinue
	}
	s.http.count(routeOther, ctx.Response.StatusCode())
	return ctx.Response.StatusCode()
}

// checkRequest refuses, before the route's handler, a request whose framing
// is ambiguous (see the top of this file), whose header block is over its
// route's bound, or that has a body where its method takes none. m is the
// request's rule, nil for a route or method that does not exist (the
// framing is checked all the same). It allocates nothing.
func (s *Service) checkRequest(ctx *fasthttp.RequestCtx, route int, m *methodRule) bool {
	g := s.guard
	h := &ctx.Request.Header
	if p := h.Protocol(); string(p) != "HTTP/1.1" && string(p) != "HTTP/1.0" {
		g.refuse(ctx, refusedProtocol, fasthttp.StatusHTTPVersionNotSupported, "unsupported protocol: bidpulse speaks HTTP/1.1 and HTTP/1.0")
		return false
	}
	raw := h.RawHeaders()
	if reason, msg := checkRawHeaders(raw); msg != "" {
		status := fasthttp.StatusBadRequest
		if reason == refusedTransferEncoding && msg == msgTransferEncoding {
			status = fasthttp.StatusLengthRequired
		}
		g.refuse(ctx, reason, status, msg)
		return false
	}
	if m == nil {
		return true
	}
	if limit := routeRules[route].maxHeaderBytes; limit > 0 && len(raw) > limit {
		g.refuse(ctx, refusedHeadersTooLarge, fasthttp.StatusRequestHeaderFieldsTooLarge,
			"request headers too large: the limit of "+string(ctx.Path())+" is "+strconv.Itoa(limit>>10)+" KiB")
		return false
	}
	if m.body == 0 && (h.ContentLength() > 0 || len(ctx.Request.Body()) > 0) {
		g.refuse(ctx, refusedBody, fasthttp.StatusBadRequest, string(ctx.Method())+" "+string(ctx.Path())+" takes no body")
		return false
	}
	return true
}

const (
	msgTransferEncoding   = "Transfer-Encoding is not accepted: send the body with a Content-Length"
	msgTransferEncodingCL = "Transfer-Encoding and Content-Length together: the framing is ambiguous"
)

// checkRawHeaders checks the header block as received (fasthttp's
// RawHeaders: every header line with its CRLF, up to the empty line) and
// returns a refusal reason and its message, or an empty message.
func checkRawHeaders(raw []byte) (int, string) {
	te, cl, auth := 0, 0, 0
	for len(raw) > 0 {
		end := bytes.IndexByte(raw, '\n')
		if end < 0 {
			return refusedLineEnding, "header line without its CRLF"
		}
		if end == 0 || raw[end-1] != '\r' {
			return refusedLineEnding, "bare LF in the headers: lines end with CRLF"
		}
		line := raw[:end-1]
		raw = raw[end+1:]
		if len(line) == 0 {
			break // the empty line ending the block
		}
		if line[0] == ' ' || line[0] == '\t' {
			return refusedObsFold, "header continuation line (obs-fold) not accepted"
		}
		colon := 0
		for colon < len(line) && headerChars[line[colon]]&tokenChar != 0 {
			colon++
		}
		if colon == 0 || colon == len(line) || line[colon] != ':' {
			if colon < len(line) && line[colon] != ':' {
				return refusedHeader, "invalid character in a header name"
			}
			return refusedHeader, "malformed header line"
		}
		for _, c := range line[colon+1:] {
			if headerChars[c]&valueChar == 0 {
				return refusedHeader, "control character in a header value"
			}
		}
		switch name := line[:colon]; len(name) {
		case len("Transfer-Encoding"):
			if asciiEqualFold(name, "Transfer-Encoding") {
				te++
			}
		case len("Content-Length"):
			if asciiEqualFold(name, "Content-Length") {
				cl++
			}
		case len("Authorization"):
			if asciiEqualFold(name, "Authorization") {
				auth++
			}
		}
	}
	switch {
	case te > 0 && cl > 0:
		return refusedTransferEncoding, msgTransferEncodingCL
	case te > 0:
		return refusedTransferEncoding, msgTransferEncoding
	case cl > 1:
		return refusedDuplicateHeader, "duplicate Content-Length"
	case auth > 1:
		return refusedDuplicateHeader, "duplicate Authorization"
	}
	return 0, ""
}

// headerChars classifies bytes: tokenChar may appear in a header name (RFC
// 9110 tchar), valueChar in a header value (anything but the control
// characters other than HTAB).
var headerChars = func() (t [256]uint8) {
	for c := 0; c < 256; c++ {
		if (c >= ' ' || c == '\t') && c != 0x7f {
			t[c] |= valueChar
		}
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", byte(c)) >= 0 {
			t[c] |= tokenChar
		}
	}
	return t
}()

const (
	tokenChar = 1 << iota
	valueChar
)
