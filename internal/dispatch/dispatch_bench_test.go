package dispatch_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/labstack/echo/v4"

	gentasks "github.com/dlite-dev/dlite/gen/tasks"
	"github.com/dlite-dev/dlite/internal/dispatch"
	"github.com/dlite-dev/dlite/internal/manager"
	"github.com/dlite-dev/dlite/tasks"
)

// benchDispatcher serves the task spec with handlers that do no work, so a benchmark measures what
// dispatching costs: building the request, validating the data, routing, binding and recording.
func benchDispatcher(b *testing.B) *dispatch.Dispatcher {
	b.Helper()
	h := &handlers{
		shell: func(context.Context, gentasks.ShellScriptTaskRequestObject) (gentasks.ShellScriptTaskResponseObject, error) {
			return gentasks.ShellScriptTask200JSONResponse{ExitCode: 0, Output: "ok\n", OutputVars: map[string]string{"A": "1"}}, nil
		},
	}
	d, err := dispatch.New(dispatch.Options{Servers: []dispatch.TaskServer{{
		Spec:     gentasks.GetSpec,
		Register: func(e *echo.Echo) { gentasks.RegisterHandlers(e, gentasks.NewStrictHandler(h, nil)) },
	}}})
	if err != nil {
		b.Fatal(err)
	}
	return d
}

func benchDispatch(b *testing.B, typ string, data string) {
	d := benchDispatcher(b)
	task := &manager.Task{Envelope: tasks.Envelope{ID: "task-0123456789abcdef", Type: typ}, Data: json.RawMessage(data)}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		out := d.Dispatch(ctx, task, nil)
		if out.Code != manager.CodeOK {
			b.Fatalf("dispatch: %s: %v", out.Code, out.Err)
		}
	}
}

// BenchmarkDispatchSleepNoOp dispatches a SLEEP_TASK of 0 milliseconds: the whole per-task cost of
// dispatching the smallest task.
func BenchmarkDispatchSleepNoOp(b *testing.B) {
	benchDispatch(b, "SLEEP_TASK", `{"milliseconds":0}`)
}

// BenchmarkDispatchShellScriptShaped dispatches SHELL_SCRIPT_TASK data of a typical size to a stub
// handler: validation of a larger schema (enum, map, pattern-checked array) without running a script.
func BenchmarkDispatchShellScriptShaped(b *testing.B) {
	benchDispatch(b, "SHELL_SCRIPT_TASK", `{"script":"set -e\necho building\nmake -j4 all\necho done\n","shell":"bash",`+
		`"env":{"CI":"true","BUILD_ID":"1234","TARGET":"linux/amd64"},"workingDirectory":"/tmp/work","outputVars":["VERSION","ARTIFACT"]}`)
}
