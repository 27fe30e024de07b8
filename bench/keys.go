package bench

// keySpace is the set of (campaign, creative, placement) cells that bid requests are drawn
// from: the cells of the Synthetic that feeds the events, with the same shares, so bids ask
// about the keys that traffic makes hot (a Zipf-like skew, see SyntheticConfig.Skew). It is
// immutable after newKeySpace and safe for concurrent use; callers bring the random numbers.
type keySpace struct {
	cum   []float64
	names [][3][]byte
}

func newKeySpace(s *Synthetic) *keySpace {
	return &keySpace{cum: s.cum, names: s.names}
}

// pick maps u, uniform in [0, 1), to a cell index.
func (k *keySpace) pick(u float64) int { return pickCum(k.cum, u) }

// len returns the number of cells.
func (k *keySpace) len() int { return len(k.cum) }

var queryNames = [3]string{"campaign=", "&creative=", "&placement="}

// appendQuery appends the query string naming cell i.
func (k *keySpace) appendQuery(dst []byte, i int) []byte {
	for d, name := range k.names[i] {
		dst = append(dst, queryNames[d]...)
		dst = appendQueryEscaped(dst, name)
	}
	return dst
}

var jsonNames = [3]string{`{"campaign":`, `,"creative":`, `,"placement":`}

// appendJSON appends the JSON request object naming cell i (an item of POST /v1/multipliers).
func (k *keySpace) appendJSON(dst []byte, i int) []byte {
	for d, name := range k.names[i] {
		dst = append(dst, jsonNames[d]...)
		dst = appendJSONString(dst, name)
	}
	return append(dst, '}')
}

const hexUpper = "0123456789ABCDEF"

// appendQueryEscaped appends s escaped for a query value: unreserved characters and "/" as
// they are, everything else percent-encoded.
func appendQueryEscaped(dst, s []byte) []byte {
	for _, c := range s {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9',
			c == '-', c == '.', c == '_', c == '~', c == '/':
			dst = append(dst, c)
		default:
			dst = append(dst, '%', hexUpper[c>>4], hexUpper[c&15])
		}
	}
	return dst
}

// appendJSONString appends s as a JSON string (quotes, backslashes and control bytes escaped;
// other bytes as they are).
func appendJSONString(dst, s []byte) []byte {
	dst = append(dst, '"')
	for _, c := range s {
		switch {
		case c == '"' || c == '\\':
			dst = append(dst, '\\', c)
		case c < 0x20:
			dst = append(dst, '\\', 'u', '0', '0', hexUpper[c>>4], hexUpper[c&15])
		default:
			dst = append(dst, c)
		}
	}
	return append(dst, '"')
}
