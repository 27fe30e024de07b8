package bidder

import (
	"strconv"
	"time"

	"github.com/valyala/fasthttp"
	"github.com/valyala/fastjson"

	"github.com/bidpulse/bidpulse/bidder/event"
	"github.com/bidpulse/bidpulse/bidder/ingest"
	"github.com/bidpulse/bidpulse/windows"
)

// maxBatchItems bounds POST /v1/multipliers.
const maxBatchItems = 1000

// GET /v1/multiplier?campaign=..[&creative=..&placement=..&device=..&country=..&site=..][&explain=1]
func (s *Service) handleMultiplier(ctx *fasthttp.RequestCtx) {
	sc := getScratch()
	defer putScratch(sc)
	explain := false
	for k, v := range ctx.QueryArgs().All() {
		if d, ok := dimByName(k); ok {
			if err := sc.setDim(d, v); err != nil {
				writeError(ctx, fasthttp.StatusBadRequest, err.Error())
				return
			}
			continue
		}
		if string(k) == "explain" {
			b, ok := parseBool(v)
			if !ok {
				writeError(ctx, fasthttp.StatusBadRequest, "explain must be 0 or 1")
				return
			}
			explain = b
			continue
		}
		writeError(ctx, fasthttp.StatusBadRequest, "unknown parameter "+string(k)+"; known: "+knownDims+", explain")
		return
	}
	if len(sc.Vals[windows.DimCampaign]) == 0 {
		writeError(ctx, fasthttp.StatusBadRequest, "missing campaign")
		return
	}
	s.decide(sc, s.clock.NowMs())
	sc.out = s.appendAnswer(sc.out[:0], &sc.a, explain)
	writeJSON(ctx, fasthttp.StatusOK, sc.out)
}

var batchParserPool fastjson.ParserPool

// POST /v1/multipliers: a JSON array of request objects -> an array of
// answers in the same order; an invalid item gets {"error":..} in its slot.
// The common shape takes the fast path (batch_fast.go); what follows is the
// general path, which answers everything else.
func (s *Service) handleMultipliers(ctx *fasthttp.RequestCtx) {
	// explain carries the policy's inputs: with a read token configured, an
	// item asking for it needs the token (http_auth.go).
	denyExplain := s.explainDenied(ctx)
	if s.answerBatchFast(ctx, denyExplain) {
		return
	}
	p := batchParserPool.Get()
	defer batchParserPool.Put(p)
	v, err := p.ParseBytes(ctx.PostBody())
	if err != nil {
		writeError(ctx, fasthttp.StatusBadRequest, "body is not valid JSON: "+err.Error())
		return
	}
	items, err := v.Array()
	if err != nil {
		writeError(ctx, fasthttp.StatusBadRequest, "body must be a JSON array of request objects")
		return
	}
	if len(items) > maxBatchItems {
		writeError(ctx, fasthttp.StatusRequestEntityTooLarge, "too many items: the limit is 1000 per request")
		return
	}
	sc := getScratch()
	defer putScratch(sc)
	now := s.clock.NowMs()
	out := append(sc.out[:0], '[')
	for i, item := range items {
		if i > 0 {
			out = append(out, ',')
		}
		explain, err := sc.parseItem(item)
		if err == nil && explain && denyExplain {
			err = errExplainToken
		}
		if err != nil {
			out = appendItemError(out, err)
			continue
		}
		s.decide(sc, now)
		out = s.appendAnswer(out, &sc.a, explain)
	}
	out = append(out, ']')
	sc.out = out
	writeJSON(ctx, fasthttp.StatusOK, out)
}

