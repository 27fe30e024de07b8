package control

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"

	"github.com/bidpulse/bidpulse/models"
	"github.com/bidpulse/bidpulse/windows"
)

// maxPolicyBytes bounds a campaign policy's JSON.
const maxPolicyBytes = 16 << 10

// MaxPolicies bounds the campaign policies set through the admin API (or
// found in the bucket).
const MaxPolicies = 10_000

// ErrTooManyPolicies is returned when the policy table is full.
var ErrTooManyPolicies = fmt.Errorf("too many campaign policies: the limit is %d", MaxPolicies)

// PolicyRecord is a campaign policy set through the admin API, as stored in
// the KV bucket under "policy.<campaign, base64>": the JSON the operator
// sent, and who set it. It takes precedence over the config file's.
type PolicyRecord struct {
	Campaign string          `json:"campaign"`
	Policy   json.RawMessage `json:"policy,omitempty"`
	Deleted  bool            `json:"deleted,omitempty"`
	SetBy    string          `json:"set_by"`
	SetAtMs  int64           `json:"set_at_ms"`
	Sig      string          `json:"sig,omitempty"`
}

func (r *PolicyRecord) setSig(s string) { r.Sig = s }

// ParseCampaignPolicy reads a policy body (JSON, read as YAML: JSON is
// YAML) over the built-in defaults and validates it under hardMax.
func ParseCampaignPolicy(body []byte, hardMax float64) (*models.CampaignPolicy, error) {
	if len(body) > maxPolicyBytes {
		return nil, fmt.Errorf("policy of %d bytes; the limit is %d", len(body), maxPolicyBytes)
	}
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

// checkPolicy applies the admin API's rules to a policy record.
func (c *Control) checkPolicy(r *PolicyRecord) error {
	if err := CheckDim(windows.DimCampaign, r.Campaign); err != nil {
		return err
	}
	if len(r.SetBy) > maxSetByLen || !utf8.ValidString(r.SetBy) {
		return fmt.Errorf("set_by must be at most %d bytes of UTF-8", maxSetByLen)
	}
	if r.Deleted {
		return nil
	}
	if _, err := ParseCampaignPolicy(r.Policy, c.filePolicies.Load().HardMax); err != nil {
		return err
	}
	return nil
}

// Policies returns the effective policies: the config file's, with the
// admin API's campaign policies on top. It takes no lock; the result must
// not be modified.
func (c *Control) Policies() *models.Policies { return c.policies.Load() }

// FilePolicies returns the config file's policies.
func (c *Control) FilePolicies() *models.Policies { return c.filePolicies.Load() }

// SetFilePolicies replaces the config file's policies (a reload) and audits
// it; the admin API's campaign policies stay on top.
func (c *Control) SetFilePolicies(p *models.Policies, who string) {
	c.polMu.Lock()
	c.filePolicies.Store(p)
	for name, r := range c.adminPol {
		c.parseLocked(name, r)
	}
	c.rebuildLocked()
	c.polMu.Unlock()
	c.audit.add(who, "policies.reload", "file", "", 0, nil, map[string]any{"campaigns": len(p.Campaigns)})
}

// PolicySource says where a campaign's effective policy comes from:
// "admin", "config" or "default".
func (c *Control) PolicySource(campaign string) string {
	c.polMu.Lock()
	_, admin := c.adminPol[campaign]
	c.polMu.Unlock()
	_, file := c.filePolicies.Load().Campaigns[campaign]
	switch {
	case admin:
		return "admin"
	case file:
		return "config"
	}
	return "default"
}

// PolicyRecordOf returns the campaign policy set through the admin API.
func (c *Control) PolicyRecordOf(campaign string) (*PolicyRecord, bool) {
	c.polMu.Lock()
	defer c.polMu.Unlock()
	r, ok := c.adminPol[campaign]
	return r, ok
}

// rebuildLocked publishes the effective policies. polMu must be held.
func (c *Control) rebuildLocked() {
	file := c.filePolicies.Load()
	eff := *file
	if len(c.adminPol) > 0 {
		eff.Campaigns = make(map[string]*models.CampaignPolicy, len(file.Campaigns)+len(c.adminPol))
		for k, v := range file.Campaigns {
			eff.Campaigns[k] = v
		}
		for name, p := range c.parsed {
			eff.Campaigns[name] = p
		}
	}
	c.policies.Store(&eff)
}

// parseLocked parses r's policy under the file's hard_max into c.parsed.
// polMu must be held.
func (c *Control) parseLocked(campaign string, r *PolicyRecord) {
	p, err := ParseCampaignPolicy(r.Policy, c.filePolicies.Load().HardMax)
	if err != nil {
		delete(c.parsed, campaign)
		c.log.Error().Err(err).Str("campaign", campaign).Msg("stored campaign policy no longer valid under the config file; the file's applies")
		return
	}
	c.parsed[campaign] = p
}

func policyKVKey(campaign string) string {
	return policyPre + base64.RawURLEncoding.EncodeToString([]byte(campaign))
}

// PutPolicy checks and stores a campaign policy (in the KV bucket when there
// is one) and audits it. who must be the authenticated identity of the
// caller.
func (c *Control) PutPolicy(campaign string, policy json.RawMessage, who string) (*PolicyRecord, error) {
	if who == "" {
		panic("BUG: a policy set without the caller's identity")
	}
	r := &PolicyRecord{Campaign: campaign, Policy: policy, SetBy: who, SetAtMs: c.now()}
	if err := c.checkPolicy(r); err != nil {
		return nil, err
	}
	// Read before the put: the KV watch may apply the new value first.
	old, _ := c.PolicyRecordOf(campaign)
	if old == nil && c.numPolicies() >= MaxPolicies {
		return nil, ErrTooManyPolicies
	}
	auditSet := func(late bool) func(rev uint64) {
		return func(rev uint64) { c.audit.addLate(who, "policy.set", "campaign "+campaign, rev, late, old, r) }
	}
	rev, err := c.put(policyKVKey(campaign), r, auditSet(true))
	r.Sig = ""
	if err != nil {
		return nil, err
	}
	if _, err := c.setPolicy(campaign, r); err != nil {
		return nil, err
	}
	auditSet(false)(rev)
	return r, nil
}

// DeletePolicy removes the campaign policy set through the admin API and
// audits it; it returns false when there is none.
func (c *Control) DeletePolicy(campaign, who string) (bool, error) {
	old, ok := c.PolicyRecordOf(campaign)
	if !ok {
		return false, nil
	}
	tomb := &PolicyRecord{Campaign: campaign, Deleted: true, SetBy: who, SetAtMs: c.now()}
	auditDelete := func(late bool) func(rev uint64) {
		return func(rev uint64) { c.audit.addLate(who, "policy.delete", "campaign "+campaign, rev, late, old, nil) }
	}
	rev, err := c.remove(policyKVKey(campaign), tomb, auditDelete(true))
	if err != nil {
		return false, err
	}
	// The KV watch may have applied the tombstone already: audit anyway.
	c.setPolicy(campaign, nil)
	auditDelete(false)(rev)
	return true, nil
}

func (c *Control) numPolicies() int {
	c.polMu.Lock()
	defer c.polMu.Unlock()
	return len(c.adminPol)
}

// setPolicy sets (r != nil) or removes a campaign policy and publishes the
// effective policies; it returns the previous record. It refuses a new
// campaign past MaxPolicies.
func (c *Control) setPolicy(campaign string, r *PolicyRecord) (*PolicyRecord, error) {
	c.polMu.Lock()
	defer c.polMu.Unlock()
	old := c.adminPol[campaign]
	if r == nil {
		if old == nil {
			return nil, nil
		}
		delete(c.adminPol, campaign)
		delete(c.parsed, campaign)
	} else {
		if old == nil && len(c.adminPol) >= MaxPolicies {
			return nil, ErrTooManyPolicies
		}
		c.adminPol[campaign] = r
		c.parseLocked(campaign, r)
	}
	c.rebuildLocked()
	return old, nil
}

// applyPolicy applies a policy record read from the bucket (nil: a bare
// delete; r.Deleted: a tombstone).
func (c *Control) applyPolicy(campaign string, r *PolicyRecord, live bool, rev uint64, signed bool) {
	if r == nil || r.Deleted {
		claimed := ""
		if r != nil {
			claimed = r.SetBy
		}
		if old, _ := c.setPolicy(campaign, nil); old != nil {
			c.auditRead(signed, live, rev, "policy.delete", "campaign "+campaign, claimed, old, nil)
		}
		return
	}
	claimed := r.SetBy
	r.SetBy = c.author(r.SetBy, signed)
	old, err := c.setPolicy(campaign, r)
	if err != nil {
		c.reject(kindPolicy, policyKVKey(campaign), err)
		return
	}
	if claimed == NATSIdentity {
		claimed = ""
	}
	c.auditRead(signed, live, rev, "policy.set", "campaign "+campaign, claimed, old, r)
}
