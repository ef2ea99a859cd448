package builtin

import (
	"context"
	"errors"
	"net/http"
	"time"

	gentasks "github.com/dlite-dev/dlite/gen/tasks"
	"github.com/dlite-dev/dlite/tasks/httptask"
	"github.com/dlite-dev/dlite/tasks/shell"
	"github.com/dlite-dev/dlite/tasks/sleep"
)

// Options configures the built-in task handlers. The zero value gives the defaults.
type Options struct {
	// TempDir is where scripts get their temporary directories; os.TempDir() when empty.
	TempDir string
	// KillGrace is how long a stopped script's processes get between SIGTERM and SIGKILL;
	// shell.DefaultKillGrace when zero.
	KillGrace time.Duration
	// HTTPClient sends the requests of HTTP_TASK; httptask.NewClient() when nil.
	HTTPClient *http.Client
}

// Handlers serves the built-in task types. Both fields must be set; New sets them.
type Handlers struct {
	// Shell runs SHELL_SCRIPT_TASK.
	Shell *shell.Handler
	// HTTP runs HTTP_TASK.
	HTTP *httptask.Handler
	// Sleep runs SLEEP_TASK.
	Sleep sleep.Handler
}

var _ gentasks.StrictServerInterface = (*Handlers)(nil)

var errNotConfigured = errors.New("builtin: handler not configured")

// New returns the built-in handlers configured by opts.
func New(opts Options) *Handlers {
	client := opts.HTTPClient
	if client == nil {
		client = httptask.NewClient()
	}
	return &Handlers{
		Shell: &shell.Handler{TempDir: opts.TempDir, KillGrace: opts.KillGrace},
		HTTP:  &httptask.Handler{Client: client},
	}
}

// Register mounts the handlers on r (an *echo.Echo or an *echo.Group) at the paths of the task
// spec: POST /tasks/SHELL_SCRIPT_TASK, /tasks/HTTP_TASK and /tasks/SLEEP_TASK.
func (h *Handlers) Register(r gentasks.EchoRouter) {
	gentasks.RegisterHandlers(r, gentasks.NewStrictHandler(h, nil))
}

// ShellScriptTask runs a SHELL_SCRIPT_TASK; see shell.Handler.Run.
func (h *Handlers) ShellScriptTask(ctx context.Context, req gentasks.ShellScriptTaskRequestObject) (gentasks.ShellScriptTaskResponseObject, error) {
	if h.Shell == nil {
		return nil, errNotConfigured
	}
	return h.Shell.Run(ctx, req)
}

// HttpTask runs an HTTP_TASK; see httptask.Handler.Run.
func (h *Handlers) HttpTask(ctx context.Context, req gentasks.HttpTaskRequestObject) (gentasks.HttpTaskResponseObject, error) {
	if h.HTTP == nil {
		return nil, errNotConfigured
	}
	return h.HTTP.Run(ctx, req)
}

// SleepTask runs a SLEEP_TASK; see sleep.Handler.Run.
func (h *Handlers) SleepTask(ctx context.Context, req gentasks.SleepTaskRequestObject) (gentasks.SleepTaskResponseObject, error) {
	return h.Sleep.Run(ctx, req)
}

// Close releases what the handlers keep between tasks: the HTTP client's idle connections. It
// does not stop running tasks; their contexts do.
func (h *Handlers) Close() {
	if h.HTTP != nil {
		h.HTTP.CloseIdleConnections()
	}
}
