package tasks

import (
	"context"
	"encoding/json"
	"errors"
)

// ErrNoUpdates is the error of Update for a task whose runtime takes no updates: a handler called
// directly, in a unit test say, without WithUpdates.
var ErrNoUpdates = errors.New("the task's runtime takes no updates")

// ErrAnswered is the error of Update once the task's outcome has been handed to the runtime (its
// handler returned, or the runtime stopped waiting for it): an update must not reach the manager
// after the outcome.
var ErrAnswered = errors.New("the task has already answered; it takes no more updates")

type updatesKey struct{}

// UpdateFunc takes one update of the running task; see Update.
type UpdateFunc func(data json.RawMessage) error

// WithUpdates returns a context whose task hands its updates to f, the way the runtime gives a
// handler its update channel; tests use it to see what a handler sends.
func WithUpdates(ctx context.Context, f UpdateFunc) context.Context {
	return context.WithValue(ctx, updatesKey{}, f)
}

// Update hands an update of the running task to the runtime: progress the manager should hear
// before the task's outcome (a Drone stage's start and each step's start and end, say). The
// runtime stores it as durably as an outcome before Update returns, and delivers it to the
// manager in the background, retried like an outcome and kept across a restart of the runner:
// a task's updates reach the manager in the order it sent them, and its outcome after all of
// them. What an update holds is between the handler and the manager's backend. Update fails only
// when the task has no update channel (ErrNoUpdates), has already answered (ErrAnswered) or data
// is not JSON.
func Update(ctx context.Context, data any) error {
	f, ok := ctx.Value(updatesKey{}).(UpdateFunc)
	if !ok || f == nil {
		return ErrNoUpdates
	}
	raw, err := json.Marshal(data)
	if err != nil {
		return err
	}
	return f(raw)
}
