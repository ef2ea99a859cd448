package poller_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dlite-dev/dlite/errs"
	"github.com/dlite-dev/dlite/internal/manager"
	"github.com/dlite-dev/dlite/internal/poller"
	"github.com/dlite-dev/dlite/internal/pool"
)

// trailing is a manager whose every poll lists many tasks that another runner takes first:
// each acquire is refused. It records the calls in order.
type trailing struct {
	mu    sync.Mutex
	calls []string // "poll" or the id of an acquired task
}

func (tr *trailing) Poll(context.Context, string) ([]manager.Event, error) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	tr.calls = append(tr.calls, "poll")
	evs := make([]manager.Event, 500)
	for i := range evs {
		evs[i] = manager.Event{TaskID: fmt.Sprintf("t-%d-%d", len(tr.calls), i), TaskType: "SHELL_SCRIPT_TASK"}
	}
	return evs, nil
}

func (tr *trailing) Acquire(_ context.Context, _, taskID string) (*manager.Task, error) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	tr.calls = append(tr.calls, taskID)
	return nil, errs.ErrAcquireConflict
}

// acquiresBetweenPolls returns how many acquires came after each of the first n polls.
func (tr *trailing) acquiresBetweenPolls(n int) ([]int, bool) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	var counts []int
	for _, c := range tr.calls {
		if c == "poll" {
			counts = append(counts, 0)
		} else {
			counts[len(counts)-1]++
		}
	}
	if len(counts) <= n {
		return nil, false
	}
	return counts[:n], true
}

// A runner trailing another through a long list of events stops after a few refused acquires
// per slot and polls again, for a list of what is still queued, instead of walking the whole
// stale list with its other slots idle.
func TestAWalkThroughTakenTasksEndsSoon(t *testing.T) {
	t.Parallel()
	tr := &trailing{}
	slots := pool.New(2)
	tb := newTable(slots)
	p := poller.New(poller.Options{
		Source: tr, Slots: slots, Tasks: tb, Session: &activeSession{}, Admitter: admitAll{},
		Supports: func(string) bool { return true },
		Interval: time.Millisecond,
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = p.Run(ctx) }()
	var counts []int
	require.Eventually(t, func() bool {
		var ok bool
		counts, ok = tr.acquiresBetweenPolls(3)
		return ok
	}, 10*time.Second, time.Millisecond)
	cancel()
	<-done
	for i, n := range counts {
		require.Positive(t, n, "poll %d led to acquires", i)
		require.LessOrEqual(t, n, 8, "poll %d: at most four refused acquires per slot before polling again", i)
	}
}
