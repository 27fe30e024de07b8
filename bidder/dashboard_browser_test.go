package bidder

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// chromiumPath is Debian's chromium (apt-get install chromium; .ci/run
// installs it when missing).
const chromiumPath = "/usr/bin/chromium"

// newBrowser starts a headless chromium that may reach the loopback
// interface only, and returns a tab context bounded by timeout.
func newBrowser(t *testing.T, timeout time.Duration) context.Context {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("CI must run the browser test, but chromium is missing at %s: %v", chromiumPath, err)
		}
		t.Skipf("browser test needs Debian's chromium at %s (apt-get install -y chromium; .ci/run does it): %v", chromiumPath, err)
	}
	if testing.Short() {
		t.Skip("browser test skipped in -short mode")
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	t.Cleanup(cancel)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(ctx,
		chromedp.ExecPath(chromiumPath),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1400, 1000),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		// Nothing but the service under test: every other host fails to resolve.
		chromedp.Flag("host-resolver-rules", "MAP * ~NOTFOUND , EXCLUDE 127.0.0.1"),
	)
	t.Cleanup(cancelAlloc)
	tab, cancelTab := chromedp.NewContext(allocCtx)
	t.Cleanup(cancelTab)
	return tab
}

// tableRowsJS reads the top keys table: one object per row, by data-col.
const tableRowsJS = `Array.from(document.querySelectorAll('#keys-table tbody tr[data-id]')).map(tr => {
	const o = {};
	tr.querySelectorAll('td[data-col]').forEach(td => {
		o[td.dataset.col] = td.dataset.col === 'multiplier' ? td.firstChild.textContent : td.textContent;
		if (td.dataset.col === 'multiplier' && td.querySelector('.badge')) o.badge = td.querySelector('.badge').textContent;
	});
	return o;
})`

