package poller

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v5"

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
	// Size returns the number of slots.
	Size() int
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
	// Interval is the wait between polls, jittered by ±10%.
	Interval time.Duration
	// CallTimeout bounds one poll or one try of an acquire. Default 30s.
	CallTimeout time.Duration
	// Backoff is the wait after a failed poll. Default Interval (at least 100ms) doubling to 30s.
	// An answer from the manager to another call (ManagerAnswered) ends it early.
	Backoff retry.Policy
	// MaxCandidates bounds the task events of one answer kept for slots that free before the next
	// poll. Default CandidatesPerSlot times the slots, and at least MinCandidates.
	MaxCandidates int
	// CandidateTTL is how long the events of an answer stay candidates when no newer answer
	// replaces them (while polls fail, say). Default three intervals, at least 1s.
	CandidateTTL time.Duration
	// AcquireConcurrency bounds the acquires in flight at once. Default 32: enough to keep a
	// manager busy, few enough to reuse a small set of kept-alive connections.
	AcquireConcurrency int
	// AcquireBackoff is the wait between tries of one acquire whose outcome is unknown. Default
	// 100ms doubling to 2s.
	AcquireBackoff retry.Policy
	// AcquireWarnAfter is how long an acquire may stay unanswered before the poller says so in a
	// warning; it goes on trying all the same. Default 1m.
	AcquireWarnAfter time.Duration
	// HoldRecheck is how often a runner held back by admission control looks again. Default 1s.
	HoldRecheck time.Duration
	// NewOfferBackoff makes the backoff of each offer loop, for a Source that offers tasks one
	// long poll at a time (manager.Offerer). Default: Backoff, whatever the failure.
	NewOfferBackoff func() OfferBackoff
	// Aborts, when set, names tasks to stop besides the aborts in poll answers (a manager's
	// manager.AbortSource). Run acts on it until hardStop ends.
	Aborts <-chan string
	Logger *slog.Logger
}

// CandidatesPerSlot is the default bound of the candidates per slot. An answer costs the runner
// time in proportion to its length, which is the manager's whole queue, so one answer should feed
// many tasks when tasks are short; stale candidates cost little, since RefusedPerSlot bounds the
// acquires wasted on them.
const CandidatesPerSlot = 16

// MinCandidates is the least default bound of the candidates, whatever the slots: a runner with
// one or two slots would otherwise poll, and read the whole answer again, every few tasks. It
// bounds the candidates to a few kilobytes.
const MinCandidates = 128

// RefusedPerSlot bounds the acquires refused in a row (the task was taken by another runner, or is
// gone), per slot, after which the candidates are taken for stale and dropped until the next
// answer: a runner trailing others through a long list does not keep asking for what they took,
// with its slots held by the asking.
const RefusedPerSlot = 4

