package executor

import (
	"context"
	"encoding/json"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/dlite-dev/dlite/errs"
	"github.com/dlite-dev/dlite/internal/dispatch"
	"github.com/dlite-dev/dlite/internal/manager"
	"github.com/dlite-dev/dlite/tasks"
)

// Dispatcher runs one task in the calling goroutine and reports its outcome exactly once (see
// dispatch.Dispatcher.Run).
type Dispatcher interface {
	Run(ctx context.Context, task *manager.Task, logger *slog.Logger, report func(dispatch.Outcome))
}

// Slots is the pool the tasks run in.
type Slots interface {
	Go(fn func())
	Wait(ctx context.Context) error
}

// Deliverer takes finished results, and the updates of running tasks. Deliver returns once it
// holds the result durably.
type Deliverer interface {
	Deliver(r manager.Result)
}

// Observer hears about task lifecycles (metrics, the status page). Methods must not block.
type Observer interface {
	TaskStarted(t RunningTask)
	TaskFinished(t RunningTask, r manager.Result, took time.Duration)
}

// Options configure an Executor.
type Options struct {
	Dispatcher Dispatcher
	Slots      Slots
	Reporter   Deliverer
	Observer   Observer
	// Remember is how long a finished task's id is remembered, so an event the manager repeats
	// after the task ran never starts it again. Default 1h.
	Remember time.Duration
	Logger   *slog.Logger
	Now      func() time.Time
}

// RunningTask describes a task running here.
type RunningTask struct {
	ID        string
	Type      string
	StartedAt time.Time
}

type entry struct {
	run    *running                // nil while the task is only claimed
	cancel context.CancelCauseFunc // nil while the task is only claimed
}

// running is a task started here and what it has reported: its updates are numbered from 1 in the
// order they are handed to the reporter, and once its outcome has been, it takes no more. It is
// all a task costs beyond its goroutine and contexts, thousands of them waiting at once.
type running struct {
	x          *Executor
	task       *manager.Task
	delegateID string
	info       RunningTask
	// mu makes numbering an update and handing it over one step, so that the numbers follow the
	// order of delivery when a handler sends from several goroutines, and orders the outcome after
	// every update handed over before it.
	mu       sync.Mutex
	updates  int  // updates handed over
	answered bool // the outcome was handed over
}

// Executor runs tasks. It is safe for concurrent use.
type Executor struct {
	opts     Options
	logger   *slog.Logger
	base     context.Context
	stop     context.CancelCauseFunc
	mu       sync.Mutex
	claimed  map[string]*entry
	finished map[string]time.Time
	pruned   time.Time
}

// New returns an Executor. Its tasks run under a context of their own, cancelled only by CancelAll
// (or, for one task, Abort): stopping the runner's polling does not touch them.
func New(opts Options) *Executor {
	if opts.Remember <= 0 {
		opts.Remember = time.Hour
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	base, stop := context.WithCancelCause(context.Background())
	return &Executor{
		opts:     opts,
		logger:   opts.Logger,
		base:     base,
		stop:     stop,
		claimed:  make(map[string]*entry),
		finished: make(map[string]time.Time),
	}
}

// Claim marks a task as being acquired here and reports whether the caller may go ahead: false
// when the task is already claimed, running or finished here recently.
func (x *Executor) Claim(taskID string) bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	if _, ok := x.claimed[taskID]; ok {
		return false
	}
	if _, ok := x.finished[taskID]; ok {
		return false
	}
	x.claimed[taskID] = &entry{}
	return true
}

// Unclaim forgets a claim whose acquire failed, so a later event can try again.
func (x *Executor) Unclaim(taskID string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if e, ok := x.claimed[taskID]; ok && e.cancel == nil {
		delete(x.claimed, taskID)
	}
}

// Start runs an acquired task in the slot the caller reserved for it. The task must have been
// claimed; Start reports it whatever happens.
func (x *Executor) Start(task *manager.Task, delegateID string) {
	ctx, cancel := context.WithCancelCause(x.base)
	rt := &running{x: x, task: task, delegateID: delegateID, info: RunningTask{ID: task.ID, Type: task.Type, StartedAt: x.opts.Now()}}
	ctx = tasks.WithUpdates(ctx, rt.update)
	x.mu.Lock()
	x.claimed[task.ID] = &entry{run: rt, cancel: cancel}
	x.mu.Unlock()
	if x.opts.Observer != nil {
		x.opts.Observer.TaskStarted(rt.info)
	}
	x.opts.Slots.Go(func() {
		defer cancel(nil)
		x.run(ctx, rt)
	})
}