// groupThousands formats n as the page does (en-US grouping).
func groupThousands(n float64) string {
	s := strconv.FormatInt(int64(n), 10)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

func TestDashboardInBrowser(t *testing.T) {
	tab := newBrowser(t, 60*time.Second)
	const token = "s3cret"
	e := startTestService(t, func(o *Options) {
		o.AdminToken = token
		o.SSEInterval = 200 * time.Millisecond
	})
	n := publishTraffic(t, e, testNow-1000)
	e.waitReceived(t, uint64(n))

	do := func(what string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(tab, actions...); err != nil {
			t.Fatalf("cannot %s: %v", what, err)
		}
	}
	eval := func(what, js string) {
		t.Helper()
		if _, err := chromedp.Run(tab, chromedp.Evaluate[any](js)); err != nil {
			t.Fatalf("cannot %s: %v", what, err)
		}
	}
	// waitJS waits until the expression is truthy and returns its value as JSON.
	waitJS := func(what, js string) string {
		t.Helper()
		v, err := chromedp.Run(tab, chromedp.Poll[string](`(() => { const v = (`+js+`); return v ? JSON.stringify(v) : null; })()`,
			chromedp.WithPollingTimeout(20*time.Second), chromedp.WithPollingInterval(50*time.Millisecond)))
		if err != nil {
			t.Fatalf("page never showed %s: %v", what, err)
		}
		return v
	}
	seq := func() int {
		t.Helper()
		var s int
		json.Unmarshal([]byte(waitJS("a frame", `Number(document.body.dataset.seq || 0) + 1`)), &s)
		return s - 1
	}
	nextFrames := func(k int) {
		t.Helper()
		want := seq() + k
		waitJS(fmt.Sprintf("frame %d", want), fmt.Sprintf(`Number(document.body.dataset.seq || 0) >= %d`, want))
	}

	// Bid traffic, about 200 requests/s, until the service stops.
	stopBids := make(chan struct{})
	bidsDone := make(chan struct{})
	go func() {
		defer close(bidsDone)
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stopBids:
				return
			case <-tick.C:
				if resp, err := http.Get(e.base + "/v1/multiplier?campaign=c1&placement=news.example/top"); err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			}
		}
	}()
	defer func() {
		select {
		case <-stopBids:
		default:
			close(stopBids)
		}
		<-bidsDone
	}()

	// Uncaught exceptions and console errors (a CSP violation among them)
	// fail the test; failed requests (the wrong token's 401) do not.
	do("start the browser") // the tab must outlive the console subscription
	consoleCtx, stopConsole := context.WithCancel(tab)
	messages := chromedp.Console(consoleCtx)
	var consoleMu sync.Mutex
	var problems []string
	consoleDone := make(chan struct{})
	go func() {
		defer close(consoleDone)
		for m, err := range messages {
			if err != nil {
				return
			}
			if m.IsException() || (m.Type == chromedp.ConsoleError && m.Source != "network") {
				consoleMu.Lock()
				problems = append(problems, m.String())
				consoleMu.Unlock()
			}
		}
	}()

	do("open the dashboard", chromedp.Navigate(e.base+"/?level=campaign/placement"))
	waitJS("the live stream", `document.getElementById('stream-status').textContent === 'stream: live'`)

	// The promotion: 10,000 more keys arrive in waves (one impression on
	// each of 10,000 placements of c9), with some bad and duplicate events
	// and bid traffic, while the page watches.
	total := n
	for wave := 0; wave < 4; wave++ {
		var batch []string
		for i := wave * 2500; i < (wave+1)*2500; i++ {
			batch = append(batch, ev(fmt.Sprintf("c9-%d", i), "impression", testNow-1000, "c9", "", fmt.Sprintf("p-%05d", i)))
			if len(batch) == 500 {
				e.publish(t, "["+strings.Join(batch, ",")+"]")
				e.publish(t, batch[0]) // a duplicate
				batch = batch[:0]
			}
		}
		e.publish(t, `{"id":"bad","type":"view","campaign":"c9"}`)
		total += 2500 + 5 + 1
		e.waitReceived(t, uint64(total))
		nextFrames(2)
	}

	// The table shows the published keys with the numbers of the API.
	snap := e.getJSON(t, "/v1/snapshot?level=campaign/placement&limit=1000", 200)
	want := map[string]map[string]string{}
	for _, k := range snap["keys"].([]any) {
		k := k.(map[string]any)
		key := k["key"].(map[string]any)
		if key["campaign"] != "c1" {
			continue
		}
		want[key["placement"].(string)] = map[string]string{
			"campaign":    "c1",
			"placement":   key["placement"].(string),
			"impressions": groupThousands(k["impressions"].(float64)),
			"clicks":      groupThousands(k["clicks"].(float64)),
			"conversions": "0",
			"ctr":         fmt.Sprintf("%.2f%%", k["ctr"].(float64)*100),
			"cvr":         fmt.Sprintf("%.2f%%", k["cvr"].(float64)*100),
			"multiplier":  fmt.Sprintf("%.3f", k["multiplier"].(float64)),
		}
	}
	if len(want) != 3 {
		t.Fatalf("unexpected c1 keys in /v1/snapshot: %v", want)
	}
	var rows []map[string]string
	json.Unmarshal([]byte(waitJS("the c1 placements", `(() => { const r = `+tableRowsJS+`; return r.length === 50 && r; })()`)), &rows)
	got := map[string]map[string]string{}
	for _, r := range rows {
		if r["campaign"] == "c1" {
			delete(r, "trend")
			got[r["placement"]] = r
		}
	}
	for p, w := range want {
		if fmt.Sprint(got[p]) != fmt.Sprint(w) {
			t.Fatalf("unexpected row of %s; got %v; want %v", p, got[p], w)
		}
	}
	if got := want["news.example/top"]["ctr"]; got != "4.00%" {
		t.Fatalf("unexpected ctr of news.example/top; got %s; want 4.00%%", got)
	}
	// 10,003 keys at this level, the top 1000 in the stream, 50 per page.
	waitJS("the pager", `document.getElementById('pg-info').textContent === 'page 1 / 20'`)
	eval("filter the rows", `(() => { const f = document.getElementById('q-filter'); f.value = 'p-00500'; f.dispatchEvent(new Event('input')); })()`)
	waitJS("one filtered row", `(() => { const r = `+tableRowsJS+`; return r.length === 1 && r[0].placement === 'p-00500' && r[0].impressions === '1'; })()`)
	eval("clear the filter", `(() => { const f = document.getElementById('q-filter'); f.value = ''; f.dispatchEvent(new Event('input')); })()`)

	// The event rates and the bid latency reached the tiles.
	waitJS("the outcome totals", `document.querySelector('#outcomes tr[data-outcome="rejected"]').textContent.endsWith('4')`)
	waitJS("bid latency", `/p99 [0-9]/.test(document.getElementById('bid-lat').textContent)`)
	if got := waitJS("the live keys", `document.getElementById('keys').textContent`); got != `"10,010"` {
		t.Fatalf("unexpected live keys tile; got %s; want 10,010 (9 keys of c1, 10,001 of c9)", got)
	}

	// Search one key: its rates across spans and the explain of its multiplier.
	do("search a key",
		chromedp.SetValue(chromedp.ID("s-campaign"), "c1"),
		chromedp.SetValue(chromedp.ID("s-placement"), "blog.example/footer"),
		chromedp.Click(chromedp.ID("s-go")),
	)
	mult := e.getJSON(t, "/v1/multiplier?campaign=c1&placement=blog.example/footer&explain=1", 200)
	ex := mult["explain"].(map[string]any)
	waitJS("the explain", `document.querySelector('#explain dd[data-k="policy"]') && document.querySelector('#explain dd[data-k="policy"]').textContent === 'performance'`)
	var shown map[string]string
	json.Unmarshal([]byte(waitJS("the explain values", `(() => {
		const o = {};
		document.querySelectorAll('#explain dd').forEach(dd => o[dd.dataset.k] = dd.textContent);
		o.multiplier = document.getElementById('s-multiplier').textContent;
		o.factors = Array.from(document.querySelectorAll('#s-factors tbody tr td:first-child')).map(td => td.textContent).join(',');
		o.impr1h = document.querySelector('#s-rates tr[data-span="1h"] td[data-col="impressions"]').textContent;
		o.clicks24h = document.querySelector('#s-rates tr[data-span="24h"] td[data-col="clicks"]').textContent;
		return o;
	})()`)), &shown)
	var factors []string
	for _, f := range ex["factors"].([]any) {
		factors = append(factors, f.(map[string]any)["name"].(string))
	}
	wantShown := map[string]string{
		"policy":       "performance",
		"window":       "1h",
		"before clamp": fmt.Sprintf("%.3f", ex["before_clamp"].(float64)),
		"clamp":        "[0.1, 10]",
		"override":     "none",
		"multiplier":   fmt.Sprintf("%.3f", mult["multiplier"].(float64)),
		"factors":      strings.Join(factors, ","),
		"impr1h":       "5,000",
		"clicks24h":    "25",
	}
	if fmt.Sprint(shown) != fmt.Sprint(wantShown) {
		t.Fatalf("unexpected inspector; got %v; want %v", shown, wantShown)
	}

	// A wrong token is refused; the right one lists the overrides.
	do("enter a wrong token", chromedp.SetValue(chromedp.ID("token"), "nope"), chromedp.Click(chromedp.ID("token-go")))
	waitJS("the refusal", `document.getElementById('ov-status').textContent === 'invalid admin token'`)
	do("enter the token", chromedp.SetValue(chromedp.ID("token"), token), chromedp.Click(chromedp.ID("token-go")))
	waitJS("the unlocked overrides", `document.getElementById('ov-status').textContent === 'unlocked · 0 overrides'`)

	// Set an override and see the table's multiplier change.
	do("set an override",
		chromedp.SetValue(chromedp.ID("ov-campaign"), "c1"),
		chromedp.SetValue(chromedp.ID("ov-placement"), "news.example/top"),
		chromedp.SetValue(chromedp.ID("ov-multiplier"), "1.7"),
		chromedp.Click(chromedp.ID("ov-set")),
	)
	waitJS("the overridden multiplier", `(() => { const r = `+tableRowsJS+`.find(r => r.placement === 'news.example/top'); return r && r.multiplier === '1.700' && r.badge === 'override'; })()`)
	waitJS("the override listed", `document.querySelector('#ov-table tbody').textContent.includes('campaign=c1 placement=news.example/top')`)
	if m := e.getJSON(t, "/v1/multiplier?campaign=c1&placement=news.example/top", 200); m["multiplier"] != 1.7 {
		t.Fatalf("unexpected multiplier after the override; got %v; want 1.7", m["multiplier"])
	}
	if got := waitJS("no banner", `document.getElementById('banner').hidden ? 'hidden' : document.getElementById('banner').textContent`); got != `"hidden"` {
		t.Fatalf("unexpected banner while live and ready: %s", got)
	}
	nextFrames(1)
	shot(t, tab, "dashboard.png", "/tmp/bidpulse-dashboard.png")

	stopConsole()
	<-consoleDone
	if len(problems) > 0 {
		t.Fatalf("the page reported errors: %q", problems)
	}

	// The service goes away: the page says so.
	close(stopBids)
	<-bidsDone
	if err := e.svc.Stop(context.Background()); err != nil {
		t.Fatalf("unexpected error on stop: %v", err)
	}
	waitJS("the disconnection banner", `!document.getElementById('banner').hidden && document.getElementById('banner').textContent.includes('Live stream disconnected')`)
	waitJS("the stream pill", `document.getElementById('stream-status').textContent === 'stream: disconnected'`)
	waitJS("the readiness pill", `document.getElementById('ready-status').textContent === 'readyz: unreachable'`)
	shot(t, tab, "dashboard-disconnected.png", "/tmp/bidpulse-dashboard-disconnected.png")
}

