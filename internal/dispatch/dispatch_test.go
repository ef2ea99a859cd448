package dispatch_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"testing"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/dlite-dev/dlite/errs"
	gentasks "github.com/dlite-dev/dlite/gen/tasks"
	"github.com/dlite-dev/dlite/internal/dispatch"
	"github.com/dlite-dev/dlite/internal/manager"
	"github.com/dlite-dev/dlite/tasks"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// handlers answers the built-in task operations the way each test tells it to.
type handlers struct {
	shell func(context.Context, gentasks.ShellScriptTaskRequestObject) (gentasks.ShellScriptTaskResponseObject, error)
	http  func(context.Context, gentasks.HttpTaskRequestObject) (gentasks.HttpTaskResponseObject, error)
}

var _ gentasks.StrictServerInterface = (*handlers)(nil)

func (h *handlers) ShellScriptTask(ctx context.Context, r gentasks.ShellScriptTaskRequestObject) (gentasks.ShellScriptTaskResponseObject, error) {
	return h.shell(ctx, r)
}

func (h *handlers) SleepTask(context.Context, gentasks.SleepTaskRequestObject) (gentasks.SleepTaskResponseObject, error) {
	return gentasks.SleepTask200JSONResponse{}, nil
}

func (h *handlers) HttpTask(ctx context.Context, r gentasks.HttpTaskRequestObject) (gentasks.HttpTaskResponseObject, error) {
	return h.http(ctx, r)
}

func newDispatcher(t *testing.T, h *handlers, mutate ...func(*dispatch.Options)) *dispatch.Dispatcher {
	t.Helper()
	opts := dispatch.Options{
		Servers: []dispatch.TaskServer{{
			Spec:     gentasks.GetSpec,
			Register: func(e *echo.Echo) { gentasks.RegisterHandlers(e, gentasks.NewStrictHandler(h, nil)) },
		}},
		AbandonAfter: 200 * time.Millisecond,
	}
	for _, m := range mutate {
		m(&opts)
	}
	d, err := dispatch.New(opts)
	require.NoError(t, err)
	return d
}

func shellTask(data string, timeout time.Duration) *manager.Task {
	return &manager.Task{
		Envelope: tasks.Envelope{ID: "t-1", Type: "SHELL_SCRIPT_TASK", Timeout: timeout},
		Data:     json.RawMessage(data),
	}
}

func ok(out gentasks.ShellScriptOutput) func(context.Context, gentasks.ShellScriptTaskRequestObject) (gentasks.ShellScriptTaskResponseObject, error) {
	return func(context.Context, gentasks.ShellScriptTaskRequestObject) (gentasks.ShellScriptTaskResponseObject, error) {
		return gentasks.ShellScriptTask200JSONResponse(out), nil
	}
}

func TestTypesComeFromTheSpec(t *testing.T) {
	t.Parallel()
	d := newDispatcher(t, &handlers{}, func(o *dispatch.Options) {
		o.Legacy = map[string]http.Handler{"LEGACY_TASK": http.NotFoundHandler()}
	})
	require.Equal(t, []string{"HTTP_TASK", "LEGACY_TASK", "SHELL_SCRIPT_TASK", "SLEEP_TASK"}, d.Types())
	require.True(t, d.Supports("SHELL_SCRIPT_TASK"))
	require.False(t, d.Supports("CI_DOCKER_EXECUTE_TASK"))
}

func TestSuccessCarriesOutputAndEnvelope(t *testing.T) {
	t.Parallel()
	var seen *tasks.Envelope
	var deadline time.Time
	var body gentasks.ShellScriptData
	d := newDispatcher(t, &handlers{shell: func(ctx context.Context, r gentasks.ShellScriptTaskRequestObject) (gentasks.ShellScriptTaskResponseObject, error) {
		seen, _ = tasks.FromContext(ctx)
		deadline, _ = ctx.Deadline()
		body = *r.Body
		return gentasks.ShellScriptTask200JSONResponse{ExitCode: 0, Output: "hi\n", OutputVars: map[string]string{}}, nil
	}})
	out := d.Dispatch(context.Background(), shellTask(`{"script":"echo hi"}`, time.Minute), nil)
	require.Equal(t, manager.CodeOK, out.Code)
	require.NoError(t, out.Err)
	require.JSONEq(t, `{"exitCode":0,"output":"hi\n","outputVars":{}}`, string(out.Data))
	require.Equal(t, "t-1", seen.ID)
	require.WithinDuration(t, time.Now().Add(time.Minute), deadline, 5*time.Second)
	require.Equal(t, "echo hi", body.Script)
	require.NotNil(t, body.Shell, "the spec's default for shell is filled in")
	require.Equal(t, gentasks.ShellScriptDataShell("sh"), *body.Shell)
	<-out.Settled
}

