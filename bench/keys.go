package bench

import "github.com/bidpulse/bidpulse/bidder/client"

// keySpace is the set of (campaign, creative, placement) cells that bid requests are drawn
// from: the cells of the Synthetic that feeds the events, with the same shares, so bids ask
// about the keys that traffic makes hot (a Zipf-like skew, see SyntheticConfig.Skew). It is
// immutable after newKeySpace and safe for concurrent use; callers bring the random numbers.
type keySpace struct {
	cum []float64
	// keys are the cells as the client asks for them, built once: picking a key allocates
	// nothing (the strings are the Synthetic's cells').
	keys []client.Key
}

func newKeySpace(s *Synthetic) *keySpace {
	k := &keySpace{cum: s.cum, keys: make([]client.Key, len(s.cells))}
	for i, c := range s.cells {
		k.keys[i] = client.Key{Campaign: c.Campaign, Creative: c.Creative, Placement: c.Placement}
	}
	return k
}

// pick maps u, uniform in [0, 1), to a cell index.
func (k *keySpace) pick(u float64) int { return pickCum(k.cum, u) }

// len returns the number of cells.
func (k *keySpace) len() int { return len(k.cum) }