// shot writes a full-page PNG under the test's temp dir and copies it to
// also (best effort), for a person to look at.
func shot(t *testing.T, tab context.Context, name, also string) {
	t.Helper()
	png, err := chromedp.Run(tab, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("cannot take a screenshot: %v", err)
	}
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatalf("cannot write the screenshot: %v", err)
	}
	if err := os.WriteFile(also, png, 0o644); err != nil {
		t.Logf("cannot copy the screenshot to %s: %v", also, err)
	}
	t.Logf("screenshot: %s (%d bytes), copied to %s", path, len(png), also)
}

// TestDashboardReadTokenInBrowser opens the dashboard of a service started
// with a read token: the page says it needs the token, then shows the live
// data once the read token is typed in, and keeps the overrides locked for
// it.
func TestDashboardReadTokenInBrowser(t *testing.T) {
	tab := newBrowser(t, 60*time.Second)
	const read, admin = "r3ad", "adm1n"
	e := startTestService(t, func(o *Options) {
		o.ReadToken = read
		o.AdminToken = admin
		o.SSEInterval = 200 * time.Millisecond
	})
	n := publishTraffic(t, e, testNow-1000)
	e.waitReceived(t, uint64(n))
	waitJS := func(what, js string) {
		t.Helper()
		if _, err := chromedp.Run(tab, chromedp.Poll[string](`(() => { const v = (`+js+`); return v ? JSON.stringify(v) : null; })()`,
			chromedp.WithPollingTimeout(20*time.Second), chromedp.WithPollingInterval(50*time.Millisecond))); err != nil {
			t.Fatalf("page never showed %s: %v", what, err)
		}
	}
	if err := chromedp.Do(tab, chromedp.Navigate(e.base+"/?level=campaign/placement")); err != nil {
		t.Fatalf("cannot open the dashboard: %v", err)
	}
	waitJS("the refused stream", `document.getElementById('banner').textContent.includes('401') && document.getElementById('stream-status').textContent === 'stream: disconnected'`)
	waitJS("the token prompt", `document.getElementById('ov-status').textContent.includes('needs its read token')`)
	if err := chromedp.Do(tab, chromedp.SetValue(chromedp.ID("token"), read), chromedp.Click(chromedp.ID("token-go"))); err != nil {
		t.Fatalf("cannot type the token: %v", err)
	}
	waitJS("the live stream", `document.getElementById('stream-status').textContent === 'stream: live'`)
	waitJS("the top keys", `(() => { const r = `+tableRowsJS+`; return r.some(r => r.placement === 'news.example/top' && r.impressions === '5,000'); })()`)
	waitJS("the locked overrides", `document.getElementById('ov-status').textContent === 'not an admin token: the overrides need the admin token'`)
}
