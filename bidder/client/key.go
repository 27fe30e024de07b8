package client

import (
	"unicode/utf8"
	"unsafe"

	"github.com/bidpulse/bidpulse/bidder/event"
	"github.com/bidpulse/bidpulse/windows"
)

// dims returns k's values in windows' dimension order.
func (k *Key) dims() [windows.NumDims]string {
	var v [windows.NumDims]string
	v[windows.DimCampaign] = k.Campaign
	v[windows.DimCreative] = k.Creative
	v[windows.DimPlacement] = k.Placement
	v[windows.DimDevice] = k.Device
	v[windows.DimCountry] = k.Country
	v[windows.DimSite] = k.Site
	return v
}

// validUTF8 reports whether every dimension of k is valid UTF-8.
func (k *Key) validUTF8() bool {
	for _, v := range k.dims() {
		if !utf8.ValidString(v) {
			return false
		}
	}
	return true
}

// appendKeyQuery appends k as the query string of GET /v1/multiplier,
// normalised (event.AppendNormal) and percent-encoded; norm is scratch.
func appendKeyQuery(dst []byte, k *Key, norm *[]byte) []byte {
	vals := k.dims()
	first := true
	for d := windows.Dim(0); d < windows.NumDims; d++ {
		if vals[d] == "" {
			continue
		}
		if !first {
			dst = append(dst, '&')
		}
		first = false
		dst = append(dst, windows.DimNames[d]...)
		dst = append(dst, '=')
		*norm = event.AppendNormal((*norm)[:0], d, vals[d])
		dst = appendQueryEscaped(dst, *norm)
	}
	return dst
}

// appendKeysJSON appends keys as the body of POST /v1/multipliers.
func appendKeysJSON(dst []byte, keys []Key, norm *[]byte) []byte {
	dst = append(dst, '[')
	for i := range keys {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, '{')
		vals := keys[i].dims()
		first := true
		for d := windows.Dim(0); d < windows.NumDims; d++ {
			if vals[d] == "" {
				continue
			}
			if !first {
				dst = append(dst, ',')
			}
			first = false
			dst = append(dst, '"')
			dst = append(dst, windows.DimNames[d]...)
			dst = append(dst, '"', ':')
			*norm = event.AppendNormal((*norm)[:0], d, vals[d])
			dst = event.AppendJSONString(dst, bytesString(*norm))
		}
		dst = append(dst, '}')
	}
	return append(dst, ']')
}

// bytesString views b as a string, for a callee that only reads it while
// b is unchanged.
func bytesString(b []byte) string {
	return unsafe.String(unsafe.SliceData(b), len(b))
}

const upperHex = "0123456789ABCDEF"

// appendQueryEscaped appends s percent-encoded for a query value: every
// byte but the unreserved ones (RFC 3986) and '/' is encoded.
func appendQueryEscaped(dst, s []byte) []byte {
	for _, c := range s {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9',
			c == '-', c == '.', c == '_', c == '~', c == '/':
			dst = append(dst, c)
		default:
			dst = append(dst, '%', upperHex[c>>4], upperHex[c&15])
		}
	}
	return dst
}
