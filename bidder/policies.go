package bidder

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/valyala/fasthttp"
	"go.yaml.in/yaml/v3"

	"github.com/bidpulse/bidpulse/models"
)

// Per-campaign policies set through the admin API are stored in the
// control bucket under "policy.<campaign, base64>", as the JSON the operator
// sent plus who set it; they take precedence over the config file's.
const policyPre = "policy."

// policyRecord is a campaign policy as stored in the KV bucket.
type policyRecord struct {
	Campaign string          `json:"campaign"`
	Policy   json.RawMessage `json:"policy"`
	SetBy    string          `json:"set_by"`
	SetAtMs  int64           `json:"set_at_ms"`
}

// adminPolicies holds the campaign policies set through the admin API.
type adminPolicies struct {
	mu sync.Mutex
	m  map[string]*policyRecord
}

// parseCampaignPolicy reads a policy body (JSON, read as YAML: JSON is
// YAML) over the built-in defaults and validates it under hardMax.
func parseCampaignPolicy(body []byte, hardMax float64) (*models.CampaignPolicy, error) {
	var c models.CampaignPolicy
	dec := yaml.NewDecoder(strings.NewReader(string(body)))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("cannot parse the policy: %w", err)
	}
	c.HardMax = hardMax
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

// rebuildPolicies publishes the effective policies: the file's, with the
// admin API's campaign policies on top.
func (s *Service) rebuildPolicies() {
	file := s.filePolicies.Load()
	eff := *file
	s.adminPol.mu.Lock()
	if len(s.adminPol.m) > 0 {
		eff.Campaigns = make(map[string]*models.CampaignPolicy, len(file.Campaigns)+len(s.adminPol.m))
		for k, v := range file.Campaigns {
			eff.Campaigns[k] = v
		}
		for name, r := range s.adminPol.m {
			c, err := parseCampaignPolicy(r.Policy, file.HardMax)
			if err != nil {
				s.log.Error().Err(err).Str("campaign", name).Msg("stored campaign policy no longer valid; the file's applies")
				continue
			}
			eff.Campaigns[name] = c
		}
	}
	s.adminPol.mu.Unlock()
	s.policies.Store(&eff)
}

// applyPolicyRecord applies a KV update of a campaign policy (nil: deleted).
func (s *Service) applyPolicyRecord(campaign string, r *policyRecord) {
	s.adminPol.mu.Lock()
	if r == nil {
		delete(s.adminPol.m, campaign)
	} else {
		s.adminPol.m[campaign] = r
	}
	s.adminPol.mu.Unlock()
	s.rebuildPolicies()
}

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
	s.filePolicies.Store(pol)
	s.rebuildPolicies()
	s.control.audit("config", "policies.reload", "file", nil, map[string]any{"campaigns": len(pol.Campaigns)})
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
	pol := s.policies.Load()
	cfg := pol.For([]byte(campaign))
	source := "default"
	if campaign != "" {
		s.adminPol.mu.Lock()
		_, admin := s.adminPol.m[campaign]
		s.adminPol.mu.Unlock()
		if _, file := s.filePolicies.Load().Campaigns[campaign]; admin {
			source = "admin"
		} else if file {
			source = "config"
		}
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
	if _, err := parseCampaignPolicy(body.Policy, s.filePolicies.Load().HardMax); err != nil {
		writeError(ctx, fasthttp.StatusBadRequest, "invalid policy: "+err.Error())
		return
	}
	r := &policyRecord{Campaign: body.Campaign, Policy: body.Policy, SetBy: who, SetAtMs: s.clock.NowMs()}
	s.adminPol.mu.Lock()
	old := s.adminPol.m[body.Campaign]
	s.adminPol.mu.Unlock()
	if err := s.control.putPolicy(r, old); err != nil {
		writeError(ctx, fasthttp.StatusServiceUnavailable, err.Error())
		return
	}
	b, _ := json.Marshal(r)
	writeJSON(ctx, fasthttp.StatusOK, b)
}

func (s *Service) deletePolicy(ctx *fasthttp.RequestCtx, who string) {
	campaign := string(ctx.QueryArgs().Peek("campaign"))
	s.adminPol.mu.Lock()
	old := s.adminPol.m[campaign]
	s.adminPol.mu.Unlock()
	if old == nil {
		writeError(ctx, fasthttp.StatusNotFound, "no policy set through the API for campaign "+campaign)
		return
	}
	if err := s.control.deletePolicy(old, who); err != nil {
		writeError(ctx, fasthttp.StatusServiceUnavailable, err.Error())
		return
	}
	writeJSON(ctx, fasthttp.StatusOK, []byte(`{"deleted":true}`))
}

// putPolicy stores a campaign policy (KV when there is one) and audits it.
func (c *control) putPolicy(r *policyRecord, old *policyRecord) error {
	if c.kv != nil {
		b, _ := json.Marshal(r)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if _, err := c.kv.Put(ctx, policyPre+b64(r.Campaign), b); err != nil {
			return fmt.Errorf("cannot store the policy: %w", err)
		}
	}
	c.svc.applyPolicyRecord(r.Campaign, r)
	c.audit(r.SetBy, "policy.set", "campaign "+r.Campaign, old, r)
	return nil
}

func (c *control) deletePolicy(old *policyRecord, who string) error {
	if c.kv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := c.kv.Delete(ctx, policyPre+b64(old.Campaign)); err != nil {
			return fmt.Errorf("cannot delete the policy: %w", err)
		}
	}
	c.svc.applyPolicyRecord(old.Campaign, nil)
	c.audit(who, "policy.delete", "campaign "+old.Campaign, old, nil)
	return nil
}
