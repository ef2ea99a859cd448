package poller

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dlite-dev/dlite/errs"
	"github.com/dlite-dev/dlite/internal/manager"
	"github.com/dlite-dev/dlite/internal/retry"
)

// Source is the part of a manager the poller talks to.
type Source interface {
	Poll(ctx context.Context, delegateID string) ([]manager.Event, error)
	Acquire(ctx context.Context, delegateID, taskID string) (*manager.Task, error)
}

// Slots is the executor pool's reservation side.
type Slots interface {
	// TryReserve reserves up to n free slots and returns how many it reserved.
	TryReserve(n int) int
	// Release gives one reserved slot back.
	Release()
	// Free returns the number of free slots.
	Free() int
	// Freed receives after a slot is released.
	Freed() <-chan struct{}
}

// Tasks is the executor's task table.
type Tasks interface {
	Claim(taskID string) bool
	Unclaim(taskID string)
	// Start runs an acquired task in one slot the poller reserved.
	Start(task *manager.Task, delegateID string)
	Abort(taskID string) bool
}

// Session tells the poller which delegate id to poll as, and when it may.
type Session interface {
	WaitActive(ctx context.Context) (string, error)
	// Stale reports that the manager no longer knows delegateID.
	Stale(delegateID, reason string)
}

// Admitter says whether the machine has room for more work.
type Admitter interface {
	Admit() (ok bool, reason string)
}

// Observer hears about polls and acquires (metrics). Methods must not block.
type Observer interface {
	Polled(events int, err error)
	Acquired(err error)
}

// Options configure a Poller.
type Options struct {
	Source   Source
	Slots    Slots
	Tasks    Tasks
	Session  Session
	Admitter Admitter
	Observer Observer
	// Supports reports whether the runner has a handler for a task type.
	Supports func(taskType string) bool
	// Interval is the wait between polls that found nothing to take, jittered by ±10%.
	Interval time.Duration
	// CallTimeout bounds one poll or acquire. Default 30s.
	CallTimeout time.Duration
	// Backoff is the wait after a failed poll. Default Interval (at least 100ms) doubling to 30s.
	Backoff retry.Policy
	// AcquireAttempts bounds the tries of one acquire that fails with retryable errors. Default 30,
	// which with the default AcquireBackoff spans about the AcquireWindow: an acquire the manager
	// may have granted is given up only after a long outage, since the manager hands the task to
	// nobody else meanwhile.
	AcquireAttempts int
	// AcquireConcurrency bounds the acquires of one poll in flight at once. Default 32: enough to
	// keep a manager busy, few enough to reuse a small set of kept-alive connections.
	AcquireConcurrency int
	// AcquireWindow bounds the time all tries of one acquire may take. Default 1m.
	AcquireWindow time.Duration
	// AcquireBackoff is the wait between tries of one acquire. Default 100ms doubling to 2s.
	AcquireBackoff retry.Policy
	// HoldRecheck is how often a runner held back by admission control looks again. Default 1s.
	HoldRecheck time.Duration
	Logger      *slog.Logger
}

// Poller fetches and acquires tasks.
type Poller struct {
	opts   Options
	logger *slog.Logger
}

