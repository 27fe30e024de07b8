package bidder

import (
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"strings"

	"github.com/valyala/fasthttp"
)

// adminToken is one accepted admin bearer token: its name (who, in the
// audit log) and the SHA-256 of its secret.
type adminToken struct {
	name string
	hash [32]byte
}

// parseAdminTokens reads Options.AdminToken, a single secret named "admin"
// (any byte but a line break, ':' and ',' included), and Options.AdminTokens,
// comma-separated name:secret pairs ("alice:s3cret,ci:t0ken"). The two are
// separate options so that a secret is never read as a pair.
func parseAdminTokens(single, pairs string) ([]adminToken, error) {
	var out []adminToken
	seen := map[string]bool{}
	if single != "" {
		if strings.ContainsAny(single, "\r\n") {
			return nil, fmt.Errorf("invalid admin-token: a line break in the secret")
		}
		out = append(out, adminToken{name: "admin", hash: sha256.Sum256([]byte(single))})
		seen["admin"] = true
	}
	if pairs == "" {
		return out, nil
	}
	for _, part := range strings.Split(pairs, ",") {
		name, secret, ok := strings.Cut(part, ":")
		if !ok || name == "" || secret == "" {
			return nil, fmt.Errorf("invalid admin-tokens: want name:secret pairs separated by commas")
		}
		if seen[name] {
			return nil, fmt.Errorf("invalid admin-tokens: name %q given twice (\"admin\" is the name of --admin-token)", name)
		}
		seen[name] = true
		out = append(out, adminToken{name: name, hash: sha256.Sum256([]byte(secret))})
	}
	return out, nil
}

// checkAdmin answers 403 when the admin API is disabled and 401 when the
// bearer token is missing or wrong, and returns the token's name. Tokens are
// compared in constant time on their SHA-256 hashes, every configured token
// each time, so neither content, length nor which token matched leaks
// through timing.
func (s *Service) checkAdmin(ctx *fasthttp.RequestCtx) (string, bool) {
	if len(s.adminTokens) == 0 {
		writeError(ctx, fasthttp.StatusForbidden, "admin API disabled: start bidpulse with --admin-token or --admin-tokens")
		return "", false
	}
	auth := ctx.Request.Header.Peek("Authorization")
	const prefix = "Bearer "
	if len(auth) < len(prefix) || !strings.EqualFold(string(auth[:len(prefix)]), prefix) {
		ctx.Response.Header.Set("WWW-Authenticate", `Bearer realm="bidpulse"`)
		writeError(ctx, fasthttp.StatusUnauthorized, "missing Authorization: Bearer token")
		return "", false
	}
	got := sha256.Sum256(auth[len(prefix):])
	name := ""
	for i := range s.adminTokens {
		if subtle.ConstantTimeCompare(got[:], s.adminTokens[i].hash[:]) == 1 {
			name = s.adminTokens[i].name
		}
	}
	if name == "" {
		ctx.Response.Header.Set("WWW-Authenticate", `Bearer realm="bidpulse", error="invalid_token"`)
		writeError(ctx, fasthttp.StatusUnauthorized, "invalid admin token")
		return "", false
	}
	return name, true
}
