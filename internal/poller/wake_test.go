package poller_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dlite-dev/dlite/errs"
	"github.com/dlite-dev/dlite/internal/manager"
	"github.com/dlite-dev/dlite/internal/poller"
	"github.com/dlite-dev/dlite/internal/pool"
	"github.com/dlite-dev/dlite/internal/retry"
	"github.com/dlite-dev/dlite/tasks"
)

// outage is a manager whose polls fail with err until it is back; then it offers one task.
type outage struct {
	err   error
	mu    sync.Mutex
	back  bool
	polls int
}

func (o *outage) Poll(context.Context, string) ([]manager.Event, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.polls++
	if !o.back {
		return nil, o.err
	}
	return events("SHELL_SCRIPT_TASK", "t-1"), nil
}

func (o *outage) Acquire(_ context.Context, _, taskID string) (*manager.Task, error) {
	return &manager.Task{Envelope: tasks.Envelope{ID: taskID, Type: "SHELL_SCRIPT_TASK"}}, nil
}

func (o *outage) count() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.polls
}

func (o *outage) end() {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.back = true
}

func startOutage(t *testing.T, o *outage, backoff retry.Policy) (*poller.Poller, *table) {
	t.Helper()
	slots := pool.New(1)
	tb := newTable(slots)
	p := poller.New(poller.Options{
		Source: o, Slots: slots, Tasks: tb, Session: &activeSession{}, Admitter: admitAll{},
		Supports: func(string) bool { return true }, Interval: time.Millisecond, Backoff: backoff,
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = p.Run(ctx, ctx) }()
	t.Cleanup(func() { cancel(); <-done; tb.finishAll(); _ = slots.Wait(context.Background()) })
	return p, tb
}

// hour is a backoff no test waits out: a poll that follows a failed one within a test was woken.
var hour = retry.Policy{Initial: time.Hour, Max: time.Hour}

// An answer from the manager to another call ends the backoff of failed polls: the poller polls
// again at once and takes the work waiting.
func TestAnAnswerEndsThePollBackoff(t *testing.T) {
	t.Parallel()
	o := &outage{err: errs.ErrManagerUnavailable}
	p, tb := startOutage(t, o, hour)
	require.Eventually(t, func() bool { return o.count() == 1 }, 10*time.Second, time.Millisecond)
	time.Sleep(20 * time.Millisecond)
	require.Equal(t, 1, o.count(), "backing off for an hour")
	o.end()
	p.ManagerAnswered()
	require.Eventually(t, func() bool { n, _ := tb.count(); return n == 1 }, 10*time.Second, time.Millisecond,
		"the task is taken at once, not after an hour")
}

// A woken poll that fails again backs off again: each answer buys one poll, no more.
func TestAWokenPollThatFailsBacksOffAgain(t *testing.T) {
	t.Parallel()
	o := &outage{err: errs.ErrManagerUnavailable}
	p, _ := startOutage(t, o, hour)
	require.Eventually(t, func() bool { return o.count() == 1 }, 10*time.Second, time.Millisecond)
	for n := 2; n <= 4; n++ {
		p.ManagerAnswered()
		require.Eventually(t, func() bool { return o.count() == n }, 10*time.Second, time.Millisecond)
		time.Sleep(20 * time.Millisecond)
		require.Equal(t, n, o.count())
	}
}

// A Retry-After the manager sent with a failed poll outlasts answers to other calls.
func TestRetryAfterOutlastsAnAnswer(t *testing.T) {
	t.Parallel()
	o := &outage{err: &errs.Error{Code: errs.CodeManagerUnavailable, Status: 429, RetryAfter: time.Hour}}
	p, _ := startOutage(t, o, retry.Policy{Initial: time.Millisecond, Max: time.Millisecond})
	require.Eventually(t, func() bool { return o.count() == 1 }, 10*time.Second, time.Millisecond)
	p.ManagerAnswered()
	time.Sleep(50 * time.Millisecond)
	require.Equal(t, 1, o.count(), "the manager asked for an hour")
}

// A manager that fails every call wakes nobody: the polls back off as ever, and their number stays
// small.
func TestPollsBackOffWhileEveryCallFails(t *testing.T) {
	t.Parallel()
	o := &outage{err: errs.ErrManagerUnavailable}
	startOutage(t, o, retry.Policy{Initial: 20 * time.Millisecond, Max: time.Hour})
	time.Sleep(600 * time.Millisecond)
	// The waits double from 20ms, at least half of each: 10+20+40+80+160+320 ms pass before the
	// seventh poll. A slow machine only makes the count smaller.
	require.LessOrEqual(t, o.count(), 7)
	require.GreaterOrEqual(t, o.count(), 2, "polling goes on")
}
