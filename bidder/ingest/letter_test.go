package ingest

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"strings"
	"testing"

	"github.com/bidpulse/bidpulse/bidder/event"
)

func TestPayloadHash(t *testing.T) {
	key := bytes.Repeat([]byte{7}, DLQKeySize)
	h := newPayloadHasher(key)
	raw := []byte(`{"id":"a","type":"view","campaign":"c","ip":"203.0.113.77"}`)
	mac := hmac.New(sha256.New, key)
	mac.Write(raw)
	want := "hmac-sha256:" + hex.EncodeToString(mac.Sum(nil))
	if got := h.hash(raw); got != want {
		t.Fatalf("unexpected hash; got %s; want %s", got, want)
	}
	if got := h.hash(raw); got != want {
		t.Fatalf("unexpected hash of the same payload again; got %s; want %s", got, want)
	}
	// Another key, another hash: without the key a guess cannot be checked.
	if other := newPayloadHasher(bytes.Repeat([]byte{8}, DLQKeySize)).hash(raw); other == want {
		t.Fatalf("unexpected equal hashes under two keys")
	}
	plain := sha256.Sum256(raw)
	if bytes.Contains([]byte(want), []byte(hex.EncodeToString(plain[:]))) {
		t.Fatalf("unexpected unkeyed SHA-256 in the hash")
	}
}

func TestDeadLetterMessage(t *testing.T) {
	f := func(l DeadLetter, wantBody, wantKind string) {
		t.Helper()
		m := l.msg(0)
		if string(m.Data) != wantBody || m.Header.Get(BodyHeader) != wantKind {
			t.Fatalf("unexpected body; got %s %q; want %s %q", m.Header.Get(BodyHeader), m.Data, wantKind, wantBody)
		}
		if m.Subject != DLQSubject || m.Header.Get(RejectHeader) != event.ReasonNames[l.Reason] ||
			m.Header.Get(SubjectHeader) != l.Subject || m.Header.Get(PayloadHashHeader) != l.Hash || m.Header.Get(PayloadBytesHeader) != "12" {
			t.Fatalf("unexpected message %+v for %+v", m, l)
		}
	}
	base := DeadLetter{Seq: 3, Index: 1, Subject: "bidpulse.events.c", Reason: event.BadType, Hash: "hmac-sha256:00", Size: 12}
	l := base
	l.Fields = json.RawMessage(`{"id":"a"}`)
	f(l, `{"id":"a"}`, BodyFields)
	f(base, `{}`, BodyFields)
	l.Data = []byte(`{"id":"a",1}`)
	f(l, `{"id":"a",1}`, BodyRaw)
	l.Data = []byte{}
	f(l, ``, BodyRaw)

	// A payload that would not fit in the server's max payload with the
	// letter's headers: the known fields, and why.
	l.Fields, l.Data = json.RawMessage(`{"id":"big"}`), bytes.Repeat([]byte("x"), 1<<20)
	m := l.msg(1 << 20)
	if string(m.Data) != `{"id":"big"}` || m.Header.Get(BodyHeader) != BodyFields || !strings.Contains(m.Header.Get(RawOmittedHeader), "1048576 bytes") {
		t.Fatalf("unexpected letter of a payload too large: %q %v", m.Data, m.Header)
	}
	if m := l.msg(2 << 20); m.Header.Get(BodyHeader) != BodyRaw || m.Header.Get(RawOmittedHeader) != "" {
		t.Fatalf("unexpected letter of a payload that fits: %v", m.Header)
	}
}

func TestUpgradeLetters(t *testing.T) {
	// Letters of a checkpoint written before letters kept known fields: the
	// payload, nothing else.
	const canary = `"user_id":"canary-user-7f3a","ip":"203.0.113.77"`
	legacy := func() []DeadLetter {
		var ls []DeadLetter
		for _, s := range []string{
			`{"id":"a","type":"view","campaign":"c",` + canary + `}`,
			`{` + canary + `,`,
			`42`,
			``,
		} {
			// Through JSON, as a checkpoint holds them ("data" in base64).
			b, _ := json.Marshal(map[string]any{"seq": 5, "index": 0, "reason": event.BadType, "data": []byte(s)})
			var l DeadLetter
			if err := json.Unmarshal(b, &l); err != nil {
				t.Fatal(err)
			}
			ls = append(ls, l)
		}
		return ls
	}
	key := bytes.Repeat([]byte{1}, DLQKeySize)
	ls := legacy()
	raws := make([][]byte, len(ls))
	for i := range ls {
		raws[i] = bytes.Clone(ls[i].Data)
	}
	upgradeLetters(ls, newPayloadHasher(key), false)
	wantFields := []string{`{"id":"a","type":"view","campaign":"c"}`, `{}`, `{}`, `{}`}
	for i, l := range ls {
		if string(l.Fields) != wantFields[i] || l.Data != nil || l.Size != len(raws[i]) || l.Hash != newPayloadHasher(key).hash(raws[i]) {
			t.Fatalf("unexpected upgraded letter %d; got %+v; want fields %s, no data, size %d, the payload's hash", i, l, wantFields[i], len(raws[i]))
		}
		b, _ := json.Marshal(l)
		if bytes.Contains(b, []byte("canary-user-7f3a")) || bytes.Contains(b, []byte("203.0.113.77")) {
			t.Fatalf("unexpected personal data kept in %s", b)
		}
	}
	// With DLQRaw the payload stays, beside the rest.
	ls = legacy()
	upgradeLetters(ls, newPayloadHasher(key), true)
	if !bytes.Equal(ls[0].Data, raws[0]) || string(ls[0].Fields) != wantFields[0] {
		t.Fatalf("unexpected letter with DLQRaw; got %+v", ls[0])
	}
	// A letter of today's form is left alone, but for its payload when
	// DLQRaw is now off.
	cur := []DeadLetter{{Reason: event.BadTS, Fields: json.RawMessage(`{"ts":1}`), Hash: "hmac-sha256:ab", Size: 9, Data: []byte(`{"ts":1}x`)}}
	upgradeLetters(cur, newPayloadHasher(key), false)
	if cur[0].Hash != "hmac-sha256:ab" || string(cur[0].Fields) != `{"ts":1}` || cur[0].Size != 9 || cur[0].Data != nil {
		t.Fatalf("unexpected letter after upgrade; got %+v", cur[0])
	}
}