// parseItem reads one batch item into sc.Vals. scanItem (batch_fast.go)
// follows it for the common shape: a change here needs one there, which
// FuzzBatchParse would point out.
func (sc *bidScratch) parseItem(item *fastjson.Value) (explain bool, err error) {
	sc.Vals.Reset()
	obj, e := item.Object()
	if e != nil {
		return false, queryError("item is not a JSON object")
	}
	obj.Visit(func(k []byte, v *fastjson.Value) {
		if err != nil {
			return
		}
		if d, ok := dimByName(k); ok {
			if v.Type() == fastjson.TypeNull {
				return
			}
			b, e := v.StringBytes()
			if e != nil {
				err = queryError(windows.DimNames[d] + " must be a string")
				return
			}
			err = sc.setDim(d, b)
			return
		}
		if string(k) == "explain" {
			switch v.Type() {
			case fastjson.TypeTrue:
				explain = true
			case fastjson.TypeFalse, fastjson.TypeNull:
			case fastjson.TypeNumber:
				explain = v.GetInt() != 0
			default:
				err = queryError("explain must be a boolean")
			}
			return
		}
		err = queryError("unknown field " + string(k) + "; known: " + knownDims + ", explain")
	})
	if err == nil && len(sc.Vals[windows.DimCampaign]) == 0 {
		err = queryError("missing campaign")
	}
	return explain, err
}

// GET /v1/rates?campaign=..[&...]: every span of the exact rollup formed by
// the dimensions given.
func (s *Service) handleRates(ctx *fasthttp.RequestCtx) {
	sc := getScratch()
	defer putScratch(sc)
	for k, v := range ctx.QueryArgs().All() {
		d, ok := dimByName(k)
		if !ok {
			writeError(ctx, fasthttp.StatusBadRequest, "unknown parameter "+string(k)+"; known: "+knownDims)
			return
		}
		if err := sc.setDim(d, v); err != nil {
			writeError(ctx, fasthttp.StatusBadRequest, err.Error())
			return
		}
	}
	if len(sc.Vals[windows.DimCampaign]) == 0 {
		writeError(ctx, fasthttp.StatusBadRequest, "missing campaign")
		return
	}
	lvl, ok := s.rollups.ByMask(sc.Vals.Mask())
	if !ok {
		writeError(ctx, fasthttp.StatusBadRequest, "no configured rollup for "+maskName(sc.Vals.Mask())+"; configured rollups: "+joinNames(s.rollups.Names()))
		return
	}
	sc.Key = windows.AppendKey(sc.Key[:0], lvl, s.rollups, &sc.Vals)
	var spans [windows.NumSpans]windows.Counts
	s.store.Read(sc.Key, s.clock.NowMs(), &spans)
	b := append(sc.out[:0], `{"level":`...)
	b = appendStr(b, s.rollups.Levels[lvl].Name)
	b = append(b, `,"key":`...)
	b = s.appendKeyObject(b, lvl, &sc.Vals)
	b = append(b, `,"windows":{`...)
	for sp := windows.Span(0); sp < windows.NumSpans; sp++ {
		if sp > 0 {
			b = append(b, ',')
		}
		b = appendKeyField(b, sp.String())
		b = appendRates(b, &spans[sp])
	}
	b = append(b, "}}"...)
	sc.out = b
	writeJSON(ctx, fasthttp.StatusOK, b)
}

// appendKeyObject appends {"campaign":..,...} with the level's dimensions.
func (s *Service) appendKeyObject(b []byte, lvl int, v *windows.Values) []byte {
	b = append(b, '{')
	for i, d := range s.rollups.Levels[lvl].Dims {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendKeyField(b, windows.DimNames[d])
		b = appendString(b, v[d])
	}
	return append(b, '}')
}

