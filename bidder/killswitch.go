package bidder

import (
	"context"
	"encoding/json"
	"strconv"
	"time"

	"github.com/valyala/fasthttp"
	"github.com/valyala/fastjson"

	"github.com/bidpulse/bidpulse/bidder/control"
)

// /v1/killswitch (admin): GET shows it; PUT {"enabled":true,"reason":".."}
// sets it. While enabled, every bid answer is the neutral 1, overrides
// included: the emergency brake.
func (s *Service) handleKillSwitch(ctx *fasthttp.RequestCtx) {
	who, ok := s.checkAdmin(ctx)
	if !ok {
		return
	}
	if string(ctx.Method()) == "PUT" {
		var p fastjson.Parser
		v, err := p.ParseBytes(ctx.PostBody())
		if err != nil || v.Type() != fastjson.TypeObject {
			writeError(ctx, fasthttp.StatusBadRequest, `body must be a JSON object such as {"enabled":true,"reason":"incident 42"}`)
			return
		}
		k := control.KillRecord{SetBy: who, SetAtMs: s.clock.NowMs()}
		var bad string
		v.GetObject().Visit(func(key []byte, fv *fastjson.Value) {
			switch string(key) {
			case "enabled":
				b, err := fv.Bool()
				if err != nil {
					bad = "enabled must be a boolean"
				}
				k.Enabled = b
			case "reason":
				r, err := fv.StringBytes()
				if err != nil {
					bad = "reason must be a string"
				}
				k.Reason = string(r)
			default:
				bad = "unknown field " + string(key) + "; known: enabled, reason"
			}
		})
		if bad == "" && v.Get("enabled") == nil {
			bad = "missing enabled"
		}
		if bad != "" {
			writeError(ctx, fasthttp.StatusBadRequest, bad)
			return
		}
		if err := s.control.SetKillSwitch(k); err != nil {
			writeControlError(ctx, err)
			return
		}
	}
	k := s.control.KillSwitch()
	b := []byte(`{"enabled":`)
	b = strconv.AppendBool(b, s.control.Killed())
	b = append(b, `,"reason":`...)
	b = appendStr(b, k.Reason)
	b = append(b, `,"set_by":`...)
	b = appendStr(b, k.SetBy)
	b = append(b, `,"set_at":`...)
	if k.SetAtMs == 0 {
		b = append(b, "null"...)
	} else {
		b = appendStr(b, time.UnixMilli(k.SetAtMs).UTC().Format(time.RFC3339))
	}
	writeJSON(ctx, fasthttp.StatusOK, append(b, '}'))
}

// GET /v1/audit?limit=.. (admin): the newest changes that moved money.
func (s *Service) handleAudit(ctx *fasthttp.RequestCtx) {
	if _, ok := s.checkAdmin(ctx); !ok {
		return
	}
	limit := 100
	if v := ctx.QueryArgs().Peek("limit"); v != nil {
		n, err := strconv.Atoi(string(v))
		if err != nil || n < 1 || n > 1000 {
			writeError(ctx, fasthttp.StatusBadRequest, "limit must be an integer in 1..1000")
			return
		}
		limit = n
	}
	c, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	entries, err := s.control.RecentAudit(c, limit)
	if err != nil {
		writeError(ctx, fasthttp.StatusServiceUnavailable, "cannot read the audit log: "+err.Error())
		return
	}
	if entries == nil {
		entries = []control.AuditEntry{}
	}
	b, _ := json.Marshal(map[string]any{"entries": entries})
	writeJSON(ctx, fasthttp.StatusOK, b)
}
