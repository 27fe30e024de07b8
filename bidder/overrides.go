package bidder

import (
	"errors"
	"math"
	"strconv"
	"time"

	"github.com/valyala/fasthttp"
	"github.com/valyala/fastjson"

	"github.com/bidpulse/bidpulse/bidder/control"
	"github.com/bidpulse/bidpulse/windows"
)

// The overrides' table, their checks and their KV records live in
// bidder/control; these are the admin API's handlers.

// /v1/overrides: GET lists, PUT sets, DELETE removes.
func (s *Service) handleOverrides(ctx *fasthttp.RequestCtx) {
	who, ok := s.checkAdmin(ctx)
	if !ok {
		return
	}
	switch string(ctx.Method()) {
	case "GET", "HEAD":
		now := s.clock.NowMs()
		b := []byte(`{"overrides":[`)
		for i, ov := range s.control.Overrides(now) {
			if i > 0 {
				b = append(b, ',')
			}
			b = s.appendOverride(b, &ov)
		}
		b = append(b, "]}"...)
		writeJSON(ctx, fasthttp.StatusOK, b)
	case "PUT":
		s.putOverride(ctx, who)
	case "DELETE":
		s.deleteOverride(ctx, who)
	}
}

func (s *Service) putOverride(ctx *fasthttp.RequestCtx, who string) {
	var p fastjson.Parser
	v, err := p.ParseBytes(ctx.PostBody())
	if err != nil {
		writeError(ctx, fasthttp.StatusBadRequest, "body is not valid JSON: "+err.Error())
		return
	}
	obj, err := v.Object()
	if err != nil {
		writeError(ctx, fasthttp.StatusBadRequest, "body must be a JSON object")
		return
	}
	sc := getScratch()
	defer putScratch(sc)
	mult, hasMult, freeze := math.NaN(), false, false
	var ttl time.Duration
	obj.Visit(func(k []byte, fv *fastjson.Value) {
		if err != nil {
			return
		}
		if d, ok := dimByName(k); ok {
			b, e := fv.StringBytes()
			if e != nil {
				err = queryError(windows.DimNames[d] + " must be a string")
				return
			}
			err = sc.setDim(d, b)
			return
		}
		switch string(k) {
		case "multiplier":
			f, e := fv.Float64()
			if e != nil {
				err = queryError("multiplier must be a number")
				return
			}
			if e := s.control.CheckMultiplier(f); e != nil {
				err = queryError(e.Error())
				return
			}
			mult, hasMult = f, true
		case "freeze":
			switch fv.Type() {
			case fastjson.TypeTrue:
				freeze = true
			case fastjson.TypeFalse, fastjson.TypeNull:
			default:
				err = queryError("freeze must be a boolean")
			}
		case "ttl":
			if fv.Type() == fastjson.TypeNull {
				return
			}
			b, e := fv.StringBytes()
			if e != nil {
				err = queryError(`ttl must be a duration string such as "2h" or "30m"`)
				return
			}
			d, e := time.ParseDuration(string(b))
			if e != nil || d <= 0 || d > control.MaxOverrideTTL {
				err = queryError(`ttl must be a duration string such as "2h", positive and at most 8784h`)
				return
			}
			ttl = d
		default:
			err = queryError("unknown field " + string(k) + "; known: " + knownDims + ", multiplier, freeze, ttl")
		}
	})
	if err == nil && len(sc.Vals[windows.DimCampaign]) == 0 {
		err = queryError("missing campaign")
	}
	if err == nil && hasMult == freeze {
		err = queryError(`give either "multiplier" or "freeze":true (hold the value served now)`)
	}
	if err != nil {
		writeError(ctx, fasthttp.StatusBadRequest, err.Error())
		return
	}
	lvl, ok := s.rollups.ByMask(sc.Vals.Mask())
	if !ok {
		writeError(ctx, fasthttp.StatusBadRequest, "no configured rollup for "+maskName(sc.Vals.Mask())+"; configured rollups: "+joinNames(s.rollups.Names()))
		return
	}
	now := s.clock.NowMs()
	if freeze {
		// The value a request naming exactly these dimensions gets now.
		s.decide(sc, now)
		mult = sc.a.multiplier
	}
	ov := &control.Override{Level: lvl, Multiplier: mult, Freeze: freeze, SetBy: who, SetAtMs: now}
	sc.Key = windows.AppendKey(sc.Key[:0], lvl, s.rollups, &sc.Vals)
	ov.Key = string(sc.Key)
	for _, d := range s.rollups.Levels[lvl].Dims {
		ov.Vals[d] = string(sc.Vals[d])
	}
	if ttl > 0 {
		ov.ExpiresMs = now + ttl.Milliseconds()
	}
	if err := s.control.PutOverride(ov); err != nil {
		writeControlError(ctx, err)
		return
	}
	writeJSON(ctx, fasthttp.StatusOK, s.appendOverride(nil, ov))
}

func (s *Service) deleteOverride(ctx *fasthttp.RequestCtx, who string) {
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
	found, err := s.control.DeleteOverride(sc.Key, who)
	if err != nil {
		writeControlError(ctx, err)
		return
	}
	if !found {
		writeError(ctx, fasthttp.StatusNotFound, "no override for this "+s.rollups.Levels[lvl].Name)
		return
	}
	b := append([]byte(`{"deleted":true,"level":`), appendStr(nil, s.rollups.Levels[lvl].Name)...)
	b = append(b, `,"key":`...)
	b = s.appendKeyObject(b, lvl, &sc.Vals)
	writeJSON(ctx, fasthttp.StatusOK, append(b, '}'))
}

// appendOverride appends {"campaign":..,..,"level":..,"multiplier":..,"expires_at":..}.
func (s *Service) appendOverride(b []byte, ov *control.Override) []byte {
	b = append(b, '{')
	for _, d := range s.rollups.Levels[ov.Level].Dims {
		b = appendKeyField(b, windows.DimNames[d])
		b = appendStr(b, ov.Vals[d])
		b = append(b, ',')
	}
	b = append(b, `"level":`...)
	b = appendStr(b, s.rollups.Levels[ov.Level].Name)
	b = append(b, `,"multiplier":`...)
	b = appendFloat(b, ov.Multiplier)
	b = append(b, `,"freeze":`...)
	b = strconv.AppendBool(b, ov.Freeze)
	b = append(b, `,"set_by":`...)
	b = appendStr(b, ov.SetBy)
	b = append(b, `,"expires_at":`...)
	if ov.ExpiresMs == 0 {
		b = append(b, "null"...)
	} else {
		b = appendStr(b, time.UnixMilli(ov.ExpiresMs).UTC().Format(time.RFC3339))
	}
	return append(b, '}')
}

// writeControlError answers a control plane change that failed: 507 when a
// table is full, 503 when the KV bucket did not store it, else 400 (the
// change broke a rule).
func writeControlError(ctx *fasthttp.RequestCtx, err error) {
	switch {
	case errors.Is(err, control.ErrTooManyOverrides), errors.Is(err, control.ErrTooManyPolicies):
		writeError(ctx, fasthttp.StatusInsufficientStorage, err.Error())
	case control.IsStoreError(err):
		writeError(ctx, fasthttp.StatusServiceUnavailable, err.Error())
	default:
		writeError(ctx, fasthttp.StatusBadRequest, err.Error())
	}
}
