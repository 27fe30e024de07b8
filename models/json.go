package models

import (
	"math"
	"strconv"
)

// AppendFactorsJSON appends r's factors to dst as the JSON array of the
// explain object of /v1/multiplier:
//
//	[{"name":"ctr","value":1.25,"inputs":{"impressions":2000,...}},...]
//
// and returns the extended buffer. It allocates nothing when dst has room.
// Non-finite numbers, which no policy of this package produces, are written
// as finite ones (NaN as 0, ±Inf as ±math.MaxFloat64) so the output is
// always valid JSON.
func (r *Result) AppendFactorsJSON(dst []byte) []byte {
	dst = append(dst, '[')
	for i := 0; i < r.NFactors; i++ {
		if i > 0 {
			dst = append(dst, ',')
		}
		f := &r.Factors[i]
		dst = append(dst, `{"name":`...)
		dst = appendJSONString(dst, f.Name)
		dst = append(dst, `,"value":`...)
		dst = appendJSONFloat(dst, f.Value)
		dst = append(dst, `,"inputs":{`...)
		for j := 0; j < f.NInputs; j++ {
			if j > 0 {
				dst = append(dst, ',')
			}
			dst = appendJSONString(dst, f.Inputs[j].Name)
			dst = append(dst, ':')
			dst = appendJSONFloat(dst, f.Inputs[j].Value)
		}
		dst = append(dst, "}}"...)
	}
	return append(dst, ']')
}

// AppendJSON appends r to dst as one JSON object and returns the extended
// buffer:
//
//	{"multiplier":2,"before_clamp":2.18,"clamp":[0.5,2],"clamped":true,"factors":[...]}
//
// A Result of Evaluate also has "policy" first, and "campaign_max" and
// "hard_max" after "clamp" (Max is the lower of the two):
//
//	{"policy":"target_cpa","multiplier":..,"before_clamp":..,"clamp":[0.1,5],
//	 "campaign_max":10,"hard_max":5,"clamped":false,"factors":[...]}
//
// The field names are those of the explain object of /v1/multiplier, which
// adds the window and override around them. It allocates nothing when dst
// has room.
func (r *Result) AppendJSON(dst []byte) []byte {
	dst = append(dst, '{')
	if r.Policy != "" {
		dst = append(dst, `"policy":`...)
		dst = appendJSONString(dst, r.Policy)
		dst = append(dst, ',')
	}
	dst = append(dst, `"multiplier":`...)
	dst = appendJSONFloat(dst, r.Multiplier)
	dst = append(dst, `,"before_clamp":`...)
	dst = appendJSONFloat(dst, r.BeforeClamp)
	dst = append(dst, `,"clamp":[`...)
	dst = appendJSONFloat(dst, r.Min)
	dst = append(dst, ',')
	dst = appendJSONFloat(dst, r.Max)
	dst = append(dst, ']')
	if r.CampaignMax > 0 {
		dst = append(dst, `,"campaign_max":`...)
		dst = appendJSONFloat(dst, r.CampaignMax)
	}
	if r.HardMax > 0 {
		dst = append(dst, `,"hard_max":`...)
		dst = appendJSONFloat(dst, r.HardMax)
	}
	dst = append(dst, `,"clamped":`...)
	dst = strconv.AppendBool(dst, r.Clamped)
	dst = append(dst, `,"factors":`...)
	dst = r.AppendFactorsJSON(dst)
	return append(dst, '}')
}

// appendJSONFloat appends f formatted like encoding/json does: the shortest
// representation that round-trips, in plain notation for 1e-6 <= |f| < 1e21
// and in exponent notation (e-7, e+21) outside it.
func appendJSONFloat(dst []byte, f float64) []byte {
	switch {
	case math.IsNaN(f):
		f = 0
	case math.IsInf(f, 1):
		f = math.MaxFloat64
	case math.IsInf(f, -1):
		f = -math.MaxFloat64
	}
	abs := math.Abs(f)
	format := byte('f')
	if abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	n := len(dst)
	dst = strconv.AppendFloat(dst, f, format, -1, 64)
	if format == 'e' {
		// Turn e-09 into e-9, as encoding/json does.
		if m := len(dst) - n; m >= 4 && dst[len(dst)-4] == 'e' && dst[len(dst)-3] == '-' && dst[len(dst)-2] == '0' {
			dst[len(dst)-2] = dst[len(dst)-1]
			dst = dst[:len(dst)-1]
		}
	}
	return dst
}

// appendJSONString appends s as a JSON string. Names are constants of the
// policies, but escaping keeps the output valid whatever they hold.
func appendJSONString(dst []byte, s string) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' {
			continue
		}
		dst = append(dst, s[start:i]...)
		switch c {
		case '"', '\\':
			dst = append(dst, '\\', c)
		case '\n':
			dst = append(dst, '\\', 'n')
		case '\r':
			dst = append(dst, '\\', 'r')
		case '\t':
			dst = append(dst, '\\', 't')
		default:
			dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		}
		start = i + 1
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
