package bidder

import (
	"github.com/bidpulse/bidpulse/bidder/event"
)

// How an OpenRTB impression becomes the dimension values of a bid query:
// one rule per dimension, written out in docs/OPENRTB.md, which must follow
// any change here.

// adcomDevices maps AdCOM 1.0 "Device Types" (OpenRTB device.devicetype,
// 1..8) to bidpulse's device values, the lower-case words events carry.
var adcomDevices = [9]string{
	1: "mobile",  // Mobile/Tablet - General
	2: "desktop", // Personal Computer
	3: "ctv",     // Connected TV
	4: "mobile",  // Phone
	5: "tablet",  // Tablet
	6: "connected_device",
	7: "set_top_box",
	8: "ooh", // Out-of-home
}

// uaRules are the user-agent fallback, tried in order when devicetype is
// absent or outside 1..8: the first rule with a word the user agent
// contains (ASCII case ignored) gives the device; a user agent matching
// none is "desktop". The words are the ones browsers and TV platforms
// put in their user agents; an Android user agent without "mobile" is a
// tablet's, as Google documents.
var uaRules = []struct {
	device string
	words  []string
}{
	{"ctv", []string{"smart-tv", "smarttv", "hbbtv", "appletv", "googletv", "crkey", "roku", "web0s", "bravia"}},
	{"tablet", []string{"ipad", "tablet", "kindle", "silk/"}},
	{"mobile", []string{"mobi", "iphone", "ipod", "windows phone", "blackberry", "opera mini"}},
	{"tablet", []string{"android"}},
}

// deviceOf returns the device value of a request with devicetype dt (0:
// absent) and user agent ua; "" when neither says.
func deviceOf(dt int64, ua []byte) string {
	if dt >= 1 && dt <= 8 {
		return adcomDevices[dt]
	}
	if len(ua) == 0 {
		return ""
	}
	for _, r := range uaRules {
		for _, w := range r.words {
			if containsFold(ua, w) {
				return r.device
			}
		}
	}
	return "desktop"
}

// containsFold reports whether s contains the lower-case ASCII word w,
// ASCII case ignored; it allocates nothing.
func containsFold(s []byte, w string) bool {
	for i := 0; i+len(w) <= len(s); i++ {
		j := 0
		for j < len(w) {
			c := s[i+j]
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			if c != w[j] {
				break
			}
			j++
		}
		if j == len(w) {
			return true
		}
	}
	return false
}

// countryOf returns the alpha-2 code of an OpenRTB device.geo.country:
// an ISO 3166-1 alpha-3 code (ASCII case ignored) through alpha3To2, or an
// alpha-2 code as some exchanges send, upper-cased as events are; "" for
// anything else, which leaves the country out of the key.
func countryOf(c []byte, buf *[3]byte) []byte {
	if len(c) != 2 && len(c) != 3 {
		return nil
	}
	for i, ch := range c {
		switch {
		case 'a' <= ch && ch <= 'z':
			ch -= 'a' - 'A'
		case 'A' <= ch && ch <= 'Z':
		default:
			return nil
		}
		buf[i] = ch
	}
	if len(c) == 2 {
		return buf[:2]
	}
	a2, ok := alpha3To2[string(buf[:3])]
	if !ok {
		return nil
	}
	return append(buf[:0], a2...)
}

// placementOf returns an impression's placement: imp.ext.gpid, else
// imp.tagid, else imp.ext.data.pbadslot (the first that is not empty), as
// Prebid Server derives its floor rules' gpid.
func placementOf(q *ortbRequest, im *ortbImp) []byte {
	for _, s := range [...]ortbStr{im.gpid, im.tagid, im.pbadslot} {
		if s.n > 0 {
			return q.bytes(s)
		}
	}
	return nil
}

// siteOf returns the request's site: site.domain, else app.bundle.
func siteOf(q *ortbRequest) []byte {
	if q.domain.n > 0 {
		return q.bytes(q.domain)
	}
	return q.bytes(q.bundle)
}

// usable reports whether an OpenRTB value can be a dimension value: events
// carry at most event.MaxFieldLen bytes, so a longer one never has data.
// (Decoded strings are valid UTF-8: the reader replaced what was not.)
func usable(v []byte) bool {
	return len(v) > 0 && len(v) <= event.MaxFieldLen
}
