package runner

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/dlite-dev/dlite/errs"
	"github.com/dlite-dev/dlite/internal/executor"
	"github.com/dlite-dev/dlite/internal/manager"
	"github.com/dlite-dev/dlite/internal/poller"
	"github.com/dlite-dev/dlite/internal/reporter"
	"github.com/dlite-dev/dlite/internal/session"
)

// Admission is the resource admission controller: it samples in Run and answers Admit.
type Admission interface {
	Admit() (ok bool, reason string)
	Run(ctx context.Context) error
}

// Options configure a Runner.
type Options struct {
	Session   *session.Session
	Poller    *poller.Poller
	Executor  *executor.Executor
	Reporter  *reporter.Reporter
	Admission Admission
	// Recover, when the manager keeps the tasks this runner took (a Drone server), names the tasks
	// an earlier run left unfinished; Run answers them before it takes work. Nil for a manager
	// that hands a task nobody answers to another runner by itself (Harness).
	Recover manager.Recoverer
	// FinalWait bounds how long cancelled tasks may take to report, and how long the reporter may
	// take to deliver what is pending, once the drain is over. Default 15s each.
	FinalWait time.Duration
	Logger    *slog.Logger
}

// Phase is where the runner is in its life.
type Phase string

// The phases of a runner.
const (
	PhaseStarting    Phase = "starting"
	PhaseRegistering Phase = "registering"
	PhaseRunning     Phase = "running"
	PhaseDraining    Phase = "draining"
	PhaseStopped     Phase = "stopped"
)

// Runner is a running dlite runner.
type Runner struct {
	opts     Options
	logger   *slog.Logger
	once     sync.Once
	stopping chan struct{}
	drainCtx context.Context
	done     chan struct{}
	mu       sync.Mutex
	phase    Phase
}

// New returns a Runner; start it with Run.
func New(opts Options) *Runner {
	if opts.FinalWait <= 0 {
		opts.FinalWait = 15 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &Runner{
		opts:     opts,
		logger:   opts.Logger,
		stopping: make(chan struct{}),
		done:     make(chan struct{}),
		phase:    PhaseStarting,
	}
}

// Phase returns where the runner is in its life.
func (r *Runner) Phase() Phase {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.phase
}

func (r *Runner) setPhase(p Phase) {
	r.mu.Lock()
	r.phase = p
	r.mu.Unlock()
}

// Run registers the runner and takes work until ctx ends or Shutdown is called, then drains and
// returns. Before it registers, it answers the tasks an earlier run left unfinished
// (Options.Recover). Cancelling ctx is a hard stop: running tasks are cancelled and reported at once.
// Results that could not be delivered stay in the spool for the next start.
func (r *Runner) Run(ctx context.Context) error {
	defer close(r.done)
	defer r.setPhase(PhaseStopped)

	// Reporting, heartbeats and sampling outlive the polling context: they go on while tasks drain.
	bg, stopBackground := context.WithCancel(context.WithoutCancel(ctx))
	var background sync.WaitGroup
	defer func() {
		stopBackground()
		background.Wait()
		r.opts.Reporter.Wait()
	}()

	kept, err := r.opts.Reporter.Start(bg)
	if err != nil {
		return err
	}
	if kept > 0 {
		r.logger.Info("redelivering results kept from an earlier run", "results", kept)
	}
	r.answerUnfinished()
	background.Go(func() { _ = r.opts.Admission.Run(bg) })

	// work ends with ctx or with the start of a graceful shutdown.
	work, stopWork := context.WithCancel(ctx)
	defer stopWork()
	go func() {
		select {
		case <-r.stopping:
			stopWork()
		case <-work.Done():
		}
	}()

	r.setPhase(PhaseRegistering)
	if err := r.opts.Session.Register(work); err != nil {
		r.logger.Info("stopped before registering", "cause", err)
		return nil
	}
	heartbeats, stopHeartbeats := context.WithCancel(bg)
	defer stopHeartbeats()
	background.Go(func() { _ = r.opts.Session.RunHeartbeats(heartbeats) })

	// Acquires the manager has not answered for certain outlive polling, since the manager may have
	// granted them: they end only with a hard stop, the end of ctx or of a graceful shutdown's grace
	// period.
	acquires, stopAcquires := context.WithCancel(ctx)
	defer stopAcquires()
	go func() {
		select {
		case <-r.stopping:
			select {
			case <-r.drainCtx.Done():
				stopAcquires()
			case <-acquires.Done():
			}
		case <-acquires.Done():
		}
	}()

	r.setPhase(PhaseRunning)
	polling := make(chan struct{})
	go func() {
		defer close(polling)
		_ = r.opts.Poller.Run(work, acquires)
	}()
	<-work.Done()
	<-polling
	r.setPhase(PhaseDraining)

	drain := ctx
	select {
	case <-r.stopping:
		drain = r.drainCtx
	default:
	}
	r.drain(drain)

	flush, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.opts.FinalWait)
	defer cancel()
	if err := r.opts.Reporter.Flush(flush); err != nil {
		r.logger.Warn("stopping with results not yet delivered; they stay in the spool for the next start",
			"pending", r.opts.Reporter.Pending())
	}
	r.logger.Info("runner stopped")
	return nil
}

