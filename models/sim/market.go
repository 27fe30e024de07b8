package sim

import (
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/bidpulse/bidpulse/models"
)

// MarketConfig describes a generated auction log: one campaign's bid
// requests over Days, each with its placement, the market price (the
// highest competing bid, which the winner pays: second price) and the
// user's response (click, conversion, its delay), as in the iPinYou
// benchmark's logs (Zhang, Yuan, Wang: "Real-Time Bidding Benchmarking with
// iPinYou Dataset", arXiv:1407.7073, 2014).
//
// Per placement: a true CTR and CVR, each log-normal across placements
// (most placements weak, a few strong); a share of the traffic by a Zipf
// law over a random order (independent of quality); a median market price,
// log-normal across placements with correlation PriceQualityCorr between
// its log and the log of the placement's value per impression (CTR x CVR);
// a value per conversion, log-normal. Per auction: a log-normal price
// around the placement's median (capped at PriceCap), a click with the
// placement's CTR, a conversion of a click with its CVR, after a delay
// drawn from Delay. Traffic follows Curve by hour (UTC) and the Burst.
//
// Money is in account currency; prices are held in integer micros so that
// spend is exact. docs/MODELS.md lists the defaults and where they come
// from.
type MarketConfig struct {
	// Seed draws the placements (their traffic, qualities and prices) and,
	// unless AuctionSeed is set, the auctions.
	Seed uint64
	// AuctionSeed, when not 0, draws the auctions instead of Seed: a log
	// with the same Seed and another AuctionSeed is the same market
	// (placements, qualities, prices) on other days, as the iPinYou
	// benchmark's training days precede its test days of the same
	// campaigns.
	AuctionSeed uint64
	// Start of the log (midnight UTC by default) and its length in days.
	Start time.Time
	Days  int
	// Step groups auctions: a strategy's bids are computed once per step,
	// and the events of its wins are counted at the step's start.
	Step time.Duration
	// AuctionsPerDay is the mean number of auctions a day (before the
	// burst).
	AuctionsPerDay float64
	// Placements is the number of placements; ShareExponent the Zipf
	// exponent of their traffic shares.
	Placements    int
	ShareExponent float64
	// CTRMedian, CTRSigma: the log-normal of true CTRs across placements
	// (median and standard deviation of the log); same for CVR (post-click).
	CTRMedian, CTRSigma float64
	CVRMedian, CVRSigma float64
	// ValueMedian, ValueSigma: the log-normal of the value of a conversion
	// across placements.
	ValueMedian, ValueSigma float64
	// PriceMedian is the median market price of an impression (account
	// currency); PriceSigmaBetween the log standard deviation of the
	// placements' median prices, PriceSigmaWithin that of one placement's
	// prices around its median; PriceQualityCorr the correlation of a
	// placement's log median price with its log value per impression;
	// PriceCap the highest price (300 per thousand impressions in the
	// iPinYou logs' unit: not checked against the paper, see
	// docs/MODELS.md).
	PriceMedian       float64
	PriceSigmaBetween float64
	PriceSigmaWithin  float64
	PriceQualityCorr  float64
	PriceCap          float64
	// Curve is the traffic level by UTC hour (mean about 1).
	Curve [24]float64
	// Burst is the promotion: traffic and prices multiplied over a range.
	Burst MarketBurst
	// Delay is the click-to-conversion delay mixture.
	Delay []DelayComponent
}

// MarketBurst multiplies traffic by Traffic and prices by Price from From to
// To (offsets from Start).
type MarketBurst struct {
	From, To       time.Duration
	Traffic, Price float64
}

// DefaultMarket returns the calibrated market of docs/MODELS.md, seeded.
func DefaultMarket(seed uint64) MarketConfig {
	return MarketConfig{
		Seed:           seed,
		Start:          time.Date(2025, 3, 3, 0, 0, 0, 0, time.UTC),
		Days:           2,
		Step:           5 * time.Minute,
		AuctionsPerDay: 500_000,
		Placements:     60,
		ShareExponent:  0.8,
		// Mean CTR = median * exp(sigma^2/2) = 0.42%: the iPinYou
		// campaign with the highest CTR (2997: 0.44% on its training
		// days, 0.34% on its test days); the other eight are at 0.03% to
		// 0.11%, too sparse to measure conversions in seconds. Counts
		// from the benchmark's first author's code (docs/MODELS.md).
		CTRMedian: 0.0028, CTRSigma: 0.9,
		CVRMedian: 0.03, CVRSigma: 0.7,
		ValueMedian: 20, ValueSigma: 0.5,
		// Mean price = 0.000556 * exp(0.75^2/2) = 0.000736 per
		// impression, i.e. 73.6 per thousand: campaign 1458's mean
		// market price on its test days (the one price figure checked,
		// docs/MODELS.md).
		PriceMedian:       0.000556,
		PriceSigmaBetween: 0.45,
		PriceSigmaWithin:  0.6,
		PriceQualityCorr:  0.5,
		PriceCap:          0.003,
		Curve:             DiurnalCurve,
		Burst:             MarketBurst{From: 24*time.Hour + 18*time.Hour, To: 24*time.Hour + 20*time.Hour, Traffic: 3, Price: 1.25},
		Delay:             RealisticDelay,
	}
}

