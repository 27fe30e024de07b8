package client

import (
	"context"
	"encoding/json"
	"fmt"
)

// OpenRTBAnswer is bidpulse's answer to an OpenRTB BidRequest (POST
// /v1/openrtb/multipliers; docs/OPENRTB.md).
type OpenRTBAnswer struct {
	// ID is the BidRequest's id.
	ID string `json:"id"`
	// Imp holds one entry per impression, in the request's order.
	Imp []OpenRTBImp `json:"imp"`
	// TmaxExpired: the request's own deadline (tmax) had passed, and the
	// candidates from then on are neutral.
	TmaxExpired bool `json:"tmax_expired"`
	// FailOpen is Answered, or why there is no answer at all (Imp is then
	// empty, and Multiplier answers 1 for every candidate).
	FailOpen FailReason `json:"-"`
}

// OpenRTBImp is one impression's key and its candidates' multipliers.
type OpenRTBImp struct {
	ID         string             `json:"id"`
	Key        OpenRTBKey         `json:"key"`
	Candidates []OpenRTBCandidate `json:"candidates"`
}

// OpenRTBKey is the key bidpulse derived from an impression.
type OpenRTBKey struct {
	Placement string `json:"placement"`
	Device    string `json:"device"`
	Country   string `json:"country"`
	Site      string `json:"site"`
}

// OpenRTBCandidate is one candidate's multiplier.
type OpenRTBCandidate struct {
	Campaign   string  `json:"campaign"`
	Creative   string  `json:"creative"`
	Multiplier float64 `json:"multiplier"`
	Level      string  `json:"level"`
	// Neutral is "tmax" when the candidate got 1 because the request's
	// deadline had passed.
	Neutral string `json:"neutral"`
}

// Multiplier returns the multiplier of a candidate (creative "" for a
// candidate without one) in impression impID: 1 when the answer has none
// (a failed call, an unknown impression or candidate).
func (a *OpenRTBAnswer) Multiplier(impID, campaign, creative string) float64 {
	for i := range a.Imp {
		im := &a.Imp[i]
		if im.ID != impID {
			continue
		}
		for j := range im.Candidates {
			cd := &im.Candidates[j]
			if cd.Campaign == campaign && cd.Creative == creative {
				return cd.Multiplier
			}
		}
	}
	return 1
}

// OpenRTB posts an OpenRTB 2.6 BidRequest with its candidates
// (ext.bidpulse.candidates, or imp[].ext.bidpulse.candidates) and returns
// every impression's multipliers. The answer is always usable: on an
// error it is empty, its FailOpen says why, and its Multiplier answers 1.
// It decodes with encoding/json (tens of allocations for 5 impressions of
// 3 candidates); OpenRTBRaw hands over the answer's bytes instead.
func (c *Client) OpenRTB(ctx context.Context, bidRequest []byte) (*OpenRTBAnswer, error) {
	b := c.getBuf()
	defer c.bufs.Put(b)
	body, r, err := c.OpenRTBRaw(ctx, bidRequest, b.answer[:0])
	b.answer = body
	if r != Answered {
		return &OpenRTBAnswer{FailOpen: r}, err
	}
	a := &OpenRTBAnswer{}
	if err := json.Unmarshal(body, a); err != nil {
		c.failOpen[FailServer].Add(1)
		return &OpenRTBAnswer{FailOpen: FailServer}, fmt.Errorf("bidpulse client: cannot read the OpenRTB answer: %w", err)
	}
	return a, nil
}

// OpenRTBRaw posts bidRequest as OpenRTB does and appends bidpulse's answer,
// the JSON of docs/OPENRTB.md, to dst, for a caller that reads it itself
// (it allocates nothing in steady state). On a failure it returns dst
// unchanged, the reason and the error; a missing candidate means 1.
func (c *Client) OpenRTBRaw(ctx context.Context, bidRequest, dst []byte) ([]byte, FailReason, error) {
	c.calls.Add(1)
	if c.closed.Load() {
		c.failOpen[FailUnavailable].Add(1)
		return dst, FailUnavailable, ErrClosed
	}
	n := len(dst)
	status, body, err := c.t.do(c.deadline(ctx), epOpenRTB, nil, bidRequest, c.auth, dst)
	if r, err := c.check(status, body, err); r != Answered {
		c.failOpen[r].Add(1)
		return body[:n], r, err
	}
	return body, Answered, nil
}