// result is a record of the task for the reporter, stamped now: the fields its updates and its
// outcome share.
func (rt *running) result() manager.Result {
	endpoint := manager.EndpointLegacy
	if rt.task.RunnerResponse {
		endpoint = manager.EndpointRunner
	}
	return manager.Result{
		TaskID:     rt.task.ID,
		TaskType:   rt.task.Type,
		DelegateID: rt.delegateID,
		Endpoint:   endpoint,
		FinishedAt: rt.x.opts.Now(),
	}
}

// update hands the task's next update to the reporter (the task's tasks.UpdateFunc). It returns
// once the update is spooled, and fails once the task has answered.
func (rt *running) update(data json.RawMessage) error {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if rt.answered {
		return tasks.ErrAnswered
	}
	rt.updates++
	res := rt.result()
	res.Update, res.Data = rt.updates, data
	rt.x.opts.Reporter.Deliver(res)
	return nil
}

// run runs the task in its slot's goroutine. The result is handed over as soon as the outcome is
// reported; the slot stays taken, and the task listed as running, until the handler has returned
// (later than the report only for a handler that ignored its cancellation).
func (x *Executor) run(ctx context.Context, rt *running) {
	task := rt.task
	// The task's lines name it attribute by attribute: a logger annotated per task would be built
	// for two lines and kept in memory for as long as the task runs. Encoding a line goes deeper
	// than a waiting handler, so it is written off this goroutine's stack (see dispatch.OffStack).
	dispatch.OffStack(func() {
		x.logger.Info("task started", "task_id", task.ID, "task_type", task.Type, "timeout", task.Timeout)
	})
	x.opts.Dispatcher.Run(ctx, task, x.logger, func(out dispatch.Outcome) { x.finish(rt, out) })
	x.mu.Lock()
	delete(x.claimed, task.ID)
	x.finished[task.ID] = x.opts.Now()
	x.pruneLocked()
	x.mu.Unlock()
}

// finish hands a task's outcome to the reporter, after the updates handed over before it and
// closing the task to more, logs it and tells the observer.
func (x *Executor) finish(rt *running, out dispatch.Outcome) {
	task, info := rt.task, rt.info
	took := x.opts.Now().Sub(info.StartedAt)
	res := rt.result()
	res.Code, res.Data = out.Code, out.Data
	if out.Err != nil {
		res.Error = out.Err.Error()
	}
	rt.mu.Lock()
	rt.answered = true
	x.opts.Reporter.Deliver(res)
	rt.mu.Unlock()

	// Milliseconds, the same number in text and JSON logs (a Duration is nanoseconds in JSON).
	if res.Error == "" {
		x.logger.Info("task finished", "task_id", task.ID, "task_type", task.Type, "code", res.Code, "duration_ms", took.Milliseconds())
	} else {
		x.logger.Info("task finished", "task_id", task.ID, "task_type", task.Type, "code", res.Code, "duration_ms", took.Milliseconds(),
			"error", res.Error, "reason", errs.CodeOf(out.Err))
	}
	if x.opts.Observer != nil {
		x.opts.Observer.TaskFinished(info, res, took)
	}
}

func (x *Executor) pruneLocked() {
	now := x.opts.Now()
	if now.Sub(x.pruned) < x.opts.Remember/4 {
		return
	}
	x.pruned = now
	for id, at := range x.finished {
		if now.Sub(at) > x.opts.Remember {
			delete(x.finished, id)
		}
	}
}

// Abort cancels a task running here with errs.ErrAborted and reports whether it was running.
func (x *Executor) Abort(taskID string) bool {
	x.mu.Lock()
	e, ok := x.claimed[taskID]
	x.mu.Unlock()
	if !ok || e.cancel == nil {
		return false
	}
	e.cancel(errs.ErrAborted)
	return true
}

// CancelAll cancels every running task with cause (errs.ErrShuttingDown at the end of a drain).
func (x *Executor) CancelAll(cause error) { x.stop(cause) }

// Running returns the tasks running now, oldest first.
func (x *Executor) Running() []RunningTask {
	x.mu.Lock()
	defer x.mu.Unlock()
	out := make([]RunningTask, 0, len(x.claimed))
	for _, e := range x.claimed {
		if e.run != nil {
			out = append(out, e.run.info)
		}
	}
	slices.SortFunc(out, func(a, b RunningTask) int { return a.StartedAt.Compare(b.StartedAt) })
	return out
}

// RunningIDs returns the ids of the tasks running now, sorted.
func (x *Executor) RunningIDs() []string {
	x.mu.Lock()
	defer x.mu.Unlock()
	ids := make([]string, 0, len(x.claimed))
	for id, e := range x.claimed {
		if e.run != nil {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids
}

// Wait blocks until every task has finished and been handed to the reporter, or ctx ends.
func (x *Executor) Wait(ctx context.Context) error { return x.opts.Slots.Wait(ctx) }
