package main

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"

	"github.com/valyala/fastjson"
)

// maxLine bounds one NDJSON line (and one JSON document read from a file).
const maxLine = 8 << 20

// maxArray bounds a file that is one JSON array, read whole.
const maxArray = 1 << 30

// readEventFile reads the events of r (named name in errors) and calls emit with each, a valid
// JSON value, in order (the bytes are reused once emit returns). The input is one of:
//   - one JSON array: emit gets each element;
//   - one JSON document of at most maxLine bytes, on one line or spread over several (a
//     pretty-printed object): emit gets it whole;
//   - NDJSON: one value per line; emit gets each line's value, and bad gets each non-blank line
//     that is not valid JSON (line numbers from 1), to be sent alone so that the service
//     rejects it with a reason rather than spoiling a whole batch.
//
// An array or a document is held in memory; NDJSON is read a line at a time.
func readEventFile(r io.Reader, name string, emit func(v []byte) error, bad func(line int, b []byte) error) error {
	br := bufio.NewReaderSize(r, 64<<10)
	// The head of the input, up to one byte more than a document may have: a document is
	// recognised when the whole input fits and is valid JSON.
	head, err := io.ReadAll(io.LimitReader(br, maxLine+1))
	if err != nil {
		return fmt.Errorf("cannot read %s: %w", name, err)
	}
	doc := bytes.TrimSpace(head)
	if len(doc) > 0 && doc[0] == '[' {
		// One JSON array: read it whole and emit its elements.
		data := head
		if len(head) > maxLine {
			rest, err := io.ReadAll(io.LimitReader(br, maxArray-int64(len(head))+1))
			if err != nil {
				return fmt.Errorf("cannot read %s: %w", name, err)
			}
			if data = append(head, rest...); len(data) > maxArray {
				return fmt.Errorf("cannot read %s: a JSON array of more than %d bytes (use NDJSON)", name, maxArray)
			}
		}
		// Validated first: the parser accepts what the service's parser refuses (a control
		// character in a string), and would hand it on in a batch the service rejects whole.
		if err := fastjson.ValidateBytes(data); err != nil {
			return fmt.Errorf("cannot parse %s as a JSON array: %w", name, err)
		}
		var jp fastjson.Parser
		v, err := jp.ParseBytes(data)
		if err != nil {
			return fmt.Errorf("cannot parse %s as a JSON array: %w", name, err)
		}
		var el []byte
		for _, e := range v.GetArray() {
			el = e.MarshalTo(el[:0])
			if err := emit(el); err != nil {
				return err
			}
		}
		return nil
	}
	if len(head) <= maxLine && len(doc) > 0 && fastjson.ValidateBytes(doc) == nil {
		return emit(doc)
	}
	sc := bufio.NewScanner(io.MultiReader(bytes.NewReader(head), br))
	sc.Buffer(make([]byte, 64<<10), maxLine)
	line := 0
	for sc.Scan() {
		line++
		b := bytes.TrimSpace(sc.Bytes())
		if len(b) == 0 {
			continue
		}
		if fastjson.ValidateBytes(b) != nil {
			if err := bad(line, b); err != nil {
				return err
			}
			continue
		}
		if err := emit(b); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("cannot read %s at line %d: %w", name, line+1, err)
	}
	return nil
}

// batcher groups JSON values into arrays of size and publishes them (size 1: each value as it
// is).
type batcher struct {
	// publish sends one message; msgID is derived from its content, so that publishing the same
	// file again within the stream's duplicate window is recognised by JetStream. data is reused
	// once publish returns.
	publish func(data []byte, msgID string, events int) error
	size    int
	buf     []byte
	n       int
	events  int
	msgs    int
}

func (b *batcher) add(v []byte) error {
	if b.size == 1 {
		b.events++
		return b.sendRaw(v, 1)
	}
	if b.n == 0 {
		b.buf = append(b.buf[:0], '[')
	} else {
		b.buf = append(b.buf, ',')
	}
	b.buf = append(b.buf, v...)
	b.n++
	b.events++
	if b.n >= b.size {
		return b.flush()
	}
	return nil
}

func (b *batcher) flush() error {
	if b.n == 0 {
		return nil
	}
	b.buf = append(b.buf, ']')
	n := b.n
	b.n = 0
	return b.sendRaw(b.buf, n)
}

// sendRaw publishes data, holding events events, alone.
func (b *batcher) sendRaw(data []byte, events int) error {
	sum := sha256.Sum256(data)
	if err := b.publish(data, hex.EncodeToString(sum[:16]), events); err != nil {
		return err
	}
	b.msgs++
	return nil
}
