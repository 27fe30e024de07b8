package windows

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
)

// AppendKey appends to dst the key of level for the values v and returns the
// extended slice: 1 byte level index, then for each dimension of the level a
// uvarint length and the value bytes. The encoding is unambiguous whatever the
// values contain ("/", NUL, bytes that look like lengths), and dimensions that
// are not in the level are ignored. It panics when level is not an index of
// r.Levels. It does not allocate when dst has room.
func AppendKey(dst []byte, level int, r *Rollups, v *Values) []byte {
	dst = append(dst, byte(level))
	for _, d := range r.Levels[level].Dims {
		dst = binary.AppendUvarint(dst, uint64(len(v[d])))
		dst = append(dst, v[d]...)
	}
	return dst
}

// DecodeKey fills v (slices alias key; dims not in the level are set to nil) and returns the level index.
// It returns an error when key is not exactly one key encoded by AppendKey
// with the same Rollups (overlong lengths included), so a decoded key always
// re-encodes to the same bytes.
func DecodeKey(key []byte, r *Rollups, v *Values) (level int, err error) {
	if len(key) == 0 {
		return -1, errEmptyKey
	}
	level = int(key[0])
	if level >= len(r.Levels) {
		return -1, fmt.Errorf("cannot decode key: level %d is not configured (%d levels)", level, len(r.Levels))
	}
	*v = Values{}
	rest := key[1:]
	for _, d := range r.Levels[level].Dims {
		n, w := binary.Uvarint(rest)
		if w <= 0 || w != (bits.Len64(n|1)+6)/7 {
			// Overlong varints are refused too, so one set of values has
			// exactly one encoding.
			*v = Values{}
			return -1, fmt.Errorf("cannot decode key: bad length of %s", d)
		}
		rest = rest[w:]
		if n > uint64(len(rest)) {
			*v = Values{}
			return -1, fmt.Errorf("cannot decode key: %s needs %d bytes; %d left", d, n, len(rest))
		}
		v[d] = rest[:n:n]
		rest = rest[n:]
	}
	if len(rest) > 0 {
		*v = Values{}
		return -1, fmt.Errorf("cannot decode key: %d trailing bytes", len(rest))
	}
	return level, nil
}

var errEmptyKey = errors.New("cannot decode key: empty key")

// KeyLevel returns the level byte of an encoded key; -1 for an empty key.
func KeyLevel(key []byte) int {
	if len(key) == 0 {
		return -1
	}
	return int(key[0])
}