func appendRates(b []byte, c *windows.Counts) []byte {
	b = append(b, `{"impressions":`...)
	b = appendUint(b, c.Impressions)
	b = append(b, `,"clicks":`...)
	b = appendUint(b, c.Clicks)
	b = append(b, `,"conversions":`...)
	b = appendUint(b, c.Conversions)
	b = append(b, `,"cost":`...)
	b = appendMoney(b, c.CostMicros)
	b = append(b, `,"value":`...)
	b = appendMoney(b, c.ValueMicros)
	b = append(b, `,"ctr":`...)
	b = appendFloat(b, c.CTR())
	b = append(b, `,"cvr":`...)
	b = appendFloat(b, c.CVR())
	b = append(b, `,"cpa":`...)
	if c.Conversions > 0 {
		b = appendFloat(b, float64(c.CostMicros)/1e6/float64(c.Conversions))
	} else {
		b = append(b, '0')
	}
	b = append(b, `,"roas":`...)
	if c.CostMicros > 0 {
		b = appendFloat(b, float64(c.ValueMicros)/float64(c.CostMicros))
	} else {
		b = append(b, '0')
	}
	return append(b, '}')
}

func maskName(mask uint8) string {
	name := ""
	for d := windows.Dim(0); d < windows.NumDims; d++ {
		if mask&(1<<d) != 0 {
			if name != "" {
				name += "/"
			}
			name += d.String()
		}
	}
	return name
}

func joinNames(names []string) string {
	out := ""
	for i, n := range names {
		if i > 0 {
			out += ", "
		}
		out += n
	}
	return out
}

