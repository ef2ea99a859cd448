package ci

import (
	"context"

	"github.com/dlite-dev/dlite/gen/citasks"
	"github.com/dlite-dev/dlite/internal/engine"
)

// VmInitializeTask sets a stage up from a DLITE_CI_VM_INITIALIZE_TASK.
func (h *Handlers) VmInitializeTask(ctx context.Context, req citasks.VmInitializeTaskRequestObject) (citasks.VmInitializeTaskResponseObject, error) {
	var data citasks.VMInitializeData
	spec, err := engine.StageSpec{}, h.schemas.decode("VMInitializeData", *req.Body, &data)
	if err == nil {
		r := data.SetupVmRequest
		spec, err = stageSpec(r.Id, r.LogKey, r.SetupRequest, data.Services)
	}
	ans := h.setup(ctx, spec, err)
	return respond[citasks.VmInitializeTaskResponseObject](ok(ans.CommandExecutionStatus), citasks.VmInitializeTask200JSONResponse(ans),
		citasks.VmInitializeTask422JSONResponse{VMFailureJSONResponse: vmFailure(ans)}), nil
}

// VmExecuteTask runs one step from a DLITE_CI_VM_EXECUTE_TASK.
func (h *Handlers) VmExecuteTask(ctx context.Context, req citasks.VmExecuteTaskRequestObject) (citasks.VmExecuteTaskResponseObject, error) {
	var data citasks.VMExecuteData
	err := h.schemas.decode("VMExecuteData", *req.Body, &data)
	r := data.ExecuteStepRequest
	ans := h.execute(ctx, r.StageRuntimeId, r.StartStepRequest, err)
	return respond[citasks.VmExecuteTaskResponseObject](ok(ans.CommandExecutionStatus), citasks.VmExecuteTask200JSONResponse(ans),
		citasks.VmExecuteTask422JSONResponse{VMFailureJSONResponse: vmFailure(ans)}), nil
}

// VmCleanupTask tears a stage down from a DLITE_CI_VM_CLEANUP_TASK.
func (h *Handlers) VmCleanupTask(ctx context.Context, req citasks.VmCleanupTaskRequestObject) (citasks.VmCleanupTaskResponseObject, error) {
	var data citasks.VMCleanupData
	err := h.schemas.decode("VMCleanupData", *req.Body, &data)
	ans := h.cleanup(ctx, data.StageRuntimeId, err)
	return respond[citasks.VmCleanupTaskResponseObject](ok(ans.CommandExecutionStatus), citasks.VmCleanupTask200JSONResponse(ans),
		citasks.VmCleanupTask422JSONResponse{VMFailureJSONResponse: vmFailure(ans)}), nil
}

func vmFailure(ans citasks.VMTaskExecutionResponse) citasks.VMFailureJSONResponse {
	return citasks.VMFailureJSONResponse{Message: message(ans.ErrorMessage), Data: ans}
}
