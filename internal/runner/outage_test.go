package runner_test

import (
	"context"
	"log/slog"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dlite-dev/dlite/internal/contact"
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

// failedPolls counts the polls that failed.
type failedPolls struct{ n atomic.Int64 }

func (f *failedPolls) Polled(_ int, err error) {
	if err != nil {
		f.n.Add(1)
	}
}

func (f *failedPolls) Acquired(error) {}

const (
	outageAccount = "outage-account"
	outageSecret  = "0123456789abcdef0123456789abcdef"
)

func outageManager(t *testing.T) *mockmanager.Server {
	t.Helper()
	s, err := mockmanager.New(mockmanager.Options{AccountID: outageAccount, AccountSecret: outageSecret,
		Logger: slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))})
	require.NoError(t, err)
	return s
}

func noopTask() mockmanager.NewTask { return mockmanager.NewTask{Type: "NOOP_TASK"} }

func waitDone(t *testing.T, s *mockmanager.Server, id string) mockmanager.TaskStatus {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), waitFor)
	defer cancel()
	st, err := s.WaitTask(ctx, id, func(st mockmanager.TaskStatus) bool { return len(st.Responses) > 0 })
	require.NoError(t, err)
	return st
}

// After an outage the runner takes work again as soon as the manager answers: the manager stops
// and starts again on its address, with its state or without (it forgot the runner), and a task
// queued right then runs. The poller's backoff after a failed poll is an hour here, so the task
// runs at all only because an answer to another call (a heartbeat, a registration) ended it.
func TestWorkIsTakenAgainOnceTheManagerAnswers(t *testing.T) {
	t.Parallel()
	for _, keepState := range []bool{true, false} {
		name := "with its state"
		if !keepState {
			name = "without its state"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			srv := outageManager(t)
			running, err := srv.Start("127.0.0.1:0")
			require.NoError(t, err)
			addr := running.Addr().String()

			logger := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
			client, err := harness.New(harness.Options{Endpoint: running.URL(), AccountID: outageAccount, AccountSecret: outageSecret})
			require.NoError(t, err)
			t.Cleanup(client.CloseIdleConnections)
			sig := contact.NewSignal()
			mgr := contact.Watch(client, sig)
			d, err := dispatch.New(dispatch.Options{Legacy: map[string]http.Handler{
				"NOOP_TASK": http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}),
			}})
			require.NoError(t, err)
			sp, err := spool.Open(t.TempDir(), logger)
			require.NoError(t, err)
			t.Cleanup(func() { _ = sp.Close() })
			slots := pool.New(2)
			rep := reporter.New(reporter.Options{Sender: mgr, Spool: sp, Logger: logger,
				Backoff: retry.Policy{Initial: 20 * time.Millisecond, Max: 100 * time.Millisecond}})
			sig.Listen(rep.ManagerAnswered)
			x := executor.New(executor.Options{Dispatcher: d, Slots: slots, Reporter: rep, Logger: logger})
			id := runner.NewIdentity("outage-runner", running.URL(), nil, d.Types(), slots.Size())
			s := session.New(session.Options{
				Manager:     mgr,
				Describe:    func() manager.Delegate { return id.Describe(x.RunningIDs(), time.Now()) },
				Interval:    100 * time.Millisecond,
				MaxFailures: 2,
				Backoff:     retry.Policy{Initial: 10 * time.Millisecond, Max: 100 * time.Millisecond},
				Logger:      logger,
			})
			failed := &failedPolls{}
			g := &gate{}
			g.open.Store(true)
			p := poller.New(poller.Options{
				Source: mgr, Slots: slots, Tasks: x, Session: s, Admitter: g, Supports: d.Supports,
				Observer: failed, Interval: 20 * time.Millisecond, Backoff: retry.Policy{Initial: time.Hour, Max: time.Hour},
				Logger: logger,
			})
			sig.Listen(p.ManagerAnswered)
			r := runner.New(runner.Options{Session: s, Poller: p, Executor: x, Reporter: rep, Admission: g, Logger: logger})
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- r.Run(ctx) }()
			current := srv
			t.Cleanup(func() {
				cancel()
				require.NoError(t, <-done)
			})

			before, err := srv.Enqueue(noopTask())
			require.NoError(t, err)
			waitDone(t, srv, before)

			require.NoError(t, running.Close())
			require.Eventually(t, func() bool { return failed.n.Load() > 0 }, waitFor, time.Millisecond,
				"a poll failed: the poller backs off for an hour")

			if !keepState {
				current = outageManager(t)
			}
			running, err = current.Start(addr)
			require.NoError(t, err)
			t.Cleanup(func() { _ = running.Close() })
			after, err := current.Enqueue(noopTask())
			require.NoError(t, err)
			st := waitDone(t, current, after)
			require.Equal(t, "OK", st.Responses[0].Code)

			delegates := current.Delegates()
			require.Len(t, delegates, 1)
			require.Equal(t, delegates[0].DelegateId, *st.Responses[0].DelegateId)
			if keepState {
				require.Equal(t, delegates[0].DelegateId, *st.AcquiredBy, "the manager kept the runner")
			}
		})
	}
}
