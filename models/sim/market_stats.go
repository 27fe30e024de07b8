package sim

import (
	"math"
	"slices"
)

// MarketStats are a log's statistics, to compare with the figures the
// market is calibrated on.
type MarketStats struct {
	Auctions    int     `json:"auctions"`
	Clicks      int     `json:"clicks"`
	Conversions int     `json:"conversions"`
	CTR         float64 `json:"ctr"`
	CVR         float64 `json:"cvr"`
	// CPM is the mean market price per thousand impressions; PriceP50,
	// PriceP90, PriceP99 quantiles of the price per impression.
	CPM      float64 `json:"cpm"`
	PriceP50 float64 `json:"price_p50"`
	PriceP90 float64 `json:"price_p90"`
	PriceP99 float64 `json:"price_p99"`
	// ECPC is the cost of a click when buying everything.
	ECPC float64 `json:"ecpc"`
	// TopShareClicks is the share of the clicks from the best tenth of
	// the (campaign, placement) pairs by CTR: how long the tail is.
	TopShareClicks float64 `json:"top_tenth_click_share"`
	// CreativeSpread is the mean over campaigns of the CTR effect of the
	// best creative over the worst's.
	CreativeSpread float64 `json:"creative_spread"`
}

// Stats computes the log's statistics over every campaign.
func (l *MarketLog) Stats() MarketStats {
	var s MarketStats
	np := len(l.Placements)
	n := 0
	for i := range l.Campaigns {
		n += len(l.Campaigns[i].Auctions)
	}
	prices := make([]uint32, 0, n)
	clicksBy := make([]int, len(l.Campaigns)*np)
	type cell struct {
		ctr float64
		idx int
	}
	cells := make([]cell, 0, len(clicksBy))
	for ci := range l.Campaigns {
		c := &l.Campaigns[ci]
		for _, a := range c.Auctions {
			prices = append(prices, a.PriceMicros)
			if a.Click {
				s.Clicks++
				clicksBy[ci*np+int(a.Placement)]++
			}
			if a.Conv {
				s.Conversions++
			}
		}
		for pi := range c.Placements {
			cells = append(cells, cell{c.Placements[pi].CTR, ci*np + pi})
		}
		lo, hi := math.Inf(1), 0.0
		for _, cr := range c.Creatives {
			lo, hi = math.Min(lo, cr.CTREffect), math.Max(hi, cr.CTREffect)
		}
		if lo > 0 && len(l.Campaigns) > 0 {
			s.CreativeSpread += hi / lo / float64(len(l.Campaigns))
		}
	}
	s.Auctions = n
	if n == 0 {
		return s
	}
	s.CTR = float64(s.Clicks) / float64(n)
	if s.Clicks > 0 {
		s.CVR = float64(s.Conversions) / float64(s.Clicks)
		s.ECPC = float64(l.TotalCostMicros) / 1e6 / float64(s.Clicks)
	}
	s.CPM = float64(l.TotalCostMicros) / 1e3 / float64(n)
	slices.Sort(prices)
	q := func(f float64) float64 { return float64(prices[int(f*float64(len(prices)-1))]) / 1e6 }
	s.PriceP50, s.PriceP90, s.PriceP99 = q(0.5), q(0.9), q(0.99)
	slices.SortFunc(cells, func(a, b cell) int {
		switch {
		case a.ctr > b.ctr:
			return -1
		case a.ctr < b.ctr:
			return 1
		}
		return a.idx - b.idx
	})
	top := 0
	for _, c := range cells[:max(len(cells)/10, 1)] {
		top += clicksBy[c.idx]
	}
	if s.Clicks > 0 {
		s.TopShareClicks = float64(top) / float64(s.Clicks)
	}
	return s
}
