package partition

import (
	"hash/fnv"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
)

// TestOfKnownValues checks the hash against values computed by hand or published elsewhere. With
// p = math.MaxUint32, Of returns the whole 32-bit hash (every value below is smaller than p).
func TestOfKnownValues(t *testing.T) {
	f := func(campaign string, p, want uint32) {
		t.Helper()
		if got := OfString(p, campaign); got != want {
			t.Fatalf("unexpected partition of %q among %d; got %d (%#x); want %d (%#x)", campaign, p, got, got, want, want)
		}
		if got := Of(p, []byte(campaign)); got != want {
			t.Fatalf("unexpected partition of []byte %q among %d; got %d; want %d", campaign, p, got, want)
		}
	}
	// The offset basis: nothing is hashed.
	f("", math.MaxUint32, 0x811c9dc5)
	// By hand: (0x811c9dc5 ^ 0x61) * 16777619 mod 2^32 = 0x811c9da4 * 0x01000193 mod 2^32.
	f("a", math.MaxUint32, 0xe40c292c)
	// The FNV reference test vector for "foobar".
	f("foobar", math.MaxUint32, 0xbf9cf968)
	// nats-server's own expectations (subject_transform_test.go: "*" -> "bar.{{partition(10)}}").
	f("foo", 10, 3)
	f("baz", 10, 0)
	f("qux", 10, 9)
	// Multi-byte UTF-8 is hashed byte by byte: "café" is 63 61 66 c3 a9.
	f("café", math.MaxUint32, 0xa82b5049)
	f("café", 64, 0xa82b5049%64)
	// One partition holds everything.
	f("anything", 1, 0)
}

// TestOfZeroPartitions checks that p == 0 gives 0, as the server's getHashPartition does, rather
// than a division by zero.
func TestOfZeroPartitions(t *testing.T) {
	if got := OfString(0, "c42"); got != 0 {
		t.Fatalf("unexpected partition among 0; got %d; want 0", got)
	}
}

// TestOfMatchesHashFNV compares Of with the standard library's FNV-1a (the server's own hash) on
// random byte strings, including invalid UTF-8 and long ones.
func TestOfMatchesHashFNV(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	buf := make([]byte, 300)
	for i := range 20000 {
		b := buf[:rng.IntN(len(buf))]
		for j := range b {
			b[j] = byte(rng.Uint32())
		}
		h := fnv.New32a()
		h.Write(b)
		sum := h.Sum32()
		p := []uint32{1, 7, 64, 1000, math.MaxInt32, math.MaxUint32}[i%6]
		if got, want := Of(p, b), sum%p; got != want {
			t.Fatalf("unexpected partition of %x among %d; got %d; want %d", b, p, got, want)
		}
		if got, want := OfString(p, string(b)), sum%p; got != want {
			t.Fatalf("unexpected partition of string %x among %d; got %d; want %d", b, p, got, want)
		}
	}
}

// TestOfAllocs checks that computing a partition allocates nothing: it runs once per event or
// bid once the service routes by partition.
func TestOfAllocs(t *testing.T) {
	b := []byte("campaign-42")
	s := "campaign-42"
	var sink uint32
	if n := testing.AllocsPerRun(100, func() { sink += Of(64, b) + OfString(64, s) }); n != 0 {
		t.Fatalf("unexpected allocations per call; got %v; want 0", n)
	}
	_ = sink
}

func TestCheckCampaign(t *testing.T) {
	for _, c := range []string{"c", "c42", "a*b", "a>b", "**", ">>", "news/top", "café", "日本", "🙂", "$x", "{{x}}", "-_:@#~+=!%&()[]", strings.Repeat("x", 200)} {
		if err := CheckCampaign(c); err != nil {
			t.Fatalf("unexpected error for campaign %q; got %v; want nil", c, err)
		}
	}
	for _, c := range []string{"", "*", ">", "a.b", ".", "a.", ".a", "a b", "a\tb", "a\rb", "a\nb", "a\fb", "a\x00b", "\xff", "caf\xc3"} {
		if err := CheckCampaign(c); err == nil {
			t.Fatalf("unexpected nil error for campaign %q", c)
		}
	}
}

