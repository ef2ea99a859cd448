package runner_test

import (
	"context"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/dlite-dev/dlite/internal/dispatch"
	"github.com/dlite-dev/dlite/internal/executor"
	"github.com/dlite-dev/dlite/internal/harness"
	"github.com/dlite-dev/dlite/internal/manager"
	"github.com/dlite-dev/dlite/internal/poller"
	"github.com/dlite-dev/dlite/internal/pool"
	"github.com/dlite-dev/dlite/internal/reporter"
	"github.com/dlite-dev/dlite/internal/retry"
	"github.com/dlite-dev/dlite/internal/runner"
	"github.com/dlite-dev/dlite/internal/session"
	"github.com/dlite-dev/dlite/internal/spool"
	"github.com/dlite-dev/dlite/mockmanager"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const waitFor = 30 * time.Second

// gate is the runner's admission control, opened and closed by the test.
type gate struct {
	open   atomic.Bool
	admits atomic.Int64
}

func (g *gate) Admit() (bool, string) {
	g.admits.Add(1)
	if g.open.Load() {
		return true, ""
	}
	return false, "the test holds new work back"
}

func (g *gate) Run(ctx context.Context) error {
	<-ctx.Done()
	return ctx.Err()
}

// parts is a runner assembled by hand from the runtime's packages, talking to a mock manager
// through the Harness client. BLOCK_TASK runs until released (or its context ends).
type parts struct {
	runner *runner.Runner
	gate   *gate
	// finish lets the BLOCK_TASKs return.
	finish func()
	spool  *spool.Spool
	done   chan error
	closed sync.Once
}

func assemble(t *testing.T, mm *mockmanager.TestServer, spoolDir string, finalWait time.Duration) *parts {
	t.Helper()
	return assembleWith(t, mm, spoolDir, finalWait, extras{})
}

// extras are what some tests add to a runner: the tasks a manager keeps as unfinished, and a
// sender standing between the reporter and the manager.
type extras struct {
	recover manager.Recoverer
	sender  func(reporter.Sender) reporter.Sender
}

func assembleWith(t *testing.T, mm *mockmanager.TestServer, spoolDir string, finalWait time.Duration, ex extras) *parts {
	t.Helper()
	logger := slog.New(slog.NewTextHandler(t.Output(), nil))
	client, err := harness.New(harness.Options{Endpoint: mm.URL, AccountID: mm.AccountID(), AccountSecret: mm.AccountSecret()})
	require.NoError(t, err)
	t.Cleanup(client.CloseIdleConnections)
	release := make(chan struct{})
	var once sync.Once
	d, err := dispatch.New(dispatch.Options{Legacy: map[string]http.Handler{
		"BLOCK_TASK": http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-release:
			case <-r.Context().Done():
				http.Error(w, "stopped", http.StatusConflict)
			}
		}),
	}})
	require.NoError(t, err)
	sp, err := spool.Open(spoolDir, logger)
	require.NoError(t, err)
	slots := pool.New(2)
	var sender reporter.Sender = client
	if ex.sender != nil {
		sender = ex.sender(client)
	}
	rep := reporter.New(reporter.Options{Sender: sender, Spool: sp, Logger: logger,
		Backoff: retry.Policy{Initial: 20 * time.Millisecond, Max: 100 * time.Millisecond}})
	x := executor.New(executor.Options{Dispatcher: d, Slots: slots, Reporter: rep, Logger: logger})
	id := runner.NewIdentity("runner-test", mm.URL, nil, d.Types(), slots.Size())
	s := session.New(session.Options{
		Manager:  client,
		Describe: func() manager.Delegate { return id.Describe(x.RunningIDs(), time.Now()) },
		Interval: 100 * time.Millisecond,
		Backoff:  retry.Policy{Initial: 10 * time.Millisecond, Max: 100 * time.Millisecond},
		Logger:   logger,
	})
	g := &gate{}
	g.open.Store(true)
	p := poller.New(poller.Options{
		Source: client, Slots: slots, Tasks: x, Session: s, Admitter: g, Supports: d.Supports,
		Interval: 20 * time.Millisecond, HoldRecheck: 5 * time.Millisecond, Logger: logger,
	})
	r := runner.New(runner.Options{Session: s, Poller: p, Executor: x, Reporter: rep, Admission: g,
		Recover: ex.recover, FinalWait: finalWait, Logger: logger})
	return &parts{runner: r, gate: g, finish: func() { once.Do(func() { close(release) }) }, spool: sp,
		done: make(chan error, 1)}
}

// run starts the runner and stops it (hard) when the test ends, if the test has not.
func (p *parts) run(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	go func() { p.done <- p.runner.Run(ctx) }()
	t.Cleanup(func() {
		p.finish()
		cancel()
		p.wait(t)
		p.closeSpool(t)
	})
}

