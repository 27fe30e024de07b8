package sim

import (
	"fmt"
	"math"
	"time"
)

// MarketConfig describes a generated auction log: the bid requests of
// Campaigns campaigns over Days, each with its placement, the creative the
// campaign would show, the market price (the highest competing bid, which
// the winner pays: second price) and the user's response (click,
// conversion, its delay), as in the iPinYou benchmark's logs (Zhang, Yuan,
// Wang: "Real-Time Bidding Benchmarking with iPinYou Dataset",
// arXiv:1407.7073, 2014), where each campaign has its own log.
//
// Per placement, shared by the campaigns: a share of the traffic by a Zipf
// law over a random order (independent of quality); a quality (the log of
// a CTR and a CVR, normal); a median market price, log-normal across
// placements with correlation PriceQualityCorr between its log and the
// placement's log value per impression (CTR x CVR). Per campaign: a CTR
// level and a CVR level (log-normal, CampaignSigma); per campaign and
// placement: a true CTR and CVR, log-normal across placements (most weak,
// a few strong), whose logs correlate CampaignQualityCorr with the
// placement's shared quality, and a value per conversion, log-normal; per
// creative: a share of the campaign's traffic (even: the ad server rotates
// them) and an effect multiplying the CTR, log-normal (CreativeSigma),
// scaled so that the campaign's creatives average 1. Per auction: a
// log-normal price around the placement's median (capped at PriceCap), a
// click with the campaign's CTR at the placement times the creative's
// effect, a conversion of a click with the CVR, after a delay drawn from
// Delay. Traffic follows Curve by hour (UTC) and the Burst.
//
// Money is in account currency; prices are held in integer micros so that
// spend is exact. docs/MODELS.md lists the defaults and where they come
// from.
type MarketConfig struct {
	// Seed draws the placements, campaigns and creatives (their traffic,
	// qualities and prices) and, unless AuctionSeed is set, the auctions.
	Seed uint64
	// AuctionSeed, when not 0, draws the auctions instead of Seed: a log
	// with the same Seed and another AuctionSeed is the same market
	// (placements, campaigns, creatives, qualities, prices) on other days,
	// as the iPinYou benchmark's training days precede its test days of
	// the same campaigns.
	AuctionSeed uint64
	// Start of the log (midnight UTC by default) and its length in days.
	Start time.Time
	Days  int
	// Step groups auctions: a strategy's bids are computed once per step,
	// and the events of its wins are counted at the step's start.
	Step time.Duration
	// AuctionsPerDay is the mean number of auctions a day of each campaign
	// (before the burst).
	AuctionsPerDay float64
	// Campaigns is the number of campaigns, each with Creatives creatives.
	Campaigns int
	Creatives int
	// Placements is the number of placements; ShareExponent the Zipf
	// exponent of their traffic shares.
	Placements    int
	ShareExponent float64
	// CTRMedian, CTRSigma: the log-normal of true CTRs across placements
	// (median over campaigns and placements, and standard deviation of the
	// log across placements); same for CVR (post-click).
	CTRMedian, CTRSigma float64
	CVRMedian, CVRSigma float64
	// CampaignSigma is the standard deviation of the log of a campaign's
	// CTR level and of its CVR level; CampaignQualityCorr the correlation
	// of a placement's log CTR (and log CVR) between two campaigns.
	CampaignSigma       float64
	CampaignQualityCorr float64
	// CreativeSigma is the standard deviation of the log of a creative's
	// effect on the CTR.
	CreativeSigma float64
	// ValueMedian, ValueSigma: the log-normal of the value of a conversion
	// across campaigns and placements.
	ValueMedian, ValueSigma float64
	// PriceMedian is the median market price of an impression (account
	// currency); PriceSigmaBetween the log standard deviation of the
	// placements' median prices, PriceSigmaWithin that of one placement's
	// prices around its median; PriceQualityCorr the correlation of a
	// placement's log median price with its shared log value per
	// impression; PriceCap the highest price (300 per thousand impressions
	// in the iPinYou logs' unit: not checked against the paper, see
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
		AuctionsPerDay: 300_000,
		Campaigns:      3,
		Creatives:      3,
		Placements:     40,
		ShareExponent:  0.8,
		// Mean CTR = median * exp((0.9^2 + 0.3^2)/2) = 0.42%: the
		// iPinYou campaign with the highest CTR (2997: 0.44% on its
		// training days, 0.34% on its test days); the other eight are at
		// 0.03% to 0.11%, too sparse to measure conversions in seconds.
		// Counts from the benchmark's first author's code
		// (docs/MODELS.md).
		CTRMedian: 0.00268, CTRSigma: 0.9,
		CVRMedian: 0.03, CVRSigma: 0.7,
		CampaignSigma: 0.3, CampaignQualityCorr: 0.7,
		CreativeSigma: 0.5,
		ValueMedian:   20, ValueSigma: 0.5,
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

// MarketPlacement is one placement of a log, shared by its campaigns.
type MarketPlacement struct {
	Name  string  `json:"name"`
	Share float64 `json:"share"`
	// PriceMedian is the placement's median market price (before the
	// burst).
	PriceMedian float64 `json:"price_median"`
}

// MarketCampaign is one campaign of a log: its creatives, its true rates
// at each placement, and its auctions.
type MarketCampaign struct {
	Name      string           `json:"name"`
	Creatives []MarketCreative `json:"creatives"`
	// Placements[i] is the campaign at the log's placement i.
	Placements []CampaignPlacement `json:"placements"`
	// Auctions are the campaign's entries in time order, grouped by step:
	// StepStart[i] is the index of step i's first auction, the last entry
	// is len(Auctions).
	Auctions  []Auction `json:"-"`
	StepStart []int     `json:"-"`
	// TotalCostMicros is the cost of buying every auction of the campaign.
	TotalCostMicros uint64 `json:"total_cost_micros"`
}

// MarketCreative is one creative of a campaign.
type MarketCreative struct {
	Name  string  `json:"name"`
	Share float64 `json:"share"`
	// CTREffect multiplies the CTR of every placement where it is shown.
	CTREffect float64 `json:"ctr_effect"`
}

// CampaignPlacement holds a campaign's true rates at one placement, before
// the creative's effect.
type CampaignPlacement struct {
	CTR   float64 `json:"ctr"`
	CVR   float64 `json:"cvr"`
	Value float64 `json:"value"`
}

// Auction is one entry of a campaign's log.
type Auction struct {
	// TimeMs is the auction's time, Unix ms.
	TimeMs int64
	// DelayMs is the click-to-conversion delay when Conv.
	DelayMs int64
	// PriceMicros is the market price: a bid above it wins and pays it.
	PriceMicros uint32
	Placement   uint16
	// Creative is the index of the campaign's creative the auction would
	// show.
	Creative    uint8
	Click, Conv bool
}

// MarketLog is a generated log: the placements and every campaign's
// auctions.
type MarketLog struct {
	Config     MarketConfig
	Placements []MarketPlacement
	Campaigns  []MarketCampaign
	// TotalCostMicros is the cost of buying every auction of every
	// campaign.
	TotalCostMicros uint64
}

// Steps returns the number of steps of the log.
func (l *MarketLog) Steps() int {
	if len(l.Campaigns) == 0 {
		return 0
	}
	return len(l.Campaigns[0].StepStart) - 1
}

func (cfg *MarketConfig) check() error {
	switch {
	case cfg.Days <= 0:
		return fmt.Errorf("invalid days %d; want > 0", cfg.Days)
	case cfg.Step <= 0 || (24*time.Hour)%cfg.Step != 0:
		return fmt.Errorf("invalid step %s; want a divisor of 24h", cfg.Step)
	case cfg.Placements <= 0 || cfg.Placements > math.MaxUint16:
		return fmt.Errorf("invalid placements %d; want 1..%d", cfg.Placements, math.MaxUint16)
	case cfg.Campaigns <= 0 || cfg.Campaigns > 100:
		return fmt.Errorf("invalid campaigns %d; want 1..100", cfg.Campaigns)
	case cfg.Creatives <= 0 || cfg.Creatives > math.MaxUint8:
		return fmt.Errorf("invalid creatives %d; want 1..%d", cfg.Creatives, math.MaxUint8)
	case !(cfg.AuctionsPerDay > 0):
		return fmt.Errorf("invalid auctions per day %v; want > 0", cfg.AuctionsPerDay)
	case !(cfg.CTRMedian > 0 && cfg.CTRMedian < 1 && cfg.CVRMedian > 0 && cfg.CVRMedian < 1):
		return fmt.Errorf("invalid CTR or CVR median; want in (0, 1)")
	case !(cfg.PriceMedian > 0 && cfg.PriceCap >= cfg.PriceMedian && cfg.PriceCap*1e6 < math.MaxUint32):
		return fmt.Errorf("invalid price median %v or cap %v", cfg.PriceMedian, cfg.PriceCap)
	case !(cfg.PriceQualityCorr >= -1 && cfg.PriceQualityCorr <= 1):
		return fmt.Errorf("invalid price-quality correlation %v; want in [-1, 1]", cfg.PriceQualityCorr)
	case !(cfg.CampaignQualityCorr >= -1 && cfg.CampaignQualityCorr <= 1):
		return fmt.Errorf("invalid campaign-quality correlation %v; want in [-1, 1]", cfg.CampaignQualityCorr)
	case cfg.CTRSigma < 0 || cfg.CVRSigma < 0 || cfg.ValueSigma < 0 || cfg.PriceSigmaBetween < 0 || cfg.PriceSigmaWithin < 0 ||
		cfg.CampaignSigma < 0 || cfg.CreativeSigma < 0:
		return fmt.Errorf("invalid negative sigma")
	}
	if cfg.Start.IsZero() {
		cfg.Start = time.Date(2025, 3, 3, 0, 0, 0, 0, time.UTC)
	}
	return nil
}