// GET /v1/stats
func (s *Service) handleStats(ctx *fasthttp.RequestCtx) {
	st, is := s.stats, s.ingest.Stats()
	b := append(make([]byte, 0, 512), `{"received":`...)
	b = appendUint(b, is.Received.Get())
	b = append(b, `,"counted":`...)
	b = appendUint(b, is.Counted.Get())
	b = append(b, `,"duplicates":`...)
	b = appendUint(b, is.Duplicates.Get())
	b = append(b, `,"rejected":{`...)
	for r := event.Reason(1); r < event.NumReasons; r++ {
		if r > 1 {
			b = append(b, ',')
		}
		b = appendKeyField(b, event.ReasonNames[r])
		b = appendUint(b, is.Rejected[r].Get())
	}
	b = append(b, `},"rejected_total":`...)
	b = appendUint(b, is.RejectedTotal())
	b = append(b, `,"late":`...)
	b = appendUint(b, is.Late.Get())
	b = append(b, `,"future":`...)
	b = appendUint(b, is.Future.Get())
	b = append(b, `,"overflow":`...)
	b = appendUint(b, is.Overflow.Get())
	b = append(b, `,"dropped_messages":`...)
	b = appendUint(b, uint64(s.ingest.Dropped()))
	b = append(b, `,"keys":`...)
	b = appendUint(b, uint64(s.store.Len()))
	b = append(b, `,"max_keys":`...)
	b = appendUint(b, uint64(s.store.MaxKeys()))
	b = append(b, `,"counted_by_type":{`...)
	for t := event.Type(1); t < event.NumTypes; t++ {
		if t > 1 {
			b = append(b, ',')
		}
		b = appendKeyField(b, t.String())
		b = appendUint(b, is.ByType[t].Get())
	}
	msgs, bytes := s.ingest.Pending()
	b = append(b, `},"messages":`...)
	b = appendUint(b, is.Messages.Get())
	b = append(b, `,"pending_messages":`...)
	b = appendUint(b, uint64(msgs))
	b = append(b, `,"pending_bytes":`...)
	b = appendUint(b, uint64(bytes))
	b = append(b, `,"saturated_adds":`...)
	b = appendUint(b, s.store.Saturated())
	b = append(b, `,"keys_evicted":`...)
	b = appendUint(b, st.evicted.Get())
	b = append(b, `,"ingest_lag_ms":`...)
	b = appendUint(b, uint64(s.ingestLagMs()))
	b = append(b, `,"buffer":{"kind":`...)
	js, jsMode := s.ingest.Stream()
	if jsMode {
		b = appendStr(b, "stream")
		b = append(b, `,"messages":`...)
		b = appendUint(b, js.Msgs)
		b = append(b, `,"bytes":`...)
		b = appendUint(b, js.Bytes)
		b = append(b, `,"max_bytes":`...)
		b = strconv.AppendInt(b, s.opts.StreamMaxBytes, 10)
	} else {
		b = appendStr(b, "subscription")
		b = append(b, `,"messages":`...)
		b = appendUint(b, uint64(msgs))
		b = append(b, `,"bytes":`...)
		b = appendUint(b, uint64(bytes))
		b = append(b, `,"max_messages":`...)
		b = strconv.AppendInt(b, int64(s.opts.PendingMsgs), 10)
		b = append(b, `,"max_bytes":`...)
		b = strconv.AppendInt(b, int64(s.opts.PendingBytes), 10)
	}
	b = append(b, `,"fill":`...)
	b = appendRounded(b, s.bufferFill())
	b = append(b, '}')
	if jsMode {
		b = append(b, `,"stream":{"name":`...)
		b = appendStr(b, s.opts.Stream)
		b = append(b, `,"applied_seq":`...)
		b = appendUint(b, js.Applied)
		b = append(b, `,"first_seq":`...)
		b = appendUint(b, js.FirstSeq)
		b = append(b, `,"last_seq":`...)
		b = appendUint(b, js.LastSeq)
		b = append(b, `,"consumer":`...)
		b = appendStr(b, js.Consumer)
		b = append(b, `,"consumer_pending":`...)
		b = appendUint(b, js.ConsumerPending)
		b = append(b, `,"consumer_ack_pending":`...)
		b = appendUint(b, uint64(js.AckPending))
		b = append(b, `,"lost_messages":`...)
		b = appendUint(b, is.StreamGap.Get())
		b = append(b, `,"redelivered_skipped":`...)
		b = appendUint(b, is.Redelivered.Get())
		b = append(b, `,"delivery_gaps":`...)
		b = appendUint(b, is.DeliveryGaps.Get())
		b = append(b, `,"consumer_recreated":`...)
		b = appendUint(b, is.ConsumerRecreated.Get())
		b = append(b, `,"stalled":`...)
		b = strconv.AppendBool(b, s.ingest.StalledSince() != 0)
		b = append(b, `,"stalls":`...)
		b = appendUint(b, is.Stalls.Get())
		b = append(b, `,"trims":`...)
		b = appendUint(b, st.purges.Get())
		b = append(b, `,"trimmed_messages":`...)
		b = appendUint(b, st.purgedMsgs.Get())
		b = append(b, `},"replay":`...)
		b = appendReplay(b, js)
		c := &s.ckpt
		b = append(b, `,"checkpoint":{"seq":`...)
		b = appendUint(b, c.lastSeq.Load())
		b = append(b, `,"age_s":`...)
		b = appendRounded(b, s.checkpointAgeSeconds())
		b = append(b, `,"size_bytes":`...)
		b = strconv.AppendInt(b, c.lastSize.Load(), 10)
		b = append(b, `,"duration_ms":`...)
		b = strconv.AppendInt(b, c.lastWriteMs.Load(), 10)
		b = append(b, `,"pause_ms":`...)
		b = appendRounded(b, float64(c.lastPauseUs.Load())/1e3)
		b = append(b, `,"max_pause_ms":`...)
		b = appendRounded(b, float64(c.maxPauseUs.Load())/1e3)
		b = append(b, `,"written":`...)
		b = appendUint(b, st.ckptWritten.Get())
		b = append(b, `,"write_errors":`...)
		b = appendUint(b, st.ckptErrors.Get())
		b = append(b, `,"loaded":`...)
		b = strconv.AppendBool(b, c.loaded.Load())
		b = append(b, `,"loaded_from_nats":`...)
		if from, _ := c.fromRemote.Load().(string); from != "" {
			b = appendStr(b, from)
		} else {
			b = append(b, "null"...)
		}
		b = append(b, `,"kept_in_nats_seq":`...)
		b = appendUint(b, c.remoteSeq.Load())
		b = append(b, `,"kept_in_nats":`...)
		b = appendUint(b, st.remoteCkpt.Get())
		b = append(b, `,"keep_errors":`...)
		b = appendUint(b, st.remoteCkptErrors.Get())
		b = append(b, `,"load_error":`...)
		if e, _ := c.loadErr.Load().(string); e != "" {
			b = appendStr(b, e)
		} else {
			b = append(b, "null"...)
		}
		b = append(b, '}')
	}
	b = s.appendDLQ(append(b, `,"dlq":`...))
	b = s.appendBrain(append(b, `,"brain":`...))
	if s.natsSrv != nil {
		b = append(b, `,"server_slow_consumers":`...)
		b = appendUint(b, s.natsSrv.NumSlowConsumersClients())
	}
	b = append(b, `,"mode":`...)
	b = appendStr(b, s.Mode())
	b = append(b, `,"since":`...)
	b = appendStr(b, st.since.Format(time.RFC3339))
	b = append(b, '}')
	writeJSON(ctx, fasthttp.StatusOK, b)
}

