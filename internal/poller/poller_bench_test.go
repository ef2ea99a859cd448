package poller

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dlite-dev/dlite/internal/manager"
	"github.com/dlite-dev/dlite/internal/pool"
	"github.com/dlite-dev/dlite/tasks"
)

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

// backlogSource is a manager whose queue always holds the same n events: every acquire is granted
// and the task finishes at once, so the queue never shrinks. Its answers cost nothing to build,
// so a benchmark measures the poller's own work.
type backlogSource struct{ events []manager.Event }

func (s *backlogSource) Poll(context.Context, string) ([]manager.Event, error) { return s.events, nil }

func (s *backlogSource) Acquire(_ context.Context, _, taskID string) (*manager.Task, error) {
	return &manager.Task{Envelope: tasks.Envelope{ID: taskID, Type: "SLEEP_TASK"}}, nil
}

// countingTasks is instantTasks that says when it has started n tasks.
type countingTasks struct {
	instantTasks
	started atomic.Int64
	n       int64
	done    chan struct{}
}

func (t *countingTasks) Start(task *manager.Task, id string) {
	t.instantTasks.Start(task, id)
	if t.started.Add(1) == t.n {
		close(t.done)
	}
}

type benchSession struct{}

func (benchSession) WaitActive(context.Context) (string, error) { return "d-1", nil }
func (benchSession) Stale(string, string)                       {}

type benchAdmit struct{}

func (benchAdmit) Admit() (bool, string) { return true, "" }

// benchBacklog runs a poller with slots workers against a queue that holds events events, and
// reports the cost of each started task. Every answer lists the whole queue, as the real manager's
// does: a task must cost about the same whatever the queue's length.
func benchBacklog(b *testing.B, events, slots int) {
	evs := make([]manager.Event, events)
	for i := range evs {
		evs[i] = manager.Event{TaskID: "task-" + strconv.Itoa(i), TaskType: "SLEEP_TASK"}
	}
	slotPool := pool.New(slots)
	ts := &countingTasks{instantTasks: instantTasks{slots: slotPool, ids: map[string]bool{}}, done: make(chan struct{})}
	p := New(Options{
		Source:   &backlogSource{events: evs},
		Slots:    slotPool,
		Tasks:    ts,
		Session:  benchSession{},
		Admitter: benchAdmit{},
		Supports: func(string) bool { return true },
		Interval: 100 * time.Millisecond,
	})
	b.ReportAllocs()
	ts.n = int64(b.N)
	ctx, cancel := context.WithCancel(context.Background())
	cpu := cpuTime()
	b.ResetTimer()
	ran := make(chan struct{})
	go func() { defer close(ran); _ = p.Run(ctx, ctx) }()
	<-ts.done
	b.StopTimer()
	cpu = cpuTime() - cpu
	cancel()
	<-ran
	if err := slotPool.Wait(context.Background()); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/task")
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/task")
}

// BenchmarkBacklog128Events16Slots takes tasks from a queue whose answers list 128 events.
func BenchmarkBacklog128Events16Slots(b *testing.B) { benchBacklog(b, 128, 16) }

// BenchmarkBacklog10000Events16Slots takes tasks from a queue whose answers list 10,000 events:
// a task must cost about what it costs with 128.
func BenchmarkBacklog10000Events16Slots(b *testing.B) { benchBacklog(b, 10000, 16) }

// BenchmarkBacklog20000Events16Slots is the same with 20,000 events.
func BenchmarkBacklog20000Events16Slots(b *testing.B) { benchBacklog(b, 20000, 16) }

// BenchmarkBacklog128Events128Slots takes tasks from answers of 128 events into 128 slots.
func BenchmarkBacklog128Events128Slots(b *testing.B) { benchBacklog(b, 128, 128) }

// BenchmarkBacklog20000Events128Slots is the same with 20,000 events.
func BenchmarkBacklog20000Events128Slots(b *testing.B) { benchBacklog(b, 20000, 128) }