func TestStreamTransform(t *testing.T) {
	s, err := StreamTransform(64, "bidpulse.events")
	if err != nil {
		t.Fatal(err)
	}
	if want := "bidpulse.events.*.>"; s.Subject != want || s.Transform.Source != want {
		t.Fatalf("unexpected subject or source; got %q, %q; want %q", s.Subject, s.Transform.Source, want)
	}
	if want := "{{partition(64,1)}}.bidpulse.events.{{wildcard(1)}}.>"; s.Transform.Destination != want {
		t.Fatalf("unexpected destination; got %q; want %q", s.Transform.Destination, want)
	}
	bad := func(p uint32, base string) {
		t.Helper()
		if _, err := StreamTransform(p, base); err == nil {
			t.Fatalf("unexpected nil error for %d partitions under %q", p, base)
		}
	}
	bad(0, "bidpulse.events")
	bad(math.MaxInt32+1, "bidpulse.events")
	bad(math.MaxUint32, "bidpulse.events")
	for _, base := range []string{"", ".", "bidpulse.", ".events", "bidpulse..events", "bidpulse.*", "bidpulse.>", "bid pulse", "bidpulse.$1", "bidpulse.{{wildcard(1)}}"} {
		bad(8, base)
	}
	if _, err := StreamTransform(math.MaxInt32, "a"); err != nil {
		t.Fatalf("unexpected error for math.MaxInt32 partitions: %v", err)
	}
}

func TestFilter(t *testing.T) {
	if got, want := Filter(7, "bidpulse.events"), "7.bidpulse.events.>"; got != want {
		t.Fatalf("unexpected filter; got %q; want %q", got, want)
	}
}

func TestFromSubject(t *testing.T) {
	const base = "bidpulse.events"
	good := func(stored string, wantP uint32, wantCampaign string) {
		t.Helper()
		p, c, ok := FromSubject(base, stored)
		if !ok || p != wantP || c != wantCampaign {
			t.Fatalf("unexpected parse of %q; got %d, %q, %v; want %d, %q, true", stored, p, c, ok, wantP, wantCampaign)
		}
	}
	good("0.bidpulse.events.c42.x", 0, "c42")
	good("63.bidpulse.events.c42.x.y", 63, "c42")
	good("4294967295.bidpulse.events.café.publish", math.MaxUint32, "café")
	good("5.bidpulse.events.a*b.x", 5, "a*b")
	for _, stored := range []string{
		"",
		"bidpulse.events.c42.x",    // no partition
		"x.bidpulse.events.c42.x",  // not a number
		"-1.bidpulse.events.c42.x", // sign
		"+1.bidpulse.events.c42.x", // sign
		"01.bidpulse.events.c42.x", // leading zero: the server never writes one
		"4294967296.bidpulse.events.c42.x",
		"99999999999.bidpulse.events.c42.x",
		".bidpulse.events.c42.x",
		"3.bidpulse.event.c42.x",   // another base
		"3.bidpulse.eventsX.c42.x", // a base with a longer last token
		"3.other.events.c42.x",
		"3.bidpulse.events",        // no campaign
		"3.bidpulse.events.",       // empty campaign
		"3.bidpulse.events.c42",    // no rest: the stream never stores this shape
		"3.bidpulse.events.c42.",   // empty rest
		"3.bidpulse.events.c42.x.", // empty last token
		"3.bidpulse.events.c42..x", // empty token
		"3.bidpulse.events.*.x",    // wildcard campaign
		"3.bidpulse.events.>.x",
		"3.bidpulse.events.c42.>",  // wildcard rest
		"3.bidpulse.events.c 42.x", // whitespace
		"3.bidpulse.events.c42.x y",
		"3.bidpulse.events..x",
	} {
		if p, c, ok := FromSubject(base, stored); ok {
			t.Fatalf("unexpected parse of %q; got %d, %q, true; want ok false", stored, p, c)
		}
	}
	if _, _, ok := FromSubject("", "3..c42.x"); ok {
		t.Fatal("unexpected parse with an empty base")
	}
}

// TestFromSubjectRoundTrip checks that what the transform's destination writes parses back to
// the partition and campaign it was written from.
func TestFromSubjectRoundTrip(t *testing.T) {
	const base = "bidpulse.events"
	for i, c := range testCampaigns(2000, 7) {
		p := uint32(i) % 97
		stored := Filter(p, base)
		stored = stored[:len(stored)-1] + c + ".x.y"
		gotP, gotC, ok := FromSubject(base, stored)
		if !ok || gotP != p || gotC != c {
			t.Fatalf("unexpected parse of %q; got %d, %q, %v; want %d, %q, true", stored, gotP, gotC, ok, p, c)
		}
	}
}
