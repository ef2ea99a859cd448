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
)

// offers is a manager whose long polls offer one task each, like a Drone server: an offer blocks
// until a task is queued or the call ends, and offered tasks are not held for the asker.
type offers struct {
	queue
	ready    chan string
	mu       sync.Mutex
	inFlight int
	peak     int
	failures []error
}

func newOffers() *offers {
	return &offers{queue: queue{taken: map[string]int{}}, ready: make(chan string, 100)}
}

func (o *offers) add(ids ...string) {
	o.queue.mu.Lock()
	o.offered = append(o.offered, events("SHELL_SCRIPT_TASK", ids...)...)
	o.queue.mu.Unlock()
	for _, id := range ids {
		o.ready <- id
	}
}

func (o *offers) Offer(ctx context.Context, _ string) (*manager.Event, error) {
	o.mu.Lock()
	o.polls++
	if len(o.failures) > 0 {
		err := o.failures[0]
		o.failures = o.failures[1:]
		o.mu.Unlock()
		return nil, err
	}
	o.inFlight++
	o.peak = max(o.peak, o.inFlight)
	o.mu.Unlock()
	defer func() { o.mu.Lock(); o.inFlight--; o.mu.Unlock() }()
	select {
	case id := <-o.ready:
		return &manager.Event{TaskID: id, TaskType: "SHELL_SCRIPT_TASK"}, nil
	case <-ctx.Done():
		return nil, nil
	}
}

func (o *offers) open() (inFlight, peak, polls int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.inFlight, o.peak, o.polls
}

type stepBackoff struct{ d time.Duration }

func (b stepBackoff) Next(error) time.Duration { return b.d }
func (stepBackoff) Reset()                     {}

func runOffers(t *testing.T, o *offers, slots *pool.Pool, tb *table, aborts chan string, bo time.Duration) (stop func()) {
	t.Helper()
	p := poller.New(poller.Options{
		Source: o, Slots: slots, Tasks: tb, Session: &activeSession{}, Admitter: admitAll{},
		Supports:        func(typ string) bool { return typ == "SHELL_SCRIPT_TASK" },
		Interval:        time.Millisecond,
		CallTimeout:     time.Hour,
		NewOfferBackoff: func() poller.OfferBackoff { return stepBackoff{bo} },
		Aborts:          aborts,
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = p.Run(ctx, ctx) }()
	return func() { cancel(); <-done; tb.finishAll(); _ = slots.Wait(context.Background()) }
}

func TestOffersKeepOneLongPollPerFreeSlot(t *testing.T) {
	t.Parallel()
	o := newOffers()
	slots := pool.New(3)
	tb := newTable(slots)
	stop := runOffers(t, o, slots, tb, nil, time.Millisecond)
	defer stop()
	require.Eventually(t, func() bool { n, _, _ := o.open(); return n == 3 }, 10*time.Second, time.Millisecond)

	o.add("a")
	require.Eventually(t, func() bool { n, _ := tb.count(); return n == 1 }, 10*time.Second, time.Millisecond)
	require.Eventually(t, func() bool { n, _, _ := o.open(); return n == 2 }, 10*time.Second, time.Millisecond,
		"the slot the task took has no poll of its own")

	o.add("b", "c")
	require.Eventually(t, func() bool { n, _ := tb.count(); return n == 3 }, 10*time.Second, time.Millisecond)
	require.Eventually(t, func() bool { n, _, _ := o.open(); return n == 0 }, 10*time.Second, time.Millisecond,
		"a busy runner asks for nothing")
	_, peak, _ := o.open()
	require.LessOrEqual(t, peak, 3)

	tb.finishAll()
	require.Eventually(t, func() bool { n, _, _ := o.open(); return n == 3 }, 10*time.Second, time.Millisecond,
		"freed slots poll again")
}

func TestOffersBackOffAfterFailures(t *testing.T) {
	t.Parallel()
	o := newOffers()
	unauthorized := errs.New(errs.CodeUnauthorized, "offer", "refused")
	o.failures = []error{unauthorized, unauthorized, unauthorized, unauthorized}
	slots := pool.New(1)
	tb := newTable(slots)
	stop := runOffers(t, o, slots, tb, nil, time.Hour)
	defer stop()
	require.Eventually(t, func() bool { _, _, polls := o.open(); return polls == 1 }, 10*time.Second, time.Millisecond)
	time.Sleep(50 * time.Millisecond)
	_, _, polls := o.open()
	require.Equal(t, 1, polls, "a refused poll waits for its backoff, not in a tight loop")
}

func TestOffersForwardAborts(t *testing.T) {
	t.Parallel()
	o := newOffers()
	slots := pool.New(1)
	tb := newTable(slots)
	aborts := make(chan string)
	stop := runOffers(t, o, slots, tb, aborts, time.Millisecond)
	defer stop()
	o.add("a")
	require.Eventually(t, func() bool { n, _ := tb.count(); return n == 1 }, 10*time.Second, time.Millisecond)
	aborts <- "a"
	require.Eventually(t, func() bool {
		tb.mu.Lock()
		defer tb.mu.Unlock()
		return len(tb.aborted) == 1 && tb.aborted[0] == "a"
	}, 10*time.Second, time.Millisecond)
}

func TestOffersBackoffEndsWhenTheManagerAnswers(t *testing.T) {
	t.Parallel()
	o := newOffers()
	o.failures = []error{errs.ErrManagerUnavailable}
	slots := pool.New(1)
	tb := newTable(slots)
	p := poller.New(poller.Options{
		Source: o, Slots: slots, Tasks: tb, Session: &activeSession{}, Admitter: admitAll{},
		Supports:        func(typ string) bool { return typ == "SHELL_SCRIPT_TASK" },
		Interval:        time.Millisecond,
		CallTimeout:     time.Hour,
		NewOfferBackoff: func() poller.OfferBackoff { return stepBackoff{time.Hour} },
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = p.Run(ctx, ctx) }()
	defer func() { cancel(); <-done; tb.finishAll(); _ = slots.Wait(context.Background()) }()

	require.Eventually(t, func() bool { _, _, polls := o.open(); return polls == 1 }, 10*time.Second, time.Millisecond)
	time.Sleep(20 * time.Millisecond)
	_, _, polls := o.open()
	require.Equal(t, 1, polls, "the failed offer waits for its backoff")
	p.ManagerAnswered()
	require.Eventually(t, func() bool { n, _, _ := o.open(); return n == 1 }, 10*time.Second, time.Millisecond,
		"an answer from the manager to another call ends the backoff")
}
