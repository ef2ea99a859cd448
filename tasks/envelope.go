package tasks

import (
	"context"
	"encoding/json"
	"log/slog"
	"time"
)

// Envelope is everything the manager said about a task besides its data.
type Envelope struct {
	// ID is the task's id on the manager.
	ID string `json:"id"`
	// Type is the task type, the last path segment of its operation in the task spec.
	Type string `json:"type"`
	// Timeout is how long the task may run; 0 means no limit. The handler's context already
	// carries the matching deadline.
	Timeout time.Duration `json:"timeout"`
	// Async is the manager's async flag, passed through.
	Async bool `json:"async"`
	// RunnerResponse says the result goes to the runner status endpoint instead of the legacy one.
	RunnerResponse bool `json:"runnerResponse"`
	// Logging says where the task's logs go.
	Logging Logging `json:"logging"`
	// Delegate is the delegate the manager gave the task to.
	Delegate Delegate `json:"delegate"`
	// Capabilities is what the task needs of a delegate, as the manager sent it.
	Capabilities json.RawMessage `json:"capabilities,omitempty"`
	// AcquiredAt is when this runner acquired the task.
	AcquiredAt time.Time `json:"acquiredAt"`
}

// Logging says where a task's logs go.
type Logging struct {
	Token        string            `json:"token,omitempty"`
	Abstractions map[string]string `json:"abstractions,omitempty"`
}

// Delegate identifies the delegate a task was given to.
type Delegate struct {
	ID         string `json:"id,omitempty"`
	InstanceID string `json:"instanceId,omitempty"`
	Token      string `json:"token,omitempty"`
}

type envelopeKey struct{}

type loggerKey struct{}

type taskKey struct{}

// task is what WithTask puts in a context: one value instead of two, for every running task.
type task struct {
	env    *Envelope
	logger *slog.Logger
}

// WithTask returns a context that carries the task's envelope and the runner's logger, the way the
// runtime hands both to a handler. Logger annotates the logger with the task's id and type when a
// handler asks for it, so a handler that never logs costs no annotated logger.
func WithTask(ctx context.Context, env *Envelope, logger *slog.Logger) context.Context {
	return context.WithValue(ctx, taskKey{}, task{env: env, logger: logger})
}

// WithEnvelope returns a context that carries env, for calling a handler directly (in a unit
// test, say); handlers read the envelope back with FromContext.
func WithEnvelope(ctx context.Context, env *Envelope) context.Context {
	return context.WithValue(ctx, envelopeKey{}, env)
}

// FromContext returns the envelope of the task a handler runs. ok is false outside a task, for
// example when a handler is called directly in a unit test without WithEnvelope.
func FromContext(ctx context.Context) (env *Envelope, ok bool) {
	if t, isTask := ctx.Value(taskKey{}).(task); isTask && t.env != nil {
		return t.env, true
	}
	env, ok = ctx.Value(envelopeKey{}).(*Envelope)
	return env, ok && env != nil
}

// WithLogger returns a context that carries logger as the task's logger, returned by Logger as
// is.
func WithLogger(ctx context.Context, logger *slog.Logger) context.Context {
	return context.WithValue(ctx, loggerKey{}, logger)
}

// Logger returns the logger of the task a handler runs, annotated with the task's id and type.
// Outside a task it returns a logger that discards everything, so handlers can log
// unconditionally. Call it once per task and keep the result: each call annotates anew.
func Logger(ctx context.Context) *slog.Logger {
	if l, ok := ctx.Value(loggerKey{}).(*slog.Logger); ok && l != nil {
		return l
	}
	if t, ok := ctx.Value(taskKey{}).(task); ok && t.logger != nil {
		if t.env == nil {
			return t.logger
		}
		return t.logger.With("task_id", t.env.ID, "task_type", t.env.Type)
	}
	return slog.New(slog.DiscardHandler)
}
