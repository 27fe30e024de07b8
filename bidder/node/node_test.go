package node

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/bidpulse/bidpulse/bidder/cluster"
	"github.com/bidpulse/bidpulse/bidder/partition"
)

func campaigns(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = "c" + strconv.Itoa(i)
	}
	return out
}

// TestClusterDisjointUnion: three members own disjoint partitions that cover
// all P, each counts its campaigns' events exactly, and every member
// answers bids for every campaign, the same multiplier wherever asked.
func TestClusterDisjointUnion(t *testing.T) {
	const parts = 8
	tc := newTestCluster(t, parts, nil)
	for _, m := range []string{"m0", "m1", "m2"} {
		tc.start(m)
	}
	tc.waitStable(3, 30*time.Second)
	pub := newPublisher(t)
	cs := campaigns(40)
	for round := range 3 {
		for i, c := range cs {
			if !pub.publish(c, 1+(i+round)%5) {
				t.Fatal("publish not acknowledged")
			}
		}
	}
	tc.waitCounted(pub.total(), 30*time.Second)
	tc.checkRates(pub.sent)

	// The assignment every member computed is Assign's, and each member
	// serves exactly its own partitions.
	want := cluster.Assign(parts, []string{"m0", "m1", "m2"}, 1)
	for name, n := range tc.members {
		code, b := do(t, n, "GET", "/v1/cluster", "", "")
		if code != 200 {
			t.Fatalf("/v1/cluster: %d %s", code, b)
		}
		var v struct {
			Owners  []string `json:"owners"`
			Serving []uint32 `json:"serving"`
			Members []struct {
				Instance string `json:"instance"`
			} `json:"members"`
		}
		if err := json.Unmarshal(b, &v); err != nil {
			t.Fatal(err)
		}
		var mine []uint32
		for p := range want {
			if v.Owners[p] != want[p][0] {
				t.Fatalf("%s: owner of %d is %s; want %s", name, p, v.Owners[p], want[p][0])
			}
			if want[p][0] == name {
				mine = append(mine, uint32(p))
			}
		}
		if !slices.Equal(v.Serving, mine) {
			t.Fatalf("%s serves %v; want %v", name, v.Serving, mine)
		}
	}

	// Bids: every campaign through every member, single and batch, the
	// same answer everywhere, none neutral.
	for _, c := range cs {
		var first string
		for name, n := range tc.members {
			code, b := do(t, n, "GET", "/v1/multiplier?campaign="+c+"&placement=p1", "", "")
			if code != 200 {
				t.Fatalf("bid %s at %s: %d %s", c, name, code, b)
			}
			var a map[string]any
			if err := json.Unmarshal(b, &a); err != nil {
				t.Fatal(err)
			}
			if a["neutral"] != nil || a["impressions"].(float64) == 0 {
				t.Fatalf("bid %s at %s: answered without the campaign's counts: %s", c, name, b)
			}
			if first == "" {
				first = string(b)
			} else if string(b) != first {
				t.Fatalf("bid %s: %s at %s; another member answered %s", c, b, name, first)
			}
		}
	}
	var body []byte
	body = append(body, '[')
	for i, c := range cs {
		if i > 0 {
			body = append(body, ',')
		}
		body = fmt.Appendf(body, `{"campaign":%q,"placement":"p%d"}`, c, i%3)
	}
	body = append(body, `,{"placement":"p1"},{"campaign":7}]`...)
	var firstBatch string
	for name, n := range tc.members {
		code, b := do(t, n, "POST", "/v1/multipliers", "", string(body))
		if code != 200 {
			t.Fatalf("batch at %s: %d %s", name, code, b)
		}
		var answers []map[string]any
		if err := json.Unmarshal(b, &answers); err != nil {
			t.Fatalf("batch at %s: %s", name, b)
		}
		if len(answers) != len(cs)+2 {
			t.Fatalf("batch at %s: %d answers; want %d", name, len(answers), len(cs)+2)
		}
		for i := range cs {
			if answers[i]["neutral"] != nil || answers[i]["impressions"].(float64) == 0 {
				t.Fatalf("batch at %s: item %d answered without counts: %v", name, i, answers[i])
			}
		}
		for _, a := range answers[len(cs):] {
			if a["error"] == nil {
				t.Fatalf("batch at %s: an item without a string campaign answered %v; want an error", name, a)
			}
		}
		if firstBatch == "" {
			firstBatch = string(b)
		} else if string(b) != firstBatch {
			t.Fatalf("batch answered differently at %s:\n%s\nvs\n%s", name, b, firstBatch)
		}
	}
	// Each member forwarded what it does not own and answered the rest.
	for name, n := range tc.members {
		fw := n.stats.forwarded[epMultiplier].Get()
		own := 0
		for _, c := range cs {
			if slices.Contains(n.owned(), partition.OfString(parts, c)) {
				own++
			}
		}
		if fw != uint64(len(cs)-own) {
			t.Fatalf("%s forwarded %d single bids; want %d", name, fw, len(cs)-own)
		}
	}
}
