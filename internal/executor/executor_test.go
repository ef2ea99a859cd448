package executor_test

import (
	"context"
	"encoding/json"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/dlite-dev/dlite/errs"
	"github.com/dlite-dev/dlite/internal/dispatch"
	"github.com/dlite-dev/dlite/internal/executor"
	"github.com/dlite-dev/dlite/internal/manager"
	"github.com/dlite-dev/dlite/internal/pool"
	"github.com/dlite-dev/dlite/tasks"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const waitFor = 10 * time.Second

// results is a Deliverer that keeps what it is handed: each task's outcome, and every record in
// the order it came.
type results struct {
	mu  sync.Mutex
	got map[string]manager.Result
	all []manager.Result
}

func (r *results) Deliver(res manager.Result) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.all = append(r.all, res)
	if res.Update > 0 {
		return
	}
	if r.got == nil {
		r.got = map[string]manager.Result{}
	}
	r.got[res.TaskID] = res
}

// of returns the records of a task in the order they came.
func (r *results) of(taskID string) []manager.Result {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []manager.Result
	for _, res := range r.all {
		if res.TaskID == taskID {
			out = append(out, res)
		}
	}
	return out
}

func (r *results) wait(t *testing.T, taskID string) manager.Result {
	t.Helper()
	var res manager.Result
	require.Eventually(t, func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		var ok bool
		res, ok = r.got[taskID]
		return ok
	}, waitFor, time.Millisecond)
	return res
}

// rig is an executor with four legacy task types: ECHO answers its task id, BLOCK waits for its
// context to end, SLOW waits for a release, UPDATES sends an update from each of the goroutines
// its data asks for and hands its context to contexts.
type rig struct {
	x        *executor.Executor
	slots    *pool.Pool
	results  *results
	release  chan struct{}
	contexts chan context.Context
}

func newRig(t *testing.T, size int) *rig {
	t.Helper()
	r := &rig{slots: pool.New(size), results: &results{}, release: make(chan struct{}), contexts: make(chan context.Context, 2)}
	d, err := dispatch.New(dispatch.Options{Legacy: map[string]http.Handler{
		"ECHO": http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			env, _ := tasks.FromContext(req.Context())
			_ = json.NewEncoder(w).Encode(map[string]string{"id": env.ID})
		}),
		"BLOCK": http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			<-req.Context().Done()
			http.Error(w, "stopped", http.StatusConflict)
		}),
		"SLOW": http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			<-r.release
		}),
		"UPDATES": http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			var env struct{ Data struct{ Senders int } }
			if err := json.NewDecoder(req.Body).Decode(&env); err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			var wg sync.WaitGroup
			in := env.Data
			errors := make(chan error, in.Senders)
			for i := range in.Senders {
				wg.Go(func() { errors <- tasks.Update(req.Context(), map[string]int{"sender": i}) })
			}
			wg.Wait()
			close(errors)
			for err := range errors {
				if err != nil {
					http.Error(w, err.Error(), http.StatusInternalServerError)
					return
				}
			}
			r.contexts <- req.Context()
			_ = json.NewEncoder(w).Encode(map[string]int{"sent": in.Senders})
		}),
	}})
	require.NoError(t, err)
	r.x = executor.New(executor.Options{Dispatcher: d, Slots: r.slots, Reporter: r.results})
	t.Cleanup(func() {
		r.x.CancelAll(errs.ErrShuttingDown)
		ctx, cancel := context.WithTimeout(context.Background(), waitFor)
		defer cancel()
		require.NoError(t, r.x.Wait(ctx))
	})
	return r
}

// start claims, reserves a slot for and starts a task, as the poller does.
func (r *rig) start(t *testing.T, id, typ string, runnerResponse bool) {
	t.Helper()
	r.startWith(t, id, typ, runnerResponse, nil)
}

// startWith starts a task with data.
func (r *rig) startWith(t *testing.T, id, typ string, runnerResponse bool, data json.RawMessage) {
	t.Helper()
	require.True(t, r.x.Claim(id))
	require.Equal(t, 1, r.slots.TryReserve(1))
	r.x.Start(&manager.Task{Envelope: tasks.Envelope{ID: id, Type: typ, RunnerResponse: runnerResponse}, Data: data}, "d-1")
}

// A finished task's result names the delegate, the endpoint the task asked for and the output.
func TestResultGoesToTheEndpointTheTaskAsked(t *testing.T) {
	t.Parallel()
	r := newRig(t, 2)
	r.start(t, "t-legacy", "ECHO", false)
	r.start(t, "t-runner", "ECHO", true)

	legacy := r.results.wait(t, "t-legacy")
	require.Equal(t, manager.EndpointLegacy, legacy.Endpoint)
	require.Equal(t, manager.CodeOK, legacy.Code)
	require.Equal(t, "d-1", legacy.DelegateID)
	require.JSONEq(t, `{"id":"t-legacy"}`, string(legacy.Data))

	runner := r.results.wait(t, "t-runner")
	require.Equal(t, manager.EndpointRunner, runner.Endpoint)
	require.Equal(t, manager.CodeOK, runner.Code)
}

