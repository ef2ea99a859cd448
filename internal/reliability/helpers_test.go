package reliability_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/dlite-dev/dlite/internal/chaos"
	"github.com/dlite-dev/dlite/internal/spool"
	"github.com/dlite-dev/dlite/mockmanager"
)

// waitFor bounds every wait; it only keeps a broken runner from hanging the test run.
const waitFor = 90 * time.Second

// binary is the dlite binary under test, built by TestMain.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "dlite-reliability-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	binary, err = chaos.Build(ctx, dir, raceEnabled)
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		_ = os.RemoveAll(dir)
		os.Exit(1)
	}
	goleak.VerifyTestMain(m, goleak.Cleanup(func(code int) {
		_ = os.RemoveAll(dir)
		os.Exit(code)
	}))
}

// settings are a runner's DLITE_ variables for a test: fast intervals, JSON logs, no status page.
func settings(endpoint, account, secret, spool string) map[string]string {
	return map[string]string{
		"DLITE_MANAGER_ENDPOINT":        endpoint,
		"DLITE_ACCOUNT_ID":              account,
		"DLITE_ACCOUNT_SECRET":          secret,
		"DLITE_NAME":                    "reliability-runner",
		"DLITE_PARALLEL_WORKERS":        "4",
		"DLITE_POLL_INTERVAL_MILLISECS": "50",
		"DLITE_HEARTBEAT_INTERVAL":      "1s",
		"DLITE_SPOOL_DIR":               spool,
		"DLITE_SHUTDOWN_GRACE":          "10s",
		"DLITE_LOG_FORMAT":              "json",
		"DLITE_LOG_LEVEL":               "info",
		"DLITE_HTTP_ADDR":               "off",
	}
}

// managerSettings are settings for a runner of mm reached at endpoint (mm's URL or a proxy's).
func managerSettings(t *testing.T, mm *mockmanager.TestServer, endpoint string) map[string]string {
	t.Helper()
	return settings(endpoint, mm.AccountID(), mm.AccountSecret(), filepath.Join(t.TempDir(), "spool"))
}

// newManager starts a mock manager for the test, logging to the test's output at warn and above
// only (the runners' output is the interesting part).
func newManager(t *testing.T, opts mockmanager.Options) *mockmanager.TestServer {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	return mockmanager.NewTest(t, opts)
}

// newProxy starts a chaos proxy in front of target, closed when the test ends.
func newProxy(t *testing.T, target string) *chaos.Proxy {
	t.Helper()
	p, err := chaos.NewProxy(target)
	require.NoError(t, err)
	t.Cleanup(p.Close)
	return p
}

// startRunner starts the binary's `run` with the given settings. When the test ends the runner
// is stopped (SIGTERM) if still running, and its output is logged should the test have failed.
func startRunner(t *testing.T, name string, env map[string]string) *chaos.Process {
	t.Helper()
	p, err := chaos.Start(name, binary, []string{"run"}, env)
	require.NoError(t, err)
	t.Cleanup(func() {
		_ = p.Stop(20 * time.Second)
		if t.Failed() {
			t.Logf("output of %s:\n%s", name, tail(p.Output(), 200))
		}
		require.NotContains(t, string(p.Output()), "WARNING: DATA RACE", "%s hit a data race", name)
	})
	return p
}

// tail returns the last n lines of out.
func tail(out []byte, n int) string {
	lines := strings.Split(strings.TrimRight(string(out), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// eventually waits until cond holds, failing the test with what after waitFor.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting: %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// logged waits until the runner has logged a record with msg and returns it.
func logged(t *testing.T, p *chaos.Process, msg string) chaos.Record {
	t.Helper()
	var rec chaos.Record
	eventually(t, fmt.Sprintf("%s to log %q", p.Name, msg), func() bool {
		found := chaos.Find(chaos.Records(p.Output()), msg)
		if len(found) == 0 {
			return false
		}
		rec = found[0]
		return true
	})
	return rec
}

// count returns how many records with msg the runner has logged, for the given task when taskID
// is not empty.
func count(p *chaos.Process, msg, taskID string) int {
	n := 0
	for _, r := range chaos.Find(chaos.Records(p.Output()), msg) {
		if taskID == "" || r.TaskID == taskID {
			n++
		}
	}
	return n
}

// requireStartedOnce asserts that the runners together started task id exactly once. A runner's
// output reaches the test through a pipe that is read on its own goroutine, so a line the runner
// wrote before its result was sent may not have been read yet when the manager holds the result:
// wait for the first start to be read before counting.
func requireStartedOnce(t *testing.T, id string, runners ...*chaos.Process) {
	t.Helper()
	started := func() int {
		n := 0
		for _, p := range runners {
			n += count(p, "task started", id)
		}
		return n
	}
	eventually(t, "the start of task "+id+" to be read from the runners' output", func() bool { return started() > 0 })
	require.Equal(t, 1, started(), "task %s started once", id)
}

// enqueue queues a task and returns its id.
func enqueue(t *testing.T, mm *mockmanager.TestServer, typ string, data any, mutate ...func(*mockmanager.NewTask)) string {
	t.Helper()
	raw, err := json.Marshal(data)
	require.NoError(t, err)
	msg := json.RawMessage(raw)
	nt := mockmanager.NewTask{Type: typ, Data: &msg, Timeout: new(int64(60))}
	for _, m := range mutate {
		m(&nt)
	}
	id, err := mm.Enqueue(nt)
	require.NoError(t, err)
	return id
}

// rawJSON returns s as task data.
func rawJSON(s string) *json.RawMessage {
	m := json.RawMessage(s)
	return &m
}

// contextWithTimeout is a context for a bounded wait.
func contextWithTimeout(d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), d)
}

func sleepTask(ms int) map[string]any { return map[string]any{"milliseconds": ms} }

func runnerResponse(nt *mockmanager.NewTask) { nt.RunnerResponse = new(true) }

// waitDone waits until the task has been answered and returns its status.
func waitDone(t *testing.T, mm *mockmanager.TestServer, id string) mockmanager.TaskStatus {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	st, err := mm.WaitDone(ctx, id)
	require.NoError(t, err, "task %s was never answered", id)
	return st
}

// waitState waits until the task is in the given state and returns its status.
func waitState(t *testing.T, mm *mockmanager.TestServer, id string, state mockmanager.TaskState) mockmanager.TaskStatus {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	st, err := mm.WaitTask(ctx, id, func(st mockmanager.TaskStatus) bool { return st.State == state })
	require.NoError(t, err)
	return st
}

// spoolEntries lists the keys of the results waiting in a spool directory. The runner holds the
// spool's lock, so they are loaded from a copy of its files.
func spoolEntries(t *testing.T, dir string) []string {
	t.Helper()
	des, err := os.ReadDir(dir)
	require.NoError(t, err)
	scratch, err := os.MkdirTemp("", "dlite-spool-copy-")
	require.NoError(t, err)
	defer os.RemoveAll(scratch)
	for _, de := range des {
		if !de.Type().IsRegular() || de.Name() == ".lock" {
			continue
		}
		data, err := os.ReadFile(filepath.Join(dir, de.Name()))
		if errors.Is(err, os.ErrNotExist) {
			continue // deleted since the listing
		}
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(scratch, de.Name()), data, 0o600))
	}
	sp, err := spool.Open(scratch, nil)
	require.NoError(t, err)
	defer sp.Close()
	items, err := sp.Load()
	require.NoError(t, err)
	keys := make([]string, 0, len(items))
	for _, it := range items {
		keys = append(keys, it.Key)
	}
	return keys
}

// deref returns *p, or the zero value for nil.
func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}
