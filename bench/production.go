package bench

import (
	"fmt"
	"io"
	"math"
	"strings"
	"time"
)

// ProductionSettings are the settings of the production scenario that its zero Options
// fields take.
type ProductionSettings struct {
	// EventRate is in events/s, over the whole run.
	EventRate float64
	// Duration is the whole run's length (not each phase's).
	Duration time.Duration
	// Keys is the live keys the events create: the service's default --max-keys, which the
	// key space never exceeds (see keyDims).
	Keys int
	// BatchMix is the mix of event message sizes: most messages are small, most events travel
	// in large ones (see BatchMix.EventShares).
	BatchMix string
	// BidCapacityPercent is the bid rate as a percentage of the capacity measured first.
	BidCapacityPercent float64
	// CheckpointInterval and RemoteCheckpointInterval are passed to the spawned service: a
	// checkpoint every 30 s, each also kept in NATS, so the stream is trimmed every 30 s.
	CheckpointInterval, RemoteCheckpointInterval time.Duration
	// ReadyTimeout bounds the restart: the service loads a checkpoint of a million keys and
	// replays the stream after it before /readyz answers 200.
	ReadyTimeout time.Duration
}

// ProductionDefaults returns the production scenario's defaults (the bench command reads them
// for its flags too, so an unset flag means the same).
func ProductionDefaults() ProductionSettings {
	return ProductionSettings{
		EventRate:                100_000,
		Duration:                 10 * time.Minute,
		Keys:                     1_000_000,
		BatchMix:                 "100:40,1000:30,4000:20,10000:10",
		BidCapacityPercent:       50,
		CheckpointInterval:       30 * time.Second,
		RemoteCheckpointInterval: 30 * time.Second,
		ReadyTimeout:             5 * time.Minute,
	}
}

// productionRecovery caps the production scenario's recovery phase (from the kill on).
const productionRecovery = time.Minute

// productionDefaults fills the zero fields of a production run.
func (o *Options) productionDefaults() {
	d := ProductionDefaults()
	if o.EventRate == 0 {
		o.EventRate = d.EventRate
	}
	if o.Duration == 0 {
		o.Duration = d.Duration
	}
	if o.Keys == 0 {
		o.Keys = d.Keys
	}
	if o.BatchMix == nil {
		o.BatchMix, _ = ParseBatchMix(d.BatchMix)
	}
	if o.BidRate == 0 && o.BidCapacityPercent == 0 {
		o.BidCapacityPercent = d.BidCapacityPercent
	}
	if o.CheckpointInterval == 0 {
		o.CheckpointInterval = d.CheckpointInterval
	}
	if o.RemoteCheckpointInterval == 0 {
		o.RemoteCheckpointInterval = d.RemoteCheckpointInterval
	}
	if o.ReadyTimeout == 0 {
		o.ReadyTimeout = d.ReadyTimeout
	}
}

// keyDims returns the campaigns, creatives per campaign and placements of the largest key
// space near a cube whose keys stay within keys. Under the default rollups (campaign,
// campaign/creative, campaign/placement, campaign/creative/placement) a space of C campaigns,
// R creatives and P placements whose every cell has seen an event holds
// C + C·R + C·P + C·R·P = C·(1+R)·(1+P) keys: for 1,000,000, 100 campaigns of 39 creatives
// over 249 placements, exactly 1,000,000. Other rollups (--config) give other counts.
func keyDims(keys int) (campaigns, creatives, placements int) {
	keys = max(keys, 4)
	campaigns = min(max(1, int(math.Round(math.Cbrt(float64(keys))))), keys/4)
	per := keys / campaigns // (1+R)·(1+P)
	r1 := min(max(2, int(math.Round(math.Sqrt(float64(per)/6.25)))), per/2)
	p1 := per / r1
	return campaigns, r1 - 1, p1 - 1
}

// keysOf returns the keys a space of campaigns x creatives x placements holds under the
// default rollups once every cell has seen an event.
func keysOf(campaigns, creatives, placements int) int {
	return campaigns * (1 + creatives) * (1 + placements)
}

// sweep publishes one impression per cell of the key space, in messages of the mix's largest
// size, so that every key the run's traffic can touch is live before the measurements.
func (r *runner) sweep(send func(data []byte, t *Tally) error) error {
	cells := r.syn.NumCells()
	size := max(r.o.BatchMix.largest(), r.o.EventBatch)
	for first := 0; first < cells; first += size {
		data, t := r.events.sweep(first, min(size, cells-first), time.Now().UnixMilli())
		if err := send(data, &t); err != nil {
			return err
		}
	}
	return nil
}

