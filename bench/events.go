package bench

import (
	"encoding/json"
	"math/rand/v2"
	"strconv"
	"strings"

	"github.com/bidpulse/bidpulse/bidder/event"
)

// Tally counts events by the outcome the service should give them. Every event counts one in
// the service's "received"; an event of a batch that was never published counts nowhere.
type Tally struct {
	// Events is every event, valid or not.
	Events uint64 `json:"events"`
	// Messages is the NATS messages (batches) they were sent in.
	Messages uint64 `json:"messages"`
	// Impressions, Clicks and Conversions are the valid, first-seen events by type: what the
	// service should count.
	Impressions uint64 `json:"impressions"`
	Clicks      uint64 `json:"clicks"`
	Conversions uint64 `json:"conversions"`
	// Duplicates repeat the (type, id) of an event sent earlier.
	Duplicates uint64 `json:"duplicates"`
	// Rejected counts the malformed events by the reason the service should give.
	Rejected [event.NumReasons]uint64 `json:"-"`
}

// Counted returns the events the service should count.
func (t *Tally) Counted() uint64 { return t.Impressions + t.Clicks + t.Conversions }

// RejectedTotal returns the malformed events.
func (t *Tally) RejectedTotal() uint64 {
	var n uint64
	for _, c := range t.Rejected {
		n += c
	}
	return n
}

// Add adds o to t.
func (t *Tally) Add(o *Tally) {
	t.Events += o.Events
	t.Messages += o.Messages
	t.Impressions += o.Impressions
	t.Clicks += o.Clicks
	t.Conversions += o.Conversions
	t.Duplicates += o.Duplicates
	for i := range t.Rejected {
		t.Rejected[i] += o.Rejected[i]
	}
}

// malformed is one kind of invalid event and the reason the service must give it. Each
// template has exactly one flaw; %ID% is replaced by a fresh id.
type malformed struct {
	reason event.Reason
	json   string
}

var malformedEvents = []malformed{
	{event.BadType, `{"id":"%ID%","type":"view","campaign":"c1"}`},
	{event.BadCampaign, `{"id":"%ID%","type":"impression"}`},
	{event.BadID, `{"id":"","type":"impression","campaign":"c1"}`},
	{event.BadDimension, `{"id":"%ID%","type":"impression","campaign":"c1","placement":""}`},
	{event.FieldTooLong, `{"id":"%ID%","type":"impression","campaign":"` + longName + `"}`},
	{event.BadTS, `{"id":"%ID%","type":"impression","campaign":"c1","ts":-5}`},
	{event.BadMoney, `{"id":"%ID%","type":"impression","campaign":"c1","cost":-1}`},
	{event.NotObject, `42`},
}

// longName is one byte over event.MaxFieldLen.
var longName = strings.Repeat("x", event.MaxFieldLen+1)

// eventGen builds event batches: Synthetic traffic, plus duplicates (an impression id sent
// before, again) and malformed events at the configured rates, and tallies what each batch
// holds. The rates are kept exactly over the run with accumulators (no sampling noise), so
// the reconciliation is exact. Not safe for concurrent use.
type eventGen struct {
	syn     *Synthetic
	dupRate float64
	badRate float64
	dupAcc  float64
	badAcc  float64
	rng     *rand.Rand
	bad     uint64 // malformed events so far, for their ids and the template rotation
	buf     []byte
}

func newEventGen(syn *Synthetic, dupRate, badRate float64, seed int64) *eventGen {
	return &eventGen{syn: syn, dupRate: dupRate, badRate: badRate, rng: rand.New(rand.NewPCG(uint64(seed), 0x6576656e7473))}
}

// next returns a JSON array of about n synthetic events at event time nowMs, with the
// injected ones, and its tally. The returned slice is reused by the next call.
func (g *eventGen) next(n int, nowMs int64) ([]byte, Tally) {
	s := g.syn
	before := s.Events()
	i0, c0, v0 := s.EventsByType()
	g.buf = s.AppendBatch(g.buf[:0], n, nowMs)
	i1, c1, v1 := s.EventsByType()
	t := Tally{Events: s.Events() - before, Messages: 1, Impressions: i1 - i0, Clicks: c1 - c0, Conversions: v1 - v0}
	valid := float64(t.Events)
	g.dupAcc += valid * g.dupRate
	g.badAcc += valid * g.badRate
	dups, bads := int(g.dupAcc), int(g.badAcc)
	g.dupAcc -= float64(dups)
	g.badAcc -= float64(bads)
	if dups+bads == 0 {
		return g.buf, t
	}
	g.buf = g.buf[:len(g.buf)-1] // the closing ']'
	for range dups {
		if s.seq == 0 {
			break
		}
		// An impression among the latest few thousand (all sent before, earlier in this array
		// or in an earlier message), so the service's dedup set still holds it.
		seq := s.seq - g.rng.Uint64N(min(s.seq, 4096))
		g.comma()
		g.buf = append(g.buf, `{"id":"`...)
		g.buf = append(g.buf, s.runID...)
		g.buf = append(g.buf, '-')
		g.buf = strconv.AppendUint(g.buf, seq, 36)
		g.buf = append(g.buf, `","type":"impression","ts":`...)
		g.buf = strconv.AppendInt(g.buf, nowMs, 10)
		g.buf = append(g.buf, `,"campaign":"c1"}`...)
		t.Duplicates++
		t.Events++
	}
	for range bads {
		m := &malformedEvents[g.bad%uint64(len(malformedEvents))]
		g.bad++
		g.comma()
		g.buf = g.appendMalformed(g.buf, m)
		t.Rejected[m.reason]++
		t.Events++
	}
	g.buf = append(g.buf, ']')
	return g.buf, t
}

// sweep returns a JSON array of one impression for each of the n cells from first on (see
// Synthetic.AppendSweep) at event time nowMs, and its tally; no duplicates or malformed events
// are added. The returned slice is reused by the next call.
func (g *eventGen) sweep(first, n int, nowMs int64) ([]byte, Tally) {
	before := g.syn.Events()
	g.buf = g.syn.AppendSweep(g.buf[:0], first, n, nowMs)
	events := g.syn.Events() - before
	return g.buf, Tally{Events: events, Messages: 1, Impressions: events}
}

func (g *eventGen) comma() {
	if g.buf[len(g.buf)-1] != '[' {
		g.buf = append(g.buf, ',')
	}
}

// appendMalformed appends m's template with a fresh id in place of %ID%.
func (g *eventGen) appendMalformed(dst []byte, m *malformed) []byte {
	const mark = "%ID%"
	tpl := m.json
	for {
		i := strings.Index(tpl, mark)
		if i < 0 {
			return append(dst, tpl...)
		}
		dst = append(dst, tpl[:i]...)
		dst = append(dst, g.syn.runID...)
		dst = append(dst, "-bad"...)
		dst = strconv.AppendUint(dst, g.bad, 36)
		tpl = tpl[i+len(mark):]
	}
}

// MarshalJSON writes the tally with the rejected events as a map by reason name.
func (t Tally) MarshalJSON() ([]byte, error) {
	type plain Tally
	rejected := map[string]uint64{}
	for r, n := range t.Rejected {
		if n > 0 {
			rejected[event.ReasonNames[r]] = n
		}
	}
	return json.Marshal(struct {
		plain
		Counted  uint64            `json:"counted"`
		Rejected map[string]uint64 `json:"rejected"`
	}{plain(t), t.Counted(), rejected})
}
