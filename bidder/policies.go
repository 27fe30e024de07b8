package bidder

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/valyala/fasthttp"
	"go.yaml.in/yaml/v3"

	"github.com/bidpulse/bidpulse/bidder/control"
)

// Campaign policies set through the admin API are held, checked and stored
// by bidder/control; these are the config reload and the admin API's
// handlers.

// Reload replaces the policies with those of cfg (SIGHUP). Rollups and
// resolutions cannot change without a restart: such a config is refused and
// the running one kept.
func (s *Service) Reload(cfg Config) error {
	rollups, res, pol, err := cfg.build()
	if err != nil {
		return err
	}
	if strings.Join(rollups.Names(), ",") != strings.Join(s.rollups.Names(), ",") {
		return fmt.Errorf("rollups changed (%v -> %v): they need a restart", s.rollups.Names(), rollups.Names())
	}
	cur := s.store.Resolutions()
	same := len(res) == len(cur) || len(res) == 0
	for i := 0; same && i < len(res); i++ {
		same = res[i] == cur[i]
	}
	if !same {
		return fmt.Errorf("resolutions changed: they need a restart")
	}
	s.control.SetFilePolicies(pol, "config")
	return nil
}

// /v1/policies: GET ?campaign=.. shows a campaign's effective policy (no
// token needed); PUT (admin) sets one, DELETE ?campaign=.. (admin) removes
// the one set through the API.
func (s *Service) handlePolicies(ctx *fasthttp.RequestCtx) {
	switch string(ctx.Method()) {
	case "PUT":
		who, ok := s.checkAdmin(ctx)
		if ok {
			s.putPolicy(ctx, who)
		}
		return
	case "DELETE":
		who, ok := s.checkAdmin(ctx)
		if ok {
			s.deletePolicy(ctx, who)
		}
		return
	}
	campaign := string(ctx.QueryArgs().Peek("campaign"))
	pol := s.control.Policies()
	cfg := pol.For([]byte(campaign))
	source := "default"
	if campaign != "" {
		source = s.control.PolicySource(campaign)
	}
	y, err := yaml.Marshal(cfg)
	if err != nil {
		writeError(ctx, fasthttp.StatusInternalServerError, "cannot encode the policy: "+err.Error())
		return
	}
	var asMap any
	if err := yaml.Unmarshal(y, &asMap); err != nil {
		writeError(ctx, fasthttp.StatusInternalServerError, "cannot encode the policy: "+err.Error())
		return
	}
	b, err := json.Marshal(map[string]any{"campaign": campaign, "source": source, "hard_max": pol.HardMax, "policy": asMap})
	if err != nil {
		writeError(ctx, fasthttp.StatusInternalServerError, "cannot encode the policy: "+err.Error())
		return
	}
	writeJSON(ctx, fasthttp.StatusOK, b)
}

func (s *Service) putPolicy(ctx *fasthttp.RequestCtx, who string) {
	var body struct {
		Campaign string          `json:"campaign"`
		Policy   json.RawMessage `json:"policy"`
	}
	dec := json.NewDecoder(strings.NewReader(string(ctx.PostBody())))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil {
		writeError(ctx, fasthttp.StatusBadRequest, `body must be {"campaign":"..","policy":{..}}: `+err.Error())
		return
	}
	if body.Campaign == "" || len(body.Campaign) > 128 || len(body.Policy) == 0 {
		writeError(ctx, fasthttp.StatusBadRequest, `body must be {"campaign":"..","policy":{..}} with a campaign of 1..128 bytes`)
		return
	}
	r, err := s.control.PutPolicy(body.Campaign, body.Policy, who)
	if err != nil {
		if !control.IsStoreError(err) && !errors.Is(err, control.ErrTooManyPolicies) {
			err = fmt.Errorf("invalid policy: %w", err)
		}
		writeControlError(ctx, err)
		return
	}
	b, _ := json.Marshal(r)
	writeJSON(ctx, fasthttp.StatusOK, b)
}

func (s *Service) deletePolicy(ctx *fasthttp.RequestCtx, who string) {
	campaign := string(ctx.QueryArgs().Peek("campaign"))
	found, err := s.control.DeletePolicy(campaign, who)
	if err != nil {
		writeControlError(ctx, err)
		return
	}
	if !found {
		writeError(ctx, fasthttp.StatusNotFound, "no policy set through the API for campaign "+campaign)
		return
	}
	writeJSON(ctx, fasthttp.StatusOK, []byte(`{"deleted":true}`))
}
