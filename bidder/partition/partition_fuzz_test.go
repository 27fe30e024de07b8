package partition

import (
	"strconv"
	"strings"
	"testing"
)

// FuzzFromSubject checks that FromSubject never panics and that whatever it accepts is exactly
// <p>.<base>.<campaign>.<rest> with the p and campaign it returned.
func FuzzFromSubject(f *testing.F) {
	const base = "bidpulse.events"
	for _, s := range []string{"0.bidpulse.events.c42.x", "63.bidpulse.events.café.x.y", "01.bidpulse.events.c.x", "3.bidpulse.events.c42", "4294967296.bidpulse.events.c.x", "3.bidpulse.events..x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, stored string) {
		p, c, ok := FromSubject(base, stored)
		if !ok {
			return
		}
		if err := CheckCampaign(c); err != nil {
			t.Fatalf("accepted %q with a campaign that CheckCampaign refuses: %v", stored, err)
		}
		prefix := strconv.FormatUint(uint64(p), 10) + "." + base + "." + c + "."
		rest, found := strings.CutPrefix(stored, prefix)
		if !found || rest == "" {
			t.Fatalf("accepted %q as partition %d, campaign %q; it is not %q followed by a rest", stored, p, c, prefix)
		}
	})
}
