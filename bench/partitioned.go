package bench

import (
	"fmt"
	"strings"

	"github.com/valyala/fastjson"

	"github.com/bidpulse/bidpulse/bidder/partition"
)

// Partitioned publishing (Options.Partitions > 0): a partitioned service binds only
// <base>.<campaign>.<rest> and checks every event's campaign against its subject
// (docs/SCALING.md), so each synthetic batch is split by campaign and each part goes to its
// campaign's subject, with its share of the batch's Tally.
//
// The injected events of a batch (duplicates and malformed events, --dup-rate and --bad-rate)
// go together in one more message, after the batch's campaign parts, to the subject of
// InjectedCampaign: the duplicates are impressions of that campaign, and a malformed event has
// no campaign the bench could trust (none, not a string, 129 bytes, not an object), so the
// service rejects each for its own flaw, before any partition check, exactly as the Tally
// expects. Sent after the parts, a duplicate still follows the impression it repeats.

// InjectedCampaign is the campaign whose subject carries a batch's duplicates and malformed
// events in partitioned mode: the campaign the templates of both name.
const InjectedCampaign = "c1"

// PartitionedSubject splits a producer's subject into the base and the producer name of
// partitioned subjects: its last token is the name and the tokens before it the base, so that
// bidpulse.events.bench publishes to bidpulse.events.<campaign>.bench.
func PartitionedSubject(subject string) (base, name string, err error) {
	i := strings.LastIndexByte(subject, '.')
	if i <= 0 || i == len(subject)-1 {
		return "", "", fmt.Errorf("invalid subject %q for a partitioned stream: want <base>.<name> (e.g. bidpulse.events.publish), published as <base>.<campaign>.<name>", subject)
	}
	return subject[:i], subject[i+1:], nil
}

// SplitByCampaign calls fn for each element of array, a JSON array of events such as a
// synthetic batch, in order, with its index, its campaign and its value (valid until fn
// returns). The campaign is the element's decoded "campaign" string when
// partition.CheckCampaign accepts it as a subject token, "" otherwise (missing, not a string,
// not an object, or not a token): the caller decides whether that is an error.
func SplitByCampaign(jp *fastjson.Parser, array []byte, fn func(i int, campaign string, v *fastjson.Value) error) error {
	val, err := jp.ParseBytes(array)
	if err != nil {
		return fmt.Errorf("BUG: event batch is not JSON: %w", err)
	}
	els, err := val.Array()
	if err != nil {
		return fmt.Errorf("BUG: event batch is not a JSON array: %w", err)
	}
	for i, e := range els {
		c := string(e.GetStringBytes("campaign"))
		if partition.CheckCampaign(c) != nil {
			c = ""
		}
		if err := fn(i, c, e); err != nil {
			return err
		}
	}
	return nil
}

// campaignPart is one message of a split batch: a JSON array of one campaign's events.
type campaignPart struct {
	campaign string
	data     []byte
	t        Tally
}

// add appends v to the part's array.
func (p *campaignPart) add(v *fastjson.Value) {
	if len(p.data) == 0 {
		p.data = append(p.data, '[')
	} else {
		p.data = append(p.data, ',')
	}
	p.data = v.MarshalTo(p.data)
	p.t.Events++
}

// batchSplitter splits the batches of eventGen by campaign (SplitByCampaign), reusing its
// buffers from one batch to the next. Not safe for concurrent use.
type batchSplitter struct {
	jp       fastjson.Parser
	parts    []campaignPart // parts[:n] hold the current batch, in order of first appearance
	n        int
	index    map[string]int
	injected campaignPart
}

// split splits data, holding the events tallied in t laid out as eventGen makes them (the
// t.Counted() valid, first-seen events first, then the duplicates and malformed ones), into a
// part per campaign of the counted events and a part of the injected events for
// InjectedCampaign (empty when there are none). The parts' tallies add up to t exactly, or
// split fails; they are valid until the next call.
func (s *batchSplitter) split(data []byte, t *Tally) (parts []campaignPart, injected *campaignPart, err error) {
	if s.index == nil {
		s.index = make(map[string]int)
	}
	clear(s.index)
	for i := range s.parts[:s.n] {
		s.parts[i].data, s.parts[i].t = s.parts[i].data[:0], Tally{}
	}
	s.n = 0
	s.injected = campaignPart{campaign: InjectedCampaign, data: s.injected.data[:0]}
	counted := t.Counted()
	err = SplitByCampaign(&s.jp, data, func(i int, campaign string, v *fastjson.Value) error {
		if uint64(i) >= counted {
			s.injected.add(v)
			return nil
		}
		if campaign == "" {
			return fmt.Errorf("cannot publish synthetic event %d partitioned: no campaign that can be a subject token", i)
		}
		p := s.part(campaign)
		p.add(v)
		switch string(v.GetStringBytes("type")) {
		case "impression":
			p.t.Impressions++
		case "click":
			p.t.Clicks++
		case "conversion":
			p.t.Conversions++
		default:
			return fmt.Errorf("BUG: counted synthetic event %d has type %q", i, v.GetStringBytes("type"))
		}
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	var sum Tally
	for i := range s.parts[:s.n] {
		s.parts[i].data = append(s.parts[i].data, ']')
		s.parts[i].t.Messages = 1
		sum.Add(&s.parts[i].t)
	}
	if len(s.injected.data) > 0 {
		s.injected.data = append(s.injected.data, ']')
		s.injected.t.Messages = 1
		s.injected.t.Duplicates, s.injected.t.Rejected = t.Duplicates, t.Rejected
		injected = &s.injected
		sum.Add(&injected.t)
	}
	if sum.Impressions != t.Impressions || sum.Clicks != t.Clicks || sum.Conversions != t.Conversions ||
		sum.Events != t.Events || injected != nil && injected.t.Events != t.Duplicates+t.RejectedTotal() {
		return nil, nil, fmt.Errorf("BUG: a batch split by campaign tallies %+v, not the batch's %+v", sum, *t)
	}
	return s.parts[:s.n], injected, nil
}

// part returns the part of campaign in the current batch, adding it.
func (s *batchSplitter) part(campaign string) *campaignPart {
	if i, ok := s.index[campaign]; ok {
		return &s.parts[i]
	}
	if s.n == len(s.parts) {
		s.parts = append(s.parts, campaignPart{})
	}
	p := &s.parts[s.n]
	p.campaign = campaign
	s.index[campaign] = s.n
	s.n++
	return p
}