func TestHandlerLogsNameTheirTask(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&buf, nil))
	d := newDispatcher(t, &handlers{shell: func(ctx context.Context, _ gentasks.ShellScriptTaskRequestObject) (gentasks.ShellScriptTaskResponseObject, error) {
		tasks.Logger(ctx).Info("script ran")
		return gentasks.ShellScriptTask200JSONResponse{OutputVars: map[string]string{}}, nil
	}})
	out := d.Dispatch(context.Background(), shellTask(`{"script":"true"}`, 0), logger)
	require.Equal(t, manager.CodeOK, out.Code)
	<-out.Settled
	require.Contains(t, buf.String(), `msg="script ran" task_id=t-1 task_type=SHELL_SCRIPT_TASK`)
}

func TestSpecTasksDropTheRawEnvelope(t *testing.T) {
	t.Parallel()
	d := newDispatcher(t, &handlers{shell: ok(gentasks.ShellScriptOutput{OutputVars: map[string]string{}})})
	task := shellTask(`{"script":"true"}`, 0)
	task.Raw = json.RawMessage(`{"id":"t-1","type":"SHELL_SCRIPT_TASK","data":{"script":"true"}}`)
	out := d.Dispatch(context.Background(), task, nil)
	require.Equal(t, manager.CodeOK, out.Code)
	<-out.Settled
	require.Nil(t, task.Raw, "a spec handler takes the data alone; the manager's whole answer is not kept")
}

func TestInvalidDataFailsWithoutRunning(t *testing.T) {
	t.Parallel()
	ran := false
	d := newDispatcher(t, &handlers{shell: func(context.Context, gentasks.ShellScriptTaskRequestObject) (gentasks.ShellScriptTaskResponseObject, error) {
		ran = true
		return gentasks.ShellScriptTask200JSONResponse{}, nil
	}})
	cases := map[string]struct {
		data string
		want []string
	}{
		"missing required": {`{"shell":"bash"}`, []string{"invalid SHELL_SCRIPT_TASK data", `property "script" is missing`}},
		"wrong enum":       {`{"script":"x","shell":"zsh"}`, []string{"/shell"}},
		"wrong type":       {`{"script":"x","env":{"A":1}}`, []string{"/env/A"}},
		"not json":         {`{"script":`, []string{"invalid SHELL_SCRIPT_TASK data"}},
		"no data":          {``, []string{`property "script" is missing`}},
	}
	for name, tc := range cases {
		out := d.Dispatch(context.Background(), shellTask(tc.data, 0), nil)
		require.Equal(t, manager.CodeFailed, out.Code, name)
		require.ErrorIs(t, out.Err, errs.ErrInvalidTaskData, name)
		for _, w := range tc.want {
			require.Contains(t, out.Err.Error(), w, name)
		}
	}
	require.False(t, ran)
}

func TestValidationErrorsDoNotEchoValues(t *testing.T) {
	t.Parallel()
	d := newDispatcher(t, &handlers{})
	out := d.Dispatch(context.Background(), shellTask(`{"script":"x","env":{"TOKEN":12345678987}}`, 0), nil)
	require.ErrorIs(t, out.Err, errs.ErrInvalidTaskData)
	require.NotContains(t, out.Err.Error(), "12345678987")
}

func TestFailureResponseCarriesMessageAndData(t *testing.T) {
	t.Parallel()
	d := newDispatcher(t, &handlers{shell: func(context.Context, gentasks.ShellScriptTaskRequestObject) (gentasks.ShellScriptTaskResponseObject, error) {
		return gentasks.ShellScriptTask422JSONResponse{Message: "exit status 3", Data: gentasks.ShellScriptOutput{ExitCode: 3, Output: "boom", OutputVars: map[string]string{}}}, nil
	}})
	out := d.Dispatch(context.Background(), shellTask(`{"script":"exit 3"}`, 0), nil)
	require.Equal(t, manager.CodeFailed, out.Code)
	require.EqualError(t, out.Err, "exit status 3")
	require.ErrorIs(t, out.Err, errs.ErrHandlerFailed)
	require.JSONEq(t, `{"exitCode":3,"output":"boom","outputVars":{}}`, string(out.Data))
}

