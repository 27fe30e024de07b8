package bidder

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/bidpulse/bidpulse/bidder/brain"
	"github.com/bidpulse/bidpulse/models"
	"github.com/bidpulse/bidpulse/windows"
)

// placementEvents returns impressions (and a click for every tenth) of
// c1/cr1 on placements from..to-1.
func placementEvents(prefix string, from, to int) []byte {
	var b bytes.Buffer
	b.WriteByte('[')
	for i := from; i < to; i++ {
		if i > from {
			b.WriteByte(',')
		}
		p := fmt.Sprintf("p%d", i)
		b.WriteString(ev(fmt.Sprintf("%s-%d", prefix, i), "impression", testNow, "c1", "cr1", p))
		if i%10 == 0 {
			b.WriteByte(',')
			b.WriteString(ev(fmt.Sprintf("%s-c%d", prefix, i), "click", testNow, "c1", "cr1", p))
		}
	}
	b.WriteByte(']')
	return b.Bytes()
}

// bid answers GET /v1/multiplier for c1/cr1/p<i> through the handler.
func bid(svc *Service, i int) (int, []byte) {
	ctx := requestCtx(fmt.Sprintf("/v1/multiplier?campaign=c1&creative=cr1&placement=p%d", i))
	svc.serveHTTP(ctx)
	return ctx.Response.StatusCode(), ctx.Response.Body()
}

// TestBidsAnswerWhileBrainWalksAreHeld holds the control tick, then the
// checkpoint's snapshot of the controllers, in the middle of their walks
// over 200,000 key states, and checks that bids for tracked keys and for
// keys arriving untracked answer meanwhile, and that the new keys are
// tracked once the walk ends.
//
// Under the race detector it holds 20,000 key states (200,000 take a
// minute there); `make test` runs it again without -race, at 200,000.
func TestBidsAnswerWhileBrainWalksAreHeld(t *testing.T) {
	tracked, arriving := 200_000, 2_000
	if raceEnabled {
		tracked = 20_000
	}
	svc, err := New(Options{Clock: NewManualClock(testNow), Logger: zerolog.Nop(), DedupSize: 32 << 20, MaxKeyStates: tracked + 2*arriving})
	if err != nil {
		t.Fatal(err)
	}
	const chunk = 10_000
	for from := 0; from < tracked+2*arriving; from += chunk {
		svc.ingest.Apply(placementEvents("e", from, from+chunk), testNow)
	}
	// The tracked keys come in as a bid's answer tracks them (brain.Key),
	// without the HTTP layer: 200,000 requests under the race detector
	// would take a minute. The bids below go through the handler.
	if code, body := bid(svc, 0); code != 200 {
		t.Fatalf("unexpected status %d: %s", code, body)
	}
	sc := getScratch()
	lvl := -1
	for i := range tracked {
		sc.Vals.Reset()
		for _, d := range []struct{ name, v string }{{"campaign", "c1"}, {"creative", "cr1"}, {"placement", fmt.Sprintf("p%d", i)}} {
			if err := sc.setDim(dimIndex(t, d.name), []byte(d.v)); err != nil {
				t.Fatal(err)
			}
		}
		if lvl < 0 {
			lvl, _ = svc.rollups.ByMask(sc.Vals.Mask())
		}
		sc.Key = windows.AppendKey(sc.Key[:0], lvl, svc.rollups, &sc.Vals)
		svc.brain.Key(sc.Key, testNow, true)
	}
	putScratch(sc)
	svc.brain.Publish(testNow)
	if st := svc.brain.Stats(); st.Keys != tracked || st.KeysPending != 0 {
		t.Fatalf("unexpected key states after %d bids: %+v", tracked, st)
	}

	next := tracked
	for _, walk := range []string{"tick", "snapshot"} {
		entered := make(chan struct{})
		release := make(chan struct{})
		var once sync.Once
		svc.brain.WalkHook = func(w string) {
			if w == walk {
				once.Do(func() {
					close(entered)
					<-release
				})
			}
		}
		done := make(chan struct{})
		go func() {
			defer close(done)
			if walk == "tick" {
				svc.brain.Tick(testNow)
			} else {
				svc.snapshotControllers()
			}
		}()
		select {
		case <-entered:
		case <-time.After(30 * time.Second):
			t.Fatalf("%s: the walk never reached its hook", walk)
		}

		// While the walk is held: tracked keys and new ones.
		answered := make(chan error, 1)
		go func() {
			for i := 0; i < arriving; i++ {
				for _, k := range []int{i * 97 % tracked, next + i} {
					if code, body := bid(svc, k); code != 200 || !bytes.Contains(body, []byte(`"level":"campaign/creative/placement"`)) {
						answered <- fmt.Errorf("bid for p%d: status %d: %s", k, code, body)
						return
					}
				}
			}
			answered <- nil
		}()
		select {
		case err := <-answered:
			if err != nil {
				t.Fatalf("%s held: %v", walk, err)
			}
		case <-time.After(60 * time.Second):
			t.Fatalf("bids did not answer while the %s was held mid-walk", walk)
		}
		select {
		case <-done:
			t.Fatalf("the %s ended while its hook held it", walk)
		default:
		}
		close(release)
		<-done
		svc.brain.WalkHook = nil
		svc.brain.Publish(testNow)
		next += arriving
		if st := svc.brain.Stats(); st.Keys != next || st.KeysFull != 0 {
			t.Fatalf("after the %s: %d key states (%d untracked); want %d, all the keys that arrived meanwhile", walk, st.Keys, st.KeysFull, next)
		}
	}
}