// Poller fetches and acquires tasks.
type Poller struct {
	opts   Options
	logger *slog.Logger
	cands  *candidates
	// walking counts the goroutines acquiring candidates; started counts the tasks they started
	// since the latest answer; refused the acquires refused in a row.
	walking atomic.Int64
	started atomic.Int64
	refused atomic.Int64
	// drained hears from a walker that found no candidate left; answered from ManagerAnswered.
	drained  chan struct{}
	answered chan struct{}
	// offerAnswered wakes every backing-off offer loop at once.
	offerAnswered answeredBroadcast
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
	if opts.MaxCandidates <= 0 {
		opts.MaxCandidates = max(CandidatesPerSlot*opts.Slots.Size(), MinCandidates)
	}
	if opts.CandidateTTL <= 0 {
		opts.CandidateTTL = max(3*opts.Interval, time.Second)
	}
	if opts.AcquireConcurrency <= 0 {
		opts.AcquireConcurrency = 32
	}
	if opts.AcquireBackoff.Initial <= 0 {
		opts.AcquireBackoff = retry.Policy{Initial: 100 * time.Millisecond, Max: 2 * time.Second}
	}
	if opts.AcquireWarnAfter <= 0 {
		opts.AcquireWarnAfter = time.Minute
	}
	if opts.HoldRecheck <= 0 {
		opts.HoldRecheck = time.Second
	}
	if opts.NewOfferBackoff == nil {
		policy := opts.Backoff
		opts.NewOfferBackoff = func() OfferBackoff { return policyOfferBackoff{policy.NewBackOff()} }
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &Poller{
		opts:     opts,
		logger:   opts.Logger,
		cands:    newCandidates(opts.MaxCandidates, opts.CandidateTTL),
		drained:  make(chan struct{}, 1),
		answered: make(chan struct{}, 1),
	}
}

// ManagerAnswered tells the poller that the manager answered a call (a registration, a heartbeat,
// a delivered result): a poller backing off after failed polls polls again at once, rather than at
// the end of a backoff that may have grown to 30s during an outage. A Retry-After the manager sent
// still holds, and a woken poll comes no sooner than one interval after the failed one, so a
// manager that answers other calls but keeps failing polls is polled no more often than a healthy
// one. It never blocks.
func (p *Poller) ManagerAnswered() {
	p.offerAnswered.raise()
	select {
	case p.answered <- struct{}{}:
	default:
	}
}

// Run polls until ctx ends, then waits for the acquires in flight and returns ctx.Err().
//
// Each answer is read once: its aborts act at once and its runnable task events become the
// candidates that free slots acquire, then and as slots free until the next answer, without
// polling again. Polls go on at the interval for new events and aborts, whether or not a slot is
// free; when the candidates run out while slots are free and the last answer started work, the
// poller polls again at once, since the manager may have more.
//
// Cancelling ctx stops polling and the taking of candidates at once. An acquire already sent is
// tried until the manager answers it for certain, granted (its task is then started), taken by
// another runner or gone, since a manager that granted it hands the task to nobody else. The end
// of hardStop ends the tries: the one in flight still gets its answer (within CallTimeout), and no
// other is made; the manager takes back a task it granted once it finds this runner gone.
//
// A Source that offers one task per long poll (manager.Offerer) is polled differently: one offer
// is kept in flight per free slot, each holding the slot it reserved, and none while every slot
// is busy.
func (p *Poller) Run(ctx, hardStop context.Context) error {
	if p.opts.Aborts != nil {
		go p.forwardAborts(hardStop, p.opts.Aborts)
	}
	if o, ok := p.opts.Source.(manager.Offerer); ok {
		return p.runOffers(ctx, hardStop, o)
	}
	var walkers sync.WaitGroup
	defer walkers.Wait()
	failures := p.opts.Backoff.NewBackOff()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	var (
		delegate string
		// nextPoll is when the next poll is due; lastPoll when the latest was sent.
		nextPoll, lastPoll time.Time
		// failing says the latest poll failed; then holdUntil is the end of its Retry-After.
		failing   bool
		holdUntil time.Time
	)
	for {
		delegateID, err := p.opts.Session.WaitActive(ctx)
		if err != nil {
			return err
		}
		if delegateID != delegate {
			// Events listed for another registration are not this one's to take.
			p.cands.drop()
			delegate = delegateID
		}
		if ok, _ := p.opts.Admitter.Admit(); !ok {
			if err := retry.Sleep(ctx, p.opts.HoldRecheck); err != nil {
				return err
			}
			continue
		}
		p.spawn(ctx, hardStop, &walkers)

		now := time.Now()
		if !failing && p.more() {
			nextPoll = now
		}
		if !now.Before(nextPoll) {
			// Only answers to calls made from now on end the backoff that may follow.
			select {
			case <-p.answered:
			default:
			}
			lastPoll = now
			events, err := p.poll(ctx, delegateID)
			if err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				wait := retry.Next(failures, err)
				failing, holdUntil, nextPoll = true, now.Add(min(errs.RetryAfter(err), retry.MaxRetryAfter)), now.Add(wait)
				p.logger.Warn("poll failed; backing off", "err", err, "retry_in", wait.Round(time.Millisecond))
				continue
			}
			failures.Reset()
			failing = false
			p.started.Store(0)
			p.refused.Store(0)
			if overflow := p.cands.offer(delegateID, events, now, p.opts.Supports, p.abort); overflow > 0 {
				p.logger.Debug("more task events than candidates; the rest wait for a later poll", "left", overflow)
			}
			nextPoll = now.Add(retry.Jitter(p.opts.Interval, 0.1))
			continue
		}

		var answered <-chan struct{}
		if failing {
			answered = p.answered
		}
		timer.Reset(nextPoll.Sub(now))
		select {
		case <-timer.C:
		case <-p.opts.Slots.Freed():
		case <-p.drained:
		case <-answered:
			woken := latest(time.Now(), lastPoll.Add(p.opts.Interval), holdUntil)
			if woken.Before(nextPoll) {
				p.logger.Debug("manager answered; polling again before the end of the backoff")
				nextPoll = woken
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// policyOfferBackoff is the default OfferBackoff: one policy for every failure, with the
// manager's Retry-After honoured.
type policyOfferBackoff struct{ b backoff.BackOff }

func (b policyOfferBackoff) Next(err error) time.Duration { return retry.Next(b.b, err) }
func (b policyOfferBackoff) Reset()                       { b.b.Reset() }

// latest returns the latest of ts.
func latest(ts ...time.Time) time.Time {
	var l time.Time
	for _, t := range ts {
		if t.After(l) {
			l = t
		}
	}
	return l
}

// more reports whether to poll before the interval is over: the candidates ran out while slots
// are free, and the last answer started work, so the manager may have more.
func (p *Poller) more() bool {
	return p.started.Load() > 0 && p.cands.len() == 0 && p.opts.Slots.Free() > 0
}

// spawn starts walkers for the candidates, each with a slot reserved for it, as long as there are
// candidates, free slots and room under AcquireConcurrency.
func (p *Poller) spawn(ctx, hardStop context.Context, walkers *sync.WaitGroup) {
	n := min(p.cands.len(), p.opts.AcquireConcurrency-int(p.walking.Load()))
	if n <= 0 {
		return
	}
	reserved := p.opts.Slots.TryReserve(n)
	p.walking.Add(int64(reserved))
	for range reserved {
		walkers.Go(func() {
			defer p.walking.Add(-1)
			p.walk(ctx, hardStop)
		})
	}
}

// walk holds one reserved slot and acquires candidates into it until one is granted (a task
// another runner won costs a request, not a slot), then reserves another slot and goes on while
// candidates are left. It gives back the slot it holds when it stops. Each candidate is acquired
// as the delegate whose answer listed it, so a walker that outlives a registration does not ask
// for the new registration's tasks under the old one.
func (p *Poller) walk(ctx, hardStop context.Context) {
	for {
		ev, delegateID, ok := p.cands.take(time.Now())
		if !ok || ctx.Err() != nil || hardStop.Err() != nil {
			p.opts.Slots.Release()
			if !ok {
				select {
				case p.drained <- struct{}{}:
				default:
				}
			}
			return
		}
		switch p.acquire(hardStop, delegateID, ev) {
		case skipped:
			continue
		case refused:
			if p.refused.Add(1) == int64(RefusedPerSlot*max(p.opts.Slots.Size(), 1)) {
				p.logger.Debug("acquires refused in a row; dropping the candidates until the next answer", "refused", p.refused.Load())
				p.cands.drop()
			}
			continue
		}
		p.refused.Store(0)
		p.started.Add(1)
		if ctx.Err() != nil || p.cands.len() == 0 {
			return
		}
		if ok, _ := p.opts.Admitter.Admit(); !ok || p.opts.Slots.TryReserve(1) == 0 {
			return
		}
	}
}

// poll asks the manager for the delegate's events. A 404 means the manager no longer knows the
// delegate: the session is told.
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

func (p *Poller) abort(taskID string) {
	if p.opts.Tasks.Abort(taskID) {
		p.logger.Info("task aborted by the manager", "task_id", taskID)
	}
}

// outcome is how one candidate's acquire ended.
type outcome int

const (
	// started: the task runs in the caller's slot.
	started outcome = iota
	// skipped: no answer from the manager was needed or could be had (the task is claimed here
	// already, or a hard stop came first).
	skipped
	// refused: the manager gave the task to another runner, or does not know it.
	refused
)

// acquire claims, acquires and starts one task.
func (p *Poller) acquire(hardStop context.Context, delegateID string, ev manager.Event) outcome {
	if !p.opts.Tasks.Claim(ev.TaskID) {
		return skipped
	}
	// An acquire that reached the manager may have given us the task even when its answer was
	// lost, and the manager hands it to nobody else while it takes this runner for alive: the
	// acquire is tried again (the manager hands a task again to the delegate that holds it) until
	// the answer is certain, so the task is then run and answered rather than left acquired and
	// forgotten.
	var task *manager.Task
	began, warned := time.Now(), false
	err := retry.Until(hardStop, p.opts.AcquireBackoff, func(ctx context.Context) error {
		// The try in flight gets its answer even at a hard stop: a task the manager grants now is
		// still started, and then reported as cancelled by the shutdown, rather than left granted.
		callCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), p.opts.CallTimeout)
		defer cancel()
		var err error
		task, err = p.opts.Source.Acquire(callCtx, delegateID, ev.TaskID)
		if p.opts.Observer != nil {
			p.opts.Observer.Acquired(err)
		}
		return err
	}, func(err error) bool {
		// A 2xx answer that cannot be read granted the task as surely as a lost one may have.
		if errs.Retryable(err) || errors.Is(err, errs.ErrMalformedResponse) {
			if !warned && time.Since(began) >= p.opts.AcquireWarnAfter {
				warned = true
				p.logger.Warn("acquire still unanswered; trying until the manager answers", "task_id", ev.TaskID,
					"since", began, "err", err)
			}
			return false
		}
		return true
	}, nil)
	if err != nil {
		p.opts.Tasks.Unclaim(ev.TaskID)
		switch {
		case errors.Is(err, errs.ErrAcquireConflict):
			p.logger.Debug("task taken by another runner", "task_id", ev.TaskID)
		case hardStop.Err() != nil:
			p.logger.Warn("acquire abandoned by a hard stop before the manager answered it; the manager takes the task back once it finds this runner gone",
				"task_id", ev.TaskID)
			return skipped
		default:
			p.logger.Warn("acquire failed", "task_id", ev.TaskID, "err", err)
		}
		return refused
	}
	if warned {
		p.logger.Info("manager answered an acquire at last", "task_id", ev.TaskID, "after", time.Since(began).Round(time.Millisecond))
	}
	if task.ID != ev.TaskID {
		p.logger.Warn("manager answered an acquire with another task id; running it under the id it gave",
			"event_task_id", ev.TaskID, "task_id", task.ID)
		p.opts.Tasks.Unclaim(ev.TaskID)
		if !p.opts.Tasks.Claim(task.ID) {
			// Already running here: answering it twice would be worse than not at all.
			return skipped
		}
	}
	p.opts.Tasks.Start(task, delegateID)
	return started
}