// closeSpool releases the spool's lock, once.
func (p *parts) closeSpool(t *testing.T) {
	t.Helper()
	p.closed.Do(func() { require.NoError(t, p.spool.Close()) })
}

// wait waits for Run to return.
func (p *parts) wait(t *testing.T) {
	t.Helper()
	select {
	case err := <-p.done:
		require.NoError(t, err)
		p.done <- nil
	case <-time.After(waitFor):
		t.Fatal("the runner did not stop")
	}
}

func blockTask() mockmanager.NewTask {
	return mockmanager.NewTask{Type: "BLOCK_TASK"}
}

func waitAnswered(t *testing.T, mm *mockmanager.TestServer, id string) mockmanager.TaskStatus {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), waitFor)
	defer cancel()
	st, err := mm.WaitTask(ctx, id, func(st mockmanager.TaskStatus) bool { return len(st.Responses) > 0 })
	require.NoError(t, err)
	return st
}

// While admission control holds new work back the runner acquires nothing; once it admits work
// again, the waiting task runs.
func TestAdmissionHoldsNewWorkBack(t *testing.T) {
	t.Parallel()
	mm := mockmanager.NewTest(t, mockmanager.Options{})
	p := assemble(t, mm, t.TempDir(), 0)
	p.gate.open.Store(false)
	id, err := mm.Enqueue(blockTask())
	require.NoError(t, err)
	p.run(t)

	// The poller asks admission control again and again, and acquires nothing meanwhile.
	require.Eventually(t, func() bool { return p.gate.admits.Load() >= 20 }, waitFor, time.Millisecond)
	st, err := mm.Task(id)
	require.NoError(t, err)
	require.Equal(t, mockmanager.StateQueued, st.State)
	require.Empty(t, st.AcquireAttempts)

	p.gate.open.Store(true)
	p.finish()
	require.Equal(t, "OK", waitAnswered(t, mm, id).Responses[0].Code)
}

// The runner goes through its phases: starting, registering, running, draining (while a task
// finishes) and stopped.
func TestPhases(t *testing.T) {
	t.Parallel()
	mm := mockmanager.NewTest(t, mockmanager.Options{})
	p := assemble(t, mm, t.TempDir(), 0)
	require.Equal(t, runner.PhaseStarting, p.runner.Phase())
	id, err := mm.Enqueue(blockTask())
	require.NoError(t, err)
	p.run(t)
	require.Eventually(t, func() bool { return p.runner.Phase() == runner.PhaseRunning }, waitFor, time.Millisecond)
	ctx, cancel := context.WithTimeout(t.Context(), waitFor)
	defer cancel()
	_, err = mm.WaitTask(ctx, id, func(st mockmanager.TaskStatus) bool { return st.Acquisitions > 0 })
	require.NoError(t, err)

	shutdown := make(chan error, 1)
	go func() { shutdown <- p.runner.Shutdown(ctx) }()
	require.Eventually(t, func() bool { return p.runner.Phase() == runner.PhaseDraining }, waitFor, time.Millisecond)
	p.finish()
	require.NoError(t, <-shutdown)
	require.Equal(t, runner.PhaseStopped, p.runner.Phase())
	require.Equal(t, "OK", waitAnswered(t, mm, id).Responses[0].Code)
}

// A result the manager cannot take before the runner stops stays in the spool, and the next
// runner on that spool delivers it.
func TestUndeliveredResultsSurviveARestart(t *testing.T) {
	t.Parallel()
	mm := mockmanager.NewTest(t, mockmanager.Options{})
	dir := t.TempDir()
	first := assemble(t, mm, dir, 200*time.Millisecond)
	id, err := mm.Enqueue(blockTask())
	require.NoError(t, err)
	first.run(t)
	ctx, cancel := context.WithTimeout(t.Context(), waitFor)
	defer cancel()
	_, err = mm.WaitTask(ctx, id, func(st mockmanager.TaskStatus) bool { return st.Acquisitions > 0 })
	require.NoError(t, err)

	// The manager goes down just as the task finishes.
	down := float32(1)
	require.NoError(t, mm.SetFaults(mockmanager.Faults{ErrorRate: &down}))
	first.finish()
	require.Eventually(t, func() bool { return first.spool.Len() == 1 }, waitFor, time.Millisecond)
	require.NoError(t, first.runner.Shutdown(ctx))
	require.Equal(t, 1, first.spool.Len(), "the result is kept")
	first.closeSpool(t)
	st, err := mm.Task(id)
	require.NoError(t, err)
	require.Empty(t, st.Responses)

	require.NoError(t, mm.SetFaults(mockmanager.Faults{}))
	second := assemble(t, mm, dir, 0)
	second.run(t)
	st = waitAnswered(t, mm, id)
	require.Len(t, st.Responses, 1)
	require.Equal(t, "OK", st.Responses[0].Code)
}
