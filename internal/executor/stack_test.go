package executor_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"runtime/metrics"
	"sync"
	"testing"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/stretchr/testify/require"

	"github.com/dlite-dev/dlite/errs"
	gentasks "github.com/dlite-dev/dlite/gen/tasks"
	"github.com/dlite-dev/dlite/internal/dispatch"
	"github.com/dlite-dev/dlite/internal/executor"
	"github.com/dlite-dev/dlite/internal/manager"
	"github.com/dlite-dev/dlite/internal/pool"
	"github.com/dlite-dev/dlite/tasks"
	"github.com/dlite-dev/dlite/tasks/builtin"
)

// startedSleeps runs the built-in SLEEP_TASK handler and counts the handlers that started.
type startedSleeps struct {
	*builtin.Handlers
	started *sync.WaitGroup
}

func (s startedSleeps) SleepTask(ctx context.Context, req gentasks.SleepTaskRequestObject) (gentasks.SleepTaskResponseObject, error) {
	s.started.Done()
	return s.Handlers.SleepTask(ctx, req)
}

// stackBytes is the memory the runtime holds for goroutine stacks, after a collection has shrunk
// the stacks that can be.
func stackBytes() uint64 {
	runtime.GC()
	runtime.GC()
	s := []metrics.Sample{{Name: "/memory/classes/heap/stacks:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// TestWaitingTasksKeepSmallStacks runs sleeping tasks the way the runner does (a slot of the
// pool, the JSON log line, validation, the generated handler) and holds each waiting task's stack
// to what its frames need: anything deep on the task's goroutine before its handler waits, such as
// encoding a log line, doubles the stack of every waiting task to 8 KiB.
func TestWaitingTasksKeepSmallStacks(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector's instrumentation makes every frame larger")
	}
	const n = 1000
	var started sync.WaitGroup
	started.Add(n)
	logger := slog.New(slog.NewJSONHandler(io.Discard, nil))
	h := startedSleeps{Handlers: builtin.New(builtin.Options{}), started: &started}
	d, err := dispatch.New(dispatch.Options{Logger: logger, Servers: []dispatch.TaskServer{{
		Spec:     gentasks.GetSpec,
		Register: func(e *echo.Echo) { gentasks.RegisterHandlers(e, gentasks.NewStrictHandler(h, nil)) },
	}}})
	require.NoError(t, err)
	slots := pool.New(n)
	x := executor.New(executor.Options{Dispatcher: d, Slots: slots, Reporter: &results{}, Logger: logger})

	before := stackBytes()
	require.Equal(t, n, slots.TryReserve(n))
	for i := range n {
		id := fmt.Sprintf("task-%04d", i)
		require.True(t, x.Claim(id))
		x.Start(&manager.Task{
			Envelope: tasks.Envelope{ID: id, Type: "SLEEP_TASK", Timeout: time.Hour},
			Data:     json.RawMessage(`{"milliseconds":3600000}`),
		}, "delegate-1")
	}
	started.Wait()
	perTask := float64(stackBytes()-before) / n
	x.CancelAll(errs.ErrShuttingDown)
	require.NoError(t, x.Wait(context.Background()))
	require.Less(t, perTask, 6144.0, "a waiting task's stack is 4 KiB; 8 KiB means deep work ran on its goroutine")
}