// appendReplay appends the catch-up state as a JSON object.
func appendReplay(b []byte, st ingest.StreamState) []byte {
	b = append(b, `{"start_seq":`...)
	b = appendUint(b, st.StartSeq)
	b = append(b, `,"target_seq":`...)
	b = appendUint(b, st.TargetSeq)
	b = append(b, `,"applied_seq":`...)
	b = appendUint(b, st.Applied)
	b = append(b, `,"progress":`...)
	b = appendRounded(b, st.Progress)
	b = append(b, `,"caught_up":`...)
	b = strconv.AppendBool(b, st.CaughtUp)
	return append(b, '}')
}

// appendDLQ appends the dead-letter queue's state as a JSON object.
func (s *Service) appendDLQ(b []byte) []byte {
	d, is := s.ingest.DLQ(), s.ingest.Stats()
	b = append(b, `{"pending":`...)
	b = strconv.AppendInt(b, int64(d.Pending), 10)
	b = append(b, `,"pending_bytes":`...)
	b = strconv.AppendInt(b, int64(d.PendingBytes), 10)
	b = append(b, `,"answering":`...)
	b = strconv.AppendBool(b, d.FailingSince == 0)
	if d.FailingSince != 0 {
		b = append(b, `,"failing_since":`...)
		b = appendStr(b, time.UnixMilli(d.FailingSince).UTC().Format(time.RFC3339))
	}
	b = append(b, `,"stored":`...)
	b = appendUint(b, is.DLQStored.Get())
	b = append(b, `,"errors":`...)
	b = appendUint(b, is.DLQErrors.Get())
	return append(b, '}')
}

// appendBrain appends the brain's sizes and bounds: states held, the caps,
// and the answers given without state because a table was full.
func (s *Service) appendBrain(b []byte) []byte {
	st := s.brain.Stats()
	maxKeys, maxCampaigns := s.brain.Limits()
	b = append(b, `{"key_states":`...)
	b = appendUint(b, uint64(st.Keys))
	b = append(b, `,"max_key_states":`...)
	b = appendUint(b, uint64(maxKeys))
	b = append(b, `,"keys_untracked":`...)
	b = appendUint(b, st.KeysFull)
	b = append(b, `,"campaigns":`...)
	b = appendUint(b, uint64(st.Campaigns))
	b = append(b, `,"campaign_states":`...)
	b = appendUint(b, uint64(st.CampaignStates))
	b = append(b, `,"max_campaigns":`...)
	b = appendUint(b, uint64(maxCampaigns))
	b = append(b, `,"campaigns_untracked":`...)
	b = appendUint(b, st.CampaignsFull)
	b = append(b, `,"ticks":`...)
	b = appendUint(b, st.Ticks)
	b = append(b, `,"last_tick_ms":`...)
	b = appendUint(b, uint64(st.LastTick.Milliseconds()))
	return append(b, '}')
}
