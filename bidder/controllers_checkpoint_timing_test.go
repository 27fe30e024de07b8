package bidder

import (
	"encoding/json"
	"fmt"
	"testing"

	"github.com/bidpulse/bidpulse/models"
)

// BenchmarkSnapshotControllers encodes a full brain: 1,000 campaigns and
// maxKeyStates (200,000) key states, every float set. The baseline is the
// former encoding, one json.Marshal of the whole controllerSnapshot, which
// loses every state when one holds a NaN.
func BenchmarkSnapshotControllers(b *testing.B) {
	s := newIdleService(b)
	for i := range 1000 {
		var st models.CampaignState
		st.Goal.LogFactor = 0.01 * float64(i)
		st.Goal.Observed = 12.5 + float64(i)
		st.Pacing.LogFactor = -0.02 * float64(i)
		st.Pacing.Rate = 0.3
		for j := range st.Delay.CDF {
			st.Delay.CDF[j] = float64(j) / float64(len(st.Delay.CDF))
			st.Delay.G[j] = 1000 * float64(j)
		}
		st.FirstMs = testNow
		c := s.brain.campaign(fmt.Appendf(nil, "campaign-%d", i), true)
		c.state.Store(&st)
		for j := range c.hist.Weights {
			c.hist.Weights[j] = 0.75 * float64(j+i)
		}
		c.hist.N = uint64(i)
	}
	for i := range maxKeyStates {
		st := models.KeyState{Value: 1 + float64(i%997)/1000, AtMs: testNow, Good: 1.1, FirstMs: testNow - 3600_000, Old: 12.25, OldKnown: true}
		k := s.brain.key(fmt.Appendf(nil, "\x01campaign-%d\x00placement-%d", i%1000, i), testNow, true)
		if k == nil {
			b.Fatalf("cannot create key state %d of %d", i, maxKeyStates)
		}
		k.state.Store(&st)
	}

	b.Run("per-state", func(b *testing.B) {
		b.ReportAllocs()
		var size int
		for b.Loop() {
			size = len(s.snapshotControllers())
		}
		b.ReportMetric(float64(size), "bytes")
	})
	b.Run("one-marshal-baseline", func(b *testing.B) {
		b.ReportAllocs()
		var size int
		for b.Loop() {
			snap := controllerSnapshot{Campaigns: map[string]campaignSnapshot{}, Keys: map[string]models.KeyState{}}
			s.brain.mu.RLock()
			for name, c := range s.brain.campaigns {
				c.mu.Lock()
				snap.Campaigns[name] = campaignSnapshot{State: *c.state.Load(), Delays: c.hist}
				c.mu.Unlock()
			}
			for k, ctl := range s.brain.keys {
				snap.Keys[b64(k)] = *ctl.state.Load()
			}
			s.brain.mu.RUnlock()
			raw, err := json.Marshal(snap)
			if err != nil {
				b.Fatalf("cannot encode the controller snapshot: %v", err)
			}
			size = len(raw)
		}
		b.ReportMetric(float64(size), "bytes")
	})
}
