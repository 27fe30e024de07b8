package control

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/nats-io/nats.go/jetstream"
)

// kind is the kind of a KV record, a label of the rejected records' counter.
type kind int

const (
	kindOverride kind = iota
	kindPolicy
	kindKillSwitch
	kindKey // a key that names no record kind, or a bad encoding
	numKinds
)

var kindNames = [numKinds]string{"override", "policy", "killswitch", "key"}

// keyEncoding decodes the keys of the bucket: strict, so that one override
// or policy has exactly one key (a loose decoder reads "YQ" and "YR" both as
// "a", and a delete through the admin API would leave the alias behind).
var keyEncoding = base64.RawURLEncoding.Strict()

// NATSIdentity is the author of a change that reached the KV bucket without
// a valid signature: whoever holds NATS credentials allowed to write it.
const NATSIdentity = "nats-kv"

// maxRecordBytes bounds a record read from the bucket.
const maxRecordBytes = 64 << 10

// maxSetByLen bounds set_by in a record.
const maxSetByLen = 128

// signer is a record that carries its signature.
type signer interface {
	setSig(string)
}

// sign returns the JSON of r with its signature: the HMAC-SHA256, under
// key, of the KV key and the record's JSON without a signature.
func sign(key []byte, kvKey string, r signer) []byte {
	r.setSig("")
	body, err := json.Marshal(r)
	if err != nil {
		panic(fmt.Sprintf("BUG: cannot encode a control record: %s", err))
	}
	r.setSig(mac(key, kvKey, body))
	out, _ := json.Marshal(r)
	return out
}

func mac(key []byte, kvKey string, body []byte) string {
	h := hmac.New(sha256.New, key)
	h.Write([]byte(kvKey))
	h.Write([]byte{0})
	h.Write(body)
	return base64.RawURLEncoding.EncodeToString(h.Sum(nil))
}

// verified reports whether r, just decoded from the bucket under kvKey,
// carries a valid signature under key. r's signature is cleared.
func verified(key []byte, kvKey string, r signer, sig string) bool {
	r.setSig("")
	if sig == "" || key == nil {
		return false
	}
	body, err := json.Marshal(r)
	if err != nil {
		return false
	}
	return hmac.Equal([]byte(sig), []byte(mac(key, kvKey, body)))
}

// decodeStrict decodes one JSON object into v, refusing unknown fields,
// trailing data and oversized records.
func decodeStrict(b []byte, v any) error {
	if len(b) > maxRecordBytes {
		return fmt.Errorf("record of %d bytes; the limit is %d", len(b), maxRecordBytes)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("data after the record")
	}
	return nil
}

// loadOrCreateKey reads the control key from path, or creates one there
// (32 random bytes, hex, mode 0600).
func loadOrCreateKey(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		k, err := hex.DecodeString(strings.TrimSpace(string(b)))
		if err != nil || len(k) < 16 {
			return nil, fmt.Errorf("cannot read the control key %s: want at least 16 bytes in hex", path)
		}
		return k, nil
	}
	if !os.IsNotExist(err) {
		return nil, fmt.Errorf("cannot read the control key: %w", err)
	}
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		return nil, fmt.Errorf("cannot generate the control key: %w", err)
	}
	if err := os.WriteFile(path, []byte(hex.EncodeToString(k)+"\n"), 0o600); err != nil {
		return nil, fmt.Errorf("cannot write the control key: %w", err)
	}
	return k, nil
}

// reject ignores a record that failed its checks: counted and logged
// (throttled per kind).
func (c *Control) reject(k kind, key string, err error) {
	c.rejected[k].Inc()
	c.warn.Warn("control-"+kindNames[k], fmt.Sprintf("KV record %q ignored (kind %s)", key, kindNames[k]), err)
}

