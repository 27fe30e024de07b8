package bidder

import (
	"encoding/json"
	"os"
	"strings"
	"testing"
)

// TestAlpha3Table checks the alpha-3 table against ISO 3166-1 as Debian's iso-codes package
// holds it, when it is installed: the same 249 codes, each to its alpha-2. Without the package,
// it checks what it can alone: 249 codes, well formed, one-to-one, and known pairs.
func TestAlpha3Table(t *testing.T) {
	seen := map[string]string{}
	for a3, a2 := range alpha3To2 {
		if len(a3) != 3 || len(a2) != 2 || strings.ToUpper(a3) != a3 || strings.ToUpper(a2) != a2 {
			t.Errorf("unexpected entry %q: %q", a3, a2)
		}
		if other, dup := seen[a2]; dup {
			t.Errorf("unexpected alpha-2 %s for both %s and %s", a2, other, a3)
		}
		seen[a2] = a3
	}
	if len(alpha3To2) != 249 {
		t.Errorf("unexpected table size %d; want the 249 officially assigned codes", len(alpha3To2))
	}
	for a3, a2 := range map[string]string{"USA": "US", "FRA": "FR", "DEU": "DE", "GBR": "GB", "CHE": "CH", "AUT": "AT",
		"JPN": "JP", "KOR": "KR", "PRK": "KP", "ZAF": "ZA", "NLD": "NL", "SWE": "SE", "BRA": "BR", "IND": "IN", "ALA": "AX",
		"SSD": "SS", "SXM": "SX", "CUW": "CW", "BES": "BQ", "UMI": "UM", "ATA": "AQ", "ZWE": "ZW"} {
		if got := alpha3To2[a3]; got != a2 {
			t.Errorf("unexpected alpha-2 of %s; got %q; want %q", a3, got, a2)
		}
	}
	const isoCodes = "/usr/share/iso-codes/json/iso_3166-1.json"
	b, err := os.ReadFile(isoCodes)
	if err != nil {
		t.Skipf("checked the table alone: %s is not installed (Debian's iso-codes package) to compare it with: %v", isoCodes, err)
	}
	var iso struct {
		Countries []struct {
			Alpha2 string `json:"alpha_2"`
			Alpha3 string `json:"alpha_3"`
		} `json:"3166-1"`
	}
	if err := json.Unmarshal(b, &iso); err != nil {
		t.Fatal(err)
	}
	if len(iso.Countries) != len(alpha3To2) {
		t.Errorf("unexpected table size %d; iso-codes has %d", len(alpha3To2), len(iso.Countries))
	}
	for _, c := range iso.Countries {
		if got := alpha3To2[c.Alpha3]; got != c.Alpha2 {
			t.Errorf("unexpected alpha-2 of %s; got %q; want %q", c.Alpha3, got, c.Alpha2)
		}
	}
}

func TestCountryOf(t *testing.T) {
	f := func(in, want string) {
		t.Helper()
		var buf [3]byte
		if got := string(countryOf([]byte(in), &buf)); got != want {
			t.Errorf("unexpected country of %q; got %q; want %q", in, got, want)
		}
	}
	f("USA", "US")
	f("usa", "US")
	f("UsA", "US")
	f("FRA", "FR")
	f("fr", "FR")
	f("GB", "GB")
	f("XYZ", "")
	f("XKX", "") // Kosovo's user-assigned code: not in ISO 3166-1
	f("", "")
	f("U", "")
	f("USAA", "")
	f("U1A", "")
	f("ÜSA", "")
	f("US ", "")
}

func TestDeviceOf(t *testing.T) {
	f := func(dt int64, ua, want string) {
		t.Helper()
		if got := deviceOf(dt, []byte(ua)); got != want {
			t.Errorf("unexpected device of devicetype %d, ua %q; got %q; want %q", dt, ua, got, want)
		}
	}
	const iphone = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148 Safari/604.1"
	for dt, want := range []string{1: "mobile", 2: "desktop", 3: "ctv", 4: "mobile", 5: "tablet", 6: "connected_device", 7: "set_top_box", 8: "ooh"} {
		if dt > 0 {
			f(int64(dt), iphone, want) // devicetype wins over the user agent
		}
	}
	f(0, "", "")
	f(9, "", "")
	f(-1, "", "")
	f(0, iphone, "mobile")
	f(0, "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 Chrome/124.0 Mobile Safari/537.36", "mobile")
	f(0, "Mozilla/5.0 (Linux; Android 14; SM-X710) AppleWebKit/537.36 Chrome/124.0 Safari/537.36", "tablet")
	f(0, "Mozilla/5.0 (iPad; CPU OS 17_4 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148", "tablet")
	f(0, "Mozilla/5.0 (SMART-TV; Linux; Tizen 7.0) AppleWebKit/537.36 SamsungBrowser/5.0 TV Safari/537.36", "ctv")
	f(0, "Roku/DVP-12.0 (12.0.0.4182-88)", "ctv")
	f(0, "Mozilla/5.0 (X11; Linux x86_64; CrKey armv7l 1.5.16041) AppleWebKit/537.36", "ctv")
	f(0, "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 Version/17.4 Safari/605.1.15", "desktop")
	f(0, "curl/8.5.0", "desktop")
	f(12, iphone, "mobile")
}
