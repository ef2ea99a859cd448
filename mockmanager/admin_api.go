package mockmanager

import (
	"context"
	"errors"

	"github.com/dlite-dev/dlite/errs"
	adminapi "github.com/dlite-dev/dlite/gen/admin"
)

// adminAPI serves the admin API (openapi/admin.yaml) over the same Go methods tests call directly.
// Requests reach it validated, so a failure of those methods here is one of the contract's typed
// answers, never a 500.
type adminAPI struct{ s *Server }

func adminError(err error) adminapi.Error { return adminapi.Error{Message: err.Error()} }

func (a adminAPI) CreateTask(_ context.Context, req adminapi.CreateTaskRequestObject) (adminapi.CreateTaskResponseObject, error) {
	id, err := a.s.Enqueue(*req.Body)
	if err != nil {
		return adminapi.CreateTask400JSONResponse{BadRequestJSONResponse: adminapi.BadRequestJSONResponse(adminError(err))}, nil
	}
	a.s.log.Info("task queued", "task", id, "type", req.Body.Type)
	return adminapi.CreateTask201JSONResponse{Id: id}, nil
}

func (a adminAPI) ListTasks(_ context.Context, req adminapi.ListTasksRequestObject) (adminapi.ListTasksResponseObject, error) {
	if req.Params.State != nil {
		return adminapi.ListTasks200JSONResponse(a.s.Tasks(*req.Params.State)), nil
	}
	return adminapi.ListTasks200JSONResponse(a.s.Tasks()), nil
}

func (a adminAPI) GetTask(_ context.Context, req adminapi.GetTaskRequestObject) (adminapi.GetTaskResponseObject, error) {
	st, err := a.s.Task(req.Id)
	if err != nil {
		return adminapi.GetTask404JSONResponse{NotFoundJSONResponse: adminapi.NotFoundJSONResponse(adminError(err))}, nil
	}
	return adminapi.GetTask200JSONResponse(st), nil
}

func (a adminAPI) AbortTask(_ context.Context, req adminapi.AbortTaskRequestObject) (adminapi.AbortTaskResponseObject, error) {
	st, err := a.s.Abort(req.Id)
	switch {
	case errors.Is(err, ErrTaskFinished):
		return adminapi.AbortTask409JSONResponse(adminError(err)), nil
	case errors.Is(err, errs.ErrNotFound):
		return adminapi.AbortTask404JSONResponse{NotFoundJSONResponse: adminapi.NotFoundJSONResponse(adminError(err))}, nil
	case err != nil:
		return nil, err
	}
	a.s.log.Info("task aborted", "task", req.Id)
	return adminapi.AbortTask202JSONResponse(st), nil
}

func (a adminAPI) ListDelegates(context.Context, adminapi.ListDelegatesRequestObject) (adminapi.ListDelegatesResponseObject, error) {
	return adminapi.ListDelegates200JSONResponse(a.s.Delegates()), nil
}

func (a adminAPI) DeleteDelegate(_ context.Context, req adminapi.DeleteDelegateRequestObject) (adminapi.DeleteDelegateResponseObject, error) {
	if err := a.s.DeleteDelegate(req.Id); err != nil {
		return adminapi.DeleteDelegate404JSONResponse{NotFoundJSONResponse: adminapi.NotFoundJSONResponse(adminError(err))}, nil
	}
	a.s.log.Info("delegate deleted", "delegate", req.Id)
	return adminapi.DeleteDelegate204Response{}, nil
}

func (a adminAPI) GetFaults(context.Context, adminapi.GetFaultsRequestObject) (adminapi.GetFaultsResponseObject, error) {
	return adminapi.GetFaults200JSONResponse(a.s.Faults()), nil
}

func (a adminAPI) SetFaults(_ context.Context, req adminapi.SetFaultsRequestObject) (adminapi.SetFaultsResponseObject, error) {
	if err := a.s.SetFaults(*req.Body); err != nil {
		return adminapi.SetFaults400JSONResponse{BadRequestJSONResponse: adminapi.BadRequestJSONResponse(adminError(err))}, nil
	}
	f := a.s.Faults()
	a.s.log.Info("faults set", "error_rate", deref(f.ErrorRate), "latency_ms", deref(f.LatencyMs), "reset_rate", deref(f.ResetRate))
	return adminapi.SetFaults200JSONResponse(f), nil
}
