package ci

import (
	"context"
	"fmt"

	"github.com/dlite-dev/dlite/gen/citasks"
	"github.com/dlite-dev/dlite/internal/engine"
	"github.com/dlite-dev/dlite/tasks"
)

// DockerInitializeTask sets a stage up from a CI_DOCKER_INITIALIZE_TASK, in either spelling:
// snake_case setup_request wins over the camelCase config when both are present.
func (h *Handlers) DockerInitializeTask(ctx context.Context, req citasks.DockerInitializeTaskRequestObject) (citasks.DockerInitializeTaskResponseObject, error) {
	var data citasks.DockerInitializeData
	spec, err := engine.StageSpec{}, h.decodeDocker(ctx, "DockerInitializeData", *req.Body, &data)
	if err == nil {
		var sr citasks.SetupRequest
		switch {
		case data.SetupRequest != nil:
			sr = *data.SetupRequest
		case data.Config != nil:
			sr, err = dockerSetup(*data.Config)
		}
		if err == nil {
			spec, err = stageSpec(data.Id, first(data.LogKey, data.LogKeyCamel, sr.LogKey), sr, data.Services)
		}
	}
	ans := dockerAnswer(h.setup(ctx, spec, err))
	return respond[citasks.DockerInitializeTaskResponseObject](ok(ans.CommandExecutionStatus), citasks.DockerInitializeTask200JSONResponse(ans),
		citasks.DockerInitializeTask422JSONResponse{DockerFailureJSONResponse: dockerFailure(ans)}), nil
}

// DockerExecuteTask runs one step from a CI_DOCKER_EXECUTE_TASK: harness-docker-runner's /step
// body, the VM form, or camelCase outer keys.
func (h *Handlers) DockerExecuteTask(ctx context.Context, req citasks.DockerExecuteTaskRequestObject) (citasks.DockerExecuteTaskResponseObject, error) {
	var data citasks.DockerExecuteData
	err := h.decodeDocker(ctx, "DockerExecuteData", *req.Body, &data)
	stageID := first(data.StageRuntimeId, data.StageRuntimeID, data.Id)
	step := data.StartStepRequest
	if step == nil {
		step = data.StartStepRequestCamel
	}
	if r := data.ExecuteStepRequest; r != nil {
		stageID, step = first(r.StageRuntimeId, stageID), &r.StartStepRequest
	}
	if err == nil && step == nil {
		err = fmt.Errorf("%w: the step (start_step_request) is missing", engine.ErrInvalid)
	}
	if step == nil {
		step = &citasks.StartStepRequest{}
	}
	ans := dockerAnswer(h.execute(ctx, stageID, *step, err))
	return respond[citasks.DockerExecuteTaskResponseObject](ok(ans.CommandExecutionStatus), citasks.DockerExecuteTask200JSONResponse(ans),
		citasks.DockerExecuteTask422JSONResponse{DockerFailureJSONResponse: dockerFailure(ans)}), nil
}

// DockerCleanupTask tears a stage down from a CI_DOCKER_CLEANUP_TASK.
func (h *Handlers) DockerCleanupTask(ctx context.Context, req citasks.DockerCleanupTaskRequestObject) (citasks.DockerCleanupTaskResponseObject, error) {
	var data citasks.DockerCleanupData
	err := h.decodeDocker(ctx, "DockerCleanupData", *req.Body, &data)
	ans := dockerAnswer(h.cleanup(ctx, first(data.Id, data.StageRuntimeId), err))
	return respond[citasks.DockerCleanupTaskResponseObject](ok(ans.CommandExecutionStatus), citasks.DockerCleanupTask200JSONResponse(ans),
		citasks.DockerCleanupTask422JSONResponse{DockerFailureJSONResponse: dockerFailure(ans)}), nil
}

// decodeDocker decodes a CI_DOCKER_* task's data and logs the keys it does not read.
func (h *Handlers) decodeDocker(ctx context.Context, schema string, data []byte, v any) error {
	if keys := h.schemas.unknownKeys(schema, data); len(keys) > 0 {
		tasks.Logger(ctx).Info("CI_DOCKER task data has keys this runner does not read", "schema", schema, "keys", keys)
	}
	return h.schemas.decode(schema, data, v)
}

func dockerFailure(ans citasks.DockerTaskExecutionResponse) citasks.DockerFailureJSONResponse {
	return citasks.DockerFailureJSONResponse{Message: message(ans.ErrorMessage), Data: ans}
}

// first returns the first non-empty string.
func first(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}
