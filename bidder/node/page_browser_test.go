package node

import (
	"context"
	"encoding/json"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// chromiumPath is Debian's chromium (.ci/run installs it when missing).
const chromiumPath = "/usr/bin/chromium"

// TestMemberPageBrowser: a member's page, in a real headless chromium,
// lists the member's partitions with what /v1/stats says of each, and the
// top campaigns of its partitions with what was sent.
func TestMemberPageBrowser(t *testing.T) {
	if _, err := os.Stat(chromiumPath); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("CI must run the browser test, but chromium is missing at %s: %v", chromiumPath, err)
		}
		t.Skipf("browser test needs Debian's chromium at %s (apt-get install -y chromium; .ci/run does it): %v", chromiumPath, err)
	}
	const parts = 4
	tc := newTestCluster(t, parts, nil)
	n := tc.start("m0")
	tc.waitStable(1, 30*time.Second)
	pub := tc.newPublisher()
	for i, c := range campaigns(6) {
		if !pub.publish(c, 3+i) {
			t.Fatal("publish not acknowledged")
		}
	}
	tc.waitCounted(pub.total(), 30*time.Second)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	alloc, cancelAlloc := chromedp.NewExecAllocator(ctx, chromedp.ExecPath(chromiumPath), chromedp.Headless, chromedp.NoSandbox,
		chromedp.DisableGPU, chromedp.NoFirstRun, chromedp.NoDefaultBrowserCheck, chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("disable-dev-shm-usage", true), chromedp.Flag("disable-extensions", true),
		chromedp.Flag("host-resolver-rules", "MAP * ~NOTFOUND , EXCLUDE 127.0.0.1"))
	defer cancelAlloc()
	tab, cancelTab := chromedp.NewContext(alloc)
	defer cancelTab()
	if err := chromedp.Do(tab, chromedp.Navigate("http://"+n.HTTPAddr()+"/")); err != nil {
		t.Fatal(err)
	}
	// Once the page has drawn every partition.
	rowsJS := `(() => { const rows = Array.from(document.querySelectorAll('#units tbody tr')).map(tr => {
		const o = {}; tr.querySelectorAll('td[data-col]').forEach(td => o[td.dataset.col] = td.textContent); return o; });
		return rows.length === ` + strconv.Itoa(parts) + ` ? JSON.stringify(rows) : null; })()`
	js, err := chromedp.Run(tab, chromedp.Poll[string](rowsJS, chromedp.WithPollingTimeout(20*time.Second)))
	if err != nil {
		t.Fatalf("the page did not list the %d partitions: %v", parts, err)
	}
	var rows []map[string]string
	if err := json.Unmarshal([]byte(js), &rows); err != nil {
		t.Fatal(err)
	}
	member, err := chromedp.Run(tab, chromedp.Evaluate[string](`document.getElementById('member').textContent`))
	if err != nil {
		t.Fatal(err)
	}
	status, _ := chromedp.Run(tab, chromedp.Evaluate[string](`document.getElementById('status').textContent`))
	if member != "m0" {
		t.Fatalf("the page names member %q; want m0 (status %q)", member, status)
	}
	byPartition := map[string]map[string]string{}
	for _, r := range rows {
		byPartition[r["partition"]] = r
	}
	var sum int
	for _, u := range n.unitReports() {
		r := byPartition[strconv.Itoa(int(u.Partition))]
		if r == nil || r["state"] != "serving" || r["role"] != u.Role || r["counted"] != strconv.FormatUint(u.Counted, 10) || r["applied_seq"] != strconv.FormatUint(u.AppliedSeq, 10) {
			t.Fatalf("partition %d on the page: %v; /v1/stats: state %s counted %d applied %d", u.Partition, r, u.State, u.Counted, u.AppliedSeq)
		}
		c, _ := strconv.Atoi(r["counted"])
		sum += c
	}
	if uint64(sum) != pub.total() {
		t.Fatalf("the page's counted events add up to %d; %d were acknowledged", sum, pub.total())
	}
	// The top campaigns: every campaign (one member serves all), most
	// impressions first, with what was sent.
	topJS := `(() => { const rows = Array.from(document.querySelectorAll('#top tbody tr')).map(tr => {
		const o = {}; tr.querySelectorAll('td[data-col]').forEach(td => o[td.dataset.col] = td.textContent); return o; });
		return rows.length === 6 ? JSON.stringify(rows) : null; })()`
	js, err = chromedp.Run(tab, chromedp.Poll[string](topJS, chromedp.WithPollingTimeout(20*time.Second)))
	if err != nil {
		t.Fatalf("the page did not list the 6 campaigns: %v", err)
	}
	var top []map[string]string
	if err := json.Unmarshal([]byte(js), &top); err != nil {
		t.Fatal(err)
	}
	for i, r := range top {
		if want := strconv.Itoa(pub.sent[r["campaign"]]); r["impressions"] != want {
			t.Fatalf("top campaign %d on the page: %v; %s impressions were sent", i, r, want)
		}
		if i > 0 && pub.sent[top[i-1]["campaign"]] < pub.sent[r["campaign"]] {
			t.Fatalf("the top campaigns are not in impressions order: %v", top)
		}
	}
}
