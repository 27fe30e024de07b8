package bench

import (
	"strings"
	"testing"
)

func TestParseBatchMix(t *testing.T) {
	m, err := ParseBatchMix(ProductionDefaults().BatchMix)
	if err != nil || len(m) != 4 || m.String() != ProductionDefaults().BatchMix || m.largest() != 10_000 {
		t.Fatalf("unexpected mix %v (%v)", m, err)
	}
	// Most messages are small; most events travel in large ones.
	sh := m.EventShares()
	if sh[3] < 0.45 || sh[2]+sh[3] < 0.8 || sh[0] > 0.02 {
		t.Fatalf("unexpected event shares %v", sh)
	}
	if m, err := ParseBatchMix(" "); m != nil || err != nil {
		t.Fatalf("unexpected mix of nothing %v (%v)", m, err)
	}
	f := func(s, want string) {
		t.Helper()
		_, err := ParseBatchMix(s)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("unexpected error of %q; got %v; want one containing %q", s, err, want)
		}
	}
	f("100", "invalid batch mix")
	f("100:x", "invalid batch mix")
	f("0:1", "invalid batch mix size 0")
	f("10001:1", "invalid batch mix size 10001")
	f("100:0", "invalid batch mix weight")
	f("100:-1", "invalid batch mix weight")
}

// TestBatchSizer: the sizes drawn follow the weights.
func TestBatchSizer(t *testing.T) {
	m, _ := ParseBatchMix("10:3,20:1")
	b := newBatchSizer(m, 1)
	var n [2]int
	for range 40_000 {
		i := b.next()
		n[i]++
		b.sent(i, uint64(m[i].Events))
	}
	if n[0] < 29_000 || n[0] > 31_000 || b.messages[0] != uint64(n[0]) || b.events[1] != 20*uint64(n[1]) {
		t.Fatalf("unexpected draws %v, %v messages, %v events", n, b.messages, b.events)
	}
}
