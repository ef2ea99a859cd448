package dlite

import (
	"github.com/labstack/echo/v4"

	gentasks "github.com/dlite-dev/dlite/gen/tasks"
	"github.com/dlite-dev/dlite/tasks/builtin"
)

// BuiltinTasks returns the task server of dlite's built-in task types, SHELL_SCRIPT_TASK,
// HTTP_TASK and SLEEP_TASK, as specified in openapi/tasks.yaml.
func BuiltinTasks() TaskServer {
	h := builtin.New(builtin.Options{})
	return TaskServer{Spec: gentasks.GetSpec, Register: func(e *echo.Echo) { h.Register(e) }}
}
