package retry_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dlite-dev/dlite/errs"
	"github.com/dlite-dev/dlite/internal/retry"
)

func TestNextHonoursRetryAfter(t *testing.T) {
	t.Parallel()
	b := retry.Policy{Initial: time.Millisecond, Max: 10 * time.Millisecond}.NewBackOff()
	err := &errs.Error{Code: errs.CodeManagerUnavailable, RetryAfter: 30 * time.Second}
	require.Equal(t, 30*time.Second, retry.Next(b, err))
	absurd := &errs.Error{Code: errs.CodeManagerUnavailable, RetryAfter: 1000 * time.Hour}
	require.Equal(t, retry.MaxRetryAfter, retry.Next(b, absurd), "a manager cannot stall the runner for days")
	require.LessOrEqual(t, retry.Next(b, errors.New("plain")), 15*time.Millisecond)
}

func TestUntilRetriesThenSucceeds(t *testing.T) {
	t.Parallel()
	calls, notified := 0, 0
	err := retry.Until(context.Background(), retry.Policy{Initial: time.Millisecond, Max: 2 * time.Millisecond},
		func(context.Context) error {
			calls++
			if calls < 3 {
				return errs.ErrManagerUnavailable
			}
			return nil
		}, nil, func(error, time.Duration) { notified++ })
	require.NoError(t, err)
	require.Equal(t, 3, calls)
	require.Equal(t, 2, notified)
}

func TestUntilGivesUp(t *testing.T) {
	t.Parallel()
	calls := 0
	err := retry.Until(context.Background(), retry.Policy{Initial: time.Millisecond, Max: time.Millisecond},
		func(context.Context) error { calls++; return errs.ErrManagerRejected },
		func(err error) bool { return !errs.Retryable(err) }, nil)
	require.ErrorIs(t, err, errs.ErrManagerRejected)
	require.Equal(t, 1, calls)
}

func TestUntilStopsWithContext(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	err := retry.Until(ctx, retry.Policy{Initial: time.Hour, Max: time.Hour},
		func(context.Context) error { cancel(); return errs.ErrManagerUnavailable }, nil, nil)
	require.ErrorIs(t, err, context.Canceled)
}

func TestAWakeUpEndsTheWait(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	wake := make(chan struct{})
	calls := 0
	err := retry.UntilWoken(ctx, retry.Policy{Initial: time.Hour, Max: time.Hour},
		func() <-chan struct{} { return wake },
		func(context.Context) error {
			calls++
			if calls == 1 {
				return errs.ErrManagerUnavailable
			}
			return nil
		}, nil, func(error, time.Duration) { close(wake) })
	require.NoError(t, err, "the hour-long wait ended with the wake-up")
	require.Equal(t, 2, calls)
}

func TestAWakeUpDoesNotOverrideRetryAfter(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	wake := make(chan struct{})
	close(wake)
	calls := 0
	err := retry.UntilWoken(ctx, retry.Policy{Initial: time.Millisecond, Max: time.Millisecond},
		func() <-chan struct{} { return wake },
		func(context.Context) error {
			calls++
			return &errs.Error{Code: errs.CodeManagerUnavailable, RetryAfter: time.Hour}
		}, nil, nil)
	require.ErrorIs(t, err, context.DeadlineExceeded, "the manager asked for an hour")
	require.Equal(t, 1, calls)
}

func TestJitterStaysInRange(t *testing.T) {
	t.Parallel()
	for range 100 {
		d := retry.Jitter(100*time.Millisecond, 0.2)
		require.GreaterOrEqual(t, d, 80*time.Millisecond)
		require.LessOrEqual(t, d, 120*time.Millisecond)
	}
	require.Equal(t, time.Duration(0), retry.Jitter(0, 0.2))
}
