package bidder

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/valyala/fasthttp"
	"github.com/valyala/fastjson"

	"github.com/bidpulse/bidpulse/bidder/internal/cowmap"
	"github.com/bidpulse/bidpulse/windows"
)

const (
	// maxOverrides bounds the override table.
	maxOverrides = 100_000
	// maxOverrideMultiplier is the largest multiplier an operator may set.
	maxOverrideMultiplier = 10
	// maxOverrideTTL bounds an override's time to live.
	maxOverrideTTL = 366 * 24 * time.Hour
)

// override is an operator's fixed multiplier for exactly one key.
type override struct {
	level      int
	key        string // encoded key
	vals       [windows.NumDims]string
	multiplier float64
	expiresMs  int64 // 0: never
	freeze     bool  // set with "freeze": the value served when it was set
	setBy      string
	setAtMs    int64
}

// overrides is the table of operator overrides, keyed by encoded key. Safe
// for concurrent use; the bid path takes no lock (a copy-on-write table),
// and skips even the look-up while the table is empty. Writers (the admin
// API, the KV watch, expiry) are serialised by mu, so the limit holds.
type overrides struct {
	rollups *windows.Rollups
	mu      sync.Mutex
	m       *cowmap.Map[override]
}

func newOverrides(r *windows.Rollups) *overrides {
	return &overrides{rollups: r, m: cowmap.New[override]()}
}

func (o *overrides) len() int { return o.m.Len() }

// get returns the multiplier overriding key at nowMs.
func (o *overrides) get(key []byte, nowMs int64) (float64, bool) {
	ov := o.m.Get(key)
	if ov == nil || (ov.expiresMs != 0 && nowMs >= ov.expiresMs) {
		return 0, false
	}
	return ov.multiplier, true
}

func (o *overrides) set(ov *override) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.m.GetString(ov.key) == nil && o.m.Len() >= maxOverrides {
		return fmt.Errorf("too many overrides: the limit is %d", maxOverrides)
	}
	o.m.Set(ov.key, ov)
	return nil
}

// lookup returns a copy of the override of key (expired ones included).
func (o *overrides) lookup(key []byte) (*override, bool) {
	ov := o.m.Get(key)
	if ov == nil {
		return nil, false
	}
	c := *ov
	return &c, true
}

func (o *overrides) delete(key []byte) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.m.Delete(key) != nil
}

// list returns the live overrides ordered by level, then dimension values.
func (o *overrides) list(nowMs int64) []override {
	out := make([]override, 0, o.m.Len())
	o.m.Range(func(_ string, ov *override) bool {
		if ov.expiresMs == 0 || nowMs < ov.expiresMs {
			out = append(out, *ov)
		}
		return true
	}, nil)
	sort.Slice(out, func(i, j int) bool {
		if out[i].level != out[j].level {
			return out[i].level < out[j].level
		}
		return strings.Join(out[i].vals[:], "\x00") < strings.Join(out[j].vals[:], "\x00")
	})
	return out
}

// expire removes overrides whose time to live has passed.
func (o *overrides) expire(nowMs int64) {
	o.mu.Lock()
	defer o.mu.Unlock()
	expired := false
	o.m.Range(func(_ string, ov *override) bool {
		expired = ov.expiresMs != 0 && nowMs >= ov.expiresMs
		return !expired
	}, nil)
	if expired {
		o.m.Flush(func(_ string, ov *override) bool {
			return ov.expiresMs == 0 || nowMs < ov.expiresMs
		}, nil, nil)
	}
}

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
		for i, ov := range s.overrides.list(now) {
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
			if e != nil || !(f >= 0 && f <= maxOverrideMultiplier) {
				err = queryError("multiplier must be a number in [0, 10] (0 = do not bid)")
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
			if e != nil || d <= 0 || d > maxOverrideTTL {
				err = queryError(`ttl must be a duration string such as "2h", positive and at most 8784h`)
				return
			}
			ttl = d
		default:
			err = queryError("unknown field " + string(k) + "; known: campaign, creative, placement, device, country, multiplier, freeze, ttl")
		}
	})
	if err == nil && len(sc.Vals[windows.DimCampaign]) == 0 {
		err = queryError("missing campaign")
	}
	if err == nil && hasMult == freeze {
		err = queryError(`give either "multiplier" (0..10) or "freeze":true (hold the value served now)`)
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
	ov := &override{level: lvl, multiplier: mult, freeze: freeze, setBy: who, setAtMs: now}
	sc.Key = windows.AppendKey(sc.Key[:0], lvl, s.rollups, &sc.Vals)
	ov.key = string(sc.Key)
	for _, d := range s.rollups.Levels[lvl].Dims {
		ov.vals[d] = string(sc.Vals[d])
	}
	if ttl > 0 {
		ov.expiresMs = now + ttl.Milliseconds()
	}
	old, _ := s.overrides.lookup(sc.Key)
	if old == nil && s.overrides.len() >= maxOverrides {
		writeError(ctx, fasthttp.StatusInsufficientStorage, fmt.Sprintf("too many overrides: the limit is %d", maxOverrides))
		return
	}
	if err := s.control.putOverride(ov, old); err != nil {
		writeError(ctx, fasthttp.StatusServiceUnavailable, err.Error())
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
			writeError(ctx, fasthttp.StatusBadRequest, "unknown parameter "+string(k)+"; known: campaign, creative, placement, device, country")
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
	old, ok := s.overrides.lookup(sc.Key)
	if !ok {
		writeError(ctx, fasthttp.StatusNotFound, "no override for this "+s.rollups.Levels[lvl].Name)
		return
	}
	if err := s.control.deleteOverride(old, who); err != nil {
		writeError(ctx, fasthttp.StatusServiceUnavailable, err.Error())
		return
	}
	b := append([]byte(`{"deleted":true,"level":`), appendStr(nil, s.rollups.Levels[lvl].Name)...)
	b = append(b, `,"key":`...)
	b = s.appendKeyObject(b, lvl, &sc.Vals)
	writeJSON(ctx, fasthttp.StatusOK, append(b, '}'))
}

// appendOverride appends {"campaign":..,..,"level":..,"multiplier":..,"expires_at":..}.
func (s *Service) appendOverride(b []byte, ov *override) []byte {
	b = append(b, '{')
	for _, d := range s.rollups.Levels[ov.level].Dims {
		b = appendKeyField(b, windows.DimNames[d])
		b = appendStr(b, ov.vals[d])
		b = append(b, ',')
	}
	b = append(b, `"level":`...)
	b = appendStr(b, s.rollups.Levels[ov.level].Name)
	b = append(b, `,"multiplier":`...)
	b = appendFloat(b, ov.multiplier)
	b = append(b, `,"freeze":`...)
	b = strconv.AppendBool(b, ov.freeze)
	b = append(b, `,"set_by":`...)
	b = appendStr(b, ov.setBy)
	b = append(b, `,"expires_at":`...)
	if ov.expiresMs == 0 {
		b = append(b, "null"...)
	} else {
		b = appendStr(b, time.UnixMilli(ov.expiresMs).UTC().Format(time.RFC3339))
	}
	return append(b, '}')
}
