package bench

import (
	"encoding/json"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestAppendBidRequest checks the OpenRTB requests' shape: imps impressions with ids 1..imps,
// each a cell's placement as tagid with that cell's campaign and creative as its first
// candidate, the others of picked cells too, and nothing else that would give the key a device
// or a country.
func TestAppendBidRequest(t *testing.T) {
	syn := NewSynthetic(SyntheticConfig{Campaigns: 6, Creatives: 3, Placements: 8, Skew: 1})
	keys := newKeySpace(syn)
	cells := map[[3]string]bool{}
	pairs := map[[2]string]bool{}
	for _, c := range syn.Cells() {
		cells[[3]string{c.Campaign, c.Creative, c.Placement}] = true
		pairs[[2]string{c.Campaign, c.Creative}] = true
	}
	rng := rand.New(rand.NewPCG(1, 2))
	var buf []byte
	seen := map[[2]string]bool{}
	for id := range uint64(50) {
		imps, cands := 1+int(id%7), 1+int(id%4)
		buf = appendBidRequest(buf[:0], keys, id, imps, cands, rng)
		var req map[string]any
		if err := json.Unmarshal(buf, &req); err != nil {
			t.Fatalf("invalid request %s: %v", buf, err)
		}
		if len(req) != 2 || req["id"] != strconv.FormatUint(id, 10) {
			t.Fatalf("unexpected request members %s: want id and imp only", buf)
		}
		is := req["imp"].([]any)
		if len(is) != imps {
			t.Fatalf("unexpected impressions in %s; got %d; want %d", buf, len(is), imps)
		}
		for i, x := range is {
			im := x.(map[string]any)
			tag := im["tagid"].(string)
			cs := im["ext"].(map[string]any)["bidpulse"].(map[string]any)["candidates"].([]any)
			if im["id"] != strconv.Itoa(i+1) || len(im) != 3 || len(cs) != cands {
				t.Fatalf("unexpected impression %d of %s", i, buf)
			}
			for j, y := range cs {
				c := y.(map[string]any)
				pair := [2]string{c["campaign"].(string), c["creative"].(string)}
				if len(c) != 2 || !pairs[pair] || j == 0 && !cells[[3]string{pair[0], pair[1], tag}] {
					t.Fatalf("unexpected candidate %d of impression %d in %s", j, i, buf)
				}
				seen[pair] = true
			}
		}
	}
	if len(seen) < 5 {
		t.Fatalf("unexpected candidates: only %d campaign and creative pairs over 50 requests", len(seen))
	}
}

// TestOpenRTBCount checks the count of answered candidates in an OpenRTB answer: every
// candidate but the neutral ones (past the request's tmax), none of a refused request.
func TestOpenRTBCount(t *testing.T) {
	answer := strings.Replace(string(openRTBAnswer(2, 3)), `"level":"campaign/creative/placement"`, `"level":"none","neutral":"tmax"`, 2)
	for _, c := range []struct {
		body string
		want uint64
	}{{string(openRTBAnswer(2, 3)), 6}, {answer, 4}, {`{"error":"imp[0]: missing id"}`, 0}} {
		h := newFixedBids(t, EndpointOpenRTB, []byte(c.body))
		h.countItems = true
		h.do(0, time.Now().Add(5*time.Second))
		if h.items() != c.want {
			t.Fatalf("unexpected answered candidates in %s; got %d; want %d", c.body, h.items(), c.want)
		}
	}
}
