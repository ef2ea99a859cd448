package poller

import (
	"context"
	"strconv"
	"sync"
	"testing"

	"github.com/dlite-dev/dlite/internal/manager"
	"github.com/dlite-dev/dlite/internal/pool"
	"github.com/dlite-dev/dlite/tasks"
)

// instantSource hands out every task it is asked for.
type instantSource struct{}

func (instantSource) Poll(context.Context, string) ([]manager.Event, error) { return nil, nil }

func (instantSource) Acquire(_ context.Context, _, taskID string) (*manager.Task, error) {
	return &manager.Task{Envelope: tasks.Envelope{ID: taskID, Type: "SLEEP_TASK"}}, nil
}

// instantTasks claims every task and finishes it as soon as it starts.
type instantTasks struct {
	slots *pool.Pool
	mu    sync.Mutex
	ids   map[string]bool
}

func (t *instantTasks) Claim(id string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.ids[id] {
		return false
	}
	t.ids[id] = true
	return true
}

func (t *instantTasks) Unclaim(id string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.ids, id)
}

func (t *instantTasks) Start(task *manager.Task, _ string) {
	t.slots.Go(func() { t.Unclaim(task.ID) })
}

func (t *instantTasks) Abort(string) bool { return false }

// benchTake hands one poll's worth of events to take, with slots for all of them or for a few.
func benchTake(b *testing.B, events, slots int) {
	evs := make([]manager.Event, events)
	for i := range evs {
		evs[i] = manager.Event{TaskID: "task-" + strconv.Itoa(i), TaskType: "SLEEP_TASK"}
	}
	slotPool := pool.New(slots)
	p := New(Options{
		Source:   instantSource{},
		Slots:    slotPool,
		Tasks:    &instantTasks{slots: slotPool, ids: map[string]bool{}},
		Supports: func(string) bool { return true },
	})
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		started, _ := p.take(ctx, "d-1", evs)
		if started != min(events, slots) {
			b.Fatalf("started %d of %d", started, min(events, slots))
		}
		if err := slotPool.Wait(ctx); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*min(events, slots)), "ns/task")
}

// BenchmarkTake128Events128Slots takes a full poll into free slots.
func BenchmarkTake128Events128Slots(b *testing.B) { benchTake(b, 128, 128) }

// BenchmarkTake1000Events16Slots takes a poll that carries far more events than free slots: the
// backlog must cost little.
func BenchmarkTake1000Events16Slots(b *testing.B) { benchTake(b, 1000, 16) }

// BenchmarkTake1000Events1000Slots takes a large poll, as a runner with many workers does.
func BenchmarkTake1000Events1000Slots(b *testing.B) { benchTake(b, 1000, 1000) }
