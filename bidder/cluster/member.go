package cluster

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// RecordVersion is the version of the member record this package writes. A reader accepts any
// version from 1 on and reads the fields it knows (encoding/json ignores the others), so a
// rolling upgrade may add fields; a change that old readers would misread needs a new version
// and readers that check it.
const RecordVersion = 1

// maxInstance is the longest instance name: a DNS name's 253 bytes, with room to spare.
const maxInstance = 255

// Member is one instance's record in the membership bucket, stored as JSON under the key
// Instance. It is small: every renewal rewrites it and every member's watch decodes it.
type Member struct {
	// Instance is the instance's name (bidpulse's --instance), unique in the cluster, and the
	// record's key.
	Instance string `json:"instance"`
	// Addr is the instance's HTTP address, for GET /v1/cluster and for forwarding by HTTP.
	Addr string `json:"addr,omitempty"`
	// Started is when this incarnation of the instance joined, in UTC. It tells a restarted
	// instance's record from its predecessor's (see ErrNameTaken).
	Started time.Time `json:"started"`
	// Version is the record format, RecordVersion when this package writes it.
	Version int `json:"v"`
}

// checkInstance says why name cannot be a member's name: it must be a KV key (letters, digits,
// '-', '_', '/', '=' and '.', no leading, trailing or doubled '.').
func checkInstance(name string) error {
	switch {
	case name == "":
		return errors.New("instance name is empty")
	case len(name) > maxInstance:
		return fmt.Errorf("instance name is %d bytes, over %d", len(name), maxInstance)
	case name[0] == '.' || name[len(name)-1] == '.' || strings.Contains(name, ".."):
		return fmt.Errorf("instance name %q starts or ends with '.' or has an empty token", name)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("-_/=.", c) >= 0 {
			continue
		}
		return fmt.Errorf("instance name %q has %q at byte %d; a NATS KV key allows letters, digits and the marks - _ / = and the dot", name, c, i)
	}
	return nil
}

// decodeMember reads the record stored under key. A record that does not name its own key, has
// no start time or a version under 1 is refused: it was not written by Join.
func decodeMember(key string, data []byte) (Member, error) {
	var m Member
	if err := json.Unmarshal(data, &m); err != nil {
		return Member{}, fmt.Errorf("cannot decode member record %q: %w", key, err)
	}
	switch {
	case m.Instance != key:
		return Member{}, fmt.Errorf("member record under %q names instance %q", key, m.Instance)
	case m.Version < 1:
		return Member{}, fmt.Errorf("member record %q has version %d; want %d or later", key, m.Version, RecordVersion)
	case m.Started.IsZero():
		return Member{}, fmt.Errorf("member record %q has no start time", key)
	}
	return m, nil
}
