package windows

import (
	"bytes"
	"strings"
	"testing"
)

func TestKeyRoundTrip(t *testing.T) {
	r, err := ParseRollups([]string{"campaign", "campaign/creative", "campaign/placement", "campaign/creative/placement", "campaign/creative/placement/device/country"})
	if err != nil {
		t.Fatalf("unexpected error: %s", err)
	}
	f := func(level int, vals ...string) []byte {
		t.Helper()
		var v Values
		for i, d := range r.Levels[level].Dims {
			v[d] = []byte(vals[i])
		}
		// Dimensions outside the level are ignored by AppendKey.
		for d := Dim(0); d < NumDims; d++ {
			if r.Levels[level].Mask&(1<<d) == 0 {
				v[d] = []byte("ignored")
			}
		}
		key := AppendKey([]byte("prefix"), level, r, &v)
		if !bytes.HasPrefix(key, []byte("prefix")) {
			t.Fatalf("unexpected key %q: the prefix is lost", key)
		}
		key = key[len("prefix"):]
		if got := KeyLevel(key); got != level {
			t.Fatalf("unexpected KeyLevel; got %d; want %d", got, level)
		}
		var got Values
		got[DimDevice] = []byte("stale")
		lv, err := DecodeKey(key, r, &got)
		if err != nil {
			t.Fatalf("unexpected error decoding %q: %s", key, err)
		}
		if lv != level {
			t.Fatalf("unexpected level; got %d; want %d", lv, level)
		}
		for d := Dim(0); d < NumDims; d++ {
			if r.Levels[level].Mask&(1<<d) == 0 {
				if got[d] != nil {
					t.Fatalf("unexpected value of %s outside the level; got %q; want nil", d, got[d])
				}
				continue
			}
			if string(got[d]) != string(v[d]) {
				t.Fatalf("unexpected value of %s; got %q; want %q", d, got[d], v[d])
			}
		}
		return key
	}
	f(0, "c42")
	f(1, "c42", "cr7")
	f(3, "c/42", "cr/7", "news.example/top")
	f(4, "c", "", "p", "mobile", "FR")
	f(4, "\x00", "\x01\x02", "\xff\xff\xff", "\x05abcde", strings.Repeat("x", 300))

	// Values with "/" or length-like bytes must not make two keys equal.
	a := f(1, "a/b", "c")
	b := f(1, "a", "b/c")
	c := f(1, "a\x01", "b")
	d := f(1, "a", "\x01b")
	e := f(2, "a/b", "c")
	seen := map[string]bool{}
	for _, k := range [][]byte{a, b, c, d, e} {
		if seen[string(k)] {
			t.Fatalf("unexpected duplicate key %q", k)
		}
		seen[string(k)] = true
	}
}

func TestDecodeKeyErrors(t *testing.T) {
	r, err := ParseRollups(DefaultRollupNames())
	if err != nil {
		t.Fatalf("unexpected error: %s", err)
	}
	f := func(key string, wantSubstr string) {
		t.Helper()
		var v Values
		lv, err := DecodeKey([]byte(key), r, &v)
		if err == nil {
			t.Fatalf("unexpected success for %q: level %d, %q", key, lv, v)
		}
		if lv != -1 {
			t.Fatalf("unexpected level on error; got %d; want -1", lv)
		}
		if v.Mask() != 0 {
			t.Fatalf("unexpected values left on error: %q", v)
		}
		if !strings.Contains(err.Error(), wantSubstr) {
			t.Fatalf("unexpected error for %q; got %q; want it to contain %q", key, err, wantSubstr)
		}
	}
	f("", "empty key")
	f("\x04\x01c", "level 4 is not configured")
	f("\x00", "bad length of campaign")
	f("\x00\x80", "bad length of campaign")
	f("\x00\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", "bad length of campaign")
	f("\x00\x80\x00", "bad length of campaign")
	f("\x00\x81\x00c", "bad length of campaign")
	f("\x00\x05abc", "campaign needs 5 bytes; 3 left")
	f("\x00\x01cX", "1 trailing bytes")
	f("\x01\x01c", "bad length of creative")
	if got := KeyLevel(nil); got != -1 {
		t.Fatalf("unexpected KeyLevel of an empty key; got %d; want -1", got)
	}
}