// TestKeyStatesBounded checks the policy when the key table is full: the
// answer is that of a new key, and it is counted.
func TestKeyStatesBounded(t *testing.T) {
	svc, err := New(Options{Clock: NewManualClock(testNow), Logger: zerolog.Nop(), DedupSize: 32 << 20, MaxKeyStates: 10, MaxCampaignStates: 1})
	if err != nil {
		t.Fatal(err)
	}
	svc.ingest.Apply(placementEvents("e", 0, 20), testNow)
	for i := range 20 {
		if code, body := bid(svc, i); code != 200 {
			t.Fatalf("unexpected status %d: %s", code, body)
		}
	}
	svc.brain.Publish(testNow)
	st := svc.brain.Stats()
	if st.Keys != 10 || st.KeysFull != 10 {
		t.Fatalf("unexpected key table with room for 10 after 20 keys: %+v", st)
	}
	bid(svc, 0)
	ctx := requestCtx("/v1/multiplier?campaign=c2")
	svc.serveHTTP(ctx)
	if st := svc.brain.Stats(); st.Campaigns != 1 || st.CampaignsFull != 1 {
		t.Fatalf("unexpected campaign table with room for 1 after 2 campaigns: %+v", st)
	}
	var buf bytes.Buffer
	svc.metrics.WritePrometheus(&buf)
	for _, line := range []string{`bidpulse_brain_untracked_total{table="keys"} 10`, `bidpulse_brain_untracked_total{table="campaigns"} 1`, "bidpulse_brain_key_states 10"} {
		if !strings.Contains(buf.String(), line+"\n") {
			t.Fatalf("metrics lack %q:\n%s", line, buf.String())
		}
	}
}

// TestBrainStatesNeverHalfBuilt ticks a brain while readers load its
// states, and checks every state read equals the one a reference brain,
// ticked alone at the same times over the same windows, published for
// that tick.
func TestBrainStatesNeverHalfBuilt(t *testing.T) {
	svc, _ := newTestService(t)
	const keys = 50
	svc.ingest.Apply(placementEvents("e", 0, keys), testNow)
	ref := brain.New(brain.Options{Store: svc.store, Rollups: svc.rollups, Policies: svc.control.Policies, Now: svc.clock.NowMs})
	names := make([][]byte, keys)
	sc := getScratch()
	for i := range names {
		sc.Vals.Reset()
		if err := sc.setDim(dimIndex(t, "campaign"), []byte("c1")); err != nil {
			t.Fatal(err)
		}
		if err := sc.setDim(dimIndex(t, "creative"), []byte("cr1")); err != nil {
			t.Fatal(err)
		}
		if err := sc.setDim(dimIndex(t, "placement"), fmt.Appendf(nil, "p%d", i)); err != nil {
			t.Fatal(err)
		}
		lvl, _ := svc.rollups.ByMask(sc.Vals.Mask())
		sc.Key = windows.AppendKey(sc.Key[:0], lvl, svc.rollups, &sc.Vals)
		names[i] = append([]byte(nil), sc.Key...)
		for _, b := range []*brain.Brain{ref, svc.brain} {
			b.Key(names[i], testNow, true)
			b.Campaign([]byte("c1"), testNow, true)
		}
	}
	putScratch(sc)
	ref.Publish(testNow)
	svc.brain.Publish(testNow)

	const ticks = 40
	at := func(i int) int64 { return testNow + int64(i)*15_000 }
	refCamp := map[int64]models.CampaignState{}
	refKeys := map[string]map[int64]models.KeyState{}
	// Publish ticked the new campaign once.
	if st, _, _ := ref.CampaignEntry("c1"); st != nil {
		refCamp[st.LastTickMs] = *st
	}
	for i := 1; i <= ticks; i++ {
		ref.Tick(at(i))
		st, _, _ := ref.CampaignEntry("c1")
		refCamp[st.LastTickMs] = *st
		for _, k := range names {
			ks, _ := ref.KeyEntry(string(k))
			if refKeys[string(k)] == nil {
				refKeys[string(k)] = map[int64]models.KeyState{}
			}
			refKeys[string(k)][ks.AtMs] = *ks
		}
	}

	var stop atomic.Bool
	var reads, mismatches atomic.Int64
	var firstBad atomic.Value
	var wg sync.WaitGroup
	for r := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := r; !stop.Load(); i++ {
				if cs := svc.brain.Campaign([]byte("c1"), testNow, false); cs != nil {
					if want, ok := refCamp[cs.LastTickMs]; !ok || *cs != want {
						mismatches.Add(1)
						firstBad.CompareAndSwap(nil, fmt.Sprintf("campaign state at %d (a tick at that time: %v)", cs.LastTickMs, ok))
					}
				}
				k := names[i%keys]
				if ks := svc.brain.Key(k, testNow, false); ks != nil {
					if want, ok := refKeys[string(k)][ks.AtMs]; !ok || *ks != want {
						mismatches.Add(1)
						firstBad.CompareAndSwap(nil, fmt.Sprintf("key state %q at %d", k, ks.AtMs))
					}
				}
				reads.Add(1)
			}
		}()
	}
	for i := 1; i <= ticks; i++ {
		svc.brain.Tick(at(i))
	}
	stop.Store(true)
	wg.Wait()
	if n := mismatches.Load(); n > 0 {
		t.Fatalf("%d of %d reads saw a state no reference tick published; first: %v", n, reads.Load(), firstBad.Load())
	}
	if reads.Load() == 0 {
		t.Fatal("no reads ran during the ticks")
	}
	st, _, _ := svc.brain.CampaignEntry("c1")
	if st == nil || *st != refCamp[at(ticks)] {
		t.Fatalf("the last tick's campaign state differs from the reference: %+v", st)
	}
}

