package event

import (
	"math"
	"math/big"
	"strconv"
	"strings"
	"testing"

	"github.com/valyala/fastjson"
)

// refMicros is the reference for parseMicros: exact rational arithmetic. It reports false for
// tokens it cannot judge cheaply (huge exponents).
func refMicros(tok string) (m uint64, ok, judged bool) {
	if i := strings.IndexAny(tok, "eE"); i >= 0 {
		e, err := strconv.Atoi(tok[i+1:])
		if err != nil || e > 400 || e < -400 {
			return 0, false, false
		}
	}
	x, good := new(big.Rat).SetString(tok)
	if !good {
		return 0, false, false
	}
	if x.Sign() < 0 || x.Cmp(new(big.Rat).SetInt64(int64(MaxMoney))) > 0 {
		return 0, false, true
	}
	x.Mul(x, big.NewRat(1e6, 1))
	// Round half up: floor(x + 1/2).
	x.Add(x, big.NewRat(1, 2))
	q := new(big.Int).Quo(x.Num(), x.Denom())
	return q.Uint64(), true, true
}

func TestParseMicros(t *testing.T) {
	f := func(tok string, want uint64, wantOK bool) {
		t.Helper()
		got, ok := parseMicros([]byte(tok))
		if got != want || ok != wantOK {
			t.Fatalf("unexpected parseMicros(%q); got %d, %v; want %d, %v", tok, got, ok, want, wantOK)
		}
		if fastjson.Validate(tok) != nil {
			return // the reference is lenient; parseMicros only meets validated JSON numbers
		}
		if ref, refOK, judged := refMicros(tok); judged && (ref != got || refOK != ok) {
			t.Fatalf("unexpected parseMicros(%q) against the reference; got %d, %v; want %d, %v", tok, got, ok, ref, refOK)
		}
	}
	f("0", 0, true)
	f("-0", 0, true)
	f("0.0", 0, true)
	f("-0.000e-5", 0, true)
	f("0e999999999999999999999", 0, true)
	f("1", 1e6, true)
	f("0.000001", 1, true)
	f("0.0000015", 2, true)
	f("0.0000025", 3, true)
	f("0.00000149999999999999999999", 1, true)
	f("0.0000004999", 0, true)
	f("0.0000005", 1, true)
	f("0.00000001", 0, true)
	f("123.456789", 123456789, true)
	f("123456789e-6", 123456789, true)
	f("1.23456789e2", 123456789, true)
	f("0.0021", 2100, true)
	f("1e-400", 0, true)
	f("1e-99999999999999999999999999", 0, true)
	f("9e12", maxMoneyMicros, true)
	f("9000000000000", maxMoneyMicros, true)
	f("8999999999999.9999995", maxMoneyMicros, true)
	f("8999999999999.9999994", maxMoneyMicros-1, true)
	f("9000000000000.0000000000", maxMoneyMicros, true)
	f("9000000000000.0000000001", 0, false)
	f("9000000000000.000001", 0, false)
	f("9000000000001", 0, false)
	f("1e13", 0, false)
	f("1e19", 0, false)
	f("1e99999999999999999999", 0, false)
	f("18446744073709.551616", 0, false)
	f("-1", 0, false)
	f("-0.0000001", 0, false)
	f("-1e-400", 0, false)
	f("", 0, false)
	f("-", 0, false)
	f("1.", 0, false)
	f("1e", 0, false)
	f("1e+", 0, false)
	f("1x", 0, false)
	f(".5", 0, false)
	f("NaN", 0, false)
	f("Inf", 0, false)

	// Agreement with float rounding away from exact halves.
	for _, x := range []float64{0.002, 0.0021, 0.00213, 20, 42.17, 79.99, 1234.5678, 8e12, 1e-6, 3e-7} {
		tok := strconv.FormatFloat(x, 'g', -1, 64)
		got, ok := parseMicros([]byte(tok))
		if !ok || got != uint64(math.Round(x*1e6)) {
			t.Fatalf("unexpected parseMicros(%q); got %d, %v; want %v", tok, got, ok, math.Round(x*1e6))
		}
	}
}

func TestParseTS(t *testing.T) {
	f := func(tok string, want int64, wantOK bool) {
		t.Helper()
		got, ok := parseTS([]byte(tok))
		if got != want || ok != wantOK {
			t.Fatalf("unexpected parseTS(%q); got %d, %v; want %d, %v", tok, got, ok, want, wantOK)
		}
	}
	f("0", 0, true)
	f("1764345600123", 1764345600123, true)
	f("9223372036854775807", math.MaxInt64, true)
	f("9223372036854775808", 0, false)
	f("9999999999999999999", 0, false)
	f("10000000000000000000", 0, false)
	f("-1", 0, false)
	f("-0", 0, false)
	f("1.0", 0, false)
	f("1e3", 0, false)
	f("", 0, false)
}
