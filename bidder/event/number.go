package event

import "math"

// Numbers are converted from the JSON number text itself, never through float64, so that a
// timestamp keeps every digit and money is rounded to micros exactly as written. Both functions
// expect tok to be a number token that already passed strict JSON validation
// (-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?) and report false for anything else.

// parseTS parses a timestamp: a non-negative integer written as plain digits (no sign, fraction
// or exponent) that fits int64.
func parseTS(tok []byte) (int64, bool) {
	if len(tok) == 0 || len(tok) > 19 {
		// 19 digits hold every int64; a longer plain integer does not fit.
		return 0, false
	}
	var n uint64
	for _, c := range tok {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + uint64(c-'0')
	}
	if n > math.MaxInt64 {
		return 0, false
	}
	return int64(n), true
}

// maxExp bounds the decimal exponent while it is read. Any exponent this large already puts the
// value far outside [0, MaxMoney] or below half a micro for any payload that fits in memory.
const maxExp = 1 << 40

// parseMicros parses a money amount and returns round(x*1e6) rounded half away from zero, computed
// exactly in decimal. It reports false when x is negative or above MaxMoney. A negative zero
// ("-0", "-0.0") is zero.
func parseMicros(tok []byte) (uint64, bool) {
	if m, ok := plainMicros(tok); ok {
		return m, true
	}
	i := 0
	neg := false
	if i < len(tok) && tok[i] == '-' {
		neg = true
		i++
	}
	// Mantissa digits: the integer part then the fraction, leading zeros skipped. scale counts
	// the fraction digits that follow the decimal point.
	intStart := i
	for i < len(tok) && tok[i] >= '0' && tok[i] <= '9' {
		i++
	}
	intPart := tok[intStart:i]
	if len(intPart) == 0 {
		return 0, false
	}
	var frac []byte
	if i < len(tok) && tok[i] == '.' {
		i++
		fracStart := i
		for i < len(tok) && tok[i] >= '0' && tok[i] <= '9' {
			i++
		}
		frac = tok[fracStart:i]
		if len(frac) == 0 {
			return 0, false
		}
	}
	exp := int64(0)
	if i < len(tok) && (tok[i] == 'e' || tok[i] == 'E') {
		i++
		expNeg := false
		if i < len(tok) && (tok[i] == '+' || tok[i] == '-') {
			expNeg = tok[i] == '-'
			i++
		}
		expStart := i
		for i < len(tok) && tok[i] >= '0' && tok[i] <= '9' {
			if exp < maxExp {
				exp = exp*10 + int64(tok[i]-'0')
			}
			i++
		}
		if i == expStart {
			return 0, false
		}
		if expNeg {
			exp = -exp
		}
	}
	if i != len(tok) {
		return 0, false
	}

	// The value is digits(intPart ++ frac) * 10^(exp - len(frac)); in micros the power is k.
	d := mantissa{intPart, frac}
	d.skipLeadingZeros()
	n := int64(d.len())
	if n == 0 {
		return 0, true // zero, whatever its sign and exponent
	}
	if neg {
		return 0, false
	}
	k := exp - int64(len(frac)) + 6
	// whole = the number of mantissa digits left of the micros point.
	whole := n + k
	if whole > 19 {
		// At least 10^19 micros, above maxMoneyMicros.
		return 0, false
	}
	var m uint64
	if k >= 0 {
		for j := int64(0); j < n; j++ {
			m = m*10 + uint64(d.at(j)-'0')
		}
		for j := int64(0); j < k; j++ {
			m *= 10
		}
		if m > maxMoneyMicros {
			return 0, false
		}
		return m, true
	}
	// k < 0: keep the first whole digits, round on the next one, and remember whether anything
	// non-zero was cut (the value is then strictly above m).
	for j := int64(0); j < whole; j++ {
		m = m*10 + uint64(d.at(j)-'0')
	}
	cut := false
	roundUp := false
	for j := max(whole, 0); j < n; j++ {
		c := d.at(j)
		if j == whole && c >= '5' {
			roundUp = true
		}
		if c != '0' {
			cut = true
			if j > whole {
				break
			}
		}
	}
	if m > maxMoneyMicros || m == maxMoneyMicros && cut {
		return 0, false
	}
	if roundUp {
		m++
	}
	return m, true
}

// mantissa views the digits of a number's integer part followed by its fraction part as one
// digit string without copying them.
type mantissa struct {
	a, b []byte
}

func (d *mantissa) skipLeadingZeros() {
	for len(d.a) > 0 && d.a[0] == '0' {
		d.a = d.a[1:]
	}
	if len(d.a) == 0 {
		for len(d.b) > 0 && d.b[0] == '0' {
			d.b = d.b[1:]
		}
	}
}

func (d *mantissa) len() int { return len(d.a) + len(d.b) }

func (d *mantissa) at(j int64) byte {
	if j < int64(len(d.a)) {
		return d.a[j]
	}
	return d.b[j-int64(len(d.a))]
}

// plainMicros converts the common money shape exactly and fast: up to 13
// integer digits and up to 6 fraction digits, no sign, no exponent; false
// for anything else (parseMicros then does the general conversion) and for
// an amount above MaxMoney.
func plainMicros(tok []byte) (uint64, bool) {
	var m uint64
	i := 0
	for ; i < len(tok) && i < 14 && tok[i] >= '0' && tok[i] <= '9'; i++ {
		m = m*10 + uint64(tok[i]-'0')
	}
	if i == 0 || i > 13 {
		return 0, false
	}
	m *= 1e6
	if i < len(tok) {
		if tok[i] != '.' || len(tok)-i-1 > 6 || len(tok)-i-1 == 0 {
			return 0, false
		}
		scale := uint64(1e5)
		for _, c := range tok[i+1:] {
			if c < '0' || c > '9' {
				return 0, false
			}
			m += uint64(c-'0') * scale
			scale /= 10
		}
	}
	if m > maxMoneyMicros {
		return 0, false
	}
	return m, true
}
