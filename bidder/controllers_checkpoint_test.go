package bidder

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/bidpulse/bidpulse/models"
)

// snapshotControllers returns what a checkpoint writes of s's controller
// states.
func (s *Service) snapshotControllers() json.RawMessage {
	var buf bytes.Buffer
	s.writeControllers(&buf)
	return buf.Bytes()
}

// newIdleService builds a Service that is not started: its brain, stats
// and metrics are real, and nothing runs in the background.
func newIdleService(tb testing.TB) *Service {
	tb.Helper()
	s, err := New(Options{
		DataDir:   tb.TempDir(),
		Instance:  "test",
		DedupSize: 32 << 20,
		Logger:    zerolog.New(zerolog.NewTestWriter(tb)).Level(zerolog.WarnLevel),
		Clock:     NewManualClock(testNow),
	})
	if err != nil {
		tb.Fatalf("cannot create service: %v", err)
	}
	return s
}

// controllerStates are the states put into a brain by putStates: the good
// ones, which a checkpoint must keep, and the names of the bad ones (NaN or
// infinities), which it must leave out.
type controllerStates struct {
	campaigns    map[string]campaignWant
	keys         map[string]models.KeyState
	badCampaigns []string
	badKeys      []string
}

type campaignWant struct {
	State  models.CampaignState
	Delays models.DelayHistogram
}

// putStates sets, in s's brain, three good campaign and key states and a
// NaN and an infinity in two others of each.
func putStates(s *Service) *controllerStates {
	cs := &controllerStates{campaigns: map[string]campaignWant{}, keys: map[string]models.KeyState{}}
	setCampaign := func(name string, st models.CampaignState, h models.DelayHistogram) {
		if !s.brain.SetCampaign(name, &st, h, testNow) {
			panic("cannot set campaign " + name)
		}
	}
	setKey := func(key string, st models.KeyState) {
		if !s.brain.SetKey(key, &st, testNow) {
			panic("cannot set key " + key)
		}
	}
	// Campaign names with characters JSON escapes; keys that are not UTF-8.
	for i, name := range []string{"c1", "c<&>\"2\"", "c3\u00e9"} {
		var st models.CampaignState
		st.Goal.LogFactor = 0.1 * float64(i+1)
		st.Pacing.Integral = -0.5 * float64(i+1)
		st.FirstMs = testNow - int64(i)
		var h models.DelayHistogram
		h.Weights[i] = 2.5
		h.N = uint64(i + 1)
		setCampaign(name, st, h)
		cs.campaigns[name] = campaignWant{State: st, Delays: h}
	}
	for i := range 3 {
		key := fmt.Sprintf("k%d\xff\x00", i)
		st := models.KeyState{Value: 1 + float64(i)/10, Good: 1.25, AtMs: testNow, Anomalies: uint64(i)}
		setKey(key, st)
		cs.keys[key] = st
	}

	var nanGoal models.CampaignState
	nanGoal.Goal.LogFactor = math.NaN()
	setCampaign("c-nan", nanGoal, models.DelayHistogram{})
	var infDelays models.DelayHistogram
	infDelays.Weights[3] = math.Inf(1)
	setCampaign("c-inf", models.CampaignState{}, infDelays)
	cs.badCampaigns = []string{"c-nan", "c-inf"}

	setKey("k-nan", models.KeyState{Value: math.NaN()})
	setKey("k-inf", models.KeyState{Good: math.Inf(-1)})
	cs.badKeys = []string{"k-nan", "k-inf"}
	return cs
}

// check fails t unless s's brain holds exactly the good states of cs.
func (cs *controllerStates) check(t *testing.T, s *Service) {
	t.Helper()
	for name, want := range cs.campaigns {
		st, h, ok := s.brain.CampaignEntry(name)
		if !ok || st == nil {
			t.Fatalf("unexpected missing campaign %q after restore", name)
		}
		got := campaignWant{State: *st, Delays: h}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("unexpected state of campaign %q; got %+v; want %+v", name, got, want)
		}
	}
	for key, want := range cs.keys {
		k, ok := s.brain.KeyEntry(key)
		if !ok || k == nil {
			t.Fatalf("unexpected missing key %q after restore", key)
		}
		if got := *k; got != want {
			t.Fatalf("unexpected state of key %q; got %+v; want %+v", key, got, want)
		}
	}
	for _, name := range cs.badCampaigns {
		if st, _, ok := s.brain.CampaignEntry(name); ok {
			t.Fatalf("unexpected campaign %q restored; got %+v; want none", name, st)
		}
	}
	for _, key := range cs.badKeys {
		if k, ok := s.brain.KeyEntry(key); ok {
			t.Fatalf("unexpected key %q restored; got %+v; want none", key, k)
		}
	}
	st := s.brain.Stats()
	nc, nk := st.Campaigns, st.Keys
	if nc != len(cs.campaigns) || nk != len(cs.keys) {
		t.Fatalf("unexpected number of restored states; got %d campaigns, %d keys; want %d, %d", nc, nk, len(cs.campaigns), len(cs.keys))
	}
}

