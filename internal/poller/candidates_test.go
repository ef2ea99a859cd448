package poller_test

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dlite-dev/dlite/errs"
	"github.com/dlite-dev/dlite/internal/manager"
	"github.com/dlite-dev/dlite/internal/poller"
	"github.com/dlite-dev/dlite/internal/pool"
	"github.com/dlite-dev/dlite/tasks"
)

// listing is a manager whose every answer is the same list; it grants every acquire and records
// the calls in order: "poll", or the id of an acquired task.
type listing struct {
	events []manager.Event
	mu     sync.Mutex
	calls  []string
}

func (l *listing) Poll(context.Context, string) ([]manager.Event, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.calls = append(l.calls, "poll")
	return l.events, nil
}

func (l *listing) Acquire(_ context.Context, _, taskID string) (*manager.Task, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.calls = append(l.calls, taskID)
	return &manager.Task{Envelope: tasks.Envelope{ID: taskID, Type: "SHELL_SCRIPT_TASK"}}, nil
}

func (l *listing) log() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.calls)
}

func startListing(t *testing.T, l *listing, slots *pool.Pool, tb *table, opts poller.Options) {
	t.Helper()
	opts.Source, opts.Slots, opts.Tasks, opts.Session, opts.Admitter = l, slots, tb, &activeSession{}, admitAll{}
	opts.Supports = func(string) bool { return true }
	if opts.Interval == 0 {
		opts.Interval = time.Hour
	}
	p := poller.New(opts)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = p.Run(ctx, ctx) }()
	t.Cleanup(func() { cancel(); <-done; tb.finishAll(); _ = slots.Wait(context.Background()) })
}

// Slots that free after an answer take its remaining events without asking the manager again.
func TestFreedSlotsTakeCandidatesWithoutPolling(t *testing.T) {
	t.Parallel()
	l := &listing{events: events("SHELL_SCRIPT_TASK", "a", "b", "c", "d", "e", "f", "g")}
	slots := pool.New(3)
	tb := newTable(slots)
	startListing(t, l, slots, tb, poller.Options{})
	require.Eventually(t, func() bool { n, _ := tb.count(); return n == 3 }, 10*time.Second, time.Millisecond)
	tb.finishAll()
	require.Eventually(t, func() bool { n, _ := tb.count(); return n == 3 && len(l.log()) == 7 }, 10*time.Second, time.Millisecond)
	require.Equal(t, []string{"poll", "a", "b", "c", "d", "e", "f"}, sortAfterPoll(l.log()))
}

// sortAfterPoll sorts the acquires that follow each poll, since concurrent acquires come in any
// order.
func sortAfterPoll(calls []string) []string {
	out := slices.Clone(calls)
	start := 0
	for i := range out {
		if out[i] == "poll" {
			slices.Sort(out[start:i])
			start = i + 1
		}
	}
	slices.Sort(out[start:])
	return out
}

// An abort event withdraws the candidate it names, wherever it stands in the answer.
func TestAnAbortWithdrawsACandidate(t *testing.T) {
	t.Parallel()
	task := func(id string) manager.Event { return manager.Event{TaskID: id, TaskType: "SHELL_SCRIPT_TASK"} }
	abort := func(id string) manager.Event { ev := task(id); ev.Abort = true; return ev }
	l := &listing{events: []manager.Event{task("a"), task("b"), abort("b"), abort("c"), task("c"), task("d"), task("d")}}
	slots := pool.New(1)
	tb := newTable(slots)
	startListing(t, l, slots, tb, poller.Options{})
	require.Eventually(t, func() bool { n, _ := tb.count(); return n == 1 }, 10*time.Second, time.Millisecond)
	tb.finishAll()
	require.Eventually(t, func() bool { return slices.Contains(l.log(), "d") }, 10*time.Second, time.Millisecond)
	require.Equal(t, []string{"poll", "a", "d"}, l.log(), "b and c were aborted before they could be taken")
}

