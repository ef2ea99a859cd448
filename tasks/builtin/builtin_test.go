package builtin_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
	"github.com/labstack/echo/v4"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	gentasks "github.com/dlite-dev/dlite/gen/tasks"
	"github.com/dlite-dev/dlite/tasks"
	"github.com/dlite-dev/dlite/tasks/builtin"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// specRouter finds operations of the task spec, for validating requests and responses the way
// the runtime does.
func specRouter(t *testing.T) routers.Router {
	t.Helper()
	spec, err := gentasks.GetSpec()
	require.NoError(t, err)
	spec.Servers = nil
	r, err := gorillamux.NewRouter(spec)
	require.NoError(t, err)
	return r
}

// serve sends body to POST /tasks/<taskType> of an echo instance the handlers are registered
// on, validating the request and the response against the task spec.
func serve(t *testing.T, ctx context.Context, h *builtin.Handlers, taskType, body string) *httptest.ResponseRecorder {
	t.Helper()
	newRequest := func() *http.Request {
		req := httptest.NewRequestWithContext(ctx, http.MethodPost, "/tasks/"+taskType, strings.NewReader(body))
		req.Header.Set(echo.HeaderContentType, echo.MIMEApplicationJSON)
		return req
	}
	route, params, err := specRouter(t).FindRoute(newRequest())
	require.NoError(t, err)
	in := &openapi3filter.RequestValidationInput{Request: newRequest(), PathParams: params, Route: route}
	require.NoError(t, openapi3filter.ValidateRequest(ctx, in))

	e := echo.New()
	h.Register(e)
	rec := httptest.NewRecorder()
	e.ServeHTTP(rec, newRequest())

	require.NoError(t, openapi3filter.ValidateResponse(ctx, &openapi3filter.ResponseValidationInput{
		RequestValidationInput: in,
		Status:                 rec.Code,
		Header:                 rec.Header(),
		Body:                   io.NopCloser(bytes.NewReader(rec.Body.Bytes())),
	}))
	return rec
}

func newHandlers(t *testing.T) *builtin.Handlers {
	t.Helper()
	h, cleanup := builtin.Provide(builtin.Options{TempDir: t.TempDir(), KillGrace: time.Second})
	t.Cleanup(cleanup)
	return h
}

func TestShellScriptTaskThroughEcho(t *testing.T) {
	t.Parallel()
	h := newHandlers(t)
	ctx := tasks.WithEnvelope(t.Context(), &tasks.Envelope{ID: "t-1", Type: "SHELL_SCRIPT_TASK"})
	rec := serve(t, ctx, h, "SHELL_SCRIPT_TASK",
		`{"script":"echo \"$DLITE_TASK_ID\"; RESULT=done","outputVars":["RESULT"]}`)
	require.Equal(t, http.StatusOK, rec.Code)
	var out gentasks.ShellScriptOutput
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &out))
	require.Equal(t, gentasks.ShellScriptOutput{ExitCode: 0, Output: "t-1\n", OutputVars: map[string]string{"RESULT": "done"}}, out)
}

func TestShellScriptTaskFailureThroughEcho(t *testing.T) {
	t.Parallel()
	rec := serve(t, t.Context(), newHandlers(t), "SHELL_SCRIPT_TASK", `{"script":"echo no >&2; exit 7","shell":"sh"}`)
	require.Equal(t, http.StatusUnprocessableEntity, rec.Code)
	var f gentasks.ShellScriptFailure
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &f))
	require.Equal(t, "exit status 7", f.Message)
	require.Equal(t, gentasks.ShellScriptOutput{ExitCode: 7, Output: "no\n", OutputVars: map[string]string{}}, f.Data)
}

func TestHttpTaskThroughEcho(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("X-Seen", r.Method+" "+r.Header.Get("X-Token"))
		w.WriteHeader(http.StatusAccepted)
		_, _ = w.Write(body)
	}))
	t.Cleanup(srv.Close)
	h := newHandlers(t)

	rec := serve(t, t.Context(), h, "HTTP_TASK", fmt.Sprintf(
		`{"url":%q,"method":"PUT","headers":{"X-Token":"abc"},"body":"payload","expectedStatus":[202]}`, srv.URL))
	require.Equal(t, http.StatusOK, rec.Code)
	var out gentasks.HttpTaskOutput
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &out))
	require.Equal(t, http.StatusAccepted, out.Status)
	require.Equal(t, "payload", out.Body)
	require.Equal(t, "PUT abc", out.Headers["X-Seen"])

	rec = serve(t, t.Context(), h, "HTTP_TASK", fmt.Sprintf(`{"url":%q,"expectedStatus":[200]}`, srv.URL))
	require.Equal(t, http.StatusUnprocessableEntity, rec.Code)
	var f gentasks.HttpTaskFailure
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &f))
	require.Equal(t, "unexpected status 202 Accepted (expected 200)", f.Message)
	require.Equal(t, http.StatusAccepted, f.Data.Status)
}

func TestHttpTaskTransportFailureThroughEcho(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close()
	rec := serve(t, t.Context(), newHandlers(t), "HTTP_TASK", fmt.Sprintf(`{"url":%q}`, url))
	require.Equal(t, http.StatusBadGateway, rec.Code)
	var e gentasks.TaskError
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &e))
	require.True(t, strings.HasPrefix(e.Message, "GET "+url+": "), e.Message)
}

func TestNew(t *testing.T) {
	t.Parallel()
	h := builtin.New(builtin.Options{})
	t.Cleanup(h.Close)
	require.NotNil(t, h.Shell)
	require.NotNil(t, h.HTTP)
	require.NotNil(t, h.HTTP.Client)

	client := &http.Client{}
	h = builtin.New(builtin.Options{TempDir: "/var/tmp", KillGrace: 5 * time.Second, HTTPClient: client})
	require.Equal(t, "/var/tmp", h.Shell.TempDir)
	require.Equal(t, 5*time.Second, h.Shell.KillGrace)
	require.Same(t, client, h.HTTP.Client)
}

func TestUnconfiguredHandlerIsABug(t *testing.T) {
	t.Parallel()
	var h builtin.Handlers
	_, err := h.ShellScriptTask(t.Context(), gentasks.ShellScriptTaskRequestObject{})
	require.Error(t, err)
	_, err = h.HttpTask(t.Context(), gentasks.HttpTaskRequestObject{})
	require.Error(t, err)
	h.Close()
}

func ExampleHandlers_Register() {
	h, cleanup := builtin.Provide(builtin.Options{})
	defer cleanup()
	e := echo.New()
	h.Register(e)

	req := httptest.NewRequest(http.MethodPost, "/tasks/SHELL_SCRIPT_TASK", strings.NewReader(`{"script":"echo hello"}`))
	req.Header.Set(echo.HeaderContentType, echo.MIMEApplicationJSON)
	rec := httptest.NewRecorder()
	e.ServeHTTP(rec, req)
	fmt.Print(rec.Code, " ", rec.Body.String())
	// Output: 200 {"exitCode":0,"output":"hello\n","outputVars":{}}
}