// ProductionResult is what the production scenario adds to a report: the key space, the
// message sizes, the stream's bytes and the service's RSS over time, the checkpoints and the
// longest ingest pause, and the bids in the seconds a checkpoint was written. Sizes in MiB.
type ProductionResult struct {
	Campaigns  int `json:"campaigns"`
	Creatives  int `json:"creatives"`
	Placements int `json:"placements"`
	Cells      int `json:"cells"`
	// ExpectedKeys is what the cells make under the default rollups; KeysSeen the highest
	// /v1/stats keys sampled; MaxKeys the service's key cap.
	ExpectedKeys int    `json:"expected_keys"`
	KeysSeen     uint64 `json:"keys_seen"`
	MaxKeys      uint64 `json:"max_keys"`
	// PreloadS is how long the preload took to publish and be received: the sweep of one
	// impression per cell (and the --preload events, if any), before the measurements.
	PreloadS float64          `json:"preload_s"`
	BatchMix []BatchMixFigure `json:"batch_mix"`
	// PublishedBytes is the event JSON handed to NATS, sweep included.
	PublishedBytes uint64 `json:"published_bytes"`
	// StreamMB is buffer.bytes of /v1/stats, RSSMB the service's VmRSS, one sample a second.
	StreamMB SeriesSummary `json:"stream_mb"`
	RSSMB    SeriesSummary `json:"rss_mb"`
	// Checkpoints, KeptInNATS, Trims and TrimmedMessages are counted over the run, over
	// both service processes; Processes is how many were sampled.
	Checkpoints     uint64 `json:"checkpoints"`
	KeptInNATS      uint64 `json:"kept_in_nats"`
	Trims           uint64 `json:"trims"`
	TrimmedMessages uint64 `json:"trimmed_messages"`
	Processes       int    `json:"processes"`
	// MaxIngestPauseMs is the longest checkpoint.max_pause_ms of any sample: the longest time
	// ingest stood still for a checkpoint.
	MaxIngestPauseMs float64          `json:"max_ingest_pause_ms"`
	CheckpointMarks  []CheckpointMark `json:"checkpoint_marks"`
	// AroundCheckpoints compares, per phase, the seconds a checkpoint was written with the others.
	AroundCheckpoints []CheckpointBids `json:"around_checkpoints"`
}

// BatchMixFigure is one message size of the mix and what was sent of it.
type BatchMixFigure struct {
	Events     int     `json:"events"`
	Weight     float64 `json:"weight"`
	Messages   uint64  `json:"messages"`
	EventsSent uint64  `json:"events_sent"`
	// EventShare is the share of the run's events that travelled in messages of this size.
	EventShare float64 `json:"event_share"`
}

// SeriesSummary summarises a once-a-second series: over the run, and per third of it.
type SeriesSummary struct {
	Samples int     `json:"samples"`
	Min     float64 `json:"min"`
	Max     float64 `json:"max"`
	Mean    float64 `json:"mean"`
	First   float64 `json:"first"`
	Last    float64 `json:"last"`
	// Thirds are the first, middle and last thirds of the run by time.
	Thirds [3]ThirdSummary `json:"thirds"`
	// GrowthPct is the last third's maximum over the middle third's, in percent above 100:
	// the growth after the first third, the warm-up (RSS grows while the stream and the
	// windows fill), told apart from a restart's dip by taking maxima.
	GrowthPct float64 `json:"growth_pct"`
}

// ThirdSummary is a third of a series.
type ThirdSummary struct {
	Samples int     `json:"samples"`
	Min     float64 `json:"min"`
	Max     float64 `json:"max"`
	Mean    float64 `json:"mean"`
}

// CheckpointBids are one phase's per-second bid figures (ms), in the seconds a checkpoint was
// being written and in the others.
type CheckpointBids struct {
	Phase             string  `json:"phase"`
	Seconds           int     `json:"seconds"`
	CheckpointSeconds int     `json:"checkpoint_seconds"`
	CheckpointP99Max  float64 `json:"checkpoint_p99_max"`
	CheckpointMaxMax  float64 `json:"checkpoint_max_max"`
	OtherP99Median    float64 `json:"other_p99_median"`
	OtherP99Max       float64 `json:"other_p99_max"`
	OtherMaxMax       float64 `json:"other_max_max"`
	// Timeouts are the late, timed-out and expired requests of those seconds.
	CheckpointTimeouts uint64 `json:"checkpoint_timeouts"`
	OtherTimeouts      uint64 `json:"other_timeouts"`
}

