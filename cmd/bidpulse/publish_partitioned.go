package main

import (
	"errors"
	"fmt"

	"github.com/valyala/fastjson"

	"github.com/bidpulse/bidpulse/bench"
	"github.com/bidpulse/bidpulse/bidder/partition"
)

// maxOpenCampaigns bounds the campaigns whose batches publish --partitioned holds open at once:
// an event of another campaign first sends the oldest open batch.
const maxOpenCampaigns = 1024

// partitionedSubject splits --subject into the base and the producer name of partitioned
// subjects (bench.PartitionedSubject): the default bidpulse.events.publish publishes to
// bidpulse.events.<campaign>.publish.
func partitionedSubject(subject string) (base, name string, err error) {
	base, name, err = bench.PartitionedSubject(subject)
	if err != nil {
		return "", "", fmt.Errorf("--subject with --partitioned: %w", err)
	}
	return base, name, nil
}

// errNoCampaign marks an event that publish --partitioned refuses: it has no campaign that can
// be the campaign token of its subject.
var errNoCampaign = errors.New("no campaign that can be a subject token")

// campaignOf returns the campaign of v, a valid JSON value, or an error wrapping errNoCampaign
// that says why it has none that can be partitioned. The campaign is the decoded string, as the
// service reads it.
func campaignOf(jp *fastjson.Parser, v []byte) (string, error) {
	val, err := jp.ParseBytes(v)
	if err != nil {
		return "", fmt.Errorf("%w: not valid JSON: %v", errNoCampaign, err)
	}
	if val.Type() != fastjson.TypeObject {
		return "", fmt.Errorf("%w: a JSON %s, not an object", errNoCampaign, val.Type())
	}
	c := val.Get("campaign")
	if c == nil || c.Type() != fastjson.TypeString {
		return "", fmt.Errorf("%w: campaign missing or not a string", errNoCampaign)
	}
	campaign := string(c.GetStringBytes())
	if err := partition.CheckCampaign(campaign); err != nil {
		return "", fmt.Errorf("%w: %v", errNoCampaign, err)
	}
	return campaign, nil
}

// campaignBatcher groups JSON events into batches of one campaign each (a batcher per campaign,
// at most maxOpenCampaigns open; the oldest is sent first when another campaign comes), so that
// each batch can go to its campaign's subject. The events of a campaign keep their order.
type campaignBatcher struct {
	// publish sends one message of campaign; msgID is derived from its content (batcher).
	publish func(campaign string, data []byte, msgID string, events int) error
	size    int
	open    map[string]*batcher
	order   []string // the open campaigns, oldest first
	jp      fastjson.Parser
	events  int
	msgs    int
}

func newCampaignBatcher(size int, publish func(campaign string, data []byte, msgID string, events int) error) *campaignBatcher {
	return &campaignBatcher{publish: publish, size: size, open: make(map[string]*batcher)}
}

// add adds v, a valid JSON value, to its campaign's batch. An event with no campaign that can be
// partitioned is not added: the error (wrapping errNoCampaign) says why.
func (cb *campaignBatcher) add(v []byte) error {
	c, err := campaignOf(&cb.jp, v)
	if err != nil {
		return err
	}
	return cb.addTo(c, v)
}

// addTo adds v to the batch of campaign, a valid campaign token.
func (cb *campaignBatcher) addTo(campaign string, v []byte) error {
	b := cb.open[campaign]
	if b == nil {
		if len(cb.open) >= maxOpenCampaigns {
			oldest := cb.order[0]
			cb.order = cb.order[1:]
			if err := cb.close(oldest); err != nil {
				return err
			}
		}
		b = &batcher{size: cb.size, publish: func(data []byte, msgID string, events int) error {
			cb.msgs++
			return cb.publish(campaign, data, msgID, events)
		}}
		cb.open[campaign] = b
		cb.order = append(cb.order, campaign)
	}
	cb.events++
	return b.add(v)
}

// close sends campaign's open batch and forgets it.
func (cb *campaignBatcher) close(campaign string) error {
	b := cb.open[campaign]
	delete(cb.open, campaign)
	return b.flush()
}

// flush sends every open batch, oldest first.
func (cb *campaignBatcher) flush() error {
	for _, c := range cb.order {
		if err := cb.close(c); err != nil {
			return err
		}
	}
	cb.order = cb.order[:0]
	return nil
}

// addBatch adds each element of a JSON array of events (a synthetic batch) to its campaign's
// batch (bench.SplitByCampaign). Synthetic campaigns are always tokens; any other element is an
// error.
func (cb *campaignBatcher) addBatch(array []byte) error {
	var el []byte
	return bench.SplitByCampaign(&cb.jp, array, func(i int, c string, e *fastjson.Value) error {
		if c == "" {
			return fmt.Errorf("cannot publish synthetic event %d partitioned: no campaign that can be a subject token", i)
		}
		el = e.MarshalTo(el[:0])
		return cb.addTo(c, el)
	})
}
