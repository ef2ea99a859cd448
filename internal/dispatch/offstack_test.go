package dispatch_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
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
	"github.com/dlite-dev/dlite/internal/manager"
	"github.com/dlite-dev/dlite/tasks"
	"github.com/dlite-dev/dlite/tasks/builtin"
)

func TestOffStackRunsTheFunctionBeforeReturning(t *testing.T) {
	t.Parallel()
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got := 0
			dispatch.OffStack(func() { got = i + 1 })
			require.Equal(t, i+1, got)
		}()
	}
	wg.Wait()
}

func TestOffStackRaisesThePanicInTheCaller(t *testing.T) {
	t.Parallel()
	var raised any
	func() {
		defer func() { raised = recover() }()
		dispatch.OffStack(func() { panic("bad value") })
	}()
	err, isErr := raised.(error)
	require.True(t, isErr, "raised again as an error: %v", raised)
	require.Contains(t, err.Error(), "bad value")
	require.Contains(t, err.Error(), "TestOffStackRaisesThePanicInTheCaller", "the error carries the stack the panic was raised on")
	// OffStack still works after a panic.
	ran := false
	dispatch.OffStack(func() { ran = true })
	require.True(t, ran)
}

// panicky panics when it is decoded, so binding a task's data panics off the task's goroutine.
type panicky struct{}

func (*panicky) UnmarshalJSON([]byte) error { panic("decoder broke") }

func TestPanicWhileBindingFailsTheTaskWithItsStack(t *testing.T) {
	t.Parallel()
	var logs bytes.Buffer
	d, err := dispatch.New(dispatch.Options{
		Servers: []dispatch.TaskServer{{
			Spec: gentasks.GetSpec,
			Register: func(e *echo.Echo) {
				e.POST("/tasks/SLEEP_TASK", func(c echo.Context) error {
					var v panicky
					return c.Bind(&v)
				})
			},
		}},
		Logger: slog.New(slog.NewJSONHandler(&logs, nil)),
	})
	require.NoError(t, err)
	out := d.Dispatch(context.Background(), sleepTask("t-1", `{"milliseconds":0}`), nil)
	<-out.Settled
	require.Equal(t, manager.CodeFailed, out.Code)
	require.ErrorIs(t, out.Err, errs.ErrPanic)
	require.Contains(t, out.Err.Error(), "decoder broke")
	require.Contains(t, logs.String(), "UnmarshalJSON", "the log shows where the panic was raised, not where it was raised again")
}

func TestBindingFailuresAreUnchanged(t *testing.T) {
	t.Parallel()
	d := newDispatcher(t, &handlers{})
	// The schema accepts 1e3 for an integer; the generated int64 cannot hold it as encoding/json reads it.
	out := d.Dispatch(context.Background(), sleepTask("t-1", `{"milliseconds":1e3}`), nil)
	<-out.Settled
	require.Equal(t, manager.CodeFailed, out.Code)
	require.ErrorIs(t, out.Err, errs.ErrInvalidTaskData)
	require.Contains(t, out.Err.Error(), "/milliseconds: must be a value the handler can take as int64")
}

func sleepTask(id, data string) *manager.Task {
	return &manager.Task{Envelope: tasks.Envelope{ID: id, Type: "SLEEP_TASK", Timeout: time.Hour}, Data: json.RawMessage(data)}
}

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

// TestWaitingTasksKeepSmallStacks holds the stack of a task whose handler waits to what its frames
// need. Validating and decoding the task's data go deeper; done on the task's goroutine they
// doubled its stack to 8 KiB for as long as the task waited.
func TestWaitingTasksKeepSmallStacks(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector's instrumentation makes every frame larger")
	}
	const n = 1000
	var started sync.WaitGroup
	started.Add(n)
	h := startedSleeps{Handlers: builtin.New(builtin.Options{}), started: &started}
	d, err := dispatch.New(dispatch.Options{Servers: []dispatch.TaskServer{{
		Spec:     gentasks.GetSpec,
		Register: func(e *echo.Echo) { gentasks.RegisterHandlers(e, gentasks.NewStrictHandler(h, nil)) },
	}}})
	require.NoError(t, err)

	before := stackBytes()
	ctx, cancel := context.WithCancel(context.Background())
	var done sync.WaitGroup
	done.Add(n)
	for i := range n {
		task := sleepTask(fmt.Sprintf("t-%d", i), `{"milliseconds":3600000}`)
		go func() {
			defer done.Done()
			d.Run(ctx, task, nil, func(dispatch.Outcome) {})
		}()
	}
	started.Wait()
	perTask := float64(stackBytes()-before) / n
	cancel()
	done.Wait()
	require.Less(t, perTask, 6144.0, "a waiting task's stack is 4 KiB; 8 KiB means the deep work ran on its goroutine")
}