func TestGoErrorBecomesFailure(t *testing.T) {
	t.Parallel()
	d := newDispatcher(t, &handlers{shell: func(context.Context, gentasks.ShellScriptTaskRequestObject) (gentasks.ShellScriptTaskResponseObject, error) {
		return nil, errors.New("disk on fire")
	}})
	out := d.Dispatch(context.Background(), shellTask(`{"script":"x"}`, 0), nil)
	require.Equal(t, manager.CodeFailed, out.Code)
	require.EqualError(t, out.Err, "disk on fire")
}

func TestPanicBecomesFailure(t *testing.T) {
	t.Parallel()
	d := newDispatcher(t, &handlers{shell: func(context.Context, gentasks.ShellScriptTaskRequestObject) (gentasks.ShellScriptTaskResponseObject, error) {
		panic("nil map write")
	}})
	out := d.Dispatch(context.Background(), shellTask(`{"script":"x"}`, 0), nil)
	require.Equal(t, manager.CodeFailed, out.Code)
	require.ErrorIs(t, out.Err, errs.ErrPanic)
	require.Contains(t, out.Err.Error(), "nil map write")
	// The dispatcher still works after a panic.
	d2 := newDispatcher(t, &handlers{shell: ok(gentasks.ShellScriptOutput{OutputVars: map[string]string{}})})
	require.Equal(t, manager.CodeOK, d2.Dispatch(context.Background(), shellTask(`{"script":"x"}`, 0), nil).Code)
}

func blockUntilDone(ctx context.Context, _ gentasks.ShellScriptTaskRequestObject) (gentasks.ShellScriptTaskResponseObject, error) {
	<-ctx.Done()
	return gentasks.ShellScriptTask422JSONResponse{Message: "killed", Data: gentasks.ShellScriptOutput{ExitCode: -1, Output: "partial", OutputVars: map[string]string{}}}, nil
}

func TestTimeoutIsReportedAsTimeout(t *testing.T) {
	t.Parallel()
	d := newDispatcher(t, &handlers{shell: blockUntilDone})
	out := d.Dispatch(context.Background(), shellTask(`{"script":"sleep 100"}`, 50*time.Millisecond), nil)
	require.Equal(t, manager.CodeTimeout, out.Code)
	require.ErrorIs(t, out.Err, errs.ErrTimeout)
	require.Contains(t, out.Err.Error(), "timed out after 50ms")
	require.Contains(t, string(out.Data), "partial", "output produced before the timeout is kept")
}

func TestCancelCauseDecidesTheError(t *testing.T) {
	t.Parallel()
	for _, cause := range []error{errs.ErrAborted, errs.ErrShuttingDown} {
		d := newDispatcher(t, &handlers{shell: blockUntilDone})
		ctx, cancel := context.WithCancelCause(context.Background())
		time.AfterFunc(20*time.Millisecond, func() { cancel(cause) })
		out := d.Dispatch(ctx, shellTask(`{"script":"sleep 100"}`, time.Minute), nil)
		require.Equal(t, manager.CodeFailed, out.Code)
		require.ErrorIs(t, out.Err, cause)
	}
}

func TestHandlerThatIgnoresCancellationIsAbandoned(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	d := newDispatcher(t, &handlers{shell: func(context.Context, gentasks.ShellScriptTaskRequestObject) (gentasks.ShellScriptTaskResponseObject, error) {
		<-release
		return gentasks.ShellScriptTask200JSONResponse{OutputVars: map[string]string{}}, nil
	}})
	ctx, cancel := context.WithCancelCause(context.Background())
	cancel(errs.ErrAborted)
	out := d.Dispatch(ctx, shellTask(`{"script":"x"}`, 0), nil)
	require.Equal(t, manager.CodeFailed, out.Code)
	require.ErrorIs(t, out.Err, errs.ErrAborted)
	select {
	case <-out.Settled:
		t.Fatal("Settled closed while the handler still runs")
	default:
	}
	close(release)
	<-out.Settled
}

