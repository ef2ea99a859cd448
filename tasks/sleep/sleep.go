package sleep

import (
	"context"
	"fmt"
	"net/http"
	"time"

	gentasks "github.com/dlite-dev/dlite/gen/tasks"
)

// Handler runs SLEEP_TASK. The zero value is ready to use.
type Handler struct{}

// Run waits for the task's milliseconds or until ctx ends. A wait cut short is a failure whose
// message names the cause (the runtime reports it as a timeout, an abort or a shutdown).
func (Handler) Run(ctx context.Context, req gentasks.SleepTaskRequestObject) (gentasks.SleepTaskResponseObject, error) {
	if req.Body == nil {
		return gentasks.SleepTaskdefaultJSONResponse{StatusCode: http.StatusBadRequest, Body: gentasks.TaskError{Message: "no data"}}, nil
	}
	d := time.Duration(req.Body.Milliseconds) * time.Millisecond
	if d <= 0 {
		return gentasks.SleepTask200JSONResponse{SleptMilliseconds: 0}, nil
	}
	began := time.Now()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return gentasks.SleepTask200JSONResponse{SleptMilliseconds: req.Body.Milliseconds}, nil
	case <-ctx.Done():
		return gentasks.SleepTaskdefaultJSONResponse{
			StatusCode: http.StatusConflict,
			Body:       gentasks.TaskError{Message: fmt.Sprintf("interrupted after %s: %v", time.Since(began).Round(time.Millisecond), context.Cause(ctx))},
		}, nil
	}
}