// New returns a Poller.
func New(opts Options) *Poller {
	if opts.Interval <= 0 {
		opts.Interval = 3 * time.Second
	}
	if opts.CallTimeout <= 0 {
		opts.CallTimeout = 30 * time.Second
	}
	if opts.Backoff.Initial <= 0 {
		opts.Backoff = retry.Policy{Initial: max(opts.Interval, 100*time.Millisecond), Max: max(opts.Interval, 30*time.Second)}
	}
	if opts.AcquireAttempts <= 0 {
		opts.AcquireAttempts = 30
	}
	if opts.AcquireConcurrency <= 0 {
		opts.AcquireConcurrency = 32
	}
	if opts.AcquireWindow <= 0 {
		opts.AcquireWindow = time.Minute
	}
	if opts.AcquireBackoff.Initial <= 0 {
		opts.AcquireBackoff = retry.Policy{Initial: 100 * time.Millisecond, Max: 2 * time.Second}
	}
	if opts.HoldRecheck <= 0 {
		opts.HoldRecheck = time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &Poller{opts: opts, logger: opts.Logger}
}

// Run polls until ctx ends and returns ctx.Err(). Cancelling ctx stops polling at once; acquires
// already sent are finished (and their tasks started) so the manager never hands this runner a
// task it then forgets.
func (p *Poller) Run(ctx context.Context) error {
	failures := p.opts.Backoff.NewBackOff()
	for {
		delegateID, err := p.opts.Session.WaitActive(ctx)
		if err != nil {
			return err
		}
		if ok, _ := p.opts.Admitter.Admit(); !ok {
			if err := retry.Sleep(ctx, p.opts.HoldRecheck); err != nil {
				return err
			}
			continue
		}
		if p.opts.Slots.Free() == 0 {
			if err := p.whileFull(ctx, delegateID); err != nil {
				return err
			}
			continue
		}

		events, err := p.poll(ctx, delegateID)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			wait := retry.Next(failures, err)
			p.logger.Warn("poll failed; backing off", "err", err, "retry_in", wait.Round(time.Millisecond))
			if err := retry.Sleep(ctx, wait); err != nil {
				return err
			}
			continue
		}
		failures.Reset()

		started, backlog := p.take(ctx, delegateID, events)
		if started > 0 && p.opts.Slots.Free() > 0 {
			continue // the manager may have more; do not leave slots idle until the next interval
		}
		if err := p.wait(ctx, backlog); err != nil {
			return err
		}
	}
}

// poll asks the manager for the delegate's events. A 404 means the manager no longer knows the
// delegate: the session is told, whichever loop polled.
func (p *Poller) poll(ctx context.Context, delegateID string) ([]manager.Event, error) {
	callCtx, cancel := context.WithTimeout(ctx, p.opts.CallTimeout)
	defer cancel()
	events, err := p.opts.Source.Poll(callCtx, delegateID)
	if p.opts.Observer != nil {
		p.opts.Observer.Polled(len(events), err)
	}
	if err != nil && ctx.Err() == nil && errors.Is(err, errs.ErrNotFound) {
		p.opts.Session.Stale(delegateID, err.Error())
	}
	return events, err
}

// wait sleeps for the poll interval. With a backlog (events left for want of a slot) it also
// wakes as soon as a slot frees, so no slot idles while known work waits for the next interval.
func (p *Poller) wait(ctx context.Context, backlog bool) error {
	t := time.NewTimer(retry.Jitter(p.opts.Interval, 0.1))
	defer t.Stop()
	var freed <-chan struct{}
	if backlog {
		freed = p.opts.Slots.Freed()
	}
	select {
	case <-t.C:
	case <-freed:
	case <-ctx.Done():
		return ctx.Err()
	}
	return nil
}

// whileFull waits for a slot to free. The tasks holding the slots may be aborted meanwhile, and
// their abort events come with the task events, so after each poll interval it polls and acts on
// the abort events only: task events stay with the manager until a slot is free to run them.
func (p *Poller) whileFull(ctx context.Context, delegateID string) error {
	t := time.NewTimer(retry.Jitter(p.opts.Interval, 0.1))
	defer t.Stop()
	select {
	case <-p.opts.Slots.Freed():
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
	}
	events, err := p.poll(ctx, delegateID)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		p.logger.Debug("poll for aborts failed; trying again at the next interval", "err", err)
		return nil
	}
	for _, ev := range events {
		if ev.Abort {
			p.abort(ev.TaskID)
		}
	}
	return nil
}

func (p *Poller) abort(taskID string) {
	if p.opts.Tasks.Abort(taskID) {
		p.logger.Info("task aborted by the manager", "task_id", taskID)
	}
}

// walkPerSlot bounds the candidates one poll's walk tries per reserved slot.
const walkPerSlot = 4

