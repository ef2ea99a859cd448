package drone

import (
	"context"
	"time"

	"github.com/cenkalti/backoff/v5"

	"github.com/dlite-dev/dlite/errs"
	"github.com/dlite-dev/dlite/internal/retry"
)

// ReconnectPolicy is the wait between attempts when the server cannot be reached, answers 502 or
// more, or fails a call: from 1 s, doubling to at most 1 min, each wait moved by up to half of
// itself at random so that a fleet of runners does not come back in lockstep. (runner-go waits a
// fixed 10 s after a 204 or 5xx and not at all after other errors.)
var ReconnectPolicy = retry.Policy{Initial: time.Second, Max: time.Minute}

// UnauthorizedPolicy is the wait after the server refused the RPC secret (401 or 403): from
// 30 s, doubling to at most 5 min. A refused secret does not fix itself, so a runner keeps
// trying only slowly (an operator may fix the server's secret without restarting the runner)
// and never in a tight loop; each refusal is worth an error in the log.
var UnauthorizedPolicy = retry.Policy{Initial: 30 * time.Second, Max: 5 * time.Minute}

// Backoff chooses the wait before the next call after a failure: UnauthorizedPolicy's after a
// refused secret, ReconnectPolicy's after anything else. A success (Reset) starts both over. It
// is not safe for concurrent use: keep one per loop.
type Backoff struct {
	reconnect    *backoff.ExponentialBackOff
	unauthorized *backoff.ExponentialBackOff
}

// NewBackoff returns a Backoff with the given policies; a zero policy is replaced by the
// package's default for it.
func NewBackoff(reconnect, unauthorized retry.Policy) *Backoff {
	if reconnect == (retry.Policy{}) {
		reconnect = ReconnectPolicy
	}
	if unauthorized == (retry.Policy{}) {
		unauthorized = UnauthorizedPolicy
	}
	return &Backoff{reconnect: reconnect.NewBackOff(), unauthorized: unauthorized.NewBackOff()}
}

// Next returns the wait before trying again after err. The two policies grow separately: a
// server that flips between refusing the secret and being unreachable gets the slow wait for
// every refusal.
func (b *Backoff) Next(err error) time.Duration {
	if errs.CodeOf(err) == errs.CodeUnauthorized {
		return retry.Next(b.unauthorized, err)
	}
	return retry.Next(b.reconnect, err)
}

// Reset starts both policies over; call it after a call succeeded.
func (b *Backoff) Reset() {
	b.reconnect.Reset()
	b.unauthorized.Reset()
}

// Wait sleeps for Next(err) or until ctx ends, in which case it returns ctx.Err().
func (b *Backoff) Wait(ctx context.Context, err error) error {
	return retry.Sleep(ctx, b.Next(err))
}