// A task claimed, running or recently finished here is never claimed again; a claim given back
// after a failed acquire is.
func TestClaimRefusesTasksHeldOrDoneHere(t *testing.T) {
	t.Parallel()
	r := newRig(t, 1)
	require.True(t, r.x.Claim("t-1"))
	require.False(t, r.x.Claim("t-1"), "claimed")
	r.x.Unclaim("t-1")
	require.True(t, r.x.Claim("t-1"), "given back")
	r.x.Unclaim("t-1")

	r.start(t, "t-1", "SLOW", false)
	require.False(t, r.x.Claim("t-1"), "running")
	require.Equal(t, []string{"t-1"}, r.x.RunningIDs())
	r.x.Unclaim("t-1") // must not drop a running task
	require.Equal(t, []string{"t-1"}, r.x.RunningIDs())

	close(r.release)
	r.results.wait(t, "t-1")
	require.Eventually(t, func() bool { return len(r.x.RunningIDs()) == 0 }, waitFor, time.Millisecond)
	require.False(t, r.x.Claim("t-1"), "finished recently")
}

// Abort cancels one running task, which is reported FAILED as aborted; the others run on.
func TestAbortCancelsOneTask(t *testing.T) {
	t.Parallel()
	r := newRig(t, 2)
	r.start(t, "t-abort", "BLOCK", false)
	r.start(t, "t-other", "BLOCK", false)
	require.Len(t, r.x.Running(), 2)

	require.True(t, r.x.Abort("t-abort"))
	res := r.results.wait(t, "t-abort")
	require.Equal(t, manager.CodeFailed, res.Code)
	require.Contains(t, res.Error, "aborted")
	require.Equal(t, []string{"t-other"}, r.x.RunningIDs())
	require.False(t, r.x.Abort("t-unknown"), "an abort of a task not running here changes nothing")
}

// CancelAll cancels every running task, each reported FAILED with the cause, and Wait returns
// once they are all handed to the reporter.
func TestCancelAllReportsEveryTask(t *testing.T) {
	t.Parallel()
	r := newRig(t, 3)
	for _, id := range []string{"a", "b", "c"} {
		r.start(t, id, "BLOCK", false)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	require.ErrorIs(t, r.x.Wait(ctx), context.DeadlineExceeded, "the tasks block until cancelled")

	r.x.CancelAll(errs.ErrShuttingDown)
	wait, cancelWait := context.WithTimeout(t.Context(), waitFor)
	defer cancelWait()
	require.NoError(t, r.x.Wait(wait))
	for _, id := range []string{"a", "b", "c"} {
		res := r.results.wait(t, id)
		require.Equal(t, manager.CodeFailed, res.Code)
		require.Equal(t, "runner shutting down", res.Error)
	}
	require.Empty(t, r.x.Running())
}

// A task's updates are handed over numbered from 1 in the order they reach the reporter, even when
// its handler sends them from several goroutines, addressed as its outcome is, and before it; an
// update after the outcome is refused.
func TestUpdatesAreNumberedAndGoBeforeTheOutcome(t *testing.T) {
	t.Parallel()
	r := newRig(t, 2)
	r.startWith(t, "t-2", "UPDATES", true, json.RawMessage(`{"senders":2}`))
	r.startWith(t, "t-8", "UPDATES", false, json.RawMessage(`{"senders":8}`))
	for _, tc := range []struct {
		id       string
		senders  int
		endpoint manager.Endpoint
	}{{"t-2", 2, manager.EndpointRunner}, {"t-8", 8, manager.EndpointLegacy}} {
		out := r.results.wait(t, tc.id)
		require.Equal(t, manager.CodeOK, out.Code, out.Error)
		recs := r.results.of(tc.id)
		require.Len(t, recs, tc.senders+1)
		senders := map[int]bool{}
		for i, rec := range recs[:tc.senders] {
			require.Equal(t, i+1, rec.Update, "numbered in the order they were handed over")
			require.Empty(t, rec.Code)
			require.Equal(t, "UPDATES", rec.TaskType)
			require.Equal(t, "d-1", rec.DelegateID)
			require.Equal(t, tc.endpoint, rec.Endpoint)
			require.False(t, rec.FinishedAt.IsZero())
			var data struct{ Sender int }
			require.NoError(t, json.Unmarshal(rec.Data, &data))
			senders[data.Sender] = true
		}
		require.Len(t, senders, tc.senders, "one update from each sender")
		require.Equal(t, 0, recs[tc.senders].Update, "the outcome comes last")
		require.Equal(t, tc.endpoint, recs[tc.senders].Endpoint)
	}

	ctx := <-r.contexts
	ctx2 := <-r.contexts
	for _, c := range []context.Context{ctx, ctx2} {
		require.ErrorIs(t, tasks.Update(c, "late"), tasks.ErrAnswered)
	}
	require.Len(t, r.results.of("t-2"), 3, "nothing was sent after the outcome")
	require.Len(t, r.results.of("t-8"), 9)
}