// summarise returns the summary of the samples (t, v) of a run of length total seconds.
func summarise(t, v []float64, total float64) SeriesSummary {
	s := SeriesSummary{Samples: len(v)}
	if len(v) == 0 {
		return s
	}
	s.Min, s.Max, s.First, s.Last = v[0], v[0], v[0], v[len(v)-1]
	var sum float64
	var sums [3]float64
	for i, x := range v {
		s.Min, s.Max = min(s.Min, x), max(s.Max, x)
		sum += x
		k := min(2, max(0, int(math.Ceil(3*t[i]/total))-1)) // (0, total/3] is the first third
		th := &s.Thirds[k]
		if th.Samples == 0 {
			th.Min, th.Max = x, x
		}
		th.Samples++
		th.Min, th.Max = min(th.Min, x), max(th.Max, x)
		sums[k] += x
	}
	s.Mean = sum / float64(len(v))
	for k := range s.Thirds {
		if n := s.Thirds[k].Samples; n > 0 {
			s.Thirds[k].Mean = sums[k] / float64(n)
		}
	}
	if mid := s.Thirds[1].Max; mid > 0 && s.Thirds[2].Samples > 0 {
		s.GrowthPct = 100 * (s.Thirds[2].Max/mid - 1)
	}
	return s
}

// productionResult builds the production figures once the run and the drain are over.
func (r *runner) productionResult(preload time.Duration, final *ServiceStats) *ProductionResult {
	o := &r.o
	t := &r.retention
	if final != nil {
		t.observe(final)
	}
	t.markSeconds(r.rep.Series)
	p := &ProductionResult{
		Campaigns: o.Campaigns, Creatives: o.Creatives, Placements: o.Placements,
		Cells: r.syn.NumCells(), ExpectedKeys: keysOf(o.Campaigns, o.Creatives, o.Placements),
		KeysSeen: t.maxKey, PreloadS: preload.Seconds(), PublishedBytes: r.pubBytes.Load(),
		Checkpoints: t.written, KeptInNATS: t.keptInNATS, Trims: t.trims, TrimmedMessages: t.trimmed,
		Processes: t.processes, MaxIngestPauseMs: t.maxPauseMs, CheckpointMarks: t.marks,
	}
	if final != nil {
		p.MaxKeys = final.MaxKeys
	}
	if r.sizer != nil {
		var events uint64
		for _, n := range r.sizer.events {
			events += n
		}
		for i, b := range r.sizer.mix {
			f := BatchMixFigure{Events: b.Events, Weight: b.Weight, Messages: r.sizer.messages[i], EventsSent: r.sizer.events[i]}
			if events > 0 {
				f.EventShare = float64(f.EventsSent) / float64(events)
			}
			p.BatchMix = append(p.BatchMix, f)
		}
	}
	var ts, stream, tr, rss []float64
	for _, s := range r.rep.Series {
		if s.StreamBytes != nil {
			ts, stream = append(ts, s.T), append(stream, float64(*s.StreamBytes)/(1<<20))
		}
		if s.RSSMB != nil {
			tr, rss = append(tr, s.T), append(rss, *s.RSSMB)
		}
	}
	p.StreamMB = summarise(ts, stream, r.rep.DurationS)
	p.RSSMB = summarise(tr, rss, r.rep.DurationS)
	for _, ph := range r.rep.Phases {
		cb := CheckpointBids{Phase: ph.Name}
		var other []float64
		for _, s := range r.rep.Series {
			if s.Phase != ph.Name {
				continue
			}
			cb.Seconds++
			if s.Checkpoint {
				cb.CheckpointSeconds++
				cb.CheckpointP99Max = max(cb.CheckpointP99Max, s.P99)
				cb.CheckpointMaxMax = max(cb.CheckpointMaxMax, s.Max)
				cb.CheckpointTimeouts += s.Timeouts
				continue
			}
			other = append(other, s.P99)
			cb.OtherP99Max = max(cb.OtherP99Max, s.P99)
			cb.OtherMaxMax = max(cb.OtherMaxMax, s.Max)
			cb.OtherTimeouts += s.Timeouts
		}
		cb.OtherP99Median = median(other)
		p.AroundCheckpoints = append(p.AroundCheckpoints, cb)
	}
	return p
}

