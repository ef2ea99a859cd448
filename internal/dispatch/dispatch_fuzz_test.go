package dispatch_test

import (
	"context"
	"encoding/json"
	"sync/atomic"
	"testing"

	"github.com/labstack/echo/v4"
	"github.com/stretchr/testify/require"

	"github.com/dlite-dev/dlite/errs"
	gentasks "github.com/dlite-dev/dlite/gen/tasks"
	"github.com/dlite-dev/dlite/internal/dispatch"
	"github.com/dlite-dev/dlite/internal/manager"
	"github.com/dlite-dev/dlite/tasks"
)

// stubTasks stands in for the built-in handlers: it checks that what reached it is what the
// spec allows and succeeds, so a fuzzed task exercises the validation and dispatch only and never
// runs a script or makes a request.
type stubTasks struct {
	calls atomic.Int64
}

var _ gentasks.StrictServerInterface = (*stubTasks)(nil)

func (s *stubTasks) ShellScriptTask(_ context.Context, r gentasks.ShellScriptTaskRequestObject) (gentasks.ShellScriptTaskResponseObject, error) {
	s.calls.Add(1)
	if r.Body == nil || r.Body.Script == "" {
		return gentasks.ShellScriptTaskdefaultJSONResponse{StatusCode: 500, Body: gentasks.TaskError{Message: "validation let an empty script through"}}, nil
	}
	return gentasks.ShellScriptTask200JSONResponse{OutputVars: map[string]string{}}, nil
}

func (s *stubTasks) HttpTask(_ context.Context, r gentasks.HttpTaskRequestObject) (gentasks.HttpTaskResponseObject, error) {
	s.calls.Add(1)
	if r.Body == nil || r.Body.Url == "" {
		return gentasks.HttpTaskdefaultJSONResponse{StatusCode: 500, Body: gentasks.TaskError{Message: "validation let an empty url through"}}, nil
	}
	return gentasks.HttpTask200JSONResponse{Status: 200, Headers: map[string]string{}}, nil
}

func (s *stubTasks) SleepTask(_ context.Context, r gentasks.SleepTaskRequestObject) (gentasks.SleepTaskResponseObject, error) {
	s.calls.Add(1)
	if r.Body == nil || r.Body.Milliseconds < 0 {
		return gentasks.SleepTaskdefaultJSONResponse{StatusCode: 500, Body: gentasks.TaskError{Message: "validation let a negative wait through"}}, nil
	}
	return gentasks.SleepTask200JSONResponse{SleptMilliseconds: r.Body.Milliseconds}, nil
}

// fuzzMaxData is the data limit of the fuzzed dispatcher, small enough for the fuzzer to cross.
const fuzzMaxData = 2048

var builtinTypes = []string{"SHELL_SCRIPT_TASK", "HTTP_TASK", "SLEEP_TASK"}

// FuzzBuiltinTaskData sends arbitrary data as each built-in task type through the dispatcher:
// it never panics, always settles, and ends OK or FAILED: FAILED without running the handler,
// saying the data was invalid or too large, OK only after the handler ran with data the spec
// allows.
func FuzzBuiltinTaskData(f *testing.F) {
	seeds := []string{
		`{"script":"echo hi"}`,
		`{"script":"x","shell":"bash","env":{"A":"b"},"workingDirectory":"/tmp","outputVars":["A","B_2"]}`,
		`{"script":""}`,
		`{"script":"x","shell":"zsh"}`,
		`{"script":"x","outputVars":["1bad"]}`,
		`{"url":"http://example.com"}`,
		`{"url":"https://h/p","method":"POST","headers":{"X":"y"},"body":"b","timeoutSeconds":5,"expectedStatus":[200,204]}`,
		`{"url":"ftp://h"}`,
		`{"url":"http://h","timeoutSeconds":0,"expectedStatus":[600]}`,
		`{"milliseconds":0}`,
		`{"milliseconds":-1}`,
		`{"milliseconds":86400001}`,
		`{"milliseconds":1.5}`,
		`{"milliseconds":"10"}`,
		`{}`, `null`, ``, `[]`, `"text"`, `7`, `{"a":`, `{"script":"x","extra":true}`,
	}
	for _, s := range seeds {
		for i := range builtinTypes {
			f.Add(uint8(i), []byte(s))
		}
	}
	stub := &stubTasks{}
	d, err := dispatch.New(dispatch.Options{
		Servers: []dispatch.TaskServer{{
			Spec:     gentasks.GetSpec,
			Register: func(e *echo.Echo) { gentasks.RegisterHandlers(e, gentasks.NewStrictHandler(stub, nil)) },
		}},
		MaxDataBytes: fuzzMaxData,
	})
	require.NoError(f, err)
	f.Fuzz(func(t *testing.T, which uint8, data []byte) {
		typ := builtinTypes[int(which)%len(builtinTypes)]
		task := &manager.Task{Envelope: tasks.Envelope{ID: "t-fuzz", Type: typ}, Data: json.RawMessage(data)}
		before := stub.calls.Load()
		out := d.Dispatch(context.Background(), task, nil)
		<-out.Settled
		ran := stub.calls.Load() > before

		switch out.Code {
		case manager.CodeOK:
			require.NoError(t, out.Err)
			require.True(t, ran, "OK without the handler running")
			require.LessOrEqual(t, len(data), fuzzMaxData)
			require.True(t, json.Valid(out.Data), "output %q is not JSON", out.Data)
		case manager.CodeFailed:
			require.Error(t, out.Err)
			require.False(t, ran, "the stub only fails when validation let bad data through: %v", out.Err)
			switch {
			case len(data) > fuzzMaxData:
				require.ErrorIs(t, out.Err, errs.ErrTaskTooLarge)
				require.Contains(t, out.Err.Error(), "more than the limit")
			default:
				// Data the schema allows but the generated types cannot hold, such as 1e3 for an
				// int64, is refused by the generated server before the handler: invalid data too.
				require.ErrorIs(t, out.Err, errs.ErrInvalidTaskData)
				require.Contains(t, out.Err.Error(), "invalid "+typ+" data")
			}
		default:
			t.Fatalf("task ended %q (%v); a dispatched task ends OK or FAILED", out.Code, out.Err)
		}
	})
}
