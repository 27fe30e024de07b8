package bidder

import (
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/bidpulse/bidpulse/bidder/event"
)

// The soak's bookkeeping (see TestSoak): the events it sends, what each
// acknowledged message must do to the service's figures, and the errors its
// goroutines find. Everything here is only the producers' side of the story;
// soak_test.go compares it with what the service reports.

// soakKey names a window key the soak checks: a campaign and a placement
// ("" for the campaign-level key).
type soakKey struct{ campaign, placement string }

// Dimension values of the soak's valid events. One placement is not ASCII, so
// some payloads take the parser's general path (the fast path takes plain
// ASCII strings only).
var (
	soakCampaigns  = []string{"c0", "c1", "c2", "c3"}
	soakPlacements = []string{"p0", "p1", "news.example/top", "blog.example/ünïcode"}
	soakCreatives  = []string{"cr0", "cr1", "cr2"}
)

// soakEvent is one event as a producer builds it.
type soakEvent struct {
	id        string
	typ       event.Type
	campaign  string
	creative  string // "" when absent, like placement, device and country
	placement string
	device    string
	country   string
	ts        int64 // Unix ms; 0: absent (the service takes the message time)
	clickTs   int64 // conversions only; 0: absent
	cost      string
	note      string // an unknown field: ignored by the service, used to pad
}

// appendJSON appends e as a JSON object. The soak's strings need no escaping
// but for note, which is ASCII letters only.
func (e *soakEvent) appendJSON(b []byte) []byte {
	str := func(b []byte, k, v string) []byte {
		if v == "" {
			return b
		}
		return append(append(append(append(b, `,"`...), k...), `":`...), strconv.Quote(v)...)
	}
	b = append(b, `{"id":`...)
	b = strconv.AppendQuote(b, e.id)
	b = append(b, `,"type":"`...)
	b = append(b, e.typ.String()...)
	b = append(b, '"')
	b = str(b, "campaign", e.campaign)
	b = str(b, "creative", e.creative)
	b = str(b, "placement", e.placement)
	b = str(b, "device", e.device)
	b = str(b, "country", e.country)
	if e.ts != 0 {
		b = strconv.AppendInt(append(b, `,"ts":`...), e.ts, 10)
	}
	if e.clickTs != 0 {
		b = strconv.AppendInt(append(b, `,"click_ts":`...), e.clickTs, 10)
	}
	if e.cost != "" {
		b = append(append(b, `,"cost":`...), e.cost...)
	}
	b = str(b, "note", e.note)
	return append(b, '}')
}

// soakOutcome is what one message does to the service's figures once it is
// applied. A producer builds it with the message and adds it to the ledger
// when the stream acknowledges the message, never before.
type soakOutcome struct {
	counted                  [event.NumTypes]int
	late, future, duplicates int
	rejected                 [event.NumReasons]int
	// adds are the window counts of the counted events: one per event and
	// key (its campaign, and its campaign/placement when it has one).
	adds []soakAdd
}

type soakAdd struct {
	key soakKey
	typ event.Type
}

// soakClass says what the service must do with a valid event.
type soakClass int

const (
	soakCounted soakClass = iota
	soakLate
	soakFuture
	soakDuplicate
)

// addValid records a valid event of class c.
func (o *soakOutcome) addValid(e *soakEvent, c soakClass) {
	switch c {
	case soakLate:
		o.late++
	case soakFuture:
		o.future++
	case soakDuplicate:
		o.duplicates++
	case soakCounted:
		o.counted[e.typ]++
		o.adds = append(o.adds, soakAdd{soakKey{e.campaign, ""}, e.typ})
		if e.placement != "" {
			o.adds = append(o.adds, soakAdd{soakKey{e.campaign, e.placement}, e.typ})
		}
	}
}

// events is the number of events of the message, as the service counts
// them in "received".
func (o *soakOutcome) events() int {
	n := o.late + o.future + o.duplicates
	for _, c := range o.counted {
		n += c
	}
	for _, r := range o.rejected {
		n += r
	}
	return n
}

// soakLedger is what the producers sent and the stream acknowledged: the
// figures the service must report once it has applied everything. Safe for
// concurrent use.
type soakLedger struct {
	mu   sync.Mutex
	want soakOutcome // adds unused: see keys
	keys map[soakKey]*[event.NumTypes]int
	// messages acknowledged and stored; refused: too large, refused by the
	// stream; streamDups: deliberate re-publishes the stream dropped as
	// duplicates of a stored message id; retries: publish attempts that
	// failed (the server down, a timeout) and were made again.
	messages, refused, streamDups, retries int
	// pool holds recent counted events sent alone, for the duplicate
	// producer; a ring of soakPoolSize.
	pool     []soakEvent
	poolNext int
}

const soakPoolSize = 1024

func newSoakLedger() *soakLedger {
	return &soakLedger{keys: map[soakKey]*[event.NumTypes]int{}}
}

