package dlite

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"github.com/dlite-dev/dlite/internal/syncbuf"
	"github.com/dlite-dev/dlite/mockmanager"
)

// chromiumPath is where Debian's chromium package installs the browser.
const chromiumPath = "/usr/bin/chromium"

// skipBrowserTests is the one way to run the suite without a browser: set explicitly, never
// inferred from a missing browser, so a CI machine without Chromium fails instead of passing
// without the test.
const skipBrowserTests = "DLITE_SKIP_BROWSER_TESTS"

// headlessChromium starts a headless Chromium for the test, driven over the DevTools protocol,
// and stops it when the test ends. Without Chromium the test fails with how to install it.
func headlessChromium(t *testing.T) context.Context {
	t.Helper()
	if os.Getenv(skipBrowserTests) == "1" {
		t.Skipf("%s=1: browser tests skipped", skipBrowserTests)
	}
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Fatalf("the status page is tested in a real browser, and Chromium is not installed at %s (%v).\n"+
			"Install it with: sudo apt-get update && sudo apt-get install -y --no-install-recommends chromium\n"+
			"(.ci/run does this by itself), or set %s=1 to skip browser tests.", chromiumPath, err, skipBrowserTests)
	}
	output := &syncbuf.Buffer{}
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(chromiumPath),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true), // tests run as root in CI, where the sandbox cannot start
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.CombinedOutput(output),
	)
	ctx, cancelBrowser := chromedp.NewContext(alloc)
	t.Cleanup(func() {
		_ = chromedp.Cancel(ctx)
		cancelBrowser()
		cancelAlloc()
		if t.Failed() {
			t.Logf("chromium output:\n%s", output.String())
		}
	})
	return ctx
}

// pageWaits bounds each wait for the page to show something. The page refreshes every second.
const pageWaits = 30 * time.Second

// waitUntil waits until the JavaScript expression is true on the page; on timeout it fails the test
// with what the page shows.
func waitUntil(ctx context.Context, t *testing.T, what, expression string) {
	t.Helper()
	_, err := chromedp.Run(ctx, chromedp.Poll[bool](expression,
		chromedp.WithPollingInterval(100*time.Millisecond), chromedp.WithPollingTimeout(pageWaits)))
	if err != nil {
		shown, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body.innerText`))
		t.Fatalf("the status page never showed %s (%v); it shows:\n%s", what, err, shown)
	}
}

// cells returns the text of the cells of the task's row in the table body tbody.
func cells(ctx context.Context, t *testing.T, tbody, taskID string) []string {
	t.Helper()
	texts, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](fmt.Sprintf(
		`Array.from(document.querySelectorAll('#%s tr[data-task-id=%s] td')).map((td) => td.textContent)`,
		tbody, strconv.Quote(taskID))))
	require.NoError(t, err)
	return texts
}

// TestStatusPageInABrowser loads the status page in headless Chromium while tasks run and reads
// what a person would see: the delegate id, the running tasks, then the same tasks finished OK.
func TestStatusPageInABrowser(t *testing.T) {
	t.Parallel()
	browser := headlessChromium(t)
	mm := mockmanager.NewTest(t, mockmanager.Options{})
	lr := startRunner(t, mm, nil, nil)
	lr.waitReady(t)
	delegateID := lr.status(t).DelegateID
	require.NotEmpty(t, delegateID)

	ctx, cancel := context.WithTimeout(browser, 3*time.Minute)
	defer cancel()
	require.NoError(t, chromedp.Do(ctx, chromedp.Navigate(lr.URL+"/")))
	waitUntil(ctx, t, "the runner's name in the title", `document.title === 'dlite · runner-under-test'`)
	waitUntil(ctx, t, "the delegate id", fmt.Sprintf(`document.getElementById('delegate-id').textContent === %s`, strconv.Quote(delegateID)))
	waitUntil(ctx, t, "a live connection", `document.getElementById('connection').textContent === 'live'`)
	waitUntil(ctx, t, "that the runner is ready", `document.getElementById('ready').textContent === 'ready'`)
	waitUntil(ctx, t, "the slots", `document.getElementById('slots').textContent === '0 / 4'`)
	waitUntil(ctx, t, "an empty running table", `document.getElementById('running-empty').hidden === false`)

	// Tasks long enough to be seen running at a one-second refresh.
	first := enqueue(t, mm, sleepTask(4000))
	second := enqueue(t, mm, sleepTask(4000))
	for _, id := range []string{first, second} {
		waitUntil(ctx, t, "task "+id+" running",
			fmt.Sprintf(`document.querySelector('#running-body tr[data-task-id=%s]') !== null`, strconv.Quote(id)))
	}
	row := cells(ctx, t, "running-body", first)
	require.Len(t, row, 4, "id, type, started, elapsed")
	require.Equal(t, first, row[0])
	require.Equal(t, "SLEEP_TASK", row[1])
	require.NotEmpty(t, row[2])
	require.Regexp(t, `^(\d+ ms|\d+\.\d s)$`, row[3])
	waitUntil(ctx, t, "both tasks holding a slot", `document.getElementById('slots').textContent === '2 / 4'`)
	waitUntil(ctx, t, "the running count", `document.getElementById('running-count').textContent === '2'`)

	for _, id := range []string{first, second} {
		waitUntil(ctx, t, "task "+id+" finished OK",
			fmt.Sprintf(`document.querySelector('#finished-body tr[data-task-id=%s] td.code')?.textContent === 'OK'`, strconv.Quote(id)))
	}
	waitUntil(ctx, t, "no task running", `document.getElementById('running-body').children.length === 0`)
	row = cells(ctx, t, "finished-body", first)
	require.Len(t, row, 6, "id, type, code, duration, finished, error")
	require.Equal(t, []string{first, "SLEEP_TASK", "OK"}, row[:3])
	took, err := strconv.ParseFloat(strings.TrimSuffix(row[3], " s"), 64)
	require.NoError(t, err, "a duration in seconds: %q", row[3])
	require.GreaterOrEqual(t, took, 4.0, "it slept four seconds")
	require.Empty(t, row[5], "no error")
	waitUntil(ctx, t, "the finished count", `document.getElementById('finished-total').textContent === '2'`)
	waitUntil(ctx, t, "free slots again", `document.getElementById('slots').textContent === '0 / 4'`)
}