// apply applies one KV entry (a put or a delete) to the in-memory tables.
// live is false for the records loaded at start: those are not audited.
func (c *Control) apply(e jetstream.KeyValueEntry, live bool) {
	if audit := c.landedLate(e); audit != nil {
		defer audit(e.Revision())
	}
	key := e.Key()
	deleted := e.Operation() != jetstream.KeyValuePut
	rev := e.Revision()
	switch {
	case key == KillKey:
		if deleted {
			c.applyKill(&KillRecord{SetBy: NATSIdentity, SetAtMs: c.now()}, live, rev, false)
			return
		}
		var r KillRecord
		if err := decodeStrict(e.Value(), &r); err != nil {
			c.reject(kindKillSwitch, key, err)
			return
		}
		signed := verified(c.key, key, &r, r.Sig)
		if err := r.check(); err != nil {
			c.reject(kindKillSwitch, key, err)
			return
		}
		if held := c.killInfo.Load(); held != nil && signed && r.SetAtMs < held.SetAtMs {
			signed = false // an older signed record put back: a replay
		}
		c.applyKill(&r, live, rev, signed)
	case strings.HasPrefix(key, policyPre):
		name, err := keyEncoding.DecodeString(key[len(policyPre):])
		if err != nil || len(name) == 0 {
			c.reject(kindKey, key, fmt.Errorf("bad campaign encoding in key: %v", err))
			return
		}
		if deleted {
			c.applyPolicy(string(name), nil, live, rev, false)
			return
		}
		var r PolicyRecord
		if err := decodeStrict(e.Value(), &r); err != nil {
			c.reject(kindPolicy, key, err)
			return
		}
		signed := verified(c.key, key, &r, r.Sig)
		if r.Campaign != string(name) {
			c.reject(kindPolicy, key, fmt.Errorf("record names campaign %q, its key %q", r.Campaign, name))
			return
		}
		if err := c.checkPolicy(&r); err != nil {
			c.reject(kindPolicy, key, err)
			return
		}
		if held, ok := c.PolicyRecordOf(string(name)); ok && signed && r.SetAtMs < held.SetAtMs {
			signed = false // an older signed record put back: a replay
		}
		c.applyPolicy(string(name), &r, live, rev, signed)
	case strings.HasPrefix(key, overridePre):
		raw, err := keyEncoding.DecodeString(key[len(overridePre):])
		if err != nil || len(raw) == 0 {
			c.reject(kindKey, key, fmt.Errorf("bad key encoding: %v", err))
			return
		}
		if deleted {
			c.applyOverrideDelete(raw, "", live, rev, false)
			return
		}
		var r OverrideRecord
		if err := decodeStrict(e.Value(), &r); err != nil {
			c.reject(kindOverride, key, err)
			return
		}
		signed := verified(c.key, key, &r, r.Sig)
		ov, err := c.overrideFromRecord(&r)
		if err != nil {
			c.reject(kindOverride, key, err)
			return
		}
		if ov.Key != string(raw) {
			c.reject(kindOverride, key, errors.New("the record's level and dimensions do not name its key"))
			return
		}
		if held := c.overrides.m.Get(raw); held != nil && signed && r.SetAtMs < held.SetAtMs {
			signed = false // an older signed record put back: a replay
		}
		if r.Deleted {
			c.applyOverrideDelete(raw, r.SetBy, live, rev, signed)
			return
		}
		c.applyOverride(ov, live, rev, signed)
	default:
		c.reject(kindKey, key, errors.New("unknown key: want killswitch, override.<key> or policy.<campaign>"))
	}
}

// author returns who made a change read from the bucket: the record's set_by
// when it is signed, else NATSIdentity (counted).
func (c *Control) author(setBy string, signed bool) string {
	if signed {
		return setBy
	}
	c.unverified.Inc()
	return NATSIdentity
}

// auditRead audits a change read live from the bucket, after
// sharedAuditDelay, under the Nats-Msg-Id of its revision. An unsigned one
// is audited as NATSIdentity (claimed: the set_by it claims). A signed one
// is audited under its set_by unless this instance wrote that revision
// itself (its admin call audited it): the instance that made it publishes
// the same entry first, and the stream keeps one, but if that instance
// died before, or the record was put back by anything else, the change is
// still audited.
func (c *Control) auditRead(signed, live bool, rev uint64, action, target, claimed string, old, new any) {
	if !live {
		return
	}
	if !signed {
		c.audit.addDelayed(AuditEntry{Who: NATSIdentity, Action: action, Target: target, ClaimedBy: claimed, Revision: rev}, old, new, sharedAuditDelay, true)
		return
	}
	e := AuditEntry{Who: claimed, Action: action, Target: target, Revision: rev}
	if c.audit.delayed == nil {
		return
	}
	c.audit.enqueue(sharedAuditDelay, func() {
		if !c.ownRevision(rev) {
			c.audit.addDelayed(e, old, new, 0, false)
		}
	})
}