// notes returns the warnings the production figures call for.
func (p *ProductionResult) notes() []string {
	var n []string
	if p.KeysSeen < uint64(p.ExpectedKeys) {
		n = append(n, fmt.Sprintf("production: the service held at most %d keys, fewer than the %d the key space makes (a non-default rollup config, or keys refused)", p.KeysSeen, p.ExpectedKeys))
	}
	if p.MaxKeys > 0 && uint64(p.ExpectedKeys) > p.MaxKeys {
		n = append(n, fmt.Sprintf("production: the key space makes %d keys, over the service's --max-keys %d: the events past it are refused as overflow", p.ExpectedKeys, p.MaxKeys))
	}
	if p.Trims == 0 && p.StreamMB.Samples > 0 {
		n = append(n, "production: the stream was never trimmed during the run: it grows with all traffic (is --remote-checkpoint-interval shorter than the run?)")
	}
	if g := p.RSSMB.GrowthPct; g > 25 {
		n = append(n, fmt.Sprintf("production: the service's largest RSS grew %.0f%% from the middle third of the run to the last", g))
	}
	if g := p.StreamMB.GrowthPct; g > 50 {
		n = append(n, fmt.Sprintf("production: the stream's largest size grew %.0f%% from the middle third of the run to the last", g))
	}
	return n
}

// WriteText writes the production figures.
func (p *ProductionResult) WriteText(w io.Writer) {
	fmt.Fprintf(w, "production: %d campaigns x %d creatives x %d placements = %s cells, %s keys under the default rollups; the service held up to %s (max-keys %s); preload of one impression per cell %.1fs\n",
		p.Campaigns, p.Creatives, p.Placements, fmtInt(int64(p.Cells)), fmtInt(int64(p.ExpectedKeys)), fmtInt(int64(p.KeysSeen)), fmtInt(int64(p.MaxKeys)), p.PreloadS)
	if len(p.BatchMix) > 0 {
		parts := make([]string, len(p.BatchMix))
		for i, b := range p.BatchMix {
			parts[i] = fmt.Sprintf("%s events: %s messages, %.1f%% of the events", fmtInt(int64(b.Events)), fmtInt(int64(b.Messages)), 100*b.EventShare)
		}
		fmt.Fprintf(w, "  messages by size: %s\n", strings.Join(parts, "; "))
	}
	fmt.Fprintf(w, "  published %.2f GiB of event JSON (sweep included)\n", float64(p.PublishedBytes)/(1<<30))
	series := func(name string, s *SeriesSummary) {
		if s.Samples == 0 {
			fmt.Fprintf(w, "  %s: no samples\n", name)
			return
		}
		fmt.Fprintf(w, "  %s: %d samples, min %.0f, max %.0f, mean %.0f MiB; by third (min/mean/max): %.0f/%.0f/%.0f, %.0f/%.0f/%.0f, %.0f/%.0f/%.0f; max of the last third vs the middle %+.1f%%\n",
			name, s.Samples, s.Min, s.Max, s.Mean,
			s.Thirds[0].Min, s.Thirds[0].Mean, s.Thirds[0].Max, s.Thirds[1].Min, s.Thirds[1].Mean, s.Thirds[1].Max,
			s.Thirds[2].Min, s.Thirds[2].Mean, s.Thirds[2].Max, s.GrowthPct)
	}
	series("stream bytes (buffer.bytes)", &p.StreamMB)
	series("service RSS (VmRSS)", &p.RSSMB)
	fmt.Fprintf(w, "  stream trimmed %d times (%s messages); %d checkpoints written, %d kept in NATS, over %d service processes; longest ingest pause %.3f ms (checkpoint.max_pause_ms)\n",
		p.Trims, fmtInt(int64(p.TrimmedMessages)), p.Checkpoints, p.KeptInNATS, p.Processes, p.MaxIngestPauseMs)
	for _, c := range p.AroundCheckpoints {
		fmt.Fprintf(w, "  bids, phase %s: %d of %d seconds during a checkpoint: per-second p99 up to %s ms, max up to %s ms, %d timeouts; other seconds: p99 median %s ms, up to %s ms, max up to %s ms, %d timeouts\n",
			c.Phase, c.CheckpointSeconds, c.Seconds, ms(c.CheckpointP99Max), ms(c.CheckpointMaxMax), c.CheckpointTimeouts,
			ms(c.OtherP99Median), ms(c.OtherP99Max), ms(c.OtherMaxMax), c.OtherTimeouts)
	}
}
