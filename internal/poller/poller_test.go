package poller_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/dlite-dev/dlite/errs"
	"github.com/dlite-dev/dlite/internal/manager"
	"github.com/dlite-dev/dlite/internal/poller"
	"github.com/dlite-dev/dlite/internal/pool"
	"github.com/dlite-dev/dlite/tasks"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// queue is an in-memory manager: a list of offered tasks, each acquirable once.
type queue struct {
	mu       sync.Mutex
	offered  []manager.Event
	taken    map[string]int
	polls    int
	failNext []error
	acquires []string
}

func (q *queue) Poll(ctx context.Context, _ string) ([]manager.Event, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.polls++
	if len(q.failNext) > 0 {
		err := q.failNext[0]
		q.failNext = q.failNext[1:]
		return nil, err
	}
	var out []manager.Event
	for _, ev := range q.offered {
		if q.taken[ev.TaskID] == 0 || ev.Abort {
			out = append(out, ev)
		}
	}
	return out, nil
}

func (q *queue) Acquire(_ context.Context, _, taskID string) (*manager.Task, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.acquires = append(q.acquires, taskID)
	q.taken[taskID]++
	if q.taken[taskID] > 1 {
		return nil, errs.ErrAcquireConflict
	}
	for _, ev := range q.offered {
		if ev.TaskID == taskID {
			return &manager.Task{Envelope: tasks.Envelope{ID: taskID, Type: ev.TaskType}}, nil
		}
	}
	return nil, errs.ErrNotFound
}

func (q *queue) snapshot() (polls int, acquires []string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.polls, append([]string(nil), q.acquires...)
}

// table runs started tasks until told to finish them.
type table struct {
	mu      sync.Mutex
	slots   *pool.Pool
	claimed map[string]bool
	running map[string]chan struct{}
	aborted []string
	peak    int
}

func newTable(slots *pool.Pool) *table {
	return &table{slots: slots, claimed: map[string]bool{}, running: map[string]chan struct{}{}}
}

func (tb *table) Claim(id string) bool {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	if tb.claimed[id] {
		return false
	}
	tb.claimed[id] = true
	return true
}

func (tb *table) Unclaim(id string) {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	delete(tb.claimed, id)
}

func (tb *table) Start(task *manager.Task, _ string) {
	done := make(chan struct{})
	tb.mu.Lock()
	tb.running[task.ID] = done
	tb.peak = max(tb.peak, len(tb.running))
	tb.mu.Unlock()
	tb.slots.Go(func() {
		<-done
		tb.mu.Lock()
		delete(tb.running, task.ID)
		tb.mu.Unlock()
	})
}

func (tb *table) Abort(id string) bool {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	tb.aborted = append(tb.aborted, id)
	_, ok := tb.running[id]
	return ok
}

func (tb *table) finishAll() {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	for id, done := range tb.running {
		close(done)
		delete(tb.running, id)
	}
}

func (tb *table) count() (running, peak int) {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	return len(tb.running), tb.peak
}

type activeSession struct{ stale int }

func (s *activeSession) WaitActive(context.Context) (string, error) { return "d-1", nil }
func (s *activeSession) Stale(string, string)                       { s.stale++ }

type admitAll struct{}

func (admitAll) Admit() (bool, string) { return true, "" }

func events(typ string, ids ...string) []manager.Event {
	out := make([]manager.Event, len(ids))
	for i, id := range ids {
		out[i] = manager.Event{TaskID: id, TaskType: typ}
	}
	return out
}