// checkControllerErrors fails t unless s's /metrics reports want
// controller states left out of checkpoints.
func checkControllerErrors(t *testing.T, s *Service, want int) {
	t.Helper()
	var buf bytes.Buffer
	s.metrics.WritePrometheus(&buf)
	line := fmt.Sprintf("bidpulse_checkpoint_controller_errors_total %d\n", want)
	if !strings.Contains(buf.String(), line) {
		t.Fatalf("unexpected metrics; got\n%s\nwant the line %q", buf.String(), line)
	}
}

func TestSnapshotControllersLeavesOutNonFiniteStates(t *testing.T) {
	s := newIdleService(t)
	cs := putStates(s)
	raw := s.snapshotControllers()
	if !json.Valid(raw) {
		t.Fatalf("unexpected invalid JSON from snapshotControllers: %s", raw)
	}
	checkControllerErrors(t, s, 4)

	s2 := newIdleService(t)
	if err := s2.brain.Restore(raw, testNow); err != nil {
		t.Fatalf("unexpected error restoring the controllers: %v", err)
	}
	cs.check(t, s2)

	// Each checkpoint counts its own.
	s.snapshotControllers()
	checkControllerErrors(t, s, 8)
}

func TestSnapshotControllersEmpty(t *testing.T) {
	f := func(name string, put func(s *Service)) {
		t.Helper()
		s := newIdleService(t)
		put(s)
		raw := s.snapshotControllers()
		var snap struct {
			Campaigns map[string]json.RawMessage `json:"campaigns"`
			Keys      map[string]json.RawMessage `json:"keys"`
		}
		if err := json.Unmarshal(raw, &snap); err != nil {
			t.Fatalf("%s: unexpected error decoding %s: %v", name, raw, err)
		}
		if len(snap.Campaigns) != 0 || len(snap.Keys) != 0 {
			t.Fatalf("%s: unexpected states; got %s; want none", name, raw)
		}
	}
	f("no states", func(s *Service) {})
	f("only bad states", func(s *Service) {
		s.brain.SetCampaign("c", &models.CampaignState{Goal: models.GoalState{Error: math.Inf(1)}}, models.DelayHistogram{}, testNow)
		s.brain.SetKey("k", &models.KeyState{Old: math.NaN()}, testNow)
	})
}

// TestCheckpointKeepsControllersBesideNonFinite writes a real checkpoint
// with a NaN and an infinity in some controller states, restarts on the
// same data dir and checks every other state is back.
func TestCheckpointKeepsControllersBesideNonFinite(t *testing.T) {
	dir := t.TempDir()
	opts := func(o *Options) {
		o.DataDir = dir
		// No tick or periodic checkpoint changes the states under test.
		o.ControlInterval = time.Hour
		o.CheckpointInterval = time.Hour
	}
	e := startTestService(t, opts)
	if e.svc.ingest.JetStream() == nil {
		t.Fatalf("unexpected core mode; want JetStream, which checkpoints")
	}
	e.publish(t, ev("e1", "impression", testNow, "c1", "", ""))
	e.waitReceived(t, 1)
	cs := putStates(e.svc)
	if err := e.svc.writeCheckpoint(); err != nil {
		t.Fatalf("unexpected error writing the checkpoint: %v", err)
	}
	checkControllerErrors(t, e.svc, 4)
	h, _, err := readCheckpointFile(e.svc.checkpointPath())
	if err != nil {
		t.Fatalf("unexpected error reading the checkpoint: %v", err)
	}
	if len(h.Controllers) == 0 {
		t.Fatalf("unexpected checkpoint without controller state; got header %+v", h)
	}
	e.nc.Close()
	if err := e.svc.Stop(context.Background()); err != nil {
		t.Fatalf("unexpected error on stop: %v", err)
	}

	e2 := startTestService(t, opts)
	if !e2.svc.ckpt.loaded.Load() {
		t.Fatalf("unexpected checkpoint not loaded; load error %v", e2.svc.ckpt.loadErr.Load())
	}
	cs.check(t, e2.svc)
}