func dimIndex(t *testing.T, name string) windows.Dim {
	t.Helper()
	d, ok := dimByName([]byte(name))
	if !ok {
		t.Fatalf("no dimension %q", name)
	}
	return d
}

// TestAnswerNumbersAreFinite checks that every number of the bid answers,
// explain included, is finite and short, with the kill switch on and off,
// an override, and a hard cap.
func TestAnswerNumbersAreFinite(t *testing.T) {
	e := startTestService(t, func(o *Options) { o.AdminToken = "tok" })
	e.publish(t, string(placementEvents("e", 0, 10)))
	e.waitReceived(t, 11)
	check := func(what string, body []byte) {
		t.Helper()
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.UseNumber()
		var v any
		if err := dec.Decode(&v); err != nil {
			t.Fatalf("%s: invalid JSON %s: %v", what, body, err)
		}
		var walk func(path string, v any)
		walk = func(path string, v any) {
			switch x := v.(type) {
			case map[string]any:
				for k, c := range x {
					walk(path+"."+k, c)
				}
			case []any:
				for i, c := range x {
					walk(fmt.Sprintf("%s[%d]", path, i), c)
				}
			case json.Number:
				f, err := x.Float64()
				if err != nil || math.IsNaN(f) || math.IsInf(f, 0) || len(x) > 24 {
					t.Fatalf("%s: %s is %q: want a finite number in a short form\n%s", what, path, x, body)
				}
			}
		}
		walk("", v)
	}
	get := func(what, path string) {
		t.Helper()
		code, body := e.do(t, "GET", path, "", "")
		if code != 200 {
			t.Fatalf("%s: status %d: %s", what, code, body)
		}
		check(what, body)
	}
	paths := []string{
		"/v1/multiplier?campaign=c1&creative=cr1&placement=p1&explain=1",
		"/v1/multiplier?campaign=none&explain=1",
		"/v1/rates?campaign=c1&creative=cr1&placement=p1",
	}
	for _, p := range paths {
		get("default", p)
	}
	if code, b := e.do(t, "PUT", "/v1/overrides", "tok", `{"campaign":"c1","creative":"cr1","placement":"p2","multiplier":0}`); code != 200 {
		t.Fatalf("cannot set an override: %d %s", code, b)
	}
	get("override 0", "/v1/multiplier?campaign=c1&creative=cr1&placement=p2&explain=1")
	if code, b := e.do(t, "PUT", "/v1/killswitch", "tok", `{"enabled":true,"reason":"test"}`); code != 200 {
		t.Fatalf("cannot set the kill switch: %d %s", code, b)
	}
	checkFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		if !e.svc.control.Killed() {
			return fmt.Errorf("kill switch not on yet")
		}
		return nil
	})
	for _, p := range append(paths, "/v1/multiplier?campaign=c1&creative=cr1&placement=p2&explain=1") {
		get("kill switch", p)
	}
	code, body := e.do(t, "POST", "/v1/multipliers", "", `[{"campaign":"c1","creative":"cr1","placement":"p1","explain":true},{"campaign":"c9","explain":true}]`)
	if code != 200 {
		t.Fatalf("batch: status %d: %s", code, body)
	}
	check("batch, kill switch", body)
	if !bytes.Contains(body, []byte(`"clamp":[1,1]`)) {
		t.Fatalf("the kill switch's explain must show the clamp it applies, [1,1]: %s", body)
	}
}
