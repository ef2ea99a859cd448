// Package retry holds the runner's one way of waiting between attempts: capped exponential
// backoff with jitter that defers to the manager's Retry-After when it asks for longer.
package retry

import (
	"context"
	"time"

	"github.com/cenkalti/backoff/v5"

	"github.com/dlite-dev/dlite/errs"
)

// Policy says how long to wait between attempts.
type Policy struct {
	Initial time.Duration
	Max     time.Duration
}

// NewBackOff returns a backoff for the policy: exponential from Initial, capped at Max, with ±50%
// jitter so a fleet of runners does not retry in lockstep.
func (p Policy) NewBackOff() *backoff.ExponentialBackOff {
	b := backoff.NewExponentialBackOff()
	b.InitialInterval = p.Initial
	b.MaxInterval = p.Max
	b.RandomizationFactor = 0.5
	b.Multiplier = 2
	b.Reset()
	return b
}

// MaxRetryAfter caps the wait a manager can ask for with Retry-After, so an absurd value cannot
// stall polling or reporting for hours.
const MaxRetryAfter = 5 * time.Minute

// Next returns the wait before the next attempt after err: the backoff's next interval, or the
// Retry-After the manager sent with err when that is longer (at most MaxRetryAfter).
func Next(b backoff.BackOff, err error) time.Duration {
	d := b.NextBackOff()
	if ra := min(errs.RetryAfter(err), MaxRetryAfter); ra > d {
		d = ra
	}
	return d
}

// Sleep waits for d or until ctx ends, and returns ctx.Err() in the latter case.
func Sleep(ctx context.Context, d time.Duration) error {
	_, err := sleepOrWake(ctx, d, nil)
	return err
}

// sleepOrWake waits for d, until woken is closed (woke is then true) or until ctx ends (it then
// returns ctx.Err()). A nil woken never wakes.
func sleepOrWake(ctx context.Context, d time.Duration, woken <-chan struct{}) (woke bool, err error) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return false, nil
	case <-woken:
		return true, nil
	case <-ctx.Done():
		return false, ctx.Err()
	}
}

// Until calls op until it succeeds, giveUp says an error is final, or ctx ends. notify, if not
// nil, hears each failure and the wait before the next attempt.
func Until(ctx context.Context, p Policy, op func(context.Context) error, giveUp func(error) bool, notify func(err error, wait time.Duration)) error {
	return UntilWoken(ctx, p, nil, op, giveUp, notify)
}

// UntilWoken is Until whose waits can be cut short: wake, if not nil, returns a channel that is
// closed when trying again at once is worth it (the manager answered another call, say). It is
// taken before each attempt, so a wake-up during the attempt ends the wait that follows it; a
// wake-up also starts the backoff again from Initial.
func UntilWoken(ctx context.Context, p Policy, wake func() <-chan struct{}, op func(context.Context) error, giveUp func(error) bool, notify func(err error, wait time.Duration)) error {
	b := p.NewBackOff()
	for {
		var woken <-chan struct{}
		if wake != nil {
			woken = wake()
		}
		err := op(ctx)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if giveUp != nil && giveUp(err) {
			return err
		}
		wait := Next(b, err)
		if notify != nil {
			notify(err, wait)
		}
		if errs.RetryAfter(err) > 0 {
			// The manager said when to come back; another call's answer does not change that.
			woken = nil
		}
		woke, err := sleepOrWake(ctx, wait, woken)
		if err != nil {
			return err
		}
		if woke {
			b.Reset()
		}
	}
}

// Jitter returns d moved by up to ±frac of itself, at random.
func Jitter(d time.Duration, frac float64) time.Duration {
	if d <= 0 || frac <= 0 {
		return d
	}
	b := backoff.ExponentialBackOff{InitialInterval: d, RandomizationFactor: frac, Multiplier: 1, MaxInterval: d}
	b.Reset()
	return b.NextBackOff()
}