// acked adds the outcome of an acknowledged message; alone, when not nil, is
// the counted event it held alone, for the duplicate producer.
func (l *soakLedger) acked(o *soakOutcome, alone *soakEvent) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.messages++
	for t := range o.counted {
		l.want.counted[t] += o.counted[t]
	}
	for r := range o.rejected {
		l.want.rejected[r] += o.rejected[r]
	}
	l.want.late += o.late
	l.want.future += o.future
	l.want.duplicates += o.duplicates
	for _, a := range o.adds {
		k := l.keys[a.key]
		if k == nil {
			k = new([event.NumTypes]int)
			l.keys[a.key] = k
		}
		k[a.typ]++
	}
	if alone != nil {
		if len(l.pool) < soakPoolSize {
			l.pool = append(l.pool, *alone)
		} else {
			l.pool[l.poolNext] = *alone
			l.poolNext = (l.poolNext + 1) % soakPoolSize
		}
	}
}

// pick returns the i-th event of the pool (modulo its size), ok false when
// it is empty.
func (l *soakLedger) pick(i int) (soakEvent, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.pool) == 0 {
		return soakEvent{}, false
	}
	return l.pool[i%len(l.pool)], true
}

func (l *soakLedger) count(field *int) {
	l.mu.Lock()
	*field++
	l.mu.Unlock()
}

func (l *soakLedger) retried() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.retries
}

// snapshot returns a copy of the expected figures and window counts.
func (l *soakLedger) snapshot() (want soakOutcome, keys map[soakKey][event.NumTypes]int, messages, refused, streamDups, retries int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	keys = make(map[soakKey][event.NumTypes]int, len(l.keys))
	for k, v := range l.keys {
		keys[k] = *v
	}
	return l.want, keys, l.messages, l.refused, l.streamDups, l.retries
}

// soakErrs collects what the soak's goroutines find wrong (they must not
// call t.Fatal): the first few messages and how many in all.
type soakErrs struct {
	mu    sync.Mutex
	n     int
	first []string
}

func (e *soakErrs) add(format string, args ...any) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.n++
	if len(e.first) < 20 {
		e.first = append(e.first, fmt.Sprintf(format, args...))
	}
}

// flush reports what was collected since the last flush as an error of t,
// and forgets it.
func (e *soakErrs) flush(t *testing.T, when string) {
	t.Helper()
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.n > 0 {
		t.Errorf("%s: %d problems; the first %d:\n  %s", when, e.n, len(e.first), strings.Join(e.first, "\n  "))
	}
	e.n, e.first = 0, nil
}

// soakInvalid is a payload the parser must reject, with the reason. elem
// says it is an object, so it can also be an element of a batch.
type soakInvalid struct {
	payload string
	reason  event.Reason
	elem    bool
}

// soakInvalids covers every reject reason with malformed JSON, unknown
// types, missing fields, bad event times and wrong types. (Event times are
// in ms here: a time in seconds is a case of its own, for the parser's
// tests.)
var soakInvalids = []soakInvalid{
	{`{"id":`, event.BadJSON, false},
	{`{"id":"x","type":"click","campaign":"c0",}`, event.BadJSON, false},
	{``, event.BadJSON, false},
	{`42`, event.NotObject, false},
	{`"impression"`, event.NotObject, false},
	{`{"type":"click","campaign":"c0"}`, event.BadID, true},
	{`{"id":7,"type":"click","campaign":"c0"}`, event.BadID, true},
	{`{"id":"x","type":"view","campaign":"c0"}`, event.BadType, true},
	{`{"id":"x","campaign":"c0"}`, event.BadType, true},
	{`{"id":"x","type":"click"}`, event.BadCampaign, true},
	{`{"id":"x","type":"click","campaign":""}`, event.BadCampaign, true},
	{`{"id":"x","type":"click","campaign":"c0","placement":5}`, event.BadDimension, true},
	{`{"id":"x","type":"click","campaign":"c0","device":""}`, event.BadDimension, true},
	{`{"id":"x","type":"click","campaign":"` + strings.Repeat("c", event.MaxFieldLen+1) + `"}`, event.FieldTooLong, true},
	{`{"id":"x","type":"click","campaign":"c0","ts":1.5}`, event.BadTS, true},
	{`{"id":"x","type":"click","campaign":"c0","ts":"1767323045000"}`, event.BadTS, true},
	{`{"id":"x","type":"click","campaign":"c0","ts":-1}`, event.BadTS, true},
	{`{"id":"x","type":"click","campaign":"c0","cost":-1}`, event.BadMoney, true},
	{`{"id":"x","type":"conversion","campaign":"c0","value":"1.5"}`, event.BadMoney, true},
	{`{"id":"x","type":"conversion","campaign":"c0","click_ts":"x"}`, event.BadClickTS, true},
}
