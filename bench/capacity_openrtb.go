package bench

import (
	"context"
	"strconv"
	"time"
)

// openRTBRuns are the closed-loop runs of the OpenRTB comparison (Options.BidOpenRTB): OpenRTB
// requests and batches of as many keys, one of each per round.
type openRTBRuns struct {
	openrtb, batch []closedRun
}

// openRTBRound measures the OpenRTB requests (OpenRTBImps x OpenRTBCandidates) and batches of
// the same number of keys, one after the other; odd rounds start with the batch, so a drift
// of the machine over a round (a neighbour starting, the service's heap growing) favours
// neither.
func (r *runner) openRTBRound(ctx context.Context, round int, d time.Duration, pid int, runs *openRTBRuns) {
	o := &r.o
	n := o.OpenRTBImps * o.OpenRTBCandidates
	steps := [2]func(){
		func() {
			runs.openrtb = append(runs.openrtb, r.closedLoop(ctx, r.target, "openrtb", d, pid,
				bidShape{endpoint: EndpointOpenRTB, batch: 1, imps: o.OpenRTBImps, candidates: o.OpenRTBCandidates}))
		},
		func() {
			runs.batch = append(runs.batch, r.closedLoop(ctx, r.target, "batch-"+strconv.Itoa(n), d, pid,
				bidShape{endpoint: EndpointBatch, batch: n}))
		},
	}
	if round%2 == 1 {
		steps[0], steps[1] = steps[1], steps[0]
	}
	for _, step := range steps {
		if ctx.Err() == nil {
			step()
		}
	}
}

// openRTBCapacity sums the comparison's runs: each side as a BatchCapacity (multipliers/s and
// per service CPU-second, against the single GETs' single), and their ratios.
func (r *runner) openRTBCapacity(runs *openRTBRuns, single *Throughput) *OpenRTBCapacity {
	o := &r.o
	n := o.OpenRTBImps * o.OpenRTBCandidates
	c := &OpenRTBCapacity{
		Imps: o.OpenRTBImps, Candidates: o.OpenRTBCandidates,
		OpenRTB: *namedBatchCapacity("openrtb", n, runs.openrtb, single),
		Batch:   *namedBatchCapacity("batch-"+strconv.Itoa(n), n, runs.batch, single),
	}
	for i := range min(len(runs.openrtb), len(runs.batch)) {
		a, b := &runs.openrtb[i], &runs.batch[i]
		if b.items > 0 {
			c.Ratios = append(c.Ratios, (float64(a.items)/a.wall)/(float64(b.items)/b.wall))
		}
	}
	c.Ratio = median(c.Ratios) // sorts them
	if c.OpenRTB.MultipliersPerCPUS > 0 && c.Batch.MultipliersPerCPUS > 0 {
		c.RatioPerCPU = c.OpenRTB.MultipliersPerCPUS / c.Batch.MultipliersPerCPUS
	}
	r.notice("capacity: openrtb / batch %.3f multipliers/s (median of %d rounds), %.3f per service CPU-second",
		c.Ratio, len(c.Ratios), c.RatioPerCPU)
	return c
}
