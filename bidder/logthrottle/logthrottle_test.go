package logthrottle

import (
	"bytes"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/rs/zerolog"
)

func TestAllow(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := New(zerolog.Nop(), 10*time.Second)
		f := func(topic string, wantSuppressed int, wantOK bool) {
			t.Helper()
			if n, ok := l.Allow(topic); n != wantSuppressed || ok != wantOK {
				t.Fatalf("unexpected Allow(%q); got %d, %v; want %d, %v", topic, n, ok, wantSuppressed, wantOK)
			}
		}
		f("a", 0, true) // the first is logged
		f("a", 0, false)
		f("a", 0, false)
		f("b", 0, true) // topics are apart
		time.Sleep(9 * time.Second)
		f("a", 0, false)
		time.Sleep(time.Second)
		f("a", 3, true) // the interval passed: logged, with the count suppressed meanwhile
		f("a", 0, false)
	})
}

func TestWarn(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var buf bytes.Buffer
		l := New(zerolog.New(&buf), time.Minute)
		for range 5 {
			l.Warn("x", "cannot do it", nil)
		}
		time.Sleep(time.Minute)
		l.Warn("x", "cannot do it", nil)
		lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
		if len(lines) != 2 || !strings.Contains(lines[0], `"suppressed":0`) || !strings.Contains(lines[1], `"suppressed":4`) {
			t.Fatalf("unexpected lines; got %q; want 2, the second with 4 suppressed", lines)
		}
	})
}
