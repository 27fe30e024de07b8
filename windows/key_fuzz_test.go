package windows

import (
	"bytes"
	"strings"
	"testing"
)

func FuzzDecodeKey(f *testing.F) {
	r, err := ParseRollups([]string{"campaign", "campaign/creative", "campaign/placement", "campaign/creative/placement", "campaign/device/country"})
	if err != nil {
		f.Fatalf("unexpected error: %s", err)
	}
	f.Add([]byte("\x00\x03c42"))
	f.Add([]byte("\x03\x01c\x02cr\x10news.example/top"))
	f.Add([]byte("\x04\x01c\x00\x02FR"))
	f.Add([]byte("\x01\x80"))
	f.Fuzz(func(t *testing.T, key []byte) {
		var v Values
		level, err := DecodeKey(key, r, &v)
		if err != nil {
			return
		}
		if got := AppendKey(nil, level, r, &v); !bytes.Equal(got, key) {
			t.Fatalf("unexpected re-encoding of %q; got %q", key, got)
		}
	})
}

func FuzzParseRollups(f *testing.F) {
	f.Add("campaign,campaign/creative,campaign/placement")
	f.Add("campaign/device/country,campaign")
	f.Add("campaign,creative/campaign")
	f.Fuzz(func(t *testing.T, list string) {
		names := strings.Split(list, ",")
		r, err := ParseRollups(names)
		if err != nil {
			return
		}
		for i, lv := range r.Levels {
			if lv.Dims[0] != DimCampaign {
				t.Fatalf("unexpected first dim of %q: %s", lv.Name, lv.Dims[0])
			}
			if (lv.Parent < 0) != (i == r.Campaign) {
				t.Fatalf("unexpected parent %d of %q", lv.Parent, lv.Name)
			}
			if j, ok := r.ByMask(lv.Mask); !ok || j != i {
				t.Fatalf("unexpected ByMask of %q; got %d, %v; want %d", lv.Name, j, ok, i)
			}
			if j, ok := r.ByName(lv.Name); !ok || j != i {
				t.Fatalf("unexpected ByName of %q; got %d, %v; want %d", lv.Name, j, ok, i)
			}
		}
	})
}
