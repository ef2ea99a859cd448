package tasks_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dlite-dev/dlite/tasks"
)

func TestEnvelopeRoundTrip(t *testing.T) {
	t.Parallel()
	_, ok := tasks.FromContext(context.Background())
	require.False(t, ok)

	env := &tasks.Envelope{ID: "t-1", Type: "SHELL_SCRIPT_TASK", Timeout: time.Minute}
	got, ok := tasks.FromContext(tasks.WithEnvelope(context.Background(), env))
	require.True(t, ok)
	require.Same(t, env, got)
}

func TestLoggerDefaultsToDiscard(t *testing.T) {
	t.Parallel()
	tasks.Logger(context.Background()).Info("dropped")

	var buf bytes.Buffer
	ctx := tasks.WithLogger(context.Background(), slog.New(slog.NewTextHandler(&buf, nil)))
	tasks.Logger(ctx).Info("kept")
	require.Contains(t, buf.String(), "msg=kept")
}

func TestWithTaskCarriesEnvelopeAndAnnotatedLogger(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	env := &tasks.Envelope{ID: "t-7", Type: "SLEEP_TASK"}
	ctx := tasks.WithTask(context.Background(), env, slog.New(slog.NewTextHandler(&buf, nil)))
	got, ok := tasks.FromContext(ctx)
	require.True(t, ok)
	require.Same(t, env, got)
	tasks.Logger(ctx).Info("slept")
	require.Contains(t, buf.String(), "msg=slept task_id=t-7 task_type=SLEEP_TASK")
}

func ExampleFromContext() {
	handler := func(ctx context.Context) string {
		env, ok := tasks.FromContext(ctx)
		if !ok {
			return "not running as a task"
		}
		return env.ID + " may run for " + env.Timeout.String()
	}
	ctx := tasks.WithEnvelope(context.Background(), &tasks.Envelope{ID: "t-42", Timeout: 90 * time.Second})
	fmt.Println(handler(ctx))
	// Output: t-42 may run for 1m30s
}