func run(t *testing.T, q *queue, slots *pool.Pool, tb *table, interval time.Duration) (stop func()) {
	t.Helper()
	p := poller.New(poller.Options{
		Source: q, Slots: slots, Tasks: tb, Session: &activeSession{}, Admitter: admitAll{},
		Supports: func(typ string) bool { return typ == "SHELL_SCRIPT_TASK" },
		Interval: interval,
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = p.Run(ctx, ctx) }()
	return func() { cancel(); <-done; tb.finishAll(); _ = slots.Wait(context.Background()) }
}

func TestNeverAcquiresMoreThanFreeSlots(t *testing.T) {
	t.Parallel()
	q := &queue{taken: map[string]int{}, offered: events("SHELL_SCRIPT_TASK", "a", "b", "c", "d", "e", "f", "g")}
	slots := pool.New(3)
	tb := newTable(slots)
	stop := run(t, q, slots, tb, time.Hour)
	require.Eventually(t, func() bool { n, _ := tb.count(); return n == 3 }, 10*time.Second, time.Millisecond)
	// The interval is an hour: with every slot busy the poller waits for a slot, not a timer.
	time.Sleep(50 * time.Millisecond)
	_, acquires := q.snapshot()
	require.Len(t, acquires, 3)
	_, peak := tb.count()
	require.Equal(t, 3, peak)

	// Finishing the running tasks frees slots; the backlog is taken without waiting for the hour.
	tb.finishAll()
	require.Eventually(t, func() bool { _, a := q.snapshot(); return len(a) == 6 }, 10*time.Second, time.Millisecond)
	stop()
	_, peak = tb.count()
	require.LessOrEqual(t, peak, 3)
}

func TestUnsupportedTypesAreNeverAcquired(t *testing.T) {
	t.Parallel()
	q := &queue{taken: map[string]int{}, offered: append(events("CI_DOCKER_EXECUTE_TASK", "x1", "x2"), events("SHELL_SCRIPT_TASK", "s1")...)}
	slots := pool.New(4)
	tb := newTable(slots)
	stop := run(t, q, slots, tb, 10*time.Millisecond)
	require.Eventually(t, func() bool { n, _ := tb.count(); return n == 1 }, 10*time.Second, time.Millisecond)
	require.Eventually(t, func() bool { p, _ := q.snapshot(); return p >= 5 }, 10*time.Second, time.Millisecond)
	stop()
	_, acquires := q.snapshot()
	require.Equal(t, []string{"s1"}, acquires)
}

func TestRepeatedEventsStartOneRun(t *testing.T) {
	t.Parallel()
	q := &queue{taken: map[string]int{}}
	// The manager keeps listing the task after it was acquired (and twice per poll).
	q.offered = append(events("SHELL_SCRIPT_TASK", "dup", "dup"), manager.Event{TaskID: "dup", TaskType: "SHELL_SCRIPT_TASK", Abort: false})
	slots := pool.New(4)
	tb := newTable(slots)
	stop := run(t, q, slots, tb, time.Millisecond)
	require.Eventually(t, func() bool { n, _ := tb.count(); return n == 1 }, 10*time.Second, time.Millisecond)
	q.mu.Lock()
	q.taken["dup"] = 0 // offered again, as a confused manager might
	q.mu.Unlock()
	require.Eventually(t, func() bool { p, _ := q.snapshot(); return p >= 10 }, 10*time.Second, time.Millisecond)
	stop()
	_, acquires := q.snapshot()
	require.Equal(t, []string{"dup"}, acquires, "a task claimed here is never acquired again")
}

func TestAbortEventsReachTheTable(t *testing.T) {
	t.Parallel()
	q := &queue{taken: map[string]int{}, offered: []manager.Event{{TaskID: "r1", TaskType: "SHELL_SCRIPT_TASK", Abort: true}}}
	slots := pool.New(1)
	tb := newTable(slots)
	stop := run(t, q, slots, tb, time.Millisecond)
	require.Eventually(t, func() bool { tb.mu.Lock(); defer tb.mu.Unlock(); return len(tb.aborted) > 0 }, 10*time.Second, time.Millisecond)
	stop()
	_, acquires := q.snapshot()
	require.Empty(t, acquires, "an abort event is never acquired")
}

// With every slot busy the poller still hears aborts of the running tasks, at the poll interval,
// and acquires nothing meanwhile.
func TestAbortReachesATaskWhileEverySlotIsBusy(t *testing.T) {
	t.Parallel()
	q := &queue{taken: map[string]int{}, offered: events("SHELL_SCRIPT_TASK", "long", "waiting")}
	slots := pool.New(1)
	tb := newTable(slots)
	stop := run(t, q, slots, tb, 5*time.Millisecond)
	defer stop()
	require.Eventually(t, func() bool { n, _ := tb.count(); return n == 1 }, 10*time.Second, time.Millisecond)
	q.mu.Lock()
	q.offered = append(q.offered, manager.Event{TaskID: "long", TaskType: "SHELL_SCRIPT_TASK", Abort: true})
	q.mu.Unlock()
	require.Eventually(t, func() bool {
		tb.mu.Lock()
		defer tb.mu.Unlock()
		return len(tb.aborted) > 0 && tb.aborted[0] == "long"
	}, 10*time.Second, time.Millisecond)
	_, acquires := q.snapshot()
	require.Equal(t, []string{"long"}, acquires, "no slot, no acquire")
}

func TestPollFailuresBackOffAndNotFoundReregisters(t *testing.T) {
	t.Parallel()
	q := &queue{taken: map[string]int{}, failNext: []error{errs.ErrManagerUnavailable, errs.ErrNotFound}, offered: events("SHELL_SCRIPT_TASK", "a")}
	slots := pool.New(1)
	tb := newTable(slots)
	sess := &activeSession{}
	p := poller.New(poller.Options{
		Source: q, Slots: slots, Tasks: tb, Session: sess, Admitter: admitAll{},
		Supports: func(string) bool { return true }, Interval: time.Millisecond,
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = p.Run(ctx, ctx) }()
	require.Eventually(t, func() bool { n, _ := tb.count(); return n == 1 }, 10*time.Second, time.Millisecond)
	cancel()
	<-done
	tb.finishAll()
	require.NoError(t, slots.Wait(context.Background()))
	require.Equal(t, 1, sess.stale, "a 404 from the poll means the manager forgot this runner")
}

type holdBack struct{}

func (holdBack) Admit() (bool, string) { return false, "memory 95% ≥ ceiling 90%" }

func TestAdmissionHoldStopsPolling(t *testing.T) {
	t.Parallel()
	q := &queue{taken: map[string]int{}, offered: events("SHELL_SCRIPT_TASK", "a")}
	slots := pool.New(1)
	p := poller.New(poller.Options{
		Source: q, Slots: slots, Tasks: newTable(slots), Session: &activeSession{}, Admitter: holdBack{},
		Supports: func(string) bool { return true }, Interval: time.Millisecond, HoldRecheck: time.Millisecond,
	})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	require.ErrorIs(t, p.Run(ctx, ctx), context.DeadlineExceeded)
	polls, _ := q.snapshot()
	require.Zero(t, polls, "a runner held back by admission control does not even ask for work")
}
