package bidder

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"strings"
	"testing"
	"unicode/utf8"
)

// TestAppendStringRoundTrips checks that appendString's output is a JSON string that
// encoding/json reads back as the input (invalid UTF-8 as U+FFFD, as it reads it), with no raw
// '<', '>', '&' or control byte, for chosen inputs and random ones, runs of plain bytes included.
func TestAppendStringRoundTrips(t *testing.T) {
	f := func(s []byte) {
		t.Helper()
		out := appendString(nil, s)
		var got string
		if err := json.Unmarshal(out, &got); err != nil {
			t.Fatalf("unexpected output %q for %q: %v", out, s, err)
		}
		if want := strings.ToValidUTF8(string(s), "\uFFFD"); got != want && got != decodeLikeJSON(s) {
			t.Fatalf("unexpected round trip of %q; got %q; want %q", s, got, want)
		}
		if bytes.ContainsAny(out[1:len(out)-1], "<>&\n\r\t\u2028\u2029") {
			t.Fatalf("unexpected raw byte in %q", out)
		}
	}
	for _, s := range []string{"", "plain", "news.example/top", `a"b\c`, "<script>&", "tab\there\n", "\x00\x01\x1f\x7f",
		"café", "\xff\xfe", "a\xffb", "\u2028\u2029", "日本語", strings.Repeat("x", 300) + "\"" + strings.Repeat("y", 10)} {
		f([]byte(s))
	}
	r := rand.New(rand.NewPCG(1, 2))
	for range 2000 {
		b := make([]byte, r.IntN(40))
		for i := range b {
			if r.IntN(3) == 0 {
				b[i] = byte(r.IntN(256))
			} else {
				b[i] = byte('a' + r.IntN(26))
			}
		}
		f(b)
	}
}

// decodeLikeJSON returns what encoding/json reads from the bytes of s inside a JSON string:
// each invalid UTF-8 byte on its own becomes U+FFFD (strings.ToValidUTF8 merges a run of them).
func decodeLikeJSON(s []byte) string {
	var sb strings.Builder
	for len(s) > 0 {
		r, n := utf8.DecodeRune(s)
		sb.WriteRune(r) // RuneError, U+FFFD, for an invalid byte
		s = s[n:]
	}
	return sb.String()
}
