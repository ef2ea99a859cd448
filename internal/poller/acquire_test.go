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

// unsure is a manager that lists one task and answers its acquires with the queued errors, then
// with final (nil: the task is granted).
type unsure struct {
	mu       sync.Mutex
	answers  []error
	final    error
	acquires int
}

func (u *unsure) Poll(context.Context, string) ([]manager.Event, error) {
	return events("SHELL_SCRIPT_TASK", "t-1"), nil
}

func (u *unsure) Acquire(_ context.Context, _, taskID string) (*manager.Task, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.acquires++
	if len(u.answers) > 0 {
		err := u.answers[0]
		u.answers = u.answers[1:]
		return nil, err
	}
	if u.final != nil {
		return nil, u.final
	}
	return &manager.Task{Envelope: tasks.Envelope{ID: taskID, Type: "SHELL_SCRIPT_TASK"}}, nil
}

func (u *unsure) count() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.acquires
}

func startUnsure(t *testing.T, u *unsure, slots *pool.Pool, tb *table) (stopPolling, hardStop context.CancelFunc, done chan struct{}) {
	t.Helper()
	p := poller.New(poller.Options{
		Source: u, Slots: slots, Tasks: tb, Session: &activeSession{}, Admitter: admitAll{},
		Supports: func(string) bool { return true }, Interval: time.Hour,
		AcquireBackoff: retry.Policy{Initial: time.Millisecond, Max: time.Millisecond},
	})
	hard, hardCancel := context.WithCancel(context.Background())
	ctx, cancel := context.WithCancel(hard)
	done = make(chan struct{})
	go func() { defer close(done); _ = p.Run(ctx, hard) }()
	t.Cleanup(func() { hardCancel(); <-done; tb.finishAll(); _ = slots.Wait(context.Background()) })
	return cancel, hardCancel, done
}

// An acquire whose answers are lost, or unreadable, is tried until the manager answers it for
// certain, however long that takes: here far more tries than the runner ever gave up after.
func TestAnAcquireOfUnknownOutcomeIsTriedUntilAnswered(t *testing.T) {
	t.Parallel()
	var answers []error
	for range 100 {
		answers = append(answers, errs.ErrManagerUnavailable)
	}
	answers = append(answers, errs.ErrMalformedResponse, errs.ErrMalformedResponse)
	u := &unsure{answers: answers}
	slots := pool.New(1)
	tb := newTable(slots)
	startUnsure(t, u, slots, tb)
	require.Eventually(t, func() bool { n, _ := tb.count(); return n == 1 }, 10*time.Second, time.Millisecond)
	require.Equal(t, 103, u.count())
}

// A definite answer ends the tries: a task taken by another runner or gone is not tried again
// and holds no slot.
func TestADefiniteRefusalEndsTheTries(t *testing.T) {
	t.Parallel()
	for _, final := range []error{errs.ErrAcquireConflict, errs.ErrNotFound} {
		t.Run(string(errs.CodeOf(final)), func(t *testing.T) {
			t.Parallel()
			u := &unsure{answers: []error{errs.ErrManagerUnavailable, errs.ErrManagerUnavailable}, final: final}
			slots := pool.New(1)
			tb := newTable(slots)
			startUnsure(t, u, slots, tb)
			require.Eventually(t, func() bool { return u.count() == 3 }, 10*time.Second, time.Millisecond)
			require.Eventually(t, func() bool { return slots.Free() == 1 }, 10*time.Second, time.Millisecond)
			time.Sleep(20 * time.Millisecond)
			require.Equal(t, 3, u.count(), "one answer from the manager is enough; the next poll is an hour away")
			n, _ := tb.count()
			require.Zero(t, n)
			require.True(t, tb.Claim("t-1"), "the claim was given back")
		})
	}
}

// Stopping polling does not stop an acquire the manager may have granted; a hard stop does, and
// gives its slot and claim back.
func TestOnlyAHardStopAbandonsAnUnansweredAcquire(t *testing.T) {
	t.Parallel()
	u := &unsure{final: errs.ErrManagerUnavailable}
	slots := pool.New(1)
	tb := newTable(slots)
	stopPolling, hardStop, done := startUnsure(t, u, slots, tb)
	require.Eventually(t, func() bool { return u.count() > 0 }, 10*time.Second, time.Millisecond)
	stopPolling()
	before := u.count()
	require.Eventually(t, func() bool { return u.count() > before+5 }, 10*time.Second, time.Millisecond,
		"the acquire goes on after polling stopped")
	select {
	case <-done:
		t.Fatal("Run returned while an acquire was unanswered")
	default:
	}
	hardStop()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("a hard stop did not end the acquire")
	}
	require.Equal(t, 1, slots.Free())
	n, _ := tb.count()
	require.Zero(t, n)
	require.True(t, tb.Claim("t-1"), "the claim was given back")
}
