package e2e_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dlite-dev/dlite/mockmanager"
)

// After one poll fills some slots and slots remain, the runner polls again at once: with a poll
// interval of an hour and a manager that hands out two events per poll, five queued tasks all
// run. A slot freed while events were left over is filled without waiting for the interval too.
func TestFreeSlotsAreFilledWithoutWaitingForTheInterval(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name     string
		workers  string
		perPoll  int
		numTasks int
	}{
		{"polls again while slots remain", "10", 2, 5},
		{"polls again when a slot frees", "1", 0, 3},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			mm := newMock(t, mockmanager.Options{MaxEventsPerPoll: c.perPoll})
			ids := make([]string, c.numTasks)
			for i := range ids {
				ids[i] = enqueue(t, mm, sleepTask(20))
			}
			start(t, mm, setup{Env: map[string]string{
				"DLITE_PARALLEL_WORKERS":        c.workers,
				"DLITE_POLL_INTERVAL_MILLISECS": "3600000",
			}})
			for _, id := range ids {
				require.Equal(t, "OK", answered(t, mm, id).Responses[0].Code)
			}
		})
	}
}

// A delegate the manager deletes registers again and carries on under its new id: one loss, one
// new registration.
func TestDeletedDelegateRegistersAgain(t *testing.T) {
	t.Parallel()
	mm := newMock(t, mockmanager.Options{})
	rt := start(t, mm, setup{})
	first := delegates(t, mm, 1)[0]
	require.Equal(t, "OK", answered(t, mm, enqueue(t, mm, sleepTask(1))).Responses[0].Code)

	require.NoError(t, mm.DeleteDelegate(first.DelegateId))
	second := delegates(t, mm, 2)[1]
	require.NotEqual(t, first.DelegateId, second.DelegateId)
	require.EqualValues(t, "ENABLED", second.Status)

	st := answered(t, mm, enqueue(t, mm, sleepTask(1)))
	require.Equal(t, "OK", st.Responses[0].Code)
	require.Equal(t, second.DelegateId, *st.AcquiredBy)
	require.Len(t, mm.Delegates(), 2, "one loss, one new registration")
	rt.Logs.wait(t, "registered with the manager", "previous_delegate_id", first.DelegateId)
}

// A heartbeat answered with a null resource (the manager does not know the delegate) makes the
// runner register again and carry on under the id the manager then gives (the mock, which in fact
// still knows this runner process, gives back the same one).
func TestNullHeartbeatRegistersAgain(t *testing.T) {
	t.Parallel()
	mm := newMock(t, mockmanager.Options{})
	p := newProxy(t, mm.URL)
	start(t, mm, setup{Endpoint: p.URL})
	first := delegates(t, mm, 1)[0]
	require.Equal(t, 1, p.count(kindRegister, ""))

	p.set(func(p *proxy) {
		p.heartbeat = func(answer map[string]any) {
			answer["resource"] = nil
			p.set(func(p *proxy) { p.heartbeat = nil }) // this once
		}
	})
	require.Eventually(t, func() bool { return p.count(kindRegister, "") == 2 }, 30*time.Second, 10*time.Millisecond,
		"the runner registers again")

	st := answered(t, mm, enqueue(t, mm, sleepTask(1)))
	require.Equal(t, "OK", st.Responses[0].Code)
	require.Equal(t, first.DelegateId, *st.AcquiredBy)
	require.Len(t, mm.Delegates(), 1)
}

// While heartbeats say WAITING_FOR_APPROVAL the runner says so in its log and takes no work, not
// even asking for it; once they say ENABLED it works under the same registration.
func TestWaitingForApprovalTakesNoWork(t *testing.T) {
	t.Parallel()
	mm := newMock(t, mockmanager.Options{})
	p := newProxy(t, mm.URL)
	rt := start(t, mm, setup{Endpoint: p.URL})
	delegates(t, mm, 1)

	waiting := func(answer map[string]any) {
		if res, ok := answer["resource"].(map[string]any); ok {
			res["status"] = "WAITING_FOR_APPROVAL"
		}
	}
	p.set(func(p *proxy) { p.heartbeat = waiting })
	rt.Logs.wait(t, "waiting for approval")
	// A poll already under way when the heartbeat came back may still end.
	time.Sleep(200 * time.Millisecond)
	polls := p.count(kindPoll, "")
	id := enqueue(t, mm, sleepTask(1))
	beats := p.count(kindHeartbeat, "")
	require.Eventually(t, func() bool { return p.count(kindHeartbeat, "") >= beats+2 }, waitFor, 10*time.Millisecond,
		"two more heartbeats, both still waiting")
	require.Equal(t, polls, p.count(kindPoll, ""), "no polls while waiting for approval")
	st, err := mm.Task(id)
	require.NoError(t, err)
	require.Equal(t, mockmanager.StateQueued, st.State)

	p.set(func(p *proxy) { p.heartbeat = nil })
	st = answered(t, mm, id)
	require.Equal(t, "OK", st.Responses[0].Code)
	require.Len(t, mm.Delegates(), 1, "approval needs no new registration")
}

