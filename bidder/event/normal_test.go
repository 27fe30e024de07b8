package event

import (
	"testing"

	"github.com/bidpulse/bidpulse/windows"
)

func TestNormal(t *testing.T) {
	f := func(d windows.Dim, value, want string) {
		t.Helper()
		buf := make([]byte, 0, 4)
		if got := Normal(buf, d, []byte(value)); string(got) != want {
			t.Fatalf("unexpected Normal(%s, %q); got %q; want %q", windows.DimNames[d], value, got, want)
		}
		if got := AppendNormal([]byte("x"), d, value); string(got) != "x"+want {
			t.Fatalf("unexpected AppendNormal(%s, %q); got %q; want %q", windows.DimNames[d], value, got, "x"+want)
		}
	}
	f(windows.DimDevice, "Mobile", "mobile")
	f(windows.DimDevice, "mobile", "mobile")
	f(windows.DimDevice, "DESKTOP-É", "desktop-É") // non-ASCII kept
	f(windows.DimCountry, "fr", "FR")
	f(windows.DimCountry, "Fr", "FR")
	f(windows.DimCountry, "FR", "FR")
	f(windows.DimCampaign, "Camp-A", "Camp-A")
	f(windows.DimCreative, "CR7", "CR7")
	f(windows.DimPlacement, "News.Example/Top", "News.Example/Top")
	f(windows.DimSite, "News.Example.COM", "News.Example.COM")
	f(windows.DimSite, "com.Example.App", "com.Example.App") // bundle ids are case-sensitive
}

// TestNormalSame checks that Normal and AppendNormal agree byte for byte
// on every byte value and every dimension, and that Normal returns its
// input when nothing changes.
func TestNormalSame(t *testing.T) {
	for d := windows.Dim(0); d < windows.NumDims; d++ {
		for c := range 256 {
			in := []byte{'a', byte(c), 'Z'}
			got := Normal(nil, d, in)
			want := AppendNormal(nil, d, string(in))
			if string(got) != string(want) {
				t.Fatalf("%s, byte %#x: Normal %q != AppendNormal %q", windows.DimNames[d], c, got, want)
			}
			if string(got) == string(in) && &got[0] != &in[0] {
				t.Fatalf("%s, byte %#x: Normal copied an unchanged value", windows.DimNames[d], c)
			}
		}
	}
}

// TestNormalParserAgrees checks that ingest keys an event's dimensions as
// Normal does, on the fast path and on the general one (a non-ASCII
// unknown field sends a payload there).
func TestNormalParserAgrees(t *testing.T) {
	var p Parser
	f := func(payload, v string) {
		t.Helper()
		n := 0
		p.Parse([]byte(payload), func(ev *Event, reason Reason, _ []byte) {
			n++
			if reason != OK {
				t.Fatalf("unexpected rejection of %s: %s", payload, reason)
			}
			for d := windows.Dim(0); d < windows.NumDims; d++ {
				want := string(AppendNormal(nil, d, string(ev.Dims[d])))
				if d != windows.DimCampaign {
					want = string(AppendNormal(nil, d, v))
				}
				if string(ev.Dims[d]) != want {
					t.Fatalf("%s of %s: parser keyed %q; Normal gives %q", windows.DimNames[d], payload, ev.Dims[d], want)
				}
			}
		})
		if n != 1 {
			t.Fatalf("unexpected events parsed from %s; got %d; want 1", payload, n)
		}
	}
	for _, v := range []string{"Mobile", "fr", "DE", "Tablet", "x-Y"} {
		for _, extra := range []string{"", `,"x":"é"`} {
			f(`{"id":"1","type":"impression","campaign":"C","creative":"`+v+`","placement":"`+v+
				`","device":"`+v+`","country":"`+v+`","site":"`+v+`"`+extra+`}`, v)
		}
	}
}
