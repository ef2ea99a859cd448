package runner_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dlite-dev/dlite/errs"
	"github.com/dlite-dev/dlite/internal/manager"
	"github.com/dlite-dev/dlite/internal/reporter"
	"github.com/dlite-dev/dlite/internal/runner"
	"github.com/dlite-dev/dlite/internal/spool"
	"github.com/dlite-dev/dlite/mockmanager"
)

// unfinished is a manager's record of the tasks this runner took and has not reported.
type unfinished struct {
	tasks []manager.Unfinished
	err   error
}

func (u unfinished) Unfinished() ([]manager.Unfinished, error) { return u.tasks, u.err }

// interceptor stands between the reporter and the mock manager. It keeps every record it is
// handed, and takes those of the tasks it owns itself (tasks the mock manager never queued),
// holding the records of hold until release is closed; the others go on to the manager.
type interceptor struct {
	next    reporter.Sender
	own     map[string]bool
	hold    string
	release chan struct{}
	mu      sync.Mutex
	got     []manager.Result
}

func (i *interceptor) Report(ctx context.Context, r manager.Result) error {
	i.mu.Lock()
	i.got = append(i.got, r)
	i.mu.Unlock()
	if !i.own[r.TaskID] {
		return i.next.Report(ctx, r)
	}
	if r.TaskID == i.hold {
		select {
		case <-i.release:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// of returns the records of a task the interceptor was handed, in their order.
func (i *interceptor) of(taskID string) []manager.Result {
	i.mu.Lock()
	defer i.mu.Unlock()
	var out []manager.Result
	for _, r := range i.got {
		if r.TaskID == taskID {
			out = append(out, r)
		}
	}
	return out
}

// A manager keeps two tasks as taken by this runner and not reported. The earlier run answered
// one of them, and its outcome waits in the spool: only the other is answered, as interrupted,
// before the runner takes work.
func TestTasksLeftUnfinishedAreAnswered(t *testing.T) {
	t.Parallel()
	mm := mockmanager.NewTest(t, mockmanager.Options{})
	dir := t.TempDir()
	sp, err := spool.Open(dir, nil)
	require.NoError(t, err)
	kept := manager.Result{TaskID: "stage-a", TaskType: "DRONE_STAGE", DelegateID: "d-0", Endpoint: manager.EndpointRunner,
		Code: manager.CodeOK, FinishedAt: time.Now().UTC()}
	_, err = sp.Put(kept, time.Now())
	require.NoError(t, err)
	require.NoError(t, sp.Close())

	sent := &interceptor{own: map[string]bool{"stage-a": true, "stage-b": true}, hold: "stage-a", release: make(chan struct{})}
	p := assembleWith(t, mm, dir, 0, extras{
		recover: unfinished{tasks: []manager.Unfinished{{TaskID: "stage-a", TaskType: "DRONE_STAGE"}, {TaskID: "stage-b", TaskType: "DRONE_STAGE"}}},
		sender:  func(next reporter.Sender) reporter.Sender { sent.next = next; return sent },
	})
	p.run(t)

	require.Eventually(t, func() bool { return len(sent.of("stage-b")) == 1 }, waitFor, time.Millisecond)
	b := sent.of("stage-b")[0]
	require.Equal(t, manager.CodeFailed, b.Code)
	require.Equal(t, errs.ErrInterrupted.Error(), b.Error)
	require.Equal(t, "DRONE_STAGE", b.TaskType)
	require.Zero(t, b.Update)
	require.False(t, b.FinishedAt.IsZero())

	// The runner answered before it registered; once it runs, the kept outcome may go.
	require.Eventually(t, func() bool { return p.runner.Phase() == runner.PhaseRunning }, waitFor, time.Millisecond)
	close(sent.release)
	require.Eventually(t, func() bool { return p.spool.Len() == 0 }, waitFor, time.Millisecond)
	a := sent.of("stage-a")
	require.Len(t, a, 1, "the task with an outcome in the spool is answered by it alone")
	require.Equal(t, manager.CodeOK, a[0].Code)
	require.Len(t, sent.of("stage-b"), 1)
}

// A manager whose record of unfinished tasks cannot be read does not keep the runner from work.
func TestUnreadableUnfinishedTasksDoNotStopTheRunner(t *testing.T) {
	t.Parallel()
	mm := mockmanager.NewTest(t, mockmanager.Options{})
	p := assembleWith(t, mm, t.TempDir(), 0, extras{recover: unfinished{err: errors.New("state file unreadable")}})
	id, err := mm.Enqueue(blockTask())
	require.NoError(t, err)
	p.run(t)
	p.finish()
	require.Equal(t, "OK", waitAnswered(t, mm, id).Responses[0].Code)
}
