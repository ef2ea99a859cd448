package poller

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/dlite-dev/dlite/errs"
	"github.com/dlite-dev/dlite/internal/manager"
	"github.com/dlite-dev/dlite/internal/retry"
)

// OfferBackoff chooses the wait of one offer loop after a failed offer. Next may choose by the
// kind of failure (a slow retry after refused credentials, say); Reset starts it over after an
// answer.
type OfferBackoff interface {
	Next(err error) time.Duration
	Reset()
}

// answeredBroadcast wakes every offer loop that backs off when the manager answers another call;
// a single-slot channel would wake only one of them.
type answeredBroadcast struct {
	mu sync.Mutex
	ch chan struct{}
}

func (a *answeredBroadcast) wait() <-chan struct{} {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.ch == nil {
		a.ch = make(chan struct{})
	}
	return a.ch
}

func (a *answeredBroadcast) raise() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.ch != nil {
		close(a.ch)
		a.ch = nil
	}
}

// runOffers is Run for a manager whose polls offer one task each (manager.Offerer). Each free
// slot is reserved for one offer loop, which keeps a long poll in flight, acquires what it is
// offered into its slot and ends when a task takes the slot; a busy runner asks for nothing.
// Loops start as slots free.
func (p *Poller) runOffers(ctx, hardStop context.Context, src manager.Offerer) error {
	var loops sync.WaitGroup
	defer loops.Wait()
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
		for range p.opts.Slots.TryReserve(p.opts.Slots.Free()) {
			loops.Go(func() { p.offerLoop(ctx, hardStop, src, delegateID) })
		}
		select {
		case <-p.opts.Slots.Freed():
		case <-p.drained:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// offerLoop holds one reserved slot and asks for offers until one is acquired and started in
// it. It gives the slot back when polling stops, admission holds the runner back, or the session
// moves to another delegate id.
func (p *Poller) offerLoop(ctx, hardStop context.Context, src manager.Offerer, delegateID string) {
	release := func() {
		p.opts.Slots.Release()
		select {
		case p.drained <- struct{}{}:
		default:
		}
	}
	failures := p.opts.NewOfferBackoff()
	for {
		if ctx.Err() != nil {
			release()
			return
		}
		if ok, _ := p.opts.Admitter.Admit(); !ok {
			release()
			return
		}
		if id, err := p.opts.Session.WaitActive(ctx); err != nil || id != delegateID {
			release()
			return
		}
		tried := time.Now()
		callCtx, cancel := context.WithTimeout(ctx, p.opts.CallTimeout)
		ev, err := src.Offer(callCtx, delegateID)
		cancel()
		if p.opts.Observer != nil {
			n := 0
			if ev != nil {
				n = 1
			}
			p.opts.Observer.Polled(n, err)
		}
		if err != nil {
			if ctx.Err() != nil {
				release()
				return
			}
			if errors.Is(err, errs.ErrNotFound) {
				p.opts.Session.Stale(delegateID, err.Error())
			}
			wait := failures.Next(err)
			if errs.CodeOf(err) == errs.CodeUnauthorized {
				p.logger.Error("the manager refused the runner's credentials; check the secret. Retrying slowly",
					"err", err, "retry_in", wait.Round(time.Millisecond))
			} else {
				p.logger.Warn("poll failed; backing off", "err", err, "retry_in", wait.Round(time.Millisecond))
			}
			if err := p.sleepUnlessAnswered(ctx, tried, wait); err != nil {
				release()
				return
			}
			continue
		}
		failures.Reset()
		if ev == nil {
			continue
		}
		if ev.Abort {
			p.abort(ev.TaskID)
			continue
		}
		if p.opts.Supports != nil && !p.opts.Supports(ev.TaskType) {
			p.logger.Warn("offered a task of a type this runner has no handler for; leaving it", "task_id", ev.TaskID,
				"task_type", ev.TaskType)
			if err := p.sleepUnlessAnswered(ctx, tried, p.opts.Interval); err != nil {
				release()
				return
			}
			continue
		}
		if p.acquire(hardStop, delegateID, *ev) == started {
			// The task holds the slot now, and gives it back when it ends.
			return
		}
	}
}

// sleepUnlessAnswered waits for wait after a failed offer sent at tried, or less when the
// manager answers another call: then no sooner than one interval after tried.
func (p *Poller) sleepUnlessAnswered(ctx context.Context, tried time.Time, wait time.Duration) error {
	timer := time.NewTimer(wait)
	defer timer.Stop()
	select {
	case <-timer.C:
		return nil
	case <-p.offerAnswered.wait():
		return retry.Sleep(ctx, time.Until(tried.Add(p.opts.Interval)))
	case <-ctx.Done():
		return ctx.Err()
	}
}

// forwardAborts stops the tasks the manager's abort source names, until hardStop ends or the
// source closes: a cancel that comes while running tasks drain still stops them.
func (p *Poller) forwardAborts(hardStop context.Context, aborts <-chan string) {
	for {
		select {
		case id, ok := <-aborts:
			if !ok {
				return
			}
			p.abort(id)
		case <-hardStop.Done():
			return
		}
	}
}
