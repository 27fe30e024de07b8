package bidder

import (
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"strings"

	"github.com/valyala/fasthttp"
)

// The read token (Options.ReadToken) guards what the service knows: the
// rates and snapshots of every key, the ingest stats, the campaign policies
// (budgets, CPA and ROAS targets), the metrics, and the explain of a bid
// answer (which carries the policy's inputs). Without it those endpoints
// are open, as before. The bid answers themselves stay open whatever the
// token: ad servers call them from a private network, in their auction
// budget, and a bid answer already carries the counts and rates of its
// level (docs/OPERATIONS.md, "Who may call what").

// parseReadTokens reads Options.ReadToken: one secret (any characters but
// a line break), as --admin-token.
func parseReadTokens(s string) ([]adminToken, error) {
	toks, err := parseAdminTokens(s, "")
	if err != nil {
		return nil, fmt.Errorf("invalid read-token: %s", strings.TrimPrefix(err.Error(), "invalid admin-token: "))
	}
	return toks, nil
}

// readAllowed reports whether the request may read: no read token is
// configured, or its bearer token is a read or an admin token. Every
// configured token is compared, in constant time on SHA-256 hashes, so
// neither content, length nor which token matched leaks through timing. It
// allocates nothing.
func (s *Service) readAllowed(ctx *fasthttp.RequestCtx) bool {
	if len(s.readTokens) == 0 {
		return true
	}
	auth := ctx.Request.Header.Peek("Authorization")
	const prefix = "Bearer "
	if len(auth) < len(prefix) || !asciiEqualFold(auth[:len(prefix)], prefix) {
		return false
	}
	got := sha256.Sum256(auth[len(prefix):])
	ok := 0
	for i := range s.readTokens {
		ok |= subtle.ConstantTimeCompare(got[:], s.readTokens[i].hash[:])
	}
	for i := range s.adminTokens {
		ok |= subtle.ConstantTimeCompare(got[:], s.adminTokens[i].hash[:])
	}
	return ok == 1
}

// checkRead answers 401 and returns false unless readAllowed.
func (s *Service) checkRead(ctx *fasthttp.RequestCtx) bool {
	if s.readAllowed(ctx) {
		return true
	}
	if len(ctx.Request.Header.Peek("Authorization")) == 0 {
		ctx.Response.Header.Set("WWW-Authenticate", `Bearer realm="bidpulse"`)
		writeError(ctx, fasthttp.StatusUnauthorized, "missing Authorization: Bearer token: this endpoint needs the read token (or an admin token)")
		return false
	}
	ctx.Response.Header.Set("WWW-Authenticate", `Bearer realm="bidpulse", error="invalid_token"`)
	writeError(ctx, fasthttp.StatusUnauthorized, "invalid token: this endpoint needs the read token (or an admin token)")
	return false
}

// errExplainToken is a batch item's answer when it asks for explain without
// the read token.
const errExplainToken = queryError("explain needs the read token (Authorization: Bearer)")

// explainDenied reports whether the request may not have explain answers:
// a read token is configured and the request does not carry one.
func (s *Service) explainDenied(ctx *fasthttp.RequestCtx) bool {
	return len(s.readTokens) > 0 && !s.readAllowed(ctx)
}

// asciiEqualFold reports whether b equals s, ASCII letters compared without
// case; it allocates nothing.
func asciiEqualFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := 0; i < len(b); i++ {
		x, y := b[i], s[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}
