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

// trailing is a manager whose every poll lists many tasks that another runner takes first: each
// acquire is refused. A poll waits until the test lets it through.
type trailing struct {
	gate     chan struct{}
	mu       sync.Mutex
	polls    int
	acquires int
}

func (tr *trailing) Poll(ctx context.Context, _ string) ([]manager.Event, error) {
	select {
	case <-tr.gate:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	tr.mu.Lock()
	defer tr.mu.Unlock()
	tr.polls++
	evs := make([]manager.Event, 500)
	for i := range evs {
		evs[i] = manager.Event{TaskID: fmt.Sprintf("t-%d-%d", tr.polls, i), TaskType: "SHELL_SCRIPT_TASK"}
	}
	return evs, nil
}

func (tr *trailing) Acquire(context.Context, string, string) (*manager.Task, error) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	tr.acquires++
	return nil, errs.ErrAcquireConflict
}

func (tr *trailing) count() int {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return tr.acquires
}

// A runner trailing another through a long list of events gives up the list after a few refused
// acquires per slot, rather than asking for every task others took, and its slots are free again
// once they are refused.
func TestAWalkThroughTakenTasksEndsSoon(t *testing.T) {
	t.Parallel()
	tr := &trailing{gate: make(chan struct{})}
	slots := pool.New(2)
	tb := newTable(slots)
	p := poller.New(poller.Options{
		Source: tr, Slots: slots, Tasks: tb, Session: &activeSession{}, Admitter: admitAll{},
		Supports: func(string) bool { return true },
		Interval: time.Millisecond,
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = p.Run(ctx, ctx) }()
	// Two walkers may each take a candidate as the refusals reach the bound.
	bound := poller.RefusedPerSlot * slots.Size()
	for range 3 {
		before := tr.count()
		tr.gate <- struct{}{}
		require.Eventually(t, func() bool { return tr.count()-before >= bound }, 10*time.Second, time.Millisecond)
		require.Eventually(t, func() bool { return slots.Free() == 2 }, 10*time.Second, time.Millisecond, "refused acquires hold no slot")
		time.Sleep(20 * time.Millisecond)
		require.LessOrEqual(t, tr.count()-before, bound+1, "a few refusals per slot, then nothing until the next answer")
	}
	cancel()
	<-done
}
