package bidder

import (
	"fmt"
	"testing"

	"github.com/bidpulse/bidpulse/models"
)

// BenchmarkSnapshotControllers encodes a full brain: 1,000 campaigns and
// the default bound of key states (200,000), every float set.
func BenchmarkSnapshotControllers(b *testing.B) {
	s := newIdleService(b)
	for i := range 1000 {
		var st models.CampaignState
		st.Goal.LogFactor = 0.01 * float64(i)
		st.Goal.Observed = 12.5 + float64(i)
		st.Pacing.LogFactor = -0.02 * float64(i)
		st.Pacing.Rate = 0.3
		st.Delay.DelayModel = &models.DelayModel{}
		for j := range st.Delay.CDF {
			st.Delay.CDF[j] = float64(j) / float64(len(st.Delay.CDF))
			st.Delay.G[j] = 1000 * float64(j)
		}
		st.FirstMs = testNow
		var h models.DelayHistogram
		for j := range h.Weights {
			h.Weights[j] = 0.75 * float64(j+i)
		}
		h.N = uint64(i)
		s.brain.SetCampaign(fmt.Sprintf("campaign-%d", i), &st, h, testNow)
	}
	maxKeys, _ := s.brain.Limits()
	for i := range maxKeys {
		st := models.KeyState{Value: 1 + float64(i%997)/1000, AtMs: testNow, Good: 1.1, FirstMs: testNow - 3600_000, Old: 12.25, OldKnown: true}
		if !s.brain.SetKey(fmt.Sprintf("\x01campaign-%d\x00placement-%d", i%1000, i), &st, testNow) {
			b.Fatalf("cannot create key state %d of %d", i, maxKeys)
		}
	}

	b.Run("per-state", func(b *testing.B) {
		b.ReportAllocs()
		var size int
		for b.Loop() {
			size = len(s.snapshotControllers())
		}
		b.ReportMetric(float64(size), "bytes")
	})
}