// MarketPlacement is one placement of a log, with its true parameters.
type MarketPlacement struct {
	Name  string  `json:"name"`
	Share float64 `json:"share"`
	CTR   float64 `json:"ctr"`
	CVR   float64 `json:"cvr"`
	Value float64 `json:"value"`
	// PriceMedian is the placement's median market price (before the
	// burst).
	PriceMedian float64 `json:"price_median"`
}

// Auction is one entry of a log.
type Auction struct {
	// TimeMs is the auction's time, Unix ms.
	TimeMs int64
	// DelayMs is the click-to-conversion delay when Conv.
	DelayMs int64
	// PriceMicros is the market price: a bid above it wins and pays it.
	PriceMicros uint32
	Placement   uint16
	Click, Conv bool
}

// MarketLog is a generated log: the auctions in time order, grouped by
// step.
type MarketLog struct {
	Config     MarketConfig
	Placements []MarketPlacement
	Auctions   []Auction
	// StepStart[i] is the index of step i's first auction; the last entry
	// is len(Auctions).
	StepStart []int
	// TotalCostMicros is the cost of buying every auction.
	TotalCostMicros uint64
}

// Steps returns the number of steps of the log.
func (l *MarketLog) Steps() int { return len(l.StepStart) - 1 }

func (cfg *MarketConfig) check() error {
	switch {
	case cfg.Days <= 0:
		return fmt.Errorf("invalid days %d; want > 0", cfg.Days)
	case cfg.Step <= 0 || (24*time.Hour)%cfg.Step != 0:
		return fmt.Errorf("invalid step %s; want a divisor of 24h", cfg.Step)
	case cfg.Placements <= 0 || cfg.Placements > math.MaxUint16:
		return fmt.Errorf("invalid placements %d; want 1..%d", cfg.Placements, math.MaxUint16)
	case !(cfg.AuctionsPerDay > 0):
		return fmt.Errorf("invalid auctions per day %v; want > 0", cfg.AuctionsPerDay)
	case !(cfg.CTRMedian > 0 && cfg.CTRMedian < 1 && cfg.CVRMedian > 0 && cfg.CVRMedian < 1):
		return fmt.Errorf("invalid CTR or CVR median; want in (0, 1)")
	case !(cfg.PriceMedian > 0 && cfg.PriceCap >= cfg.PriceMedian && cfg.PriceCap*1e6 < math.MaxUint32):
		return fmt.Errorf("invalid price median %v or cap %v", cfg.PriceMedian, cfg.PriceCap)
	case !(cfg.PriceQualityCorr >= -1 && cfg.PriceQualityCorr <= 1):
		return fmt.Errorf("invalid price-quality correlation %v; want in [-1, 1]", cfg.PriceQualityCorr)
	case cfg.CTRSigma < 0 || cfg.CVRSigma < 0 || cfg.ValueSigma < 0 || cfg.PriceSigmaBetween < 0 || cfg.PriceSigmaWithin < 0:
		return fmt.Errorf("invalid negative sigma")
	}
	if cfg.Start.IsZero() {
		cfg.Start = time.Date(2025, 3, 3, 0, 0, 0, 0, time.UTC)
	}
	return nil
}