// take handles one poll's events: aborts first, then acquires runnable tasks into reserved slots.
// It returns how many tasks it started and whether runnable events were left for want of a slot.
func (p *Poller) take(ctx context.Context, delegateID string, events []manager.Event) (started int, backlog bool) {
	candidates := make([]manager.Event, 0, len(events))
	seen := make(map[string]struct{}, len(events))
	for _, ev := range events {
		if ev.Abort {
			p.abort(ev.TaskID)
			continue
		}
		if _, dup := seen[ev.TaskID]; dup {
			continue
		}
		seen[ev.TaskID] = struct{}{}
		if !p.opts.Supports(ev.TaskType) {
			p.logger.Debug("skipping a task of a type this runner has no handler for", "task_id", ev.TaskID, "task_type", ev.TaskType)
			continue
		}
		candidates = append(candidates, ev)
	}
	if len(candidates) == 0 {
		return 0, false
	}

	reserved := p.opts.Slots.TryReserve(len(candidates))
	// A bounded set of walkers shares the reserved slots: a walker takes one slot, walks the
	// candidates until it acquires one (a task another runner won costs a request, not a slot),
	// then takes the next slot. No more acquires are in flight than slots are reserved, and no
	// more than AcquireConcurrency, so a poll that fills a thousand slots neither opens a thousand
	// connections to the manager nor sends it a thousand requests at once.
	//
	// The walk ends after walkPerSlot candidates per reserved slot. While this runner walks, other
	// runners take the tasks the same events offered, and a walk that trails them refuses one
	// acquire after another, with every other slot idle until it ends; a fresh poll lists only
	// what is still queued.
	walk := min(len(candidates), reserved*walkPerSlot)
	var next, startedN, unassigned atomic.Int64
	unassigned.Store(int64(reserved))
	takeSlot := func() bool {
		for {
			n := unassigned.Load()
			if n <= 0 {
				return false
			}
			if unassigned.CompareAndSwap(n, n-1) {
				return true
			}
		}
	}
	var wg sync.WaitGroup
	for range min(reserved, p.opts.AcquireConcurrency) {
		wg.Go(func() {
			for takeSlot() {
				for {
					i := int(next.Add(1)) - 1
					if i >= walk {
						p.opts.Slots.Release()
						return
					}
					if p.acquire(ctx, delegateID, candidates[i]) {
						startedN.Add(1)
						break
					}
				}
			}
		})
	}
	wg.Wait()
	// The slots no walker took, because the candidates ran out first, go back.
	for range unassigned.Load() {
		p.opts.Slots.Release()
	}
	return int(startedN.Load()), min(int(next.Load()), walk) < len(candidates)
}

// acquire claims, acquires and starts one task; true means the task now runs in the caller's slot.
func (p *Poller) acquire(ctx context.Context, delegateID string, ev manager.Event) bool {
	if !p.opts.Tasks.Claim(ev.TaskID) {
		return false
	}
	// An acquire that reached the manager may have given us the task even when its answer was
	// lost, so retryable failures are tried again (the manager hands a task again to the delegate
	// that holds it), and the attempts go on when polling stops meanwhile: the task is then run and
	// answered rather than left acquired and forgotten.
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), p.opts.AcquireWindow)
	defer cancel()
	var task *manager.Task
	attempts := 0
	err := retry.Until(actx, p.opts.AcquireBackoff, func(actx context.Context) error {
		attempts++
		callCtx, cancel := context.WithTimeout(actx, p.opts.CallTimeout)
		defer cancel()
		var err error
		task, err = p.opts.Source.Acquire(callCtx, delegateID, ev.TaskID)
		if p.opts.Observer != nil {
			p.opts.Observer.Acquired(err)
		}
		return err
	}, func(err error) bool {
		// A 2xx answer that cannot be read granted the task as surely as a lost one may have.
		uncertain := errs.Retryable(err) || errors.Is(err, errs.ErrMalformedResponse)
		return !uncertain || attempts >= p.opts.AcquireAttempts
	}, nil)
	if err != nil {
		p.opts.Tasks.Unclaim(ev.TaskID)
		if errors.Is(err, errs.ErrAcquireConflict) {
			p.logger.Debug("task taken by another runner", "task_id", ev.TaskID)
		} else {
			p.logger.Warn("acquire failed", "task_id", ev.TaskID, "err", err)
		}
		return false
	}
	if task.ID != ev.TaskID {
		p.logger.Warn("manager answered an acquire with another task id; running it under the id it gave",
			"event_task_id", ev.TaskID, "task_id", task.ID)
		p.opts.Tasks.Unclaim(ev.TaskID)
		if !p.opts.Tasks.Claim(task.ID) {
			// Already running here: answering it twice would be worse than not at all.
			return false
		}
	}
	p.opts.Tasks.Start(task, delegateID)
	return true
}
