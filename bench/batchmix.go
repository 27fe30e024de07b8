package bench

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
)

// BatchWeight is one event message size of a BatchMix and its weight among messages.
type BatchWeight struct {
	Events int     `json:"events"`
	Weight float64 `json:"weight"`
}

// BatchMix is a distribution of event message sizes, drawn per message: a message of
// m[i].Events events with a probability proportional to m[i].Weight.
type BatchMix []BatchWeight

// ParseBatchMix reads "SIZE:WEIGHT,..." such as "100:40,1000:30,4000:20,10000:10" (the
// weights are shares of the messages); "" gives nil (no mix).
func ParseBatchMix(s string) (BatchMix, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, nil
	}
	var m BatchMix
	for _, part := range strings.Split(s, ",") {
		size, weight, ok := strings.Cut(strings.TrimSpace(part), ":")
		n, err1 := strconv.Atoi(size)
		w, err2 := strconv.ParseFloat(weight, 64)
		if !ok || err1 != nil || err2 != nil {
			return nil, fmt.Errorf("invalid batch mix %q: want SIZE:WEIGHT,... such as %s", s, ProductionDefaults().BatchMix)
		}
		m = append(m, BatchWeight{Events: n, Weight: w})
	}
	return m, m.check()
}

// check validates the sizes (1..10,000 events, the bench's largest message) and weights.
func (m BatchMix) check() error {
	for _, b := range m {
		if b.Events < 1 || b.Events > maxBatchEvents {
			return fmt.Errorf("invalid batch mix size %d: must be in 1..%d", b.Events, maxBatchEvents)
		}
		if !(b.Weight > 0) || math.IsInf(b.Weight, 0) {
			return fmt.Errorf("invalid batch mix weight %v of size %d: must be positive", b.Weight, b.Events)
		}
	}
	return nil
}

// maxBatchEvents is the most events per message the bench sends (about 2.3 MB of JSON, under
// the service's 8 MiB message limit).
const maxBatchEvents = 10_000

// String returns the mix in ParseBatchMix's form.
func (m BatchMix) String() string {
	parts := make([]string, len(m))
	for i, b := range m {
		parts[i] = strconv.Itoa(b.Events) + ":" + strconv.FormatFloat(b.Weight, 'g', -1, 64)
	}
	return strings.Join(parts, ",")
}

// EventShares returns the share of events each size carries: weight x size, normalised.
func (m BatchMix) EventShares() []float64 {
	var total float64
	for _, b := range m {
		total += b.Weight * float64(b.Events)
	}
	shares := make([]float64, len(m))
	for i, b := range m {
		shares[i] = b.Weight * float64(b.Events) / total
	}
	return shares
}

// largest returns the largest size of the mix (0 for none).
func (m BatchMix) largest() int {
	n := 0
	for _, b := range m {
		n = max(n, b.Events)
	}
	return n
}

// batchSizer draws message sizes from a BatchMix and counts what was sent of each. Not safe
// for concurrent use.
type batchSizer struct {
	mix      BatchMix
	cum      []float64
	rng      *rand.Rand
	messages []uint64
	events   []uint64
}

func newBatchSizer(mix BatchMix, seed int64) *batchSizer {
	b := &batchSizer{mix: mix, rng: rand.New(rand.NewPCG(uint64(seed), 0x6d6978)),
		messages: make([]uint64, len(mix)), events: make([]uint64, len(mix))}
	var acc, total float64
	for _, w := range mix {
		total += w.Weight
	}
	for _, w := range mix {
		acc += w.Weight / total
		b.cum = append(b.cum, acc)
	}
	b.cum[len(b.cum)-1] = 1
	return b
}

// next draws the index of the next message's size.
func (b *batchSizer) next() int { return pickCum(b.cum, b.rng.Float64()) }

// sent counts a message of size index i holding events events.
func (b *batchSizer) sent(i int, events uint64) {
	b.messages[i]++
	b.events[i] += events
}
