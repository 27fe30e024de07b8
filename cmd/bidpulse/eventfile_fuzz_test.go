package main

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"

	"github.com/valyala/fastjson"
)

// FuzzReadEventFile checks readEventFile against a reference that holds the whole input: an
// array gives its elements, a single document gives itself, and anything else gives its
// non-blank lines in order, each as a value or as a bad line. It then checks that batches of
// the values (batcher, several sizes) are JSON arrays of exactly those values, in order.
func FuzzReadEventFile(f *testing.F) {
	for _, s := range []string{
		``, "\n\n", `{"id":"a","type":"click","campaign":"c"}`,
		"{\"id\":\"a\",\"type\":\"click\",\"campaign\":\"c\"}\n{\"id\":\"b\",\"type\":\"impression\",\"campaign\":\"c\"}\n",
		"{\n  \"id\": \"a\",\n  \"type\": \"click\",\n  \"campaign\": \"c\"\n}\n",
		` [ {"id":"a"}, 1, "x", null, [2] ] `, "[\n{\"id\":\"a\"},\n{\"id\":\"b\"}\n]", `[1,`, "[1]\n[2]",
		"{\"id\":\"a\"}\nnot json\r\n\n{\"id\":\n\"b\"}\n42\n", "\xff\xfe{}\n", `{"s":"\u00e9\ud83d\ude00"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		type item struct {
			bad  bool
			line int
			v    []byte
		}
		var got []item
		err := readEventFile(bytes.NewReader(data), "fuzz", func(v []byte) error {
			if fastjson.ValidateBytes(v) != nil {
				t.Fatalf("unexpected invalid value emitted: %q", v)
			}
			got = append(got, item{v: append([]byte(nil), v...)})
			return nil
		}, func(line int, b []byte) error {
			got = append(got, item{bad: true, line: line, v: append([]byte(nil), b...)})
			return nil
		})

		// The reference.
		var want []item
		wantErr := false
		doc := bytes.TrimSpace(data)
		switch {
		case len(doc) > 0 && doc[0] == '[':
			var p fastjson.Parser
			v, perr := p.ParseBytes(doc)
			if wantErr = perr != nil || fastjson.ValidateBytes(doc) != nil; !wantErr {
				for _, e := range v.GetArray() {
					want = append(want, item{v: e.MarshalTo(nil)})
				}
			}
		case len(doc) > 0 && fastjson.ValidateBytes(doc) == nil:
			want = append(want, item{v: doc})
		default:
			for i, l := range bytes.Split(data, []byte("\n")) {
				if l = bytes.TrimSpace(l); len(l) == 0 {
					continue
				}
				want = append(want, item{bad: fastjson.ValidateBytes(l) != nil, line: i + 1, v: l})
			}
			for i := range want {
				if !want[i].bad {
					want[i].line = 0
				}
			}
		}
		if (err != nil) != wantErr {
			t.Fatalf("unexpected error reading %q; got %v; want an error: %v", data, err, wantErr)
		}
		if err == nil && !reflect.DeepEqual(got, want) {
			t.Fatalf("unexpected events of %q; got %+v; want %+v", data, got, want)
		}

		// Batches hold exactly the values, in order.
		var values [][]byte
		for _, it := range got {
			if !it.bad {
				values = append(values, it.v)
			}
		}
		for _, size := range []int{1, 2, 100} {
			var msgs [][]byte
			b := &batcher{size: size, publish: func(data []byte, msgID string, _ int) error {
				if len(msgID) != 32 {
					t.Fatalf("unexpected message id %q", msgID)
				}
				msgs = append(msgs, append([]byte(nil), data...))
				return nil
			}}
			for _, v := range values {
				if err := b.add(v); err != nil {
					t.Fatal(err)
				}
			}
			if err := b.flush(); err != nil {
				t.Fatal(err)
			}
			var sent [][]byte
			for _, m := range msgs {
				if size == 1 {
					sent = append(sent, m)
					continue
				}
				var p fastjson.Parser
				v, err := p.ParseBytes(m)
				if err != nil || v.Type() != fastjson.TypeArray || len(v.GetArray()) > size {
					t.Fatalf("unexpected batch of size %d: %q (%v)", size, m, err)
				}
				for _, e := range v.GetArray() {
					sent = append(sent, e.MarshalTo(nil))
				}
			}
			if len(sent) != len(values) || b.events != len(values) {
				t.Fatalf("unexpected batches of size %d; got %d values (%d counted); want %d", size, len(sent), b.events, len(values))
			}
			for i := range sent {
				if !sameJSON(sent[i], values[i]) {
					t.Fatalf("unexpected value %d in batches of size %d; got %s; want %s", i, size, sent[i], values[i])
				}
			}
		}
	})
}

// sameJSON reports whether a and b hold the same JSON value (numbers compared as written).
func sameJSON(a, b []byte) bool {
	var va, vb any
	da, db := json.NewDecoder(bytes.NewReader(a)), json.NewDecoder(bytes.NewReader(b))
	da.UseNumber()
	db.UseNumber()
	if da.Decode(&va) != nil || db.Decode(&vb) != nil {
		return bytes.Equal(a, b)
	}
	return reflect.DeepEqual(va, vb)
}