// answerUnfinished answers, as failed with errs.ErrInterrupted, each task an earlier run took and
// left without an outcome: one it was running when it stopped without answering (a crash, a
// kill), which a manager that offers a taken task to nobody else would otherwise wait for
// forever. A task whose outcome the spool holds is left to that outcome.
//
// The tasks are read twice, before and after looking at the outcomes pending: an outcome kept
// from the earlier run that is delivered in between leaves the reporter, but its task has then
// been reported, and the second reading no longer names it.
func (r *Runner) answerUnfinished() {
	if r.opts.Recover == nil {
		return
	}
	taken, err := r.opts.Recover.Unfinished()
	if err != nil {
		r.logger.Error("could not read the tasks an earlier run left unfinished; they are not answered", "err", err)
		return
	}
	pending := make(map[string]bool)
	for _, u := range taken {
		if r.opts.Reporter.HasOutcome(u.TaskID) {
			pending[u.TaskID] = true
		}
	}
	if taken, err = r.opts.Recover.Unfinished(); err != nil {
		r.logger.Error("could not read the tasks an earlier run left unfinished; they are not answered", "err", err)
		return
	}
	now := time.Now()
	for _, u := range taken {
		if pending[u.TaskID] || r.opts.Reporter.HasOutcome(u.TaskID) {
			continue
		}
		r.logger.Warn("answering a task an earlier run left unfinished", "task_id", u.TaskID, "task_type", u.TaskType)
		r.opts.Reporter.Deliver(manager.Result{
			TaskID:     u.TaskID,
			TaskType:   u.TaskType,
			Code:       manager.CodeFailed,
			Error:      errs.ErrInterrupted.Error(),
			FinishedAt: now,
		})
	}
}

// drain lets running tasks finish until ctx ends, then cancels the rest and waits (bounded) for
// them to be reported as cancelled by the shutdown.
func (r *Runner) drain(ctx context.Context) {
	running := len(r.opts.Executor.Running())
	r.logger.Info("stopped taking work; draining running tasks", "running", running)
	if err := r.opts.Executor.Wait(ctx); err == nil {
		return
	}
	r.logger.Warn("drain ended with tasks still running; cancelling them",
		"running", len(r.opts.Executor.Running()), "cause", context.Cause(ctx))
	r.opts.Executor.CancelAll(errs.ErrShuttingDown)
	wait, cancel := context.WithTimeout(context.Background(), r.opts.FinalWait)
	defer cancel()
	if err := r.opts.Executor.Wait(wait); err != nil {
		r.logger.Error("tasks did not stop after cancellation; leaving them", "running", len(r.opts.Executor.Running()))
	}
}

// Shutdown stops the runner gracefully: polling stops at once, running tasks may finish until ctx
// ends (the grace period; cancel it early for a hard stop), then the rest are cancelled and
// reported. It returns when Run has returned, or ctx's error if Run was never started and ctx
// ends.
func (r *Runner) Shutdown(ctx context.Context) error {
	r.once.Do(func() {
		r.drainCtx = ctx
		close(r.stopping)
	})
	select {
	case <-r.done:
		return nil
	case <-ctx.Done():
		// The grace period is over: Run is now cancelling tasks; wait for it, but not forever.
		select {
		case <-r.done:
			return nil
		case <-time.After(2*r.opts.FinalWait + time.Second):
			return errors.New("runner did not stop in time")
		}
	}
}