// GenerateMarket draws the log of cfg. The same config (seeds included)
// gives the same log.
func GenerateMarket(cfg MarketConfig) (*MarketLog, error) {
	if err := cfg.check(); err != nil {
		return nil, fmt.Errorf("cannot generate the market: %w", err)
	}
	r := models.NewRand(cfg.Seed)
	l := &MarketLog{Config: cfg, Placements: make([]MarketPlacement, cfg.Placements)}
	mus := make([]float64, cfg.Placements)

	// The placements: quality first, then a price correlated with it.
	qs := math.Hypot(cfg.CTRSigma, cfg.CVRSigma)
	order := make([]int, cfg.Placements)
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
		z1, z2 := r.NormFloat64(), r.NormFloat64()
		p.CTR = math.Min(cfg.CTRMedian*math.Exp(cfg.CTRSigma*z1), 0.5)
		p.CVR = math.Min(cfg.CVRMedian*math.Exp(cfg.CVRSigma*z2), 0.9)
		zq := 0.0
		if qs > 0 {
			zq = (cfg.CTRSigma*z1 + cfg.CVRSigma*z2) / qs
		}
		rho := cfg.PriceQualityCorr
		zp := rho*zq + math.Sqrt(1-rho*rho)*r.NormFloat64()
		mus[i] = math.Log(cfg.PriceMedian) + cfg.PriceSigmaBetween*zp
		p.PriceMedian = math.Exp(mus[i])
		p.Value = cfg.ValueMedian * math.Exp(cfg.ValueSigma*r.NormFloat64())
		p.Share = 1 / math.Pow(float64(order[i]+1), cfg.ShareExponent)
		shares += p.Share
	}
	for i := range l.Placements {
		l.Placements[i].Share /= shares
	}

	// The auctions, step by step, from their own seed when set: the
	// placements above do not depend on it.
	if cfg.AuctionSeed != 0 {
		r = models.NewRand(cfg.AuctionSeed)
	}
	stepMs := cfg.Step.Milliseconds()
	steps := int(time.Duration(cfg.Days) * 24 * time.Hour / cfg.Step)
	startMs := cfg.Start.UnixMilli()
	capMicros := cfg.PriceCap * 1e6
	perStep := cfg.AuctionsPerDay * cfg.Step.Hours() / 24
	l.StepStart = make([]int, 0, steps+1)
	l.Auctions = make([]Auction, 0, int(cfg.AuctionsPerDay*float64(cfg.Days)*1.1))
	for s := 0; s < steps; s++ {
		l.StepStart = append(l.StepStart, len(l.Auctions))
		t0 := startMs + int64(s)*stepMs
		off := time.Duration(s) * cfg.Step
		lvl := cfg.Curve[time.UnixMilli(t0).UTC().Hour()]
		priceF := 1.0
		if off >= cfg.Burst.From && off < cfg.Burst.To {
			lvl *= cfg.Burst.Traffic
			priceF = cfg.Burst.Price
		}
		first := len(l.Auctions)
		for pi := range l.Placements {
			p := &l.Placements[pi]
			n := poisson(&r, perStep*lvl*p.Share)
			for k := uint64(0); k < n; k++ {
				a := Auction{TimeMs: t0 + int64(r.Float64()*float64(stepMs)), Placement: uint16(pi)}
				price := math.Exp(mus[pi]+cfg.PriceSigmaWithin*r.NormFloat64()) * priceF * 1e6
				a.PriceMicros = uint32(math.Max(1, math.Min(math.Round(price), capMicros)))
				a.Click = r.Float64() < p.CTR
				if a.Click && r.Float64() < p.CVR {
					a.Conv = true
					a.DelayMs = max(delay(&r, cfg.Delay).Milliseconds(), 1)
				}
				l.TotalCostMicros += uint64(a.PriceMicros)
				l.Auctions = append(l.Auctions, a)
			}
		}
		slices.SortFunc(l.Auctions[first:], func(a, b Auction) int { return int(a.TimeMs - b.TimeMs) })
	}
	l.StepStart = append(l.StepStart, len(l.Auctions))
	return l, nil
}

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
	// the placements by CTR: how long the tail is.
	TopShareClicks float64 `json:"top_tenth_click_share"`
}

// Stats computes the log's statistics.
func (l *MarketLog) Stats() MarketStats {
	var s MarketStats
	s.Auctions = len(l.Auctions)
	prices := make([]uint32, len(l.Auctions))
	clicksBy := make([]int, len(l.Placements))
	for i, a := range l.Auctions {
		prices[i] = a.PriceMicros
		if a.Click {
			s.Clicks++
			clicksBy[a.Placement]++
		}
		if a.Conv {
			s.Conversions++
		}
	}
	if s.Auctions == 0 {
		return s
	}
	s.CTR = float64(s.Clicks) / float64(s.Auctions)
	if s.Clicks > 0 {
		s.CVR = float64(s.Conversions) / float64(s.Clicks)
		s.ECPC = float64(l.TotalCostMicros) / 1e6 / float64(s.Clicks)
	}
	s.CPM = float64(l.TotalCostMicros) / 1e3 / float64(s.Auctions)
	slices.Sort(prices)
	q := func(f float64) float64 { return float64(prices[int(f*float64(len(prices)-1))]) / 1e6 }
	s.PriceP50, s.PriceP90, s.PriceP99 = q(0.5), q(0.9), q(0.99)
	idx := make([]int, len(l.Placements))
	for i := range idx {
		idx[i] = i
	}
	slices.SortFunc(idx, func(a, b int) int {
		switch {
		case l.Placements[a].CTR > l.Placements[b].CTR:
			return -1
		case l.Placements[a].CTR < l.Placements[b].CTR:
			return 1
		}
		return 0
	})
	top := 0
	for _, i := range idx[:max(len(idx)/10, 1)] {
		top += clicksBy[i]
	}
	if s.Clicks > 0 {
		s.TopShareClicks = float64(top) / float64(s.Clicks)
	}
	return s
}
