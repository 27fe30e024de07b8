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
func (c *Client) OpenRTB(ctx context.Context, bidRequest []byte) (*OpenRTBAnswer, error) {
	c.calls.Add(1)
	if c.closed.Load() {
		return c.failORTB(FailUnavailable), ErrClosed
	}
	b := c.getBuf()
	defer c.bufs.Put(b)
	status, body, err := c.t.do(c.deadline(ctx), epOpenRTB, nil, bidRequest, c.auth, b.answer[:0])
	b.answer = body
	if r, err := c.check(status, body, err); r != Answered {
		return c.failORTB(r), err
	}
	a := &OpenRTBAnswer{}
	if err := json.Unmarshal(body, a); err != nil {
		return c.failORTB(FailServer), fmt.Errorf("bidpulse client: cannot read the OpenRTB answer: %w", err)
	}
	return a, nil
}

func (c *Client) failORTB(r FailReason) *OpenRTBAnswer {
	c.failOpen[r].Add(1)
	return &OpenRTBAnswer{FailOpen: r}
}