func TestOversizedDataFails(t *testing.T) {
	t.Parallel()
	d := newDispatcher(t, &handlers{}, func(o *dispatch.Options) { o.MaxDataBytes = 16 })
	out := d.Dispatch(context.Background(), shellTask(`{"script":"echo 0123456789"}`, 0), nil)
	require.ErrorIs(t, out.Err, errs.ErrTaskTooLarge)
	require.Contains(t, out.Err.Error(), "limit of 16 bytes")
}

func TestLegacyHandler(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		handler http.HandlerFunc
		code    manager.Code
		data    string
		err     string
	}{
		{"no WriteHeader counts as 200, empty body as {}", func(w http.ResponseWriter, r *http.Request) {}, manager.CodeOK, `{}`, ""},
		{"2xx with JSON", func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusAccepted)
			_, _ = w.Write([]byte(`{"done":true}`))
		}, manager.CodeOK, `{"done":true}`, ""},
		{"non-2xx body is the error", func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "deploy failed: quota", http.StatusBadGateway)
		}, manager.CodeFailed, ``, "deploy failed: quota"},
		{"non-2xx without body", func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusInternalServerError)
		}, manager.CodeFailed, ``, "status 500 Internal Server Error"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			d := newDispatcher(t, &handlers{}, func(o *dispatch.Options) {
				o.Legacy = map[string]http.Handler{"DEPLOY": tc.handler}
			})
			task := &manager.Task{Envelope: tasks.Envelope{ID: "t-9", Type: "DEPLOY"}, Data: json.RawMessage(`{"env":"prod"}`)}
			out := d.Dispatch(context.Background(), task, nil)
			require.Equal(t, tc.code, out.Code)
			if tc.data != "" {
				require.JSONEq(t, tc.data, string(out.Data))
			}
			if tc.err != "" {
				require.EqualError(t, out.Err, tc.err)
			}
		})
	}
}

func TestLegacyHandlerGetsTheWholeEnvelope(t *testing.T) {
	t.Parallel()
	var got map[string]any
	d := newDispatcher(t, &handlers{}, func(o *dispatch.Options) {
		o.Legacy = map[string]http.Handler{"DEPLOY": http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			b, _ := io.ReadAll(r.Body)
			_ = json.Unmarshal(b, &got)
		})}
	})
	raw := `{"id":"t-9","type":"DEPLOY","data":{"env":"prod"},"timeout":60,"logging":{"token":"lt"}}`
	task := &manager.Task{Envelope: tasks.Envelope{ID: "t-9", Type: "DEPLOY"}, Data: json.RawMessage(`{"env":"prod"}`), Raw: json.RawMessage(raw)}
	require.Equal(t, manager.CodeOK, d.Dispatch(context.Background(), task, nil).Code)
	require.Equal(t, "t-9", got["id"])
	require.Equal(t, map[string]any{"env": "prod"}, got["data"])
}

func TestSpecMustFollowTheConvention(t *testing.T) {
	t.Parallel()
	_, err := dispatch.New(dispatch.Options{Servers: []dispatch.TaskServer{
		{Spec: gentasks.GetSpec, Register: func(*echo.Echo) {}},
		{Spec: gentasks.GetSpec, Register: func(*echo.Echo) {}},
	}})
	require.ErrorIs(t, err, errs.ErrInvalidConfig)
	require.Contains(t, err.Error(), "declared twice")
}

func TestDataTheTypesCannotHoldIsInvalidData(t *testing.T) {
	t.Parallel()
	d := newDispatcher(t, &handlers{})
	// 1e3 is an integer to the schema, but not to Go's int64.
	out := d.Dispatch(context.Background(), &manager.Task{
		Envelope: tasks.Envelope{ID: "t-1", Type: "SLEEP_TASK"},
		Data:     json.RawMessage(`{"milliseconds":1e3}`),
	}, nil)
	require.Equal(t, manager.CodeFailed, out.Code)
	require.ErrorIs(t, out.Err, errs.ErrInvalidTaskData)
	require.EqualError(t, out.Err, "invalid SLEEP_TASK data: /milliseconds: must be a value the handler can take as int64")
	<-out.Settled
}