// Candidates older than CandidateTTL are not acquired: a freed slot asks the manager again first.
func TestStaleCandidatesAreDropped(t *testing.T) {
	t.Parallel()
	l := &listing{events: events("SHELL_SCRIPT_TASK", "a", "b")}
	slots := pool.New(1)
	tb := newTable(slots)
	startListing(t, l, slots, tb, poller.Options{CandidateTTL: time.Millisecond})
	require.Eventually(t, func() bool { n, _ := tb.count(); return n == 1 }, 10*time.Second, time.Millisecond)
	time.Sleep(10 * time.Millisecond)
	tb.finishAll()
	require.Eventually(t, func() bool { return slices.Contains(l.log(), "b") }, 10*time.Second, time.Millisecond)
	require.Equal(t, []string{"poll", "a", "poll", "b"}, l.log())
}

// switching is a session whose delegate id the test changes, as a registration again does.
type switching struct{ id atomic.Value }

func (s *switching) WaitActive(context.Context) (string, error) { return s.id.Load().(string), nil }
func (s *switching) Stale(string, string)                       {}

// perDelegate lists tasks named after the delegate that polls; the first acquire waits for the
// test and is refused, the others are granted. It records "delegate/task" per acquire.
type perDelegate struct {
	release  chan struct{}
	mu       sync.Mutex
	polled   map[string]int
	acquires []string
}

func (pd *perDelegate) Poll(_ context.Context, delegateID string) ([]manager.Event, error) {
	pd.mu.Lock()
	defer pd.mu.Unlock()
	pd.polled[delegateID]++
	return events("SHELL_SCRIPT_TASK", delegateID+"-task-1", delegateID+"-task-2"), nil
}

func (pd *perDelegate) Acquire(ctx context.Context, delegateID, taskID string) (*manager.Task, error) {
	pd.mu.Lock()
	pd.acquires = append(pd.acquires, delegateID+"/"+taskID)
	first := len(pd.acquires) == 1
	pd.mu.Unlock()
	if first {
		select {
		case <-pd.release:
		case <-ctx.Done():
		}
		return nil, errs.ErrAcquireConflict
	}
	return &manager.Task{Envelope: tasks.Envelope{ID: taskID, Type: "SHELL_SCRIPT_TASK"}}, nil
}

func (pd *perDelegate) polls(delegateID string) int {
	pd.mu.Lock()
	defer pd.mu.Unlock()
	return pd.polled[delegateID]
}

// A walker that outlives a registration acquires the events listed for the new one as the new
// one.
func TestCandidatesAreAcquiredAsTheDelegateTheyWereListedFor(t *testing.T) {
	t.Parallel()
	pd := &perDelegate{release: make(chan struct{}), polled: map[string]int{}}
	sess := &switching{}
	sess.id.Store("d-1")
	slots := pool.New(1)
	tb := newTable(slots)
	p := poller.New(poller.Options{
		Source: pd, Slots: slots, Tasks: tb, Session: sess, Admitter: admitAll{},
		Supports: func(string) bool { return true }, Interval: time.Millisecond,
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = p.Run(ctx, ctx) }()
	t.Cleanup(func() { cancel(); <-done; tb.finishAll(); _ = slots.Wait(context.Background()) })

	require.Eventually(t, func() bool { pd.mu.Lock(); defer pd.mu.Unlock(); return len(pd.acquires) == 1 }, 10*time.Second, time.Millisecond)
	sess.id.Store("d-2")
	require.Eventually(t, func() bool { return pd.polls("d-2") > 0 }, 10*time.Second, time.Millisecond)
	close(pd.release)
	require.Eventually(t, func() bool { n, _ := tb.count(); return n == 1 }, 10*time.Second, time.Millisecond)
	pd.mu.Lock()
	defer pd.mu.Unlock()
	require.Equal(t, []string{"d-1/d-1-task-1", "d-2/d-2-task-1"}, pd.acquires)
}
