package sim

import (
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/bidpulse/bidpulse/models"
)

// GenerateMarket draws the log of cfg. The same config (seeds included)
// gives the same log.
func GenerateMarket(cfg MarketConfig) (*MarketLog, error) {
	if err := cfg.check(); err != nil {
		return nil, fmt.Errorf("cannot generate the market: %w", err)
	}
	r := models.NewRand(cfg.Seed)
	l := &MarketLog{Config: cfg, Placements: make([]MarketPlacement, cfg.Placements)}
	np := cfg.Placements
	mus := make([]float64, np)
	// zc, zv: each placement's shared quality, the standard normal draws
	// of its log CTR and log CVR.
	zc, zv := make([]float64, np), make([]float64, np)

	// The placements: quality first, then a price correlated with it.
	qs := math.Hypot(cfg.CTRSigma, cfg.CVRSigma)
	order := make([]int, np)
	for i := range order {
		order[i] = i
	}
	for i := len(order) - 1; i > 0; i-- {
		j := int(r.Uint64() % uint64(i+1))
		order[i], order[j] = order[j], order[i]
	}
	shares := 0.0
	for i := range l.Placements {
		p := &l.Placements[i]
		p.Name = fmt.Sprintf("p%03d", i)
		zc[i], zv[i] = r.NormFloat64(), r.NormFloat64()
		zq := 0.0
		if qs > 0 {
			zq = (cfg.CTRSigma*zc[i] + cfg.CVRSigma*zv[i]) / qs
		}
		rho := cfg.PriceQualityCorr
		zp := rho*zq + math.Sqrt(1-rho*rho)*r.NormFloat64()
		mus[i] = math.Log(cfg.PriceMedian) + cfg.PriceSigmaBetween*zp
		p.PriceMedian = math.Exp(mus[i])
		p.Share = 1 / math.Pow(float64(order[i]+1), cfg.ShareExponent)
		shares += p.Share
	}
	for i := range l.Placements {
		l.Placements[i].Share /= shares
	}

	// The campaigns: a level each, their rates at each placement (the
	// shared quality and their own), their creatives.
	rc := cfg.CampaignQualityCorr
	rs := math.Sqrt(1 - rc*rc)
	l.Campaigns = make([]MarketCampaign, cfg.Campaigns)
	for ci := range l.Campaigns {
		c := &l.Campaigns[ci]
		c.Name = fmt.Sprintf("c%d", ci+1)
		ctrLvl := cfg.CTRMedian * math.Exp(cfg.CampaignSigma*r.NormFloat64())
		cvrLvl := cfg.CVRMedian * math.Exp(cfg.CampaignSigma*r.NormFloat64())
		c.Placements = make([]CampaignPlacement, np)
		for pi := range c.Placements {
			cp := &c.Placements[pi]
			z1 := rc*zc[pi] + rs*r.NormFloat64()
			z2 := rc*zv[pi] + rs*r.NormFloat64()
			cp.CTR = math.Min(ctrLvl*math.Exp(cfg.CTRSigma*z1), 0.5)
			cp.CVR = math.Min(cvrLvl*math.Exp(cfg.CVRSigma*z2), 0.9)
			cp.Value = cfg.ValueMedian * math.Exp(cfg.ValueSigma*r.NormFloat64())
		}
		c.Creatives = make([]MarketCreative, cfg.Creatives)
		sum := 0.0
		for k := range c.Creatives {
			e := math.Exp(cfg.CreativeSigma * r.NormFloat64())
			c.Creatives[k] = MarketCreative{Name: fmt.Sprintf("cr%d", k+1), Share: 1 / float64(cfg.Creatives), CTREffect: e}
			sum += e
		}
		// The effects average 1 over the rotation, so that the creatives
		// move the CTR between auctions but not the campaign's.
		for k := range c.Creatives {
			c.Creatives[k].CTREffect *= float64(cfg.Creatives) / sum
		}
	}

	// The auctions, campaign by campaign and step by step, from their own
	// seed when set: the market above does not depend on it.
	if cfg.AuctionSeed != 0 {
		r = models.NewRand(cfg.AuctionSeed)
	}
	stepMs := cfg.Step.Milliseconds()
	steps := int(time.Duration(cfg.Days) * 24 * time.Hour / cfg.Step)
	startMs := cfg.Start.UnixMilli()
	capMicros := cfg.PriceCap * 1e6
	perStep := cfg.AuctionsPerDay * cfg.Step.Hours() / 24
	nk := uint64(cfg.Creatives)
	for ci := range l.Campaigns {
		c := &l.Campaigns[ci]
		c.StepStart = make([]int, 0, steps+1)
		c.Auctions = make([]Auction, 0, int(cfg.AuctionsPerDay*float64(cfg.Days)*1.1))
		for s := 0; s < steps; s++ {
			c.StepStart = append(c.StepStart, len(c.Auctions))
			t0 := startMs + int64(s)*stepMs
			off := time.Duration(s) * cfg.Step
			lvl := cfg.Curve[time.UnixMilli(t0).UTC().Hour()]
			priceF := 1.0
			if off >= cfg.Burst.From && off < cfg.Burst.To {
				lvl *= cfg.Burst.Traffic
				priceF = cfg.Burst.Price
			}
			first := len(c.Auctions)
			for pi := range l.Placements {
				cp := &c.Placements[pi]
				n := poisson(&r, perStep*lvl*l.Placements[pi].Share)
				for range n {
					a := Auction{TimeMs: t0 + int64(r.Float64()*float64(stepMs)), Placement: uint16(pi), Creative: uint8(r.Uint64() % nk)}
					price := math.Exp(mus[pi]+cfg.PriceSigmaWithin*r.NormFloat64()) * priceF * 1e6
					a.PriceMicros = uint32(math.Max(1, math.Min(math.Round(price), capMicros)))
					a.Click = r.Float64() < math.Min(cp.CTR*c.Creatives[a.Creative].CTREffect, 0.5)
					if a.Click && r.Float64() < cp.CVR {
						a.Conv = true
						a.DelayMs = max(delay(&r, cfg.Delay).Milliseconds(), 1)
					}
					c.TotalCostMicros += uint64(a.PriceMicros)
					c.Auctions = append(c.Auctions, a)
				}
			}
			slices.SortFunc(c.Auctions[first:], func(a, b Auction) int { return int(a.TimeMs - b.TimeMs) })
		}
		c.StepStart = append(c.StepStart, len(c.Auctions))
		l.TotalCostMicros += c.TotalCostMicros
	}
	return l, nil
}
