package contact_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/dlite-dev/dlite/errs"
	"github.com/dlite-dev/dlite/internal/contact"
	"github.com/dlite-dev/dlite/internal/manager"
)

// answering is a manager whose every call ends with err.
type answering struct{ err error }

func (a answering) Register(context.Context, manager.Delegate) (manager.Registration, error) {
	return manager.Registration{DelegateID: "d-1"}, a.err
}

func (a answering) Heartbeat(context.Context, string, manager.Delegate) (manager.Heartbeat, error) {
	return manager.Heartbeat{Status: manager.StatusEnabled}, a.err
}

func (a answering) Poll(context.Context, string) ([]manager.Event, error) { return nil, a.err }

func (a answering) Acquire(context.Context, string, string) (*manager.Task, error) {
	return &manager.Task{}, a.err
}

func (a answering) Report(context.Context, manager.Result) error { return a.err }

func TestEveryAnsweredCallRaisesTheSignal(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		err      error
		answered bool
	}{
		{nil, true},
		{errs.ErrAcquireConflict, true},
		{fmt.Errorf("acquire task t-1: %w", errs.ErrAcquireConflict), true},
		{&errs.Error{Code: errs.CodeManagerUnavailable, Status: 503}, false},
		{&errs.Error{Code: errs.CodeManagerUnavailable, Status: 429}, false},
		{errs.ErrMalformedResponse, false},
		{errs.ErrNotFound, false},
		{errs.ErrUnauthorized, false},
		{context.DeadlineExceeded, false},
	} {
		t.Run(fmt.Sprint(tc.err), func(t *testing.T) {
			t.Parallel()
			sig := contact.NewSignal()
			var first, second atomic.Int64
			sig.Listen(func() { first.Add(1) })
			sig.Listen(func() { second.Add(1) })
			m := contact.Watch(answering{err: tc.err}, sig)
			ctx := context.Background()
			_, err := m.Register(ctx, manager.Delegate{})
			require.ErrorIs(t, err, tc.err)
			_, _ = m.Heartbeat(ctx, "d-1", manager.Delegate{})
			_, _ = m.Poll(ctx, "d-1")
			_, _ = m.Acquire(ctx, "d-1", "t-1")
			_ = m.Report(ctx, manager.Result{})
			want := int64(0)
			if tc.answered {
				want = 5
			}
			require.Equal(t, want, first.Load())
			require.Equal(t, want, second.Load(), "every listener hears it")
			require.Equal(t, tc.answered, contact.Answered(tc.err))
		})
	}
}

func TestASignalWithoutListenersCanBeRaised(t *testing.T) {
	t.Parallel()
	contact.NewSignal().Raise()
}