// A result the manager refuses for good (a 4xx) is sent once, not retried, and logged as lost;
// the runner goes on.
func TestRejectedResultIsNotRetried(t *testing.T) {
	t.Parallel()
	mm := newMock(t, mockmanager.Options{})
	p := newProxy(t, mm.URL)
	rejected := enqueue(t, mm, sleepTask(1))
	p.set(func(p *proxy) {
		p.refuse = func(c call) int {
			if c.Kind == kindStatus && c.TaskID == rejected {
				return http.StatusBadRequest
			}
			return 0
		}
	})
	rt := start(t, mm, setup{Endpoint: p.URL})

	rt.Logs.wait(t, "result LOST: the manager refused it for good", "task_id", rejected)
	require.Equal(t, 1, p.count(kindStatus, rejected))
	st, err := mm.Task(rejected)
	require.NoError(t, err)
	require.Empty(t, st.Responses)

	next := answered(t, mm, enqueue(t, mm, sleepTask(1)))
	require.Equal(t, "OK", next.Responses[0].Code)
	require.Equal(t, 1, p.count(kindStatus, rejected), "still sent only once")
}

// A result the manager cannot take for now (503) is sent again with backoff until it is taken,
// and recorded once.
func TestUnavailableManagerGetsTheResultLater(t *testing.T) {
	t.Parallel()
	mm := newMock(t, mockmanager.Options{})
	p := newProxy(t, mm.URL)
	p.set(func(p *proxy) {
		p.refuse = func(c call) int {
			if c.Kind == kindStatus && c.N <= 2 {
				return http.StatusServiceUnavailable
			}
			return 0
		}
	})
	rt := start(t, mm, setup{Endpoint: p.URL})
	id := enqueue(t, mm, task("SLEEP_TASK", map[string]any{"milliseconds": 1}, 60, true))
	st := answered(t, mm, id)
	require.Len(t, st.Responses, 1)
	require.Equal(t, "OK", st.Responses[0].Code)
	require.Equal(t, 3, p.count(kindStatus, id))
	rt.Logs.wait(t, "result not delivered yet; retrying", "task_id", id)
}

// Through a manager that fails a fifth of its calls with 503 and resets some connections, every
// task is still acquired once and answered once.
func TestFaultyManagerLosesNoResult(t *testing.T) {
	t.Parallel()
	mm := newMock(t, mockmanager.Options{})
	start(t, mm, setup{})
	delegates(t, mm, 1)
	errorRate, resetRate := float32(0.2), float32(0.05)
	require.NoError(t, mm.SetFaults(mockmanager.Faults{ErrorRate: &errorRate, ResetRate: &resetRate}))

	ids := make([]string, 8)
	for i := range ids {
		ids[i] = enqueue(t, mm, task("SLEEP_TASK", map[string]any{"milliseconds": 10}, 60, i%2 == 0))
	}
	for _, id := range ids {
		st := answered(t, mm, id)
		require.Len(t, st.Responses, 1)
		require.Equal(t, "OK", st.Responses[0].Code)
		require.Equal(t, 1, st.Acquisitions)
	}
	require.NoError(t, mm.SetFaults(mockmanager.Faults{}))
}

// A graceful shutdown stops taking work at once, lets the running task finish and reports it,
// keeps heartbeats going meanwhile, and returns.
func TestShutdownDrainsRunningTasks(t *testing.T) {
	t.Parallel()
	mm := newMock(t, mockmanager.Options{})
	rt := start(t, mm, setup{})
	running := enqueue(t, mm, sleepTask(2500))
	acquired(t, mm, running)

	began := time.Now()
	shutdown := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitFor)
		defer cancel()
		shutdown <- rt.R.Shutdown(ctx)
	}()
	rt.Logs.wait(t, "stopped taking work; draining running tasks")
	late := enqueue(t, mm, sleepTask(1))

	st := answered(t, mm, running)
	require.Equal(t, "OK", st.Responses[0].Code)
	require.NoError(t, rt.waitStopped(t))
	require.NoError(t, <-shutdown)

	ls, err := mm.Task(late)
	require.NoError(t, err)
	require.Equal(t, mockmanager.StateQueued, ls.State)
	require.Empty(t, ls.AcquireAttempts, "nothing is acquired once the shutdown began")
	d := mm.Delegates()[0]
	require.NotNil(t, d.LastHeartbeat)
	require.True(t, d.LastHeartbeat.After(began), "heartbeats go on during the drain")
}

// When the grace period ends, tasks still running are cancelled, their processes stopped, and
// each is reported FAILED as cancelled by the shutdown.
func TestShutdownGraceEndCancelsRunningTasks(t *testing.T) {
	t.Parallel()
	mm := newMock(t, mockmanager.Options{})
	rt := start(t, mm, setup{})
	long := enqueue(t, mm, task("SHELL_SCRIPT_TASK", map[string]any{"script": "sleep 60"}, 120, false))
	acquired(t, mm, long)

	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	require.NoError(t, rt.R.Shutdown(ctx))
	require.NoError(t, rt.waitStopped(t))
	st, err := mm.Task(long)
	require.NoError(t, err)
	require.Len(t, st.Responses, 1, "reported before Run returned")
	require.Equal(t, "FAILED", st.Responses[0].Code)
	require.Equal(t, "runner shutting down", errorText(st.Responses[0]))
}

// Cancelling Run's context is a hard stop: running tasks are cancelled at once and reported.
func TestCancelledRunStopsAtOnce(t *testing.T) {
	t.Parallel()
	mm := newMock(t, mockmanager.Options{})
	rt := start(t, mm, setup{})
	long := enqueue(t, mm, task("SLEEP_TASK", map[string]any{"milliseconds": 60000}, 120, true))
	acquired(t, mm, long)

	rt.stop()
	require.NoError(t, rt.waitStopped(t))
	st, err := mm.Task(long)
	require.NoError(t, err)
	require.Len(t, st.Responses, 1)
	require.Equal(t, "FAILED", st.Responses[0].Code)
	require.Equal(t, "runner shutting down", errorText(st.Responses[0]))
}
